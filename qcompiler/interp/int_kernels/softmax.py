"""Softmax (TFLM-exact) on int8 and int16, and Requantize (TFLM's integer QUANTIZE).

SOFTMAX int8 input (reference/softmax.h Softmax<int8_t, OutputT>, gemmlowp path, no
LUT): diff = x - max(row); taps with diff < diff_min contribute nothing and output the
type's minimum; exp in Q0.31 via exp_on_negative_values on a Q5.26 rescaled diff; sum
in Q12.19; reciprocal by GetReciprocal; output RoundingDivideByPOT(scale * exp,
bits_over_unit + 31 - output_bits) + output minimum. Output int8 (1/256, -128) or
int16 (1/65536, -32768), exactly what TFLM's Prepare accepts.

Each exp term is at most 1.0 (2^19 in Q12.19). With int8 output the shift reaches 32
(undefined behaviour; the reference refuses it) once the sum reaches 512: rows of up to
511 elements are always safe. With int16 output the shift stays <= 27; only the int32
sum limits it, to 4095 elements. Longer rows (up to 65536) need the int16 kernel:

SOFTMAX int16 (softmax_common.cc CalculateSoftmaxParams, reference SoftmaxInt16): input
multiplier QuantizeMultiplier(double(s) * beta / (10 / 65535)); per row diff = x - max,
exp = LUTLookup(sat16(MultiplyByQuantizedMultiplier(diff) + 32767), exp_lut) in Q0.15,
sum in Q16.15, its reciprocal from the 1/(1+x) table after normalising by the leading-zero
count, out = (exp * recip + round) >> (31 - clz) clamped to [0, 32767] at (1/32768, 0).
The two 513-entry tables are built in float32 by LUTPopulate<int16_t>
(kernels/internal/common.h) and do not depend on the model. The exp table covers
[-10, 0]: lower diffs all get its first entry, 2/32768, instead of ~0.

QUANTIZE integer -> integer (quantize_common.cc, reference/requantize.h):
QuantizeMultiplier(double(s_in) / double(s_out)), MultiplyByQuantizedMultiplier(x - zp_in)
+ zp_out, clamped to the output type.

The quantizer marks an int8 Softmax over more than 511 classes with WIDE_SOFTMAX_ATTR
(qcompiler/quant/wide_softmax.py), naming the path that `expand_wide_softmax` later spells out:

    "int16_output"  (512 .. 4095 classes)   SOFTMAX int8 -> int16 (1/65536, -32768),
                                             Requantize -> int8 (1/256, -128)
    "int16"         (4096 .. 65536 classes)  Requantize -> int16 (s/128, 0) (exact:
                                             (x - zp) * 128), SOFTMAX int16, Requantize
The marked node's kernel computes its path in one go, value for value.
Parameters, tables and the wide-path rules: qcompiler.numerics.qops.softmax.
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int
from qcompiler.ir import QuantParams
from qcompiler.numerics.qops import (requantize_params, requantize_params_for, softmax8_params,
                                     softmax16_params, softmax_params)
from qcompiler.numerics.qops.softmax import (I16_MAX, I16_MIN, OUTPUTS, SOFTMAX16_OUTPUT, WIDE_SOFTMAX_ATTR,
                                             exp_terms, int16_input_params, params, reduced_axes)


def apply_to_rows(node, x: np.ndarray, fn) -> np.ndarray:
    """`fn` (a softmax over the last axis of 2-D data) on the node's rows, layout restored."""
    x = np.asarray(x)
    axes = reduced_axes(node, x.ndim)
    tail = list(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, tail)
    y = np.asarray(fn(moved.reshape(-1, int(np.prod(moved.shape[len(moved.shape) - len(axes):])))))
    return np.moveaxis(y.reshape(moved.shape), tail, axes)


# ---- SOFTMAX with int8 input ------------------------------------------------------------------

def softmax_int8_rows(x, input_scale, output_bits: int = 8, where: str = "Softmax") -> np.ndarray:
    """Softmax<int8_t, int8_t / int16_t> over the last axis; int64 result in the output type's range."""
    p = softmax8_params(float(input_scale), output_bits)
    x = as_int(x)
    exp, share, valid = exp_terms(x - x.max(axis=-1, keepdims=True), p.input_multiplier,
                                  p.input_left_shift, p.diff_min)
    total = qm.wrap_int32(share.sum(axis=-1, keepdims=True))
    recip, bits_over_unit = qm.get_reciprocal(total, 12)
    exponent = bits_over_unit + 31 - output_bits
    if np.any((exponent < 0) | (exponent > 31)):
        raise GraphError(f"node {where} (Softmax): reciprocal exponent out of range: the sum of "
                         f"exponentials is too large for {output_bits}-bit output (TFLM aborts or "
                         "has undefined behaviour); more than 511 classes need the wide paths")
    lo, hi = -(1 << (output_bits - 1)), (1 << (output_bits - 1)) - 1
    y = qm.rounding_divide_by_pot(qm.saturating_rounding_doubling_high_mul(recip, exp), exponent)
    return np.where(valid, np.clip(y + lo, lo, hi), lo)


