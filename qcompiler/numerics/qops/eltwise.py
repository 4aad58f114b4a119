"""ADD / SUB, MUL and PRELU parameters (add_common.cc, sub_common.cc, mul_common.cc, prelu.cc).

    ADD / SUB:  a_i = MBQMSmallerThanOne((x_i - zp_i) << left_shift, M_i, shift_i)
                y   = clamp(MBQMSmallerThanOne(a_1 +/- a_2, M_out, shift_out) + out_zp, act range)
    MUL:        y   = clamp(MBQM((x1 - zp1) * (x2 - zp2), M, shift) + out_zp, act range)
    PRELU:      x >= zp: MBQM(x - zp, M1, s1) + out_zp; else MBQM((x - zp) * (a - a_zp), M2, s2) + out_zp
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcompiler.ir import Node
from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics.fixed_point import f32
from qcompiler.numerics.qops.common import QopParams, activation_clamp, scale_zp

ADD_LEFT_SHIFT = 20   # int8 ADD / SUB: inputs scaled by 2^20 before the common rescale


def add_multipliers(s1, s2, s_out, float32_math: bool = False):
    """ADD / SUB multipliers (add_common.cc, sub_common.cc), left_shift = 20.

    Returns ((M1, shift1), (M2, shift2), (Mout, shift_out)), every shift <= 0.
    ADD computes in double; SUB's source computes in float, but the verified wheel
    evaluates SUB in double as well, so both use the double form by default.
    """
    s1, s2, so = f32(s1), f32(s2), f32(s_out)
    if float32_math:
        twice = np.float32(2) * max(s1, s2)
        reals = (qm.scale_ratio(s1, twice, True), qm.scale_ratio(s2, twice, True),
                 qm.scale_ratio(twice, np.float32(1 << ADD_LEFT_SHIFT) * so, True))
    else:
        twice = 2.0 * float(max(s1, s2))
        reals = (float(s1) / twice, float(s2) / twice, twice / ((1 << ADD_LEFT_SHIFT) * float(so)))
    out = []
    for r in reals:
        if not 0.0 < r < 1.0:
            raise ValueError(f"ADD/SUB multiplier {r} outside (0, 1): TFLM aborts "
                             "(QuantizeMultiplierSmallerThanOneExp)")
        out.append(qm.quantize_multiplier(r))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class AddParams(QopParams):
    """Add and Sub (the op decides the sign; the numbers are the same)."""

    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    left_shift: int
    input1_multiplier: int
    input1_shift: int       # <= 0
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int
    act_min: int
    act_max: int


def add_params(node: Node) -> AddParams:
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    (m1, e1), (m2, e2), (mo, eo) = add_multipliers(s1, s2, so)
    return AddParams(z1, z2, zo, ADD_LEFT_SHIFT, m1, e1, m2, e2, mo, eo, *activation_clamp(node))


@dataclass(frozen=True, eq=False)
class MulParams(QopParams):
    input1_zero_point: int
    input2_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    act_min: int
    act_max: int


def mul_params(node: Node) -> MulParams:
    """MUL: QuantizeMultiplier(double(s1) * double(s2) / double(out))."""
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    m, e = qm.quantize_multiplier(float(s1) * float(s2) / float(so))
    return MulParams(z1, z2, zo, m, e, *activation_clamp(node))


@dataclass(frozen=True, eq=False)
class PReluParams(QopParams):
    input_zero_point: int
    alpha_zero_point: int
    output_zero_point: int
    identity_multiplier: int   # x >= zp: in_s / out_s
    identity_shift: int
    alpha_multiplier: int      # x < zp: in_s * alpha_s / out_s
    alpha_shift: int


def prelu_params(node: Node) -> PReluParams:
    (si, zi), (sa, za) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    m1, e1 = qm.quantize_multiplier(float(si) / float(so))
    m2, e2 = qm.quantize_multiplier(float(si) * float(sa) / float(so))
    return PReluParams(zi, za, zo, m1, e1, m2, e2)
