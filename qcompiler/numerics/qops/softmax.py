"""SOFTMAX (int8 and int16 input) and integer QUANTIZE (Requantize) parameters, and the
wide-softmax rules the quantizer, the reference and the backends share.

SOFTMAX int8 input (softmax_common.cc CalculateSoftmaxParams): the difference to the row
maximum is rescaled to Q5.26 by (input_multiplier, input_left_shift); differences below
diff_min contribute nothing. `exp_table` / `sum_table` hold, for every difference d = 0..255,
exp(-d) in Q0.31 and its Q12.19 share of the sum (the kernel's own terms; 0 beyond diff_min).
Output int8 (1/256, -128) or int16 (1/65536, -32768).
SOFTMAX int16 input: QuantizeMultiplier(double(s) * beta / (10 / 65535)) and the two 513-entry
tables LUTPopulate<int16_t> fills in float32 (exp over [-10, 0], 1/(1+x) over [0, 1]);
zero points 0, output (1/32768, 0).
QUANTIZE integer -> integer: QuantizeMultiplier(double(s_in) / double(s_out)).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from qcompiler.errors import BackendError, GraphError
from qcompiler.ir import Node, QuantParams
from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics.fixed_point import f32
from qcompiler.numerics.qops.act import calculate_input_radius
from qcompiler.numerics.qops.common import QopParams, qparams, scale_zp

WIDE_SOFTMAX_ATTR = "qcc_wide_softmax"
INT8_SOFTMAX_MAX_CLASSES = 511       # 511 * 2^19 < 2^28: the int8-output shift stays <= 31
INT16_OUTPUT_MAX_CLASSES = 4095      # 4095 * 2^19 < 2^31: the Q12.19 int32 sum cannot overflow
INT16_SOFTMAX_MAX_CLASSES = 65536    # 65536 * 32767 < 2^31: the int16 kernel's Q16.15 sum
INT16_INPUT_FACTOR = 128             # int16 kernel input = (int8 input - zp) * 128
OUTPUTS = {np.dtype(np.int8): (1.0 / 256, -128), np.dtype(np.int16): (1.0 / 65536, -32768)}
SOFTMAX16_OUTPUT = (1.0 / 32768, 0)  # the int16 kernel's output
I16_MIN, I16_MAX = -32768, 32767
LUT_STEPS = 512


# ---- the wide paths (more than 511 classes) and the rows ------------------------------------------

def wide_softmax_path(classes: int) -> str | None:
    """The path for an int8 Softmax over rows of `classes` elements (None: plain int8)."""
    if classes <= INT8_SOFTMAX_MAX_CLASSES:
        return None
    return "int16_output" if classes <= INT16_OUTPUT_MAX_CLASSES else "int16"


def refuse_unexpanded(node: Node) -> None:
    """Backends lower the explicit nodes of a wide path, never the mark itself."""
    if node.attrs.get(WIDE_SOFTMAX_ATTR):
        raise BackendError(f"node {node.name} (Softmax): marked for a wide-softmax path but not expanded; "
                           "run passes.wide_softmax.expand_wide_softmax on the quantized graph first")


def params(scale, zero_point: int, dtype=np.int8) -> QuantParams:
    return QuantParams(np.float32(scale), zero_point, dtype=dtype)


def int16_input_params(q8: QuantParams) -> QuantParams:
    """The int16 kernel's input parameters for int8 data with parameters q8."""
    return params(np.float32(q8.scale[0]) / np.float32(INT16_INPUT_FACTOR), 0, np.int16)


def reduced_axes(node: Node, rank: int) -> list[int]:
    """The axes one softmax normalizes over: opset < 13 flattens from `axis` (default 1)."""
    if (node.meta.get("opset") or 13) < 13:
        return list(range(int(node.attrs.get("axis", 1)) % max(rank, 1), rank))
    return [int(node.attrs.get("axis", -1)) % max(rank, 1)]


def reduced_size(node: Node) -> int | None:
    """Elements per softmax row of `node` (None without a static input shape)."""
    shape = node.inputs[0].shape
    if shape is None:
        return None
    return int(np.prod([shape[a] for a in reduced_axes(node, len(shape))], dtype=np.int64))


# ---- SOFTMAX, int8 input ---------------------------------------------------------------------------

