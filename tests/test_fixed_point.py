"""fixed_point: fixed-point primitives on known values, and which requantization rounding
the installed tflite-micro actually uses (double rounding, checked in the runtime)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics import qops

INT32_MIN, INT32_MAX = qm.INT32_MIN, qm.INT32_MAX


# ---- which rounding does TFLM use? ------------------------------------------------------

def single_rounding_mbqm(x, multiplier, shift):
    """TFLITE_SINGLE_ROUNDING MultiplyByQuantizedMultiplier, for contrast only."""
    x = np.asarray(x, np.int64)
    total = 31 - shift
    return (x * multiplier + (1 << (total - 1))) >> total


def _run_fc_bias_only(bias, in_scale, w_scale, out_scale, out_zp=0):
    """FULLY_CONNECTED whose input equals its zero point, so every accumulator is the bias."""
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    fb = pytest.importorskip("qcompiler.backends.tflite.flatbuffer")
    m, zp_in = len(bias), 5
    q = lambda s, z=0: dict(scale=[float(s)], zero_point=[z])  # noqa: E731
    tensors = [
        fb.TflTensor("x", (1, 4), "int8", **q(in_scale, zp_in)),
        fb.TflTensor("w", (m, 4), "int8", np.ones((m, 4), np.int8), **q(w_scale)),
        fb.TflTensor("b", (m,), "int32", np.asarray(bias, np.int32),
                     **q(np.float32(in_scale) * np.float32(w_scale))),
        fb.TflTensor("y", (1, m), "int8", **q(out_scale, out_zp)),
    ]
    model = fb.TflModel(tensors, [fb.TflOperator("FULLY_CONNECTED", [0, 1, 2], [3], {})],
                        [0], [3], "rounding probe")
    it = runtime.Interpreter.from_bytes(bytes(fb.write_model(model)), arena_size=1 << 20)
    it.set_input(np.full((1, 4), zp_in, np.int8), 0)
    it.invoke()
    return it.get_output(0).reshape(-1).astype(np.int64)


@pytest.mark.parametrize("scales", [
    (2.0 ** -4, 2.0 ** -4, 1.0),          # multiplier exactly 2^-8: ties everywhere
    (2.0 ** -3, 2.0 ** -5, 2.0 ** -1),    # 2^-7
    (0.0123, 0.00456, 0.0789),            # a generic multiplier
])
def test_tflm_uses_double_rounding(scales):
    real = qops.fc_real_multiplier(*scales)
    mult, shift = qm.quantize_multiplier(real)
    acc = np.arange(-40000, 40000)
    double = qm.multiply_by_quantized_multiplier(acc, mult, shift)
    single = single_rounding_mbqm(acc, mult, shift)
    differ = np.nonzero((double != single) & (np.abs(double) < 100))[0]
    assert differ.size > 0, "no accumulator separates the two roundings for these scales"
    probe = acc[differ[:64]]
    got = _run_fc_bias_only(probe, *scales)
    np.testing.assert_array_equal(got, double[differ[:64]])
    assert not np.array_equal(got, single[differ[:64]])


def test_double_rounding_known_tie():
    """x = 127 at multiplier 2^-8: SRDHM rounds 63.5 up to 64, then 64 / 128 = 0.5 -> 1."""
    mult, shift = qm.quantize_multiplier(2.0 ** -8)
    assert (mult, shift) == (1 << 30, -7)
    assert int(qm.multiply_by_quantized_multiplier(127, mult, shift)) == 1
    assert int(single_rounding_mbqm(127, mult, shift)) == 0
    assert list(_run_fc_bias_only([127, -129, 128, 383], 2.0 ** -4, 2.0 ** -4, 1.0)) == [1, -1, 1, 2]


# ---- quantize_multiplier ---------------------------------------------------------------

@pytest.mark.parametrize("real,expected", [
    (0.0, (0, 0)),
    (1.0, (1 << 30, 1)),
    (0.5, (1 << 30, 0)),
    (0.25, (1 << 30, -1)),
    (2.0 ** 10, (1 << 30, 11)),
    (2.0 ** -31, (1 << 30, -30)),
    (2.0 ** -32, (1 << 30, -31)),          # smallest shift that is kept
    (2.0 ** -33, (0, 0)),                  # shift < -31: flushed to zero
    (1e-10, (0, 0)),
    (1.0 - 2.0 ** -40, (1 << 30, 1)),      # q * 2^31 rounds up to 2^31: halved, shift + 1
    (0.5 + 2.0 ** -33, (1 << 30, 0)),      # q * 2^31 = 2^30 + 0.25 rounds down
    (0.5 + 2.0 ** -32, ((1 << 30) + 1, 0)),  # exactly 2^30 + 0.5: half away from zero
    (0.75, (3 << 29, 0)),
    (-0.5, (-(1 << 30), 0)),
])
def test_quantize_multiplier_edges(real, expected):
    assert qm.quantize_multiplier(real) == expected


def test_quantize_multiplier_reconstructs():
    rng = np.random.default_rng(0)
    for real in 10 ** rng.uniform(-9, 3, 200):
        m, s = qm.quantize_multiplier(real)
        assert (1 << 30) <= m < (1 << 31)
        assert abs(m * 2.0 ** (s - 31) / real - 1) <= 2.0 ** -31


# ---- SRDHM / RoundingDivideByPOT / MBQM --------------------------------------------------

@pytest.mark.parametrize("a,b,expected", [
    (1 << 30, 1 << 30, 1 << 29),
    (INT32_MIN, INT32_MIN, INT32_MAX),     # the one saturating case
    (INT32_MIN, INT32_MAX, -INT32_MAX),
    (INT32_MAX, INT32_MAX, INT32_MAX - 1),
    (1, 1 << 30, 1),                       # 0.5 rounds up
    (-1, 1 << 30, 0),                      # -0.5 rounds up (towards +inf)
    (3, 1 << 30, 2),                       # 1.5 -> 2
    (-3, 1 << 30, -1),                     # -1.5 -> -1
    (-5, 1 << 30, -2),                     # -2.5 -> -2
    (100, -(1 << 30), -50),
    (0, 12345, 0),
])
def test_srdhm_known(a, b, expected):
    assert int(qm.saturating_rounding_doubling_high_mul(a, b)) == expected


@pytest.mark.parametrize("x,e,expected", [
    (5, 1, 3), (-5, 1, -3), (4, 1, 2), (-4, 1, -2),     # halves away from zero
    (6, 2, 2), (-6, 2, -2), (7, 2, 2), (-7, 2, -2), (5, 2, 1), (-5, 2, -1),
    (12345, 0, 12345), (-12345, 0, -12345),
    (INT32_MAX, 31, 1), (INT32_MIN, 31, -1), (-(1 << 30), 31, -1), ((1 << 30) - 1, 31, 0),
    (-1, 5, 0), (-16, 5, -1), (-15, 5, 0), (16, 5, 1), (15, 5, 0),
])
def test_rounding_divide_by_pot_known(x, e, expected):
    assert int(qm.rounding_divide_by_pot(x, e)) == expected


def test_rounding_divide_by_pot_matches_round_half_away():
    x = np.arange(-5000, 5000)
    for e in range(1, 9):
        expect = np.sign(x) * np.floor(np.abs(x) / 2.0 ** e + 0.5)
        np.testing.assert_array_equal(qm.rounding_divide_by_pot(x, e), expect)


def test_round_half_away_is_c_round():
    """One rounding for TfLiteRound, roundf and ncnn's round(): halves away from zero, exact."""
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, 2.4999999999999996, -2.4999999999999996,
                  0.49999999999999994, 2.0 ** 52 + 1, -(2.0 ** 52 + 1), 0.0, -0.0])
    expect = [1, -1, 2, -2, 3, 2, -2, 0, 2.0 ** 52 + 1, -(2.0 ** 52 + 1), 0, 0]
    np.testing.assert_array_equal(qm.round_half_away(x), expect)
    f = np.array([0.49999997, 2.5, -3.5, 2.0 ** 23 + 1], np.float32)   # float32 stays float32
    got = qm.round_half_away(f)
    assert got.dtype == np.float32 and got.tolist() == [0, 3, -4, 2.0 ** 23 + 1]
    assert qm.round_half_away(-2.5) == -3.0 and type(qm.round_half_away(7.5)) is np.float64
    assert np.isinf(qm.round_half_away(-np.inf)) and np.isnan(qm.round_half_away(np.nan))
    assert math.copysign(1.0, qm.round_half_away(-0.25)) == -1.0                     # -0.0, as C


