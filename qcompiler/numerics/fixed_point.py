"""Shared fixed-point arithmetic, bit-exact with TFLite Micro's reference kernels.

Every multiplier the backends write and the integer reference interpreter uses
comes from here, so that calibration, the oracle and every emitter agree.

TFLM is built without TFLITE_SINGLE_ROUNDING, so requantization uses the
*double rounding* form (tensorflow/lite/kernels/internal/common.cc):

    MultiplyByQuantizedMultiplier(x, M, s) =
        RoundingDivideByPOT(SRDHM(x * 2^max(s,0), M), max(-s,0))

`tests/test_fixed_point.py` checks this against the tflite-micro interpreter on
inputs where single and double rounding disagree.

Per-op parameters (which multiplier each op computes from which scales) are in
`qcompiler.numerics.qops`. Some Prepare functions write float32 expressions cast to
double (FULLY_CONNECTED per-tensor `double(in * w)`, SUB, RELU, LEAKY_RELU, HARD_SWISH).
The tflite-micro wheel we verify against evaluates those in double (its compiler
widened them; visible in its disassembly and on crafted inputs in
tests/test_int_kernels_tflm.py), so the defaults use double; `scale_ratio` and the
qops formulas take `float32_math` / `float32_product` to reproduce the float form of
the source. Activation-range `Quantize()` and RELU6 stay in float32 in the wheel too.

All array functions take and return numpy integer arrays and broadcast.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x):
    """C's round() / roundf() / TfLiteRound: the nearest integer, halves away from zero.

    Exact for every float, scalar or array, in the argument's own precision (float32
    stays float32): `|x| - floor(|x|)` is exact, unlike `floor(|x| + 0.5)`, which rounds
    0.49999997f up and odd integers above 2^23 (float32) / 2^52 (double) to the next one.
    Returns floats (numpy scalars or arrays); infinities and NaN pass through.
    """
    a = np.abs(x)
    t = np.floor(a)
    with np.errstate(invalid="ignore"):        # inf - inf: NaN, compares False
        return np.copysign(t + (a - t >= 0.5), x)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """(M, shift) with real ≈ M * 2^(shift - 31), M in [2^30, 2^31) (TFLite QuantizeMultiplier)."""
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(real_multipliers) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of quantize_multiplier: int32 multipliers and int32 shifts."""
    pairs = [quantize_multiplier(float(m)) for m in np.atleast_1d(real_multipliers)]
    return (np.array([p[0] for p in pairs], np.int64).astype(np.int32),
            np.array([p[1] for p in pairs], np.int32))


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.int64).astype(np.int32).astype(np.int64)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp SRDHM: round((a*b) / 2^31) with the nudge TFLite uses; int32 in/out."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    res = np.sign(num) * (np.abs(num) >> 31)  # C++ division truncates toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """x / 2^exponent rounded half away from zero (gemmlowp RoundingDivideByPOT)."""
    x = np.asarray(x, np.int64)
    exponent = np.asarray(exponent, np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """TFLM's double-rounding requantization of int32 accumulators (returns int64 array)."""
    shift = np.asarray(shift, np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    scaled = _wrap_int32(np.asarray(x, np.int64) << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(scaled, multiplier), right)


def multiply_by_quantized_multiplier_smaller_than_one(x, multiplier, left_shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplierSmallerThanOneExp (left_shift <= 0)."""
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier),
                                  -np.asarray(left_shift, np.int64))


def multiply_by_quantized_multiplier_greater_than_one(x, multiplier, left_shift) -> np.ndarray:
    """MultiplyByQuantizedMultiplierGreaterThanOne (left_shift >= 0)."""
    scaled = _wrap_int32(np.asarray(x, np.int64) << np.asarray(left_shift, np.int64))
    return saturating_rounding_doubling_high_mul(scaled, multiplier)


# ---- the arithmetic idioms of TFLM's Prepare functions (per-op formulas: qops) ----------

def f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def scale_ratio(num, den, float32_math: bool = False) -> float:
    """A ratio of float32 scales as TFLM's Prepare evaluates `double(num / den)`.

    RELU, LEAKY_RELU and HARD_SWISH write the quotient in float, yet the verified
    tflite-micro wheel divides in double (its compiler widened these float
    expressions that are cast to double straight away); we follow the runtime.
    `float32_math=True` gives the float32 quotient the source spells out.
    """
    if float32_math:
        return float(np.float32(f32(num) / f32(den)))
    return float(f32(num)) / float(f32(den))


def quantize_scalar(value: float, scale, zero_point: int) -> int:
    """kernel_util.cc Quantize(): zp + (int)round(float(value) / float(scale))."""
    tmp = round_half_away(float(np.float32(value) / f32(scale)))
    return int(zero_point) + int(tmp)


def requantize(acc, multiplier, shift, out_zero_point: int, act_min: int, act_max: int) -> np.ndarray:
    """acc (int32) -> int8 the way every TFLM conv-like kernel finishes."""
    y = multiply_by_quantized_multiplier(acc, multiplier, shift) + int(out_zero_point)
    return np.clip(y, act_min, act_max).astype(np.int8)


def symmetric_weight_scales(w: np.ndarray, axis: int | None, qmax: int = 127) -> np.ndarray:
    """Per-channel (or per-tensor) scales max|w| / qmax as float32; all-zero channels get 1."""
    if axis is None:
        amax = np.array([np.max(np.abs(w))]) if w.size else np.array([0.0])
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        amax = np.max(np.abs(w), axis=red)
    scales = (amax.astype(np.float64) / qmax).astype(np.float32)
    return np.where(scales > 0, scales, np.float32(1.0)).astype(np.float32)


def choose_activation_params(lo: float, hi: float, qmin: int = -128, qmax: int = 127) -> tuple[np.float32, int]:
    """Asymmetric (scale, zero point) covering [lo, hi] ∪ {0}, with 0 exactly representable."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        return np.float32(1.0 / 256), 0
    scale = np.float32((hi - lo) / (qmax - qmin))
    zp = int(round_half_away(qmin - lo / float(scale)))
    return scale, int(np.clip(zp, qmin, qmax))


# ---- gemmlowp fixed point (fixedpoint.h), raw int32 values held in int64 arrays -------
# A FixedPoint<int32, m> value is raw / 2^(31 - m). These are the routines the TFLM
# reference kernels call for softmax, logistic and tanh; every intermediate is wrapped
# or saturated exactly as the int32 C++ code does.

def wrap_int32(x) -> np.ndarray:
    """Two's-complement wrap to int32 (what an int32 add/shift overflow does in practice)."""
    return _wrap_int32(x)


def _fx_mul(a, b) -> np.ndarray:
    return saturating_rounding_doubling_high_mul(a, b)


def rounding_half_sum(a, b) -> np.ndarray:
    """(a + b) / 2 rounded half away from zero (gemmlowp RoundingHalfSum, int32)."""
    s = np.asarray(a, np.int64) + np.asarray(b, np.int64)
    s = s + np.where(s >= 0, 1, -1)
    return np.sign(s) * (np.abs(s) // 2)


def saturating_rounding_multiply_by_pot(x, exponent: int) -> np.ndarray:
    """x * 2^exponent: saturating left shift, or rounding right shift for exponent < 0."""
    x = np.asarray(x, np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (31 - exponent)) - 1
    res = _wrap_int32(x << exponent)
    res = np.where(x > threshold, INT32_MAX, res)
    return np.where(x < -threshold, INT32_MIN, res)


def exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given as FixedPoint<int32, integer_bits>; result in Q0.31."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - integer_bits
    quarter = 1 << (frac_bits - 2)
    a_mod = (a & (quarter - 1)) - quarter          # in [-1/4, 0)
    x = saturating_rounding_multiply_by_pot(a_mod, integer_bits) + (1 << 28)  # Q0 + 1/8
    x2 = _fx_mul(x, x)
    x3 = _fx_mul(x2, x)
    x4 = _fx_mul(x2, x2)
    poly = saturating_rounding_multiply_by_pot(
        _fx_mul(saturating_rounding_multiply_by_pot(x4, -2) + x3, 715827883) + x2, -1)
    result = _wrap_int32(1895147668 + _fx_mul(1895147668, x + poly))  # exp(-1/8) * (1 + ...)
    remainder = a_mod - a
    for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                                 (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            bit = (remainder >> (frac_bits + exponent)) & 1
            result = np.where(bit != 0, _fx_mul(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_f2(half_denominator) -> np.ndarray:
    """Three Newton-Raphson steps for 1/half_denominator, as Q2.29 (gemmlowp)."""
    x = _wrap_int32(1515870810 + _fx_mul(half_denominator, -1010580540))
    for _ in range(3):
        one_minus = _wrap_int32((1 << 29) - _fx_mul(half_denominator, x))
        x = _wrap_int32(x + saturating_rounding_multiply_by_pot(_fx_mul(x, one_minus), 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1) in Q0.31."""
    x = _newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX))
    return saturating_rounding_multiply_by_pot(x, 1)   # Q1 (x/2) rescaled to Q0


def one_minus_x_over_one_plus_x_for_x_in_0_1(a) -> np.ndarray:
    """(1 - a) / (1 + a) for a in [0, 1) in Q0.31."""
    x = _newton_reciprocal_f2(rounding_half_sum(a, INT32_MAX))
    return saturating_rounding_multiply_by_pot(_wrap_int32(x - (1 << 29)), 2)


def fixed_logistic(a, integer_bits: int) -> np.ndarray:
    """gemmlowp::logistic of FixedPoint<int32, integer_bits>; result Q0.31."""
    a = np.asarray(a, np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, _wrap_int32(-a))
    r_pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(_wrap_int32(-abs_a), integer_bits))
    r_neg = _wrap_int32(INT32_MAX - r_pos)
    return np.where(a == 0, 1 << 30, np.where(positive, r_pos, r_neg))


def fixed_tanh(a, integer_bits: int) -> np.ndarray:
    """gemmlowp::tanh of FixedPoint<int32, integer_bits>; result Q0.31."""
    a = np.asarray(a, np.int64)
    negative = a < 0
    n = np.where(negative, a, _wrap_int32(-a))
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, _wrap_int32(-t), t))


def count_leading_zeros_u32(x) -> np.ndarray:
    """Leading zero bits of x read as uint32 (32 for 0)."""
    u = np.asarray(x, np.int64) & 0xFFFFFFFF
    return 32 - np.frexp(u.astype(np.float64))[1].astype(np.int64)


def get_reciprocal(x, x_integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite GetReciprocal: (Q0.31 scale, num_bits_over_unit) with 1/x = scale * 2^-bits."""
    x = np.asarray(x, np.int64)
    headroom_plus_one = count_leading_zeros_u32(x)
    shifted = _wrap_int32(((x & 0xFFFFFFFF) << headroom_plus_one) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted), x_integer_digits - headroom_plus_one


def inv_sqrt_multiplier_exp(x) -> tuple[np.ndarray, np.ndarray]:
    """GetInvSqrtQuantizedMultiplierExp(x, kReverseShift): 1/sqrt(x) ~ M * 2^(shift - 31).

    x >= 0; 0 and 1 give (INT32_MAX, 0). Normalizes x by bit pairs into [2^27, 2^29),
    runs five Newton steps in FixedPoint<int32, 3> and scales by sqrt(2)/2.
    """
    x = np.asarray(x, np.int64)
    small = x <= 1
    v = np.where(small, 2, x)
    shift = np.full(v.shape, 11, np.int64)
    while np.any(v >= 1 << 29):
        big = v >= 1 << 29
        v, shift = np.where(big, v // 4, v), shift + big
    pairs = (count_leading_zeros_u32(v) - 1) // 2 - 1
    shift = shift - pairs
    v = v << (2 * pairs)
    half = rounding_divide_by_pot(v >> 1, 1)
    r = np.full(v.shape, 1 << 28, np.int64)                      # F3 one
    for _ in range(5):
        r3 = saturating_rounding_multiply_by_pot(_fx_mul(_fx_mul(r, r), r), 6)
        r = saturating_rounding_multiply_by_pot(_wrap_int32(_fx_mul(3 << 27, r) - _fx_mul(half, r3)), 3)
    r = _fx_mul(r, 1518500250)                                     # * sqrt(2)/2
    r = np.where(shift < 0, _wrap_int32(r << np.maximum(-shift, 0)), r)
    shift = np.maximum(shift, 0)
    return np.where(small, INT32_MAX, r), np.where(small, 0, -shift)


def saturating_rounding_doubling_high_mul_int16(a, b) -> np.ndarray:
    """gemmlowp SRDHM on int16 values (nudge 2^14, divide by 2^15)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    num = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    res = np.sign(num) * (np.abs(num) >> 15)
    return np.where((a == -32768) & (b == -32768), 32767, res)


def down_scale_int32_to_int16_multiplier(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round an int32 Q0.31 multiplier to Q0.15."""
    if m >= INT32_MAX - (1 << 15):
        return 32767
    return (m + (1 << 15)) >> 16