def softmax_input_multiplier(input_scale, beta: float = 1.0) -> tuple[int, int, int]:
    """int8 SOFTMAX: (input_multiplier, input_left_shift, diff_min) as softmax_common.cc."""
    real = min(float(f32(beta)) * float(f32(input_scale)) * float(1 << (31 - 5)),
               float((1 << 31) - 1))
    if real <= 1.0:
        raise ValueError(f"softmax input scale {float(input_scale)} too small for TFLM "
                         "(beta * scale * 2^26 must exceed 1)")
    mult, shift = qm.quantize_multiplier(real)
    return mult, shift, -calculate_input_radius(5, shift)


def exp_terms(diff, multiplier: int, left_shift: int, diff_min: int):
    """For diffs x - max(row) <= 0: (exp in Q0.31, its Q12.19 share of the sum, valid); taps below
    diff_min are not valid and add nothing (both terms 0). int64 arrays."""
    diff = np.asarray(diff, np.int64)
    valid = diff >= diff_min
    scaled = qm.multiply_by_quantized_multiplier_greater_than_one(np.where(valid, diff, 0),
                                                                   multiplier, left_shift)
    exp = np.where(valid, qm.exp_on_negative_values(scaled, 5), 0).astype(np.int64)
    return exp, qm.rounding_divide_by_pot(exp, 12).astype(np.int64), valid


@dataclass(frozen=True, eq=False)
class SoftmaxParams(QopParams):
    """Softmax with int8 input: int8 (1/256, -128) or int16 (1/65536, -32768) output."""

    input_multiplier: int
    input_left_shift: int
    diff_min: int
    output_bits: int          # 8 or 16; the output zero point is -2^(bits-1)
    exp_table: np.ndarray     # int32 [256]: exp(-d) in Q0.31 for d = max - x = 0..255
    sum_table: np.ndarray     # int32 [256]: its Q12.19 share of the row sum


@functools.lru_cache(maxsize=1024)
def softmax8_params(input_scale: float, output_bits: int = 8) -> SoftmaxParams:
    """The int8-input parameters for one input scale (cached: tables are 256 entries)."""
    mult, shift, diff_min = softmax_input_multiplier(input_scale, 1.0)
    exp, share, _ = exp_terms(-np.arange(256), mult, shift, diff_min)
    return SoftmaxParams(mult, shift, diff_min, output_bits, exp.astype(np.int32), share.astype(np.int32))


# ---- SOFTMAX, int16 input: lookup tables (LUTPopulate<int16_t>, float32 arithmetic) ---------------

def _round(x) -> np.float32:
    """TfLiteRound on a float: roundf, halves away from zero."""
    return np.float32(qm.round_half_away(float(x)))


def lut_populate_int16(input_scale, input_zp: int, output_scale, output_zp: int, fn) -> np.ndarray:
    """LUTPopulateInt16<float>: 512 samples of `fn` (float32 -> float32), each biased by half the
    error of linear interpolation at its interval's midpoint, plus the end point."""
    f = np.float32
    si, so = f(input_scale), f(output_scale)
    in_min, in_max = si * f(I16_MIN - input_zp), si * f(I16_MAX - input_zp)
    out_min, out_max = so * f(I16_MIN - output_zp), so * f(I16_MAX - output_zp)
    step = (in_max - in_min) / f(LUT_STEPS)
    half_step = step / f(2)
    inv = f(I16_MAX - I16_MIN + 1) / (out_max - out_min)
    lut = np.empty(LUT_STEPS + 1, np.int16)
    for i in range(LUT_STEPS):
        at = in_min + f(i) * step
        val, val_mid, val_next = fn(at), fn(at + half_step), fn(in_min + f(i + 1) * step)
        sample = _round(val * inv)
        interp = _round((val_next * inv + _round(val * inv)) / f(2))
        bias = _round((interp - _round(val_mid * inv)) / f(2))
        lut[i] = int(min(max(sample - bias, f(I16_MIN)), f(I16_MAX)))
    lut[LUT_STEPS] = int(min(max(_round(fn(in_max) * inv), f(I16_MIN)), f(I16_MAX)))
    return lut


def _expf(x) -> np.float32:
    """std::exp on a float (expf): the exponential rounded once to float32."""
    return np.float32(math.exp(float(x)))


def _one_over_one_plus_x(x) -> np.float32:
    return np.float32(1.0) / (np.float32(1.0) + x)


