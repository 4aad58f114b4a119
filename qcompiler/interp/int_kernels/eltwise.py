"""Integer Add / Sub / Mul / PRelu with numpy broadcasting, TFLM-exact.

ADD / SUB (add.h, sub.h, left_shift = 20):
    a_i = MBQMSmallerThanOne((x_i - zp_i) << 20, M_i, shift_i)
    y   = clamp(MBQMSmallerThanOne(a_1 +/- a_2, M_out, shift_out) + out_zp, act range)
MUL (mul.h): y = clamp(MBQM((x1 - zp1) * (x2 - zp2), M, shift) + out_zp, act range).
PRELU (prelu.h): x >= zp: MBQM(x - zp, M1, s1); else MBQM((x - zp) * (a - a_zp), M2, s2).
The broadcast paths of TFLM compute the same per-element function, so numpy
broadcasting of the NCHW operands gives the same values.
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int, out_range, scale_zp, to_int8

LEFT_SHIFT = 20


@int_kernel("Add", "Sub")
def add_sub(node, inputs):
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    (m1, e1), (m2, e2), (mo, eo) = qm.add_params(s1, s2, so)
    a = qm.multiply_by_quantized_multiplier_smaller_than_one(
        (as_int(inputs[0]) - z1) << LEFT_SHIFT, m1, e1)
    b = qm.multiply_by_quantized_multiplier_smaller_than_one(
        (as_int(inputs[1]) - z2) << LEFT_SHIFT, m2, e2)
    raw = qm.wrap_int32(a - b if node.op == "Sub" else a + b)
    y = qm.multiply_by_quantized_multiplier_smaller_than_one(raw, mo, eo) + zo
    return [to_int8(y, *out_range(node))]


@int_kernel("Mul")
def mul(node, inputs):
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    m, e = qm.quantize_multiplier(float(s1) * float(s2) / float(so))
    prod = (as_int(inputs[0]) - z1) * (as_int(inputs[1]) - z2)
    y = qm.multiply_by_quantized_multiplier(prod, m, e) + zo
    return [to_int8(y, *out_range(node))]


@int_kernel("PRelu")
def prelu(node, inputs):
    (si, zi), (sa, za) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    m1, e1 = qm.quantize_multiplier(float(si) / float(so))
    m2, e2 = qm.quantize_multiplier(float(si) * float(sa) / float(so))
    xv = as_int(inputs[0]) - zi
    av = as_int(inputs[1]) - za
    xv, av = np.broadcast_arrays(xv, av)
    pos = qm.multiply_by_quantized_multiplier(xv, m1, e1)
    neg = qm.multiply_by_quantized_multiplier(xv * av, m2, e2)
    return [to_int8(np.where(xv >= 0, pos, neg) + zo)]
