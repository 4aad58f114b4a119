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
"""
from __future__ import annotations

import functools
import math

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import BackendError, GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int, qparams, scale_zp
from qcompiler.ir import QuantParams

WIDE_SOFTMAX_ATTR = "qcc_wide_softmax"
INT8_SOFTMAX_MAX_CLASSES = 511       # 511 * 2^19 < 2^28: the int8-output shift stays <= 31
INT16_OUTPUT_MAX_CLASSES = 4095      # 4095 * 2^19 < 2^31: the Q12.19 int32 sum cannot overflow
INT16_SOFTMAX_MAX_CLASSES = 65536    # 65536 * 32767 < 2^31: the int16 kernel's Q16.15 sum
INT16_INPUT_FACTOR = 128             # int16 kernel input = (int8 input - zp) * 128
OUTPUTS = {np.dtype(np.int8): (1.0 / 256, -128), np.dtype(np.int16): (1.0 / 65536, -32768)}
SOFTMAX16_OUTPUT = (1.0 / 32768, 0)  # the int16 kernel's output
_I16_MIN, _I16_MAX = -32768, 32767
_LUT_STEPS = 512


def wide_softmax_path(classes: int) -> str | None:
    """The path for an int8 Softmax over rows of `classes` elements (None: plain int8)."""
    if classes <= INT8_SOFTMAX_MAX_CLASSES:
        return None
    return "int16_output" if classes <= INT16_OUTPUT_MAX_CLASSES else "int16"


def refuse_unexpanded(node) -> None:
    """Backends lower the explicit nodes of a wide path, never the mark itself."""
    if node.attrs.get(WIDE_SOFTMAX_ATTR):
        raise BackendError(f"node {node.name} (Softmax): marked for a wide-softmax path but not expanded; "
                           "run passes.wide_softmax.expand_wide_softmax on the quantized graph first")


def params(scale, zero_point: int, dtype=np.int8) -> QuantParams:
    return QuantParams(np.float32(scale), zero_point, dtype=dtype)


def int16_input_params(q8: QuantParams) -> QuantParams:
    """The int16 kernel's input parameters for int8 data with parameters q8."""
    return params(np.float32(q8.scale[0]) / np.float32(INT16_INPUT_FACTOR), 0, np.int16)


# ---- rows ----------------------------------------------------------------------------------

def reduced_axes(node, rank: int) -> list[int]:
    """The axes one softmax normalizes over: opset < 13 flattens from `axis` (default 1)."""
    if (node.meta.get("opset") or 13) < 13:
        return list(range(int(node.attrs.get("axis", 1)) % max(rank, 1), rank))
    return [int(node.attrs.get("axis", -1)) % max(rank, 1)]


def reduced_size(node) -> int | None:
    """Elements per softmax row of `node` (None without a static input shape)."""
    shape = node.inputs[0].shape
    if shape is None:
        return None
    return int(np.prod([shape[a] for a in reduced_axes(node, len(shape))], dtype=np.int64))


def apply_to_rows(node, x: np.ndarray, fn) -> np.ndarray:
    """`fn` (a softmax over the last axis of 2-D data) on the node's rows, layout restored."""
    x = np.asarray(x)
    axes = reduced_axes(node, x.ndim)
    tail = list(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, tail)
    y = np.asarray(fn(moved.reshape(-1, int(np.prod(moved.shape[len(moved.shape) - len(axes):])))))
    return np.moveaxis(y.reshape(moved.shape), tail, axes)


# ---- SOFTMAX with int8 input ------------------------------------------------------------------

