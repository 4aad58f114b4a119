"""Integer Rsqrt (1 / sqrt(x)), bit-exact with TFLite Micro's int8 RSQRT (elementwise.cc).

Per element, with v = x - in_zp:
    v < 0   TFLM refuses the tensor ("Rsqrt is only defined for positive values");
            so does this kernel (the quantizer gives Rsqrt inputs zero point -128)
    v = 0   127 (the largest output)
    else    data = MultiplyByQuantizedMultiplier(1, GetInvSqrtQuantizedMultiplierExp(v), e + 20)
                 ~ 2^20 / sqrt(v)
            y = MultiplyByQuantizedMultiplier(data, M, s - 20) + out_zp, clamped to int8
with M * 2^(s - 31) = 1 / (sqrt(in_s) * out_s) (fixed_point.rsqrt_multiplier).
`tests/test_rsqrt.py` runs all 256 input codes through the tflite-micro interpreter.
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.util import as_int, scale_zp, to_int8
from qcompiler.interp.int_kernels.registry import int_kernel

DATA_SHIFT = 20  # elementwise.cc kShift: 1/sqrt(v) is carried as an integer times 2^20


def rsqrt_values(v, multiplier: int, shift: int, out_zp: int) -> np.ndarray:
    """RsqrtEvalQuantized on offset inputs v = x - in_zp >= 0 (int8 result)."""
    v = as_int(v)
    inv, inv_shift = qm.inv_sqrt_multiplier_exp(v)
    data = qm.multiply_by_quantized_multiplier(1, inv, inv_shift + DATA_SHIFT)
    y = qm.multiply_by_quantized_multiplier(data, multiplier, shift - DATA_SHIFT) + out_zp
    return to_int8(np.where(v == 0, 127, y))


def rsqrt_table(node) -> np.ndarray:
    """Output for each input code -128..127 (codes below the zero point, which TFLM
    refuses, map like the zero point itself: 127)."""
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    v = np.maximum(np.arange(-128, 128) - zi, 0)
    return rsqrt_values(v, *qm.rsqrt_multiplier(si, so), zo)


@int_kernel("Rsqrt")
def rsqrt(node, inputs):
    _, zi = scale_zp(node, 0)
    x = as_int(inputs[0])
    if np.any(x < zi):
        raise GraphError(f"node {node.name} (Rsqrt): int8 input below its zero point {zi} (a negative "
                         "value); TFLM's RSQRT refuses it. Its input range must not include negatives.")
    return [rsqrt_table(node)[x + 128]]
