"""Shared fixed-point arithmetic, bit-exact with TFLite Micro's reference kernels.

Every multiplier the backends write and the integer reference interpreter uses
comes from here, so that calibration, the oracle and every emitter agree.

TFLM is built without TFLITE_SINGLE_ROUNDING, so requantization uses the
*double rounding* form (tensorflow/lite/kernels/internal/common.cc):

    MultiplyByQuantizedMultiplier(x, M, s) =
        RoundingDivideByPOT(SRDHM(x * 2^max(s,0), M), max(-s,0))

`tests/test_numerics/fixed_point.py` checks this against the tflite-micro interpreter on
inputs where single and double rounding disagree.

Parameter maths: some Prepare functions write float32 expressions cast to double
(FULLY_CONNECTED per-tensor `double(in * w)`, SUB, RELU, LEAKY_RELU, HARD_SWISH).
The tflite-micro wheel we verify against evaluates those in double (its compiler
widened them; visible in its disassembly and on crafted inputs in
tests/test_int_kernels_tflm.py), so the defaults here use double; the functions
take `float32_math` / `float32_product` to reproduce the float form of the source.
Activation-range `Quantize()` and RELU6 stay in float32 in the wheel too.

All array functions take and return numpy integer arrays and broadcast.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def round_half_away(x: float) -> float:
    """C++ std::round / TfLiteRound: halves round away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


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


# ---- effective scales exactly as each TFLM kernel computes them at Prepare ----------

def f32(x) -> np.ndarray:
    return np.asarray(x, np.float32)


def conv_real_multipliers(input_scale, weight_scales, output_scale) -> np.ndarray:
    """CONV_2D / DEPTHWISE_CONV_2D / per-channel FC: double(in) * double(w[c]) / double(out)."""
    w = f32(weight_scales).astype(np.float64)
    return float(f32(input_scale)) * w / float(f32(output_scale))


def fc_real_multiplier(input_scale, weight_scale, output_scale,
                       float32_product: bool = False) -> float:
    """Per-tensor FULLY_CONNECTED multiplier (GetQuantizedConvolutionMultipler).

    The source reads `double(float(in * w)) / double(out)`, but the tflite-micro
    build we verify against (the pip wheel) evaluates the product in double, i.e.
    exactly like conv_real_multipliers; tests/test_int_kernels_tflm.py shows it on
    inputs where the two differ. `float32_product=True` gives the source's form.
    """
    if float32_product:
        prod = np.float32(f32(input_scale) * f32(weight_scale))
        return float(prod) / float(f32(output_scale))
    return float(f32(input_scale)) * float(f32(weight_scale)) / float(f32(output_scale))


def quantize_scalar(value: float, scale, zero_point: int) -> int:
    """kernel_util.cc Quantize(): zp + (int)round(float(value) / float(scale))."""
    tmp = round_half_away(float(np.float32(value) / f32(scale)))
    return int(zero_point) + int(tmp)