def softmax_exp_terms(diff, input_scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For diffs x - max(row) <= 0: (exp in Q0.31, its Q12.19 share of the sum, valid); taps below
    the kernel's diff_min are not valid and add nothing (both terms 0)."""
    mult, shift, diff_min = qm.softmax_params(input_scale, 1.0)
    diff = np.asarray(diff, np.int64)
    valid = diff >= diff_min
    scaled = qm.multiply_by_quantized_multiplier_greater_than_one(np.where(valid, diff, 0), mult, shift)
    exp = np.where(valid, qm.exp_on_negative_values(scaled, 5), 0).astype(np.int64)
    return exp, qm.rounding_divide_by_pot(exp, 12).astype(np.int64), valid


def softmax_int8_rows(x, input_scale, output_bits: int = 8, where: str = "Softmax") -> np.ndarray:
    """Softmax<int8_t, int8_t / int16_t> over the last axis; int64 result in the output type's range."""
    x = as_int(x)
    exp, share, valid = softmax_exp_terms(x - x.max(axis=-1, keepdims=True), input_scale)
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


# ---- SOFTMAX int16: lookup tables (LUTPopulate<int16_t>, float32 arithmetic) -------------------------

def _round(x) -> np.float32:
    """TfLiteRound on a float: roundf, halves away from zero."""
    return np.float32(qm.round_half_away(float(x)))


def lut_populate_int16(input_scale, input_zp: int, output_scale, output_zp: int, fn) -> np.ndarray:
    """LUTPopulateInt16<float>: 512 samples of `fn` (float32 -> float32), each biased by half the
    error of linear interpolation at its interval's midpoint, plus the end point."""
    f = np.float32
    si, so = f(input_scale), f(output_scale)
    in_min, in_max = si * f(_I16_MIN - input_zp), si * f(_I16_MAX - input_zp)
    out_min, out_max = so * f(_I16_MIN - output_zp), so * f(_I16_MAX - output_zp)
    step = (in_max - in_min) / f(_LUT_STEPS)
    half_step = step / f(2)
    inv = f(_I16_MAX - _I16_MIN + 1) / (out_max - out_min)
    lut = np.empty(_LUT_STEPS + 1, np.int16)
    for i in range(_LUT_STEPS):
        at = in_min + f(i) * step
        val, val_mid, val_next = fn(at), fn(at + half_step), fn(in_min + f(i + 1) * step)
        sample = _round(val * inv)
        interp = _round((val_next * inv + _round(val * inv)) / f(2))
        bias = _round((interp - _round(val_mid * inv)) / f(2))
        lut[i] = int(min(max(sample - bias, f(_I16_MIN)), f(_I16_MAX)))
    lut[_LUT_STEPS] = int(min(max(_round(fn(in_max) * inv), f(_I16_MIN)), f(_I16_MAX)))
    return lut


def _expf(x) -> np.float32:
    """std::exp on a float (expf): the exponential rounded once to float32."""
    return np.float32(math.exp(float(x)))


def _one_over_one_plus_x(x) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + x)


@functools.cache
def softmax_luts() -> tuple[np.ndarray, np.ndarray]:
    """(exp over [-10, 0], 1/(1+x) over [0, 1]) as InitializeLutForInt16 fills them."""
    span, f = _I16_MAX - _I16_MIN, np.float32
    exp_lut = lut_populate_int16(f(10.0) / f(span), _I16_MAX, f(2.0) / f(span), 0, _expf)
    recip_lut = lut_populate_int16(f(1.0) / f(span), _I16_MIN, f(2.0) / f(span), 0, _one_over_one_plus_x)
    exp_lut.flags.writeable = recip_lut.flags.writeable = False
    return exp_lut, recip_lut


def lut_lookup(value, lut: np.ndarray) -> np.ndarray:
    """LUTLookup(int16, lut): 9 high bits index, 7 low bits interpolate (rounded)."""
    v = np.asarray(value, np.int64)
    index = 256 + (v >> 7)
    table = lut.astype(np.int64)
    base = table[index]
    delta = ((table[index + 1] - base) * (v & 0x7F) + 64) >> 7
    return ((base + delta + 32768) & 0xFFFF) - 32768   # static_cast<int16_t>


def softmax16_params(input_scale, beta: float = 1.0) -> tuple[int, int]:
    """(input_multiplier, input_left_shift): diffs scaled so that [-10, 0] spans [-65535, 0]."""
    return qm.quantize_multiplier(float(np.float32(input_scale)) * float(np.float32(beta))
                                  / (10.0 / 65535.0))


