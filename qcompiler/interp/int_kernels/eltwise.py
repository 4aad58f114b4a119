"""Integer Add / Sub / Mul / PRelu with numpy broadcasting, TFLM-exact.

ADD / SUB (add.h, sub.h, left_shift = 20; parameters: qops.add_params):
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
from qcompiler.interp.int_kernels.util import as_int, to_int8
from qcompiler.numerics.qops import add_params, mul_params, prelu_params


@int_kernel("Add", "Sub")
def add_sub(node, inputs):
    p = add_params(node)
    a = qm.multiply_by_quantized_multiplier_smaller_than_one(
        (as_int(inputs[0]) - p.input1_zero_point) << p.left_shift, p.input1_multiplier, p.input1_shift)
    b = qm.multiply_by_quantized_multiplier_smaller_than_one(
        (as_int(inputs[1]) - p.input2_zero_point) << p.left_shift, p.input2_multiplier, p.input2_shift)
    raw = qm.wrap_int32(a - b if node.op == "Sub" else a + b)
    y = qm.multiply_by_quantized_multiplier_smaller_than_one(raw, p.output_multiplier, p.output_shift)
    return [to_int8(y + p.output_zero_point, p.act_min, p.act_max)]


@int_kernel("Mul")
def mul(node, inputs):
    p = mul_params(node)
    prod = (as_int(inputs[0]) - p.input1_zero_point) * (as_int(inputs[1]) - p.input2_zero_point)
    y = qm.multiply_by_quantized_multiplier(prod, p.multiplier, p.shift) + p.output_zero_point
    return [to_int8(y, p.act_min, p.act_max)]


@int_kernel("PRelu")
def prelu(node, inputs):
    p = prelu_params(node)
    xv = as_int(inputs[0]) - p.input_zero_point
    av = as_int(inputs[1]) - p.alpha_zero_point
    xv, av = np.broadcast_arrays(xv, av)
    pos = qm.multiply_by_quantized_multiplier(xv, p.identity_multiplier, p.identity_shift)
    neg = qm.multiply_by_quantized_multiplier(xv * av, p.alpha_multiplier, p.alpha_shift)
    return [to_int8(np.where(xv >= 0, pos, neg) + p.output_zero_point)]
