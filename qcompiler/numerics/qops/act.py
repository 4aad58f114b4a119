"""Activation parameters: LOGISTIC / TANH, RELU, RELU6 / MINIMUM / MAXIMUM (Clip), LEAKY_RELU,
HARD_SWISH and RSQRT, as each TFLM kernel's Prepare computes them.

LOGISTIC / TANH int8 (logistic.cc, tanh.cc): input multiplier to Q4.27 and a radius beyond
which the output saturates; the output parameters are fixed (1/256, -128) / (1/128, 0).
RELU: QuantizeMultiplier(in_s / out_s), clamp at the output zero point. A Clip other than
max(x, 0) copies raw values between bounds quantized with the input's parameters.
RSQRT: QuantizeMultiplier(1 / (sqrt(in_s) * out_s)) and, per int8 input code, the output
(`table`), from GetInvSqrtQuantizedMultiplierExp.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Node
from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics.fixed_point import f32
from qcompiler.numerics.qops.common import (QopParams, operand, qparams, require_same_quant,
                                            require_zero_points, scale_zp)

# ---- formulas on scales ------------------------------------------------------------------------

def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """Largest |input| (in input units) whose rescaled value fits (CalculateInputRadius)."""
    max_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                    * float(1 << (total_signed_bits - input_integer_bits))
                    / float(1 << input_left_shift))
    return int(math.floor(max_rescaled))


def logistic_tanh_multiplier(input_scale) -> tuple[int, int, int]:
    """int8 LOGISTIC / TANH: (input_multiplier, input_left_shift, input_range_radius).

    Both kernels use frexp + round without QuantizeMultiplier's 2^31 fix-up; the
    int32 cast of 2^31 wraps, as it does on the targets.
    """
    q, shift = math.frexp(float(f32(input_scale)) * float(1 << (31 - 4)))
    mult = int(qm.wrap_int32(int(qm.round_half_away(q * (1 << 31)))))
    return mult, shift, calculate_input_radius(4, shift, 31)


def hard_swish_multipliers(input_scale, output_scale, float32_math: bool = False):
    """HARD_SWISH (hard_swish_common.cc): (out_m16, out_exp, relu_m16, relu_exp).

    Both multipliers are QuantizeMultiplier'd and then rounded to Q0.15.
    """
    hires = np.float32(1.0 / 128.0) * f32(input_scale)
    m_out, e_out = qm.quantize_multiplier(qm.scale_ratio(hires, output_scale, float32_math))
    m_rel, e_rel = qm.quantize_multiplier(qm.scale_ratio(hires, np.float32(3.0 / 32768.0), float32_math))
    return (qm.down_scale_int32_to_int16_multiplier(m_out), e_out,
            qm.down_scale_int32_to_int16_multiplier(m_rel), e_rel)


def rsqrt_multiplier(input_scale, output_scale) -> tuple[int, int]:
    """RSQRT int8 (elementwise.cc): QuantizeMultiplier(1 / (sqrt(in_s) * out_s)).

    The source spells a float sqrt and product; the verified wheel evaluates them in
    double (tests/test_rsqrt.py has inputs that tell the two apart).
    """
    return qm.quantize_multiplier(1.0 / (math.sqrt(float(f32(input_scale))) * float(f32(output_scale))))


# ---- records -----------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LogisticParams(QopParams):
    """Sigmoid (LOGISTIC) and Tanh, int8."""

    input_zero_point: int
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int
    output_shift: int       # Q0.31 result >> output_shift: 1/256 (logistic) or 1/128 (tanh) steps
    output_offset: int      # -128 (logistic) or 0 (tanh)


def _require_output(node: Node, scale, zero_point: int, why: str) -> None:
    so, zo = scale_zp(node, 0, output=True)
    if zo != zero_point or so != np.float32(scale):
        raise GraphError(f"node {node.name} ({node.op}): int8 output must have scale "
                         f"{scale} and zero point {zero_point} ({why}); got s={so}, zp={zo}")


def _logistic_tanh(node: Node, output_bits: int, offset: int) -> LogisticParams:
    si, zi = scale_zp(node, 0)
    return LogisticParams(zi, *logistic_tanh_multiplier(si), 31 - output_bits, offset)


def logistic_params(node: Node):
    """LogisticParams (int8) or, for int16 input, act16.Logistic16Params."""
    if qparams(node, 0).dtype == np.int16:
        from qcompiler.numerics.qops.act16 import logistic16_params
        return logistic16_params(node)
    _require_output(node, 1 / 256, -128, "TFLM LOGISTIC checks the zero point, assumes the scale")
    return _logistic_tanh(node, 8, -128)


def tanh_params(node: Node):
    """LogisticParams (int8) or, for int16 input, act16.Logistic16Params."""
    if qparams(node, 0).dtype == np.int16:
        from qcompiler.numerics.qops.act16 import tanh16_params
        return tanh16_params(node)
    _require_output(node, 1 / 128, 0, "TFLM TANH int8 assumes these")
    return _logistic_tanh(node, 7, 0)


@dataclass(frozen=True, eq=False)
class ReluParams(QopParams):
    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    act_min: int            # max(-128, out_zp)
    act_max: int


def relu_params(node: Node) -> ReluParams:
    """RELU; int16 needs zero points 0 (activations_common.cc)."""
    require_zero_points(node)
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    qo = qparams(node, 0, output=True)
    m, e = qm.quantize_multiplier(qm.scale_ratio(si, so))
    return ReluParams(zi, zo, m, e, max(qo.qmin, zo), qo.qmax)


def float_to_quantized(value: float, scale, zero_point: int, qmin: int = -128, qmax: int = 127) -> int:
    """micro_utils FloatToQuantizedType<int8_t / int16_t>: round(value / scale) + zp, clamped."""
    q = qm.round_half_away(float(np.float32(value) / np.float32(scale))) + zero_point
    return int(min(qmax, max(qmin, q)))


def _bound(node: Node, index: int, attr: str, values) -> float | None:
    data = operand(node, index, values, "Clip bound")
    if data is not None:
        v = node.inputs[index]
        if v.quant is not None and np.issubdtype(data.dtype, np.integer):
            return float(v.quant.dequantize(data.reshape(-1))[0])
        return float(data.reshape(-1)[0])
    return float(node.attrs[attr]) if attr in node.attrs else None


@dataclass(frozen=True, eq=False)
class ClipParams(QopParams):
    """Clip. `relu`: it is max(x, 0), TFLM RELU (which may rescale: `relu_params`); else the
    raw int8 input clamped to [act_min, act_max] (RELU6, or MINIMUM / MAXIMUM)."""

    low: float | None       # the bounds in real units (None: unbounded)
    high: float | None
    relu: int
    act_min: int
    act_max: int


def clip_bounds(node: Node, values: list | None = None) -> tuple[float | None, float | None, bool]:
    """(low, high, is_relu) of a Clip in real units; is_relu: max(x, 0), TFLM RELU, which may
    rescale; every other Clip copies raw values, so its input and output share parameters."""
    lo, hi = _bound(node, 1, "min", values), _bound(node, 2, "max", values)
    return lo, hi, lo == 0.0 and (hi is None or hi == math.inf)


def clip_params(node: Node, values: list | None = None) -> ClipParams:
    """`values`: a kernel's runtime operands (bounds may be inputs); default the constants."""
    lo, hi, relu = clip_bounds(node, values)
    qi = qparams(node, 0)
    qmin, qmax = qi.qmin, qi.qmax
    if relu:
        return ClipParams(lo, hi, 1, qmin, qmax)
    require_same_quant(node)       # RELU6 / MINIMUM / MAXIMUM copy raw values
    si, zi = scale_zp(node, 0)
    qlo = zi if lo == 0.0 else (qmin if lo is None else float_to_quantized(lo, si, zi, qmin, qmax))
    qhi = qmax if hi is None else float_to_quantized(hi, si, zi, qmin, qmax)
    return ClipParams(lo, hi, 0, max(qlo, qmin), min(qhi, qmax))


