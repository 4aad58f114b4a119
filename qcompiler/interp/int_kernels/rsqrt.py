"""Integer Rsqrt (1 / sqrt(x)), bit-exact with TFLite Micro's int8 RSQRT (elementwise.cc).

Per element, with v = x - in_zp:
    v < 0   TFLM refuses the tensor ("Rsqrt is only defined for positive values");
            so does this kernel (the quantizer gives Rsqrt inputs zero point -128)
    v = 0   127 (the largest output)
    else    data = MultiplyByQuantizedMultiplier(1, GetInvSqrtQuantizedMultiplierExp(v), e + 20)
                 ~ 2^20 / sqrt(v)
            y = MultiplyByQuantizedMultiplier(data, M, s - 20) + out_zp, clamped to int8
with M * 2^(s - 31) = 1 / (sqrt(in_s) * out_s); the 256 outputs are precomputed by
qops.rsqrt_params (qops.act.rsqrt_values), which the TVM lowering reuses.
`tests/test_rsqrt.py` runs all 256 input codes through the tflite-micro interpreter.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.util import as_int
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.numerics.qops import rsqrt_params


@int_kernel("Rsqrt")
def rsqrt(node, inputs):
    p = rsqrt_params(node)
    x = as_int(inputs[0])
    if np.any(x < p.input_zero_point):
        raise GraphError(f"node {node.name} (Rsqrt): int8 input below its zero point {p.input_zero_point} "
                         "(a negative value); TFLM's RSQRT refuses it. Its input range must not include "
                         "negatives.")
    return [p.table[x + 128]]