@functools.cache
def softmax_luts() -> tuple[np.ndarray, np.ndarray]:
    """(exp over [-10, 0], 1/(1+x) over [0, 1]) as InitializeLutForInt16 fills them."""
    span, f = I16_MAX - I16_MIN, np.float32
    exp_lut = lut_populate_int16(f(10.0) / f(span), I16_MAX, f(2.0) / f(span), 0, _expf)
    recip_lut = lut_populate_int16(f(1.0) / f(span), I16_MIN, f(2.0) / f(span), 0, _one_over_one_plus_x)
    exp_lut.flags.writeable = recip_lut.flags.writeable = False
    return exp_lut, recip_lut


@dataclass(frozen=True, eq=False)
class Softmax16Params(QopParams):
    """Softmax with int16 input (zero point 0) and int16 output (1/32768, 0)."""

    input_multiplier: int
    input_left_shift: int
    exp_lut: np.ndarray          # int16 [513]
    one_over_one_plus_x_lut: np.ndarray  # int16 [513]


def softmax16_params(input_scale, beta: float = 1.0) -> Softmax16Params:
    """Diffs scaled so that [-10, 0] spans [-65535, 0]; the model-independent tables."""
    mult, shift = qm.quantize_multiplier(float(np.float32(input_scale)) * float(np.float32(beta))
                                         / (10.0 / 65535.0))
    return Softmax16Params(mult, shift, *softmax_luts())


def _require(node: Node, ok: bool, want: str) -> None:
    if not ok:
        raise GraphError(f"node {node.name} (Softmax): {want} (what TFLM SOFTMAX accepts); got "
                         f"{qparams(node, 0)!r} -> {qparams(node, 0, output=True)!r}")


def softmax_params(node: Node) -> SoftmaxParams | Softmax16Params:
    """By input type. An int8 Softmax marked with WIDE_SOFTMAX_ATTR must end in int8 (1/256, -128);
    its path's own parameters come from softmax8_params / softmax16_params / requantize_params_for."""
    qi, qo = qparams(node, 0), qparams(node, 0, output=True)
    (si, zi), (so, zo) = scale_zp(node, 0), scale_zp(node, 0, output=True)
    if qi.dtype == np.int16:
        _require(node, qo.dtype == np.int16 and zi == 0 and zo == 0
                 and so == np.float32(SOFTMAX16_OUTPUT[0]),
                 "int16 input needs zero point 0 and int16 output (1/32768, 0)")
        return softmax16_params(si)
    scale, zp = OUTPUTS.get(qo.dtype, (None, None))
    _require(node, qi.dtype == np.int8 and (so, zo) == (np.float32(scale or 0), zp),
             "int8 input needs int8 output (1/256, -128) or int16 output (1/65536, -32768)")
    if node.attrs.get(WIDE_SOFTMAX_ATTR):
        _require(node, qo.dtype == np.int8, "a wide softmax ends in int8 (1/256, -128)")
    return softmax8_params(float(si), 8 * qo.dtype.itemsize)


# ---- QUANTIZE between integer types ------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RequantizeParams(QopParams):
    """y = clamp(MBQM(x - input_zero_point, multiplier, shift) + output_zero_point, qmin, qmax)."""

    input_zero_point: int
    output_zero_point: int
    multiplier: int
    shift: int
    qmin: int               # the output type's range
    qmax: int


def requantize_params_for(q_in: QuantParams, q_out: QuantParams) -> RequantizeParams:
    """reference_ops::Requantize as TFLM's QUANTIZE runs it for integer input and output."""
    mult, shift = qm.quantize_multiplier(qm.scale_ratio(q_in.scale[0], q_out.scale[0]))
    return RequantizeParams(int(q_in.zero_point[0]), int(q_out.zero_point[0]), mult, shift,
                            q_out.qmin, q_out.qmax)


def requantize_params(node: Node) -> RequantizeParams:
    """qcc's integer QUANTIZE (int8 / int16 in and out, per-tensor parameters)."""
    qi, qo = qparams(node, 0), qparams(node, 0, output=True)
    if qi.scale.size != 1 or qo.scale.size != 1:
        raise GraphError(f"node {node.name} (Requantize): per-tensor parameters only")
    return requantize_params_for(qi, qo)