# ---- SOFTMAX int16 (reference SoftmaxInt16, LUTs from qops) ------------------------------------

def lut_lookup(value, lut: np.ndarray) -> np.ndarray:
    """LUTLookup(int16, lut): 9 high bits index, 7 low bits interpolate (rounded)."""
    v = np.asarray(value, np.int64)
    index = 256 + (v >> 7)
    table = lut.astype(np.int64)
    base = table[index]
    delta = ((table[index + 1] - base) * (v & 0x7F) + 64) >> 7
    return ((base + delta + 32768) & 0xFFFF) - 32768   # static_cast<int16_t>


def softmax_int16_rows(x, input_scale, beta: float = 1.0) -> np.ndarray:
    """SoftmaxInt16 over the last axis of int16 data; int16 result at (1/32768, 0)."""
    p = softmax16_params(input_scale, beta)
    x = as_int(x)
    scaled = qm.multiply_by_quantized_multiplier(x - x.max(axis=-1, keepdims=True), p.input_multiplier,
                                                 p.input_left_shift)
    exp = lut_lookup(np.clip(scaled + 32767, I16_MIN, I16_MAX), p.exp_lut)
    total = exp.sum(axis=-1, keepdims=True)                     # Q16.15, < 2^31
    headroom_plus_one = qm.count_leading_zeros_u32(total)
    shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    recip = lut_lookup(np.clip(shifted - ((1 << 15) + (1 << 16)), I16_MIN, I16_MAX),
                       p.one_over_one_plus_x_lut)
    right_shift = 31 - headroom_plus_one
    y = (exp * recip + (np.int64(1) << (right_shift - 1))) >> right_shift
    return np.clip(y, 0, I16_MAX).astype(np.int16)


# ---- QUANTIZE between integer types -----------------------------------------------------------

def requantize_values(x, q_in: QuantParams, q_out: QuantParams) -> np.ndarray:
    """reference_ops::Requantize as TFLM's QUANTIZE runs it for integer input and output."""
    p = requantize_params_for(q_in, q_out)
    return _requantize(x, p).astype(q_out.dtype)


def _requantize(x, p) -> np.ndarray:
    y = qm.multiply_by_quantized_multiplier(as_int(x) - p.input_zero_point, p.multiplier, p.shift)
    return np.clip(y + p.output_zero_point, p.qmin, p.qmax)


# ---- kernels ----------------------------------------------------------------------------------------

def _wide(node, x, qi: QuantParams, qo: QuantParams) -> np.ndarray:
    """An int8 Softmax marked with WIDE_SOFTMAX_ATTR, computed along its path."""
    path = node.attrs[WIDE_SOFTMAX_ATTR]
    if path == "int16_output":
        y16 = apply_to_rows(node, x, lambda r: softmax_int8_rows(r, qi.scale[0], 16, node.name))
        return requantize_values(y16, params(*OUTPUTS[np.dtype(np.int16)], np.int16), qo)
    if path == "int16":
        q16 = int16_input_params(qi)
        y16 = apply_to_rows(node, requantize_values(x, qi, q16),
                            lambda r: softmax_int16_rows(r, q16.scale[0]))
        return requantize_values(y16, params(*SOFTMAX16_OUTPUT, np.int16), qo)
    raise GraphError(f"node {node.name} (Softmax): unknown {WIDE_SOFTMAX_ATTR} path {path!r}")


@int_kernel("Softmax")
def softmax(node, inputs):
    p = softmax_params(node)                      # checks the input / output types
    qi, qo = node.inputs[0].quant, node.outputs[0].quant
    if qi.dtype == np.int16:
        return [apply_to_rows(node, inputs[0], lambda r: softmax_int16_rows(r, qi.scale[0]))]
    if node.attrs.get(WIDE_SOFTMAX_ATTR):
        return [_wide(node, inputs[0], qi, qo)]
    y = apply_to_rows(node, inputs[0], lambda r: softmax_int8_rows(r, qi.scale[0], p.output_bits, node.name))
    return [y.astype(qo.dtype)]


@int_kernel("Requantize")
def requantize(node, inputs):
    """qcc's integer QUANTIZE (int8 / int16 in and out, per-tensor parameters)."""
    p = requantize_params(node)
    return [_requantize(inputs[0], p).astype(node.outputs[0].quant.dtype)]
