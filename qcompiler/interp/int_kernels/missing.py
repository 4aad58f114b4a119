"""Why the integer reference has no kernel for an op that some backend runs in float.

The reference reproduces TensorFlow Lite Micro's int8 kernels, so an op whose TFLM
kernel is float32-only has no int8 form to reproduce: every integer-scheme target
(TFLM / TFLite, TVM bit-exact with the reference) refuses it with this reason, which
`check_quantizable` and the backends' `unsupported_reason` report. Ops whose TFLM
kernel does take int8 but that qcc has not implemented yet say so.
"""
from __future__ import annotations

_FLOAT_ONLY = "TFLite Micro's {k} kernel is float32-only (no int8 form to reproduce)"
_NOT_YET = "no integer reference kernel yet (TFLite Micro has an int8 {k}; qcc does not implement it)"

WHY_NO_INT_KERNEL: dict[str, str] = {
    **{op: _FLOAT_ONLY.format(k=k) for op, k in (
        ("Ceil", "CEIL"), ("Floor", "FLOOR"), ("Exp", "EXP"), ("Log", "LOG"), ("Sin", "SIN"),
        ("Cos", "COS"), ("Sqrt", "SQRT"), ("Neg", "NEG"))},
    **{op: _NOT_YET.format(k=k) for op, k in (
        ("Abs", "ABS"), ("Elu", "ELU"), ("Max", "MAXIMUM"), ("Min", "MINIMUM"),
        ("Div", "DIV by a tensor (the div_to_mul pass makes a constant divisor a MUL)"), ("Reciprocal", "DIV"))},
    "Pow": "TFLite Micro has no POW kernel",
    "HardSigmoid": "TFLite has no HARD_SIGMOID op (the lower_hard_sigmoid pass folds it into MUL / ADD / clamp)",
    "LRN": "TFLite Micro has no LOCAL_RESPONSE_NORMALIZATION kernel; the decompose_lrn pass "
           "rewrites LRN into MUL, CONV_2D and RSQRT",
}
