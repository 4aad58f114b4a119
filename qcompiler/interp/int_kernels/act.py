"""Integer activations: Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish (TFLM-exact).

(Softmax, int8 and int16, is in int_kernels/softmax.py.)
LOGISTIC / TANH int8 (integer_ops/logistic.h, tanh.h): saturate beyond the input
radius, else MultiplyByQuantizedMultiplier to Q4.27 and gemmlowp logistic / tanh,
then a rounding shift to 1/256 (-128 offset) or 1/128.
RELU (activations.h): requantize with QuantizeMultiplier(in_s / out_s) and clamp at the
output zero point (ratios in double: see fixed_point.scale_ratio). RELU6: a clamp of raw values to [zp, q(6)] (no rescale).
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int, require_same_quant, scale_zp, to_int8


def _require_output(node, scale, zero_point, why):
    so, zo = scale_zp(node, 0, output=True)
    if zo != zero_point or so != np.float32(scale):
        raise GraphError(f"node {node.name} ({node.op}): int8 output must have scale "
                         f"{scale} and zero point {zero_point} ({why}); got s={so}, zp={zo}")


def _sigmoid_tanh(node, x, fn, out_shift, out_offset):
    si, zi = scale_zp(node, 0)
    mult, shift, radius = qm.logistic_tanh_params(si)
    xv = as_int(x) - zi
    inside = np.abs(xv) < radius
    q4 = qm.multiply_by_quantized_multiplier(np.where(inside, xv, 0), mult, shift)
    y = qm.rounding_divide_by_pot(fn(q4, 4), out_shift) + out_offset
    y = np.where(xv <= -radius, -128, np.where(xv >= radius, 127, y))
    return [to_int8(y)]


@int_kernel("Sigmoid")
def sigmoid(node, inputs):
    _require_output(node, 1 / 256, -128, "TFLM LOGISTIC checks the zero point, assumes the scale")
    return _sigmoid_tanh(node, inputs[0], qm.fixed_logistic, 31 - 8, -128)


@int_kernel("Tanh")
def tanh(node, inputs):
    _require_output(node, 1 / 128, 0, "TFLM TANH int8 assumes these")
    return _sigmoid_tanh(node, inputs[0], qm.fixed_tanh, 31 - 7, 0)


def _relu(node, x):
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    m, e = qm.quantize_multiplier(qm.scale_ratio(si, so))
    y = qm.multiply_by_quantized_multiplier(as_int(x) - zi, m, e) + zo
    return to_int8(y, max(-128, zo), 127)


@int_kernel("Relu")
def relu(node, inputs):
    return [_relu(node, inputs[0])]


def _float_to_quantized(value: float, scale, zero_point: int) -> int:
    """micro_utils FloatToQuantizedType<int8_t>: round(value / scale) + zp, clamped."""
    q = qm.round_half_away(float(np.float32(value) / np.float32(scale))) + zero_point
    return int(min(127, max(-128, q)))


def _clip_bound(node, inputs, index, attr):
    v = node.inputs[index] if index < len(node.inputs) else None
    if v is not None and inputs[index] is not None:
        data = np.asarray(inputs[index])
        if v.quant is not None and np.issubdtype(data.dtype, np.integer):
            return float(v.quant.dequantize(data.reshape(-1))[0])
        return float(data.reshape(-1)[0])
    return float(node.attrs[attr]) if attr in node.attrs else None


@int_kernel("Clip")
def clip(node, inputs):
    lo = _clip_bound(node, inputs, 1, "min")
    hi = _clip_bound(node, inputs, 2, "max")
    if lo == 0.0 and (hi is None or hi == float("inf")):
        return [_relu(node, inputs[0])]          # TFLM RELU (may rescale)
    require_same_quant(node)                     # RELU6 / MINIMUM / MAXIMUM copy raw values
    si, zi = scale_zp(node, 0)
    qlo = zi if lo == 0.0 else (-128 if lo is None else _float_to_quantized(lo, si, zi))
    qhi = 127 if hi is None else _float_to_quantized(hi, si, zi)
    return [to_int8(as_int(inputs[0]), max(qlo, -128), min(qhi, 127))]


@int_kernel("LeakyRelu")
def leaky_relu(node, inputs):
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    alpha = np.float32(node.attrs.get("alpha", 0.01))
    ma, ea = qm.quantize_multiplier(float(alpha) * float(si) / float(so))
    mi, ei = qm.quantize_multiplier(qm.scale_ratio(si, so))
    xv = as_int(inputs[0]) - zi
    pos = qm.multiply_by_quantized_multiplier(xv, mi, ei)
    neg = qm.multiply_by_quantized_multiplier(xv, abs(ma), ea) * (-1 if ma < 0 else 1)
    return [to_int8(np.where(xv >= 0, pos, neg) + zo)]


def _sat_shift16(v, amount):
    return np.clip(v * (1 << amount), -32768, 32767)


def hard_swish_values(xv, params, out_zp):
    """reference/hard_swish.h on offset inputs xv = x - in_zp (int16 intermediates)."""
    m_out16, e_out, m_rel16, e_rel = params
    hires = np.asarray(xv, np.int64) * 128
    pre_out = qm.saturating_rounding_doubling_high_mul_int16(hires, m_out16)
    rel = _sat_shift16(hires, e_rel - 1) if e_rel > 0 else hires
    rel = qm.saturating_rounding_doubling_high_mul_int16(rel, m_rel16)
    if e_rel > 0:
        rel = _sat_shift16(rel, 1)
    elif e_rel < 0:
        rel = qm.rounding_divide_by_pot(rel, -e_rel)
    rel = (rel + (1 << 15)) >> 1
    prod = rel * pre_out  # SaturatingDoublingHighMul: truncating, no rounding nudge
    pre = np.where((rel == -32768) & (pre_out == -32768), 32767,
                   np.sign(prod) * (np.abs(prod) >> 15))
    y = qm.rounding_divide_by_pot(pre, -e_out) + out_zp
    y = ((y + 32768) & 0xFFFF) - 32768          # stored in an int16
    return to_int8(y)


@int_kernel("HardSwish")
def hard_swish(node, inputs):
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    params = qm.hard_swish_params(si, so)
    if params[1] > 0:
        raise GraphError(f"node {node.name} (HardSwish): output scale too small for TFLM "
                         "(output multiplier exponent must be <= 0)")
    return [hard_swish_values(as_int(inputs[0]) - zi, params, zo)]