def activation_range(clamp: tuple[float, float] | None, scale, zero_point: int, qmin: int = -128,
                     qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for a fused clamp (lo, hi) in float units (±inf or
    None: unbounded): [max(qmin, Quantize(lo)), min(qmax, Quantize(hi))]. TFLite's RELU,
    RELU6 and RELU_N1_TO_1 are the clamps (0, inf), (0, 6) and (-1, 1)."""
    lo, hi = qmin, qmax
    if clamp is not None:
        if clamp[0] is not None and math.isfinite(clamp[0]):
            lo = max(qmin, quantize_scalar(clamp[0], scale, zero_point))
        if clamp[1] is not None and math.isfinite(clamp[1]):
            hi = min(qmax, quantize_scalar(clamp[1], scale, zero_point))
    return lo, hi


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


# ---- per-op parameters computed exactly as each TFLM kernel's Prepare does --------

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


def add_params(s1, s2, s_out, float32_math: bool = False):
    """ADD / SUB multipliers (add_common.cc, sub_common.cc), left_shift = 20.

    Returns ((M1, shift1), (M2, shift2), (Mout, shift_out)), every shift <= 0.
    ADD computes in double; SUB's source computes in float, but the verified wheel
    evaluates SUB in double as well, so both use the double form by default.
    """
    s1, s2, so = f32(s1), f32(s2), f32(s_out)
    if float32_math:
        twice = np.float32(2) * max(s1, s2)
        reals = (scale_ratio(s1, twice, True), scale_ratio(s2, twice, True),
                 scale_ratio(twice, np.float32(1 << 20) * so, True))
    else:
        twice = 2.0 * float(max(s1, s2))
        reals = (float(s1) / twice, float(s2) / twice, twice / ((1 << 20) * float(so)))
    out = []
    for r in reals:
        if not 0.0 < r < 1.0:
            raise ValueError(f"ADD/SUB multiplier {r} outside (0, 1): TFLM aborts "
                             "(QuantizeMultiplierSmallerThanOneExp)")
        out.append(quantize_multiplier(r))
    return tuple(out)


def hard_swish_params(input_scale, output_scale, float32_math: bool = False):
    """HARD_SWISH (hard_swish_common.cc): (out_m16, out_exp, relu_m16, relu_exp).

    Both multipliers are QuantizeMultiplier'd and then rounded to Q0.15.
    """
    hires = np.float32(1.0 / 128.0) * f32(input_scale)
    m_out, e_out = quantize_multiplier(scale_ratio(hires, output_scale, float32_math))
    m_rel, e_rel = quantize_multiplier(scale_ratio(hires, np.float32(3.0 / 32768.0), float32_math))
    return (down_scale_int32_to_int16_multiplier(m_out), e_out,
            down_scale_int32_to_int16_multiplier(m_rel), e_rel)


def rsqrt_multiplier(input_scale, output_scale) -> tuple[int, int]:
    """RSQRT int8 (elementwise.cc): QuantizeMultiplier(1 / (sqrt(in_s) * out_s)).

    The source spells a float sqrt and product; the verified wheel evaluates them in
    double (tests/test_rsqrt.py has inputs that tell the two apart).
    """
    return quantize_multiplier(1.0 / (math.sqrt(float(f32(input_scale))) * float(f32(output_scale))))


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """Largest |input| (in input units) whose rescaled value fits (CalculateInputRadius)."""
    max_rescaled = (1.0 * ((1 << input_integer_bits) - 1)
                    * float(1 << (total_signed_bits - input_integer_bits))
                    / float(1 << input_left_shift))
    return int(math.floor(max_rescaled))


def softmax_params(input_scale, beta: float = 1.0) -> tuple[int, int, int]:
    """int8 SOFTMAX: (input_multiplier, input_left_shift, diff_min) as softmax_common.cc."""
    real = min(float(f32(beta)) * float(f32(input_scale)) * float(1 << (31 - 5)),
               float((1 << 31) - 1))
    if real <= 1.0:
        raise ValueError(f"softmax input scale {float(input_scale)} too small for TFLM "
                         "(beta * scale * 2^26 must exceed 1)")
    mult, shift = quantize_multiplier(real)
    return mult, shift, -calculate_input_radius(5, shift)


def logistic_tanh_params(input_scale) -> tuple[int, int, int]:
    """int8 LOGISTIC / TANH: (input_multiplier, input_left_shift, input_range_radius).

    Both kernels use frexp + round without QuantizeMultiplier's 2^31 fix-up; the
    int32 cast of 2^31 wraps, as it does on the targets.
    """
    q, shift = math.frexp(float(f32(input_scale)) * float(1 << (31 - 4)))
    mult = int(_wrap_int32(int(round_half_away(q * (1 << 31)))))
    return mult, shift, calculate_input_radius(4, shift, 31)


def mean_multiplier(multiplier: int, shift: int, num_elements: int) -> tuple[int, int]:
    """Fold the 1/n of MEAN into (multiplier, shift) as reference QuantizedMeanOrSum."""
    s = min(int(num_elements).bit_length() - 1, 32, 31 + shift)
    return int(_wrap_int32((int(multiplier) << s) // int(num_elements))), shift - s
