"""qops for int16 activations (TFLite's 16x8 scheme): numbers by hand and the record contract.

The kernels reading these records are checked against tflite-micro in
tests/test_int16_kernels_tflm.py; here: LOGISTIC / TANH input rescaling worked out by hand,
the accumulator width of CONV_2D / FULLY_CONNECTED by bias type, ADD's left shift, the zero
point checks, and that every int16 record holds only what a C emitter prints.
"""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.errors import GraphError
from qcompiler.numerics import qops
from qcompiler.numerics.qops.act16 import input_rescale, sigmoid_table
from test_qops import node, q


def q16(scale, zp=0):
    return q(scale, zp, np.int16)


def test_sigmoid_table_shape_and_ends():
    t = sigmoid_table()
    assert t.dtype == np.int32 and t.shape == (256,) and not t.flags.writeable
    assert t[0] == 32768 and t[255] == 65535 and np.all(np.diff(t) >= 0)


@pytest.mark.parametrize("scale,pot_shifts,want", [
    (2.0 ** -12, (0,), (3, 0)),            # TFLM's power-of-two shortcut: 3 << 0
    (2.0 ** -11, (0, 1), (6, 0)),          # TANH also takes 12 + log2(s) == 1: 3 << 1
    (2.0 ** -11, (0,), (24576, 12)),       # LOGISTIC does not: 2^-11 * 12288 = 6, doubled while <= 16383.5
    (2.0 ** -10, (0, 1), (24576, 11)),     # not a shortcut shift (2): 12 doubled 11 times
    (1 / 3000, (0,), (16777, 12)),         # 4.096 * 2^12 = 16777.2, truncated
])
def test_logistic_tanh_input_rescale_by_hand(scale, pot_shifts, want):
    assert input_rescale(np.float32(scale), pot_shifts) == want


def test_logistic16_params_need_symmetric_2_pow_15_output():
    p = qops.logistic_params(node("Sigmoid", [q16(2.0 ** -12)], q16(2.0 ** -15)))
    assert isinstance(p, qops.Logistic16Params) and (p.input_multiplier, p.input_left_shift) == (3, 0)
    with pytest.raises(GraphError, match="2\\^-15"):
        qops.tanh_params(node("Tanh", [q16(2.0 ** -12)], q16(2.0 ** -14)))
    with pytest.raises(GraphError, match="zero point 0"):
        qops.tanh_params(node("Tanh", [q16(2.0 ** -12, 5)], q16(2.0 ** -15)))


def test_accumulator_bits_follow_the_bias_type():
    w = (np.ones((4, 4, 3, 3), np.int8), q(0.01))
    x, y = q16(0.001), q16(0.002)
    b64 = (np.zeros(4, np.int64), q(1e-5, 0, np.int64))
    b32 = (np.zeros(4, np.int32), q(1e-5, 0, np.int32))
    assert qops.conv_params(node("Conv", [x, w, b64], y)).accumulator_bits == 64
    assert qops.conv_params(node("Conv", [x, w], y)).accumulator_bits == 64
    assert qops.conv_params(node("Conv", [x, w, b32], y)).accumulator_bits == 32
    assert qops.conv_params(node("Conv", [q(0.01), w, b32], q(0.02))).accumulator_bits == 32
    dw = (np.ones((4, 1, 3, 3), np.int8), q(0.01))
    with pytest.raises(GraphError, match="int64 bias"):
        qops.conv_params(node("Conv", [x, dw, b32], y, {"group": 4}))
    fc = qops.fc_params(node("Gemm", [x, (np.ones((3, 144), np.int8), q(0.01))], y, {"transB": 1},
                             shape=(1, 144)))
    assert fc.accumulator_bits == 64


def test_add_left_shift_is_15_for_int16():
    p = qops.add_params(node("Add", [q16(0.5), q16(0.25)], q16(1.0)))
    assert p.left_shift == 15 == qops.ADD_LEFT_SHIFT_INT16
    # 2 * max(s1, s2) = 1.0; output multiplier 1.0 / (2^15 * 1.0) = 2^-15: M = 2^30, shift -14
    assert (p.output_multiplier, p.output_shift) == (1 << 30, -14)
    assert qops.add_params(node("Add", [q(0.5), q(0.25)], q(1.0))).left_shift == 20


def test_int16_zero_points_must_be_0():
    with pytest.raises(GraphError, match="zero point 0"):
        qops.mul_params(node("Mul", [q16(0.5, 3), q16(0.5)], q16(1.0)))
    with pytest.raises(GraphError, match="zero point 0"):
        qops.relu_params(node("Relu", [q16(0.5)], q16(1.0, -2)))


def test_int16_clamps_use_the_int16_range():
    r = qops.relu_params(node("Relu", [q16(0.5)], q16(0.25)))
    assert (r.act_min, r.act_max) == (0, 32767)
    c = qops.clip_params(node("Clip", [q16(0.001), (np.float32(0), None), (np.float32(6), None)], q16(0.001)))
    assert (c.act_min, c.act_max) == (0, 6000)
    p = qops.pool_params(node("MaxPool", [q16(0.1)], q16(0.1), {"kernel_shape": [2, 2], "clamp": [-1.0, 1.0]}))
    assert (p.act_min, p.act_max) == (-10, 10)


def _every_int16_op():
    w = (np.ones((4, 4, 3, 3), np.int8), q(0.01))
    x, y = q16(0.0005), q16(0.0008)
    pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
    return [
        node("Conv", [x, w, (np.zeros(4, np.int64), q(5e-6, 0, np.int64))], y),
        node("Gemm", [x, (np.ones((3, 144), np.int8), q(0.01))], y, {"transB": 1}, shape=(1, 144)),
        node("Add", [x, y], y), node("Sub", [x, y], y), node("Mul", [x, y], y),
        node("MaxPool", [x], x, pool), node("AveragePool", [x], x, pool), node("GlobalAveragePool", [x], x),
        node("ReduceMean", [x], y), node("Sigmoid", [x], q16(2.0 ** -15)), node("Tanh", [x], q16(2.0 ** -15)),
        node("Relu", [x], y), node("LeakyRelu", [x], y),
        node("Softmax", [x], q16(1 / 32768)), node("Requantize", [x], q(0.01, 3)),
        node("Pad", [x, (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), None)], x),
    ]


@pytest.mark.parametrize("n", _every_int16_op(), ids=lambda n: n.op)
def test_int16_records_hold_only_what_a_c_emitter_prints(n):
    p = qops.QOPS[n.op](n)
    for name, value in p.items():
        if isinstance(value, np.ndarray):
            assert value.dtype in (np.int8, np.int16, np.int32), (name, value.dtype)
            assert not value.flags.writeable, name
        elif isinstance(value, tuple):
            assert all(type(v) is int for v in value), (name, value)
        else:
            assert value is None or type(value) in (int, str, float), (name, type(value))