@dataclass(frozen=True, eq=False)
class LeakyReluParams(QopParams):
    input_zero_point: int
    output_zero_point: int
    identity_multiplier: int   # x >= zp: in_s / out_s
    identity_shift: int
    alpha_multiplier: int      # x < zp: alpha * in_s / out_s (negative for alpha < 0)
    alpha_shift: int


def leaky_relu_params(node: Node) -> LeakyReluParams:
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    alpha = np.float32(node.attrs.get("alpha", 0.01))
    ma, ea = qm.quantize_multiplier(float(alpha) * float(si) / float(so))
    mi, ei = qm.quantize_multiplier(qm.scale_ratio(si, so))
    return LeakyReluParams(zi, zo, mi, ei, ma, ea)


@dataclass(frozen=True, eq=False)
class HardSwishParams(QopParams):
    input_zero_point: int
    output_zero_point: int
    output_multiplier: int     # Q0.15
    output_exponent: int       # <= 0
    reluish_multiplier: int    # Q0.15
    reluish_exponent: int


def hard_swish_params(node: Node) -> HardSwishParams:
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    m_out, e_out, m_rel, e_rel = hard_swish_multipliers(si, so)
    if e_out > 0:
        raise GraphError(f"node {node.name} (HardSwish): output scale too small for TFLM "
                         "(output multiplier exponent must be <= 0)")
    return HardSwishParams(zi, zo, m_out, e_out, m_rel, e_rel)


# ---- RSQRT ---------------------------------------------------------------------------------------

RSQRT_DATA_SHIFT = 20  # elementwise.cc kShift: 1/sqrt(v) is carried as an integer times 2^20


def rsqrt_values(v, multiplier: int, shift: int, out_zp: int) -> np.ndarray:
    """RsqrtEvalQuantized on offset inputs v = x - in_zp >= 0 (int8 result)."""
    v = np.asarray(v, np.int64)
    inv, inv_shift = qm.inv_sqrt_multiplier_exp(v)
    data = qm.multiply_by_quantized_multiplier(1, inv, inv_shift + RSQRT_DATA_SHIFT)
    y = qm.multiply_by_quantized_multiplier(data, multiplier, shift - RSQRT_DATA_SHIFT) + out_zp
    return np.clip(np.where(v == 0, 127, y), -128, 127).astype(np.int8)


@dataclass(frozen=True, eq=False)
class RsqrtParams(QopParams):
    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    table: np.ndarray   # int8 [256]: output for input code -128 + i (codes below the zero
    #                     point, which TFLM refuses, map like the zero point itself: 127)


@functools.lru_cache(maxsize=1024)
def _rsqrt_params(si: float, zi: int, so: float, zo: int) -> RsqrtParams:
    m, e = rsqrt_multiplier(si, so)
    table = rsqrt_values(np.maximum(np.arange(-128, 128) - zi, 0), m, e, zo)
    return RsqrtParams(zi, zo, m, e, table)


def rsqrt_params(node: Node) -> RsqrtParams:
    (si, zi), (so, zo) = scale_zp(node, 0), scale_zp(node, 0, output=True)
    return _rsqrt_params(float(si), zi, float(so), zo)