def test_mbqm_left_shift_wraps_like_int32():
    # shift > 0 multiplies in int32 first: 2^30 * 4 wraps to 0
    assert int(qm.multiply_by_quantized_multiplier(1 << 30, 1 << 30, 2)) == 0
    assert int(qm.multiply_by_quantized_multiplier(3, 1 << 30, 2)) == 6


# ---- gemmlowp fixed point against real maths -----------------------------------------------

def test_exp_on_negative_values():
    a = -np.arange(0, 32 << 26, 1 << 18)        # Q5.26 down to -32
    got = qm.exp_on_negative_values(a, 5) / 2.0 ** 31
    np.testing.assert_allclose(got, np.exp(a / 2.0 ** 26), atol=5e-7)  # Taylor error
    assert int(qm.exp_on_negative_values(0, 5)) == INT32_MAX


def test_logistic_and_tanh():
    a = np.arange(-(8 << 27), 8 << 27, 1 << 20)  # Q4.27 in [-8, 8)
    real = a / 2.0 ** 27
    np.testing.assert_allclose(qm.fixed_logistic(a, 4) / 2.0 ** 31, 1 / (1 + np.exp(-real)),
                               atol=1e-6)
    np.testing.assert_allclose(qm.fixed_tanh(a, 4) / 2.0 ** 31, np.tanh(real), atol=1e-6)
    assert int(qm.fixed_logistic(0, 4)) == 1 << 30
    assert int(qm.fixed_tanh(0, 4)) == 0