def softmax_int16_rows(x, input_scale, beta: float = 1.0) -> np.ndarray:
    """SoftmaxInt16 over the last axis of int16 data; int16 result at (1/32768, 0)."""
    exp_lut, recip_lut = softmax_luts()
    mult, shift = softmax16_params(input_scale, beta)
    x = as_int(x)
    scaled = qm.multiply_by_quantized_multiplier(x - x.max(axis=-1, keepdims=True), mult, shift)
    exp = lut_lookup(np.clip(scaled + 32767, _I16_MIN, _I16_MAX), exp_lut)
    total = exp.sum(axis=-1, keepdims=True)                     # Q16.15, < 2^31
    headroom_plus_one = qm.count_leading_zeros_u32(total)
    shifted = ((total << (headroom_plus_one - 1)) + (1 << 13)) >> 14
    recip = lut_lookup(np.clip(shifted - ((1 << 15) + (1 << 16)), _I16_MIN, _I16_MAX), recip_lut)
    right_shift = 31 - headroom_plus_one
    y = (exp * recip + (np.int64(1) << (right_shift - 1))) >> right_shift
    return np.clip(y, 0, _I16_MAX).astype(np.int16)


# ---- QUANTIZE between integer types -----------------------------------------------------------

def requantize_values(x, q_in: QuantParams, q_out: QuantParams) -> np.ndarray:
    """reference_ops::Requantize as TFLM's QUANTIZE runs it for integer input and output."""
    mult, shift = qm.quantize_multiplier(qm.scale_ratio(q_in.scale[0], q_out.scale[0]))
    y = qm.multiply_by_quantized_multiplier(as_int(x) - int(q_in.zero_point[0]), mult, shift)
    return np.clip(y + int(q_out.zero_point[0]), q_out.qmin, q_out.qmax).astype(q_out.dtype)


# ---- kernels ----------------------------------------------------------------------------------------

def _require(node, ok: bool, want: str) -> None:
    if not ok:
        raise GraphError(f"node {node.name} (Softmax): {want} (what TFLM SOFTMAX accepts); got "
                         f"{qparams(node, 0)!r} -> {qparams(node, 0, output=True)!r}")


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
    qi, qo = qparams(node, 0), qparams(node, 0, output=True)
    (si, zi), (so, zo) = scale_zp(node, 0), scale_zp(node, 0, output=True)
    if qi.dtype == np.int16:
        _require(node, qo.dtype == np.int16 and zi == 0 and zo == 0
                 and so == np.float32(SOFTMAX16_OUTPUT[0]),
                 "int16 input needs zero point 0 and int16 output (1/32768, 0)")
        return [apply_to_rows(node, inputs[0], lambda r: softmax_int16_rows(r, si))]
    scale, zp = OUTPUTS.get(qo.dtype, (None, None))
    _require(node, qi.dtype == np.int8 and (so, zo) == (np.float32(scale or 0), zp),
             "int8 input needs int8 output (1/256, -128) or int16 output (1/65536, -32768)")
    if node.attrs.get(WIDE_SOFTMAX_ATTR):
        _require(node, qo.dtype == np.int8, "a wide softmax ends in int8 (1/256, -128)")
        return [_wide(node, inputs[0], qi, qo)]
    bits = 8 * qo.dtype.itemsize
    y = apply_to_rows(node, inputs[0], lambda r: softmax_int8_rows(r, si, bits, node.name))
    return [y.astype(qo.dtype)]


@int_kernel("Requantize")
def requantize(node, inputs):
    """qcc's integer QUANTIZE (int8 / int16 in and out, per-tensor parameters)."""
    qi, qo = qparams(node, 0), qparams(node, 0, output=True)
    if qi.scale.size != 1 or qo.scale.size != 1:
        raise GraphError(f"node {node.name} (Requantize): per-tensor parameters only")
    return [requantize_values(inputs[0], qi, qo)]
