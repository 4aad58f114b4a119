"""Integer activations: Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish (TFLM-exact).

(Softmax, int8 and int16, is in int_kernels/softmax.py.)
LOGISTIC / TANH int8 (integer_ops/logistic.h, tanh.h): saturate beyond the input
radius, else MultiplyByQuantizedMultiplier to Q4.27 and gemmlowp logistic / tanh,
then a rounding shift to 1/256 (-128 offset) or 1/128.
int16 (16x8, zero points 0): LOGISTIC / TANH interpolate a 256-entry sigmoid table
(qops.act16); RELU, RELU6, MINIMUM / MAXIMUM and LEAKY_RELU are the int8 formulas on int16.
RELU (activations.h): requantize with QuantizeMultiplier(in_s / out_s) and clamp at the
output zero point (ratios in double: see fixed_point.scale_ratio). RELU6: a clamp of raw values to [zp, q(6)] (no rescale).
Parameters: qcompiler.numerics.qops.act.
"""
from __future__ import annotations

import functools

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int, to_int8, to_output
from qcompiler.numerics.qops import (clip_params, hard_swish_params, leaky_relu_params, logistic_params,
                                     relu_params, tanh_params)
from qcompiler.numerics.qops.act16 import Logistic16Params, logistic16_values, tanh16_values


# int8 inputs with more values than this go through a 256-entry table of the kernel's own results
TABLE_FROM = 1024
_CODES = np.arange(-128, 128, dtype=np.int8)


def by_table(kernel):
    """An elementwise int8 kernel, evaluated once on the 256 codes and indexed: the same values
    (each output depends on its input code and the node's parameters only), without running
    the fixed-point pipeline on every element of a big tensor."""
    @functools.wraps(kernel)
    def run(node, inputs):
        x = inputs[0]
        if not (isinstance(x, np.ndarray) and x.dtype == np.int8 and x.size > TABLE_FROM):
            return kernel(node, inputs)
        table = kernel(node, [_CODES] + list(inputs[1:]))[0]
        return [table[x.view(np.uint8) ^ np.uint8(128)]]  # code -128 is entry 0
    run.direct = kernel
    return run


def _sigmoid_tanh(p, x, fn):
    xv = as_int(x) - p.input_zero_point
    radius = p.input_range_radius
    inside = np.abs(xv) < radius
    q4 = qm.multiply_by_quantized_multiplier(np.where(inside, xv, 0), p.input_multiplier,
                                             p.input_left_shift)
    y = qm.rounding_divide_by_pot(fn(q4, 4), p.output_shift) + p.output_offset
    y = np.where(xv <= -radius, -128, np.where(xv >= radius, 127, y))
    return [to_int8(y)]


@int_kernel("Sigmoid")
@by_table
def sigmoid(node, inputs):
    p = logistic_params(node)
    if isinstance(p, Logistic16Params):
        return [logistic16_values(inputs[0], p)]
    return _sigmoid_tanh(p, inputs[0], qm.fixed_logistic)


@int_kernel("Tanh")
@by_table
def tanh(node, inputs):
    p = tanh_params(node)
    if isinstance(p, Logistic16Params):
        return [tanh16_values(inputs[0], p)]
    return _sigmoid_tanh(p, inputs[0], qm.fixed_tanh)


def _relu(node, x):
    p = relu_params(node)
    y = qm.multiply_by_quantized_multiplier(as_int(x) - p.input_zero_point, p.multiplier, p.shift)
    return to_output(node, y + p.output_zero_point, p.act_min, p.act_max)


@int_kernel("Relu")
@by_table
def relu(node, inputs):
    return [_relu(node, inputs[0])]


@int_kernel("Clip")
@by_table
def clip(node, inputs):
    p = clip_params(node, inputs)
    if p.relu:
        return [_relu(node, inputs[0])]          # TFLM RELU (may rescale)
    return [to_output(node, as_int(inputs[0]), p.act_min, p.act_max)]  # RELU6 / MINIMUM / MAXIMUM: raw values


@int_kernel("LeakyRelu")
@by_table
def leaky_relu(node, inputs):
    p = leaky_relu_params(node)
    xv = as_int(inputs[0]) - p.input_zero_point
    pos = qm.multiply_by_quantized_multiplier(xv, p.identity_multiplier, p.identity_shift)
    neg = qm.multiply_by_quantized_multiplier(xv, abs(p.alpha_multiplier), p.alpha_shift) \
        * (-1 if p.alpha_multiplier < 0 else 1)
    return [to_output(node, np.where(xv >= 0, pos, neg) + p.output_zero_point)]


def _sat_shift16(v, amount):
    return np.clip(v * (1 << amount), -32768, 32767)


def hard_swish_values(xv, m_out16: int, e_out: int, m_rel16: int, e_rel: int, out_zp: int):
    """reference/hard_swish.h on offset inputs xv = x - in_zp (int16 intermediates)."""
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
@by_table
def hard_swish(node, inputs):
    p = hard_swish_params(node)
    return [hard_swish_values(as_int(inputs[0]) - p.input_zero_point, p.output_multiplier,
                              p.output_exponent, p.reluish_multiplier, p.reluish_exponent,
                              p.output_zero_point)]