def test_reciprocal():
    x = np.array([1 << 19, 3 << 19, 1000 << 19, (1 << 31) - 1, 12345])  # Q12.19 sums
    scale, bits = qm.get_reciprocal(x, 12)
    real = x / 2.0 ** 19
    np.testing.assert_allclose(scale / 2.0 ** 31 * 2.0 ** -bits.astype(float), 1 / real, rtol=1e-6)


def test_count_leading_zeros():
    x = np.array([0, 1, 2, 3, (1 << 31) - 1, 1 << 31, 0xFFFFFFFF, -1])
    np.testing.assert_array_equal(qm.count_leading_zeros_u32(x), [32, 31, 30, 30, 1, 0, 0, 0])


def test_parameter_helpers():
    assert qops.calculate_input_radius(5, 27) == 15  # softmax at input scale 1.0
    assert qops.calculate_input_radius(4, 0, 31) == 15 << 27
    mult, shift, diff_min = qops.softmax_input_multiplier(1.0)
    assert (mult, shift, diff_min) == (1 << 30, 27, -15)
    # MEAN over n = 6 elements: 1/6 folded into the multiplier with 2 extra bits
    assert qops.mean_multiplier(1 << 30, 0, 6) == (((1 << 30) << 2) // 6, -2)
    assert qops.mean_multiplier(1 << 30, -3, 1 << 40) == ((1 << 30) << 28 >> 40, -31)
    assert qm.down_scale_int32_to_int16_multiplier(INT32_MAX) == 32767
    assert qm.down_scale_int32_to_int16_multiplier(1 << 30) == 1 << 14
    (m1, e1), (m2, e2), (mo, eo) = qops.add_multipliers(0.5, 0.25, 1.0)
    assert (m1, e1) == (1 << 30, 0) and (m2, e2) == (1 << 30, -1)
    assert math.isclose(mo * 2.0 ** (eo - 31), 1.0 / (1 << 20))
    with pytest.raises(ValueError):
        qops.add_multipliers(1.0, 1.0, 1e-9)       # output multiplier >= 1: TFLM would abort
