"""qops: per-op integer parameters on hand-computed values, and the shape of the records.

The kernels that read these records are checked against the tflite-micro interpreter in
test_int_kernels_tflm.py (and the TVM lowering against the kernels in test_tvm_backend.py);
here the numbers themselves: multipliers and shifts worked out by hand for scales that are
powers of two, geometry on small cases, and the record contract a C emitter relies on
(every field an int, a tuple of ints, a short string or a read-only C-sized integer array).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from qcompiler.errors import GraphError
from qcompiler.interp import INT_KERNELS
from qcompiler.ir import Graph, QuantParams
from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics import qops
from qcompiler.numerics.qops.softmax import WIDE_SOFTMAX_ATTR, exp_terms

# ops whose kernels only move raw values: no integer parameters beyond equal quantization
DATA_MOVEMENT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Concat"}


def q(scale, zp=0, dtype=np.int8, axis=None):
    return QuantParams(np.asarray(scale, np.float32), np.asarray(zp), axis, dtype)


def node(op, ins, out_q, attrs=None, shape=(1, 4, 6, 6), out_shape=None):
    """One node; `ins` items are QuantParams (a graph input of `shape`) or (array, QuantParams)."""
    g = Graph("t")
    vals = []
    for k, item in enumerate(ins):
        if item is None:
            vals.append(None)
            continue
        if isinstance(item, tuple):
            v = g.add_constant(f"c{k}", item[0])
            v.quant = item[1]
        else:
            v = g.add_input(f"x{k}", np.int8, shape)
            v.quant = item
        vals.append(v)
    n = g.add_node(op, vals, attrs=attrs or {})
    n.outputs[0].quant = out_q
    n.outputs[0].shape = out_shape
    return n


def real_of(m, shift):
    return m * 2.0 ** (shift - 31)


# ---- conv / fully connected -------------------------------------------------------------------

def test_conv_multipliers_per_channel_and_clamp():
    w = np.ones((3, 4, 3, 3), np.int8)
    n = node("Conv", [q(0.5, -3), (w, q([0.25, 0.125, 0.5], [0, 0, 0], axis=0))], q(1 / 16, -128),
             {"pads": [1, 2, 1, 2], "strides": [2, 1], "dilations": [1, 2], "group": 1,
              "clamp": [0.0, 6.0]})
    p = qops.conv_params(n)
    # reals 2, 1, 4: M = 2^30 (0.5 in Q0.31), shift = log2(real) + 1
    assert p.multiplier.tolist() == [1 << 30] * 3 and p.shift.tolist() == [2, 1, 3]
    assert p.multiplier.dtype == p.shift.dtype == np.int32
    assert (p.input_zero_point, p.output_zero_point) == (-3, -128)
    assert (p.act_min, p.act_max) == (-128, -128 + 96)       # RELU6: 6 / (1/16) = 96 steps
    assert (p.strides, p.dilations, p.pads, p.group) == ((2, 1), (1, 2), (1, 2, 1, 2), 1)


def test_conv_per_tensor_weights_fill_every_channel_and_conv1d_geometry():
    n = node("Conv", [q(0.5), (np.ones((5, 2, 3), np.int8), q(0.25))], q(1.0),
             {"pads": [2, 1], "strides": [3], "dilations": [2]}, shape=(1, 2, 9))
    p = qops.conv_params(n)
    assert p.multiplier.shape == (5,) and np.all(p.multiplier == 1 << 30) and np.all(p.shift == -2)
    assert (p.pads, p.strides, p.dilations) == ((0, 2, 0, 1), (1, 3), (1, 2))
    assert (p.act_min, p.act_max) == (-128, 127)


def test_fully_connected_per_tensor_has_one_multiplier():
    n = node("Gemm", [q(0.5, 1), (np.ones((7, 10), np.int8), q(0.25))], q(1.0, 2),
             shape=(1, 10))
    p = qops.fc_params(n)
    assert p.multiplier.tolist() == [1 << 30] and p.shift.tolist() == [-2]
    assert p.trans_b == 1                                   # [M, K] against K = 10 inputs
    n = node("Gemm", [q(0.5), (np.ones((10, 7), np.int8), q([0.25] * 7, [0] * 7, axis=1))], q(1.0),
             shape=(1, 10))
    p = qops.fc_params(n)
    assert p.multiplier.shape == (7,) and p.trans_b == 0


def test_gemm_needs_the_fully_connected_form():
    n = node("Gemm", [q(0.5), (np.ones((7, 10), np.int8), q(0.25))], q(1.0), {"transA": 1},
             shape=(10, 1))
    with pytest.raises(GraphError, match="transA=0"):
        qops.fc_params(n)


def test_conv_transpose_refuses_groups():
    n = node("ConvTranspose", [q(0.5), (np.ones((4, 2, 3, 3), np.int8), q(0.25))], q(1.0),
             {"group": 2})
    with pytest.raises(GraphError, match="group=1"):
        qops.conv_transpose_params(n)


# ---- element-wise ---------------------------------------------------------------------------

def test_add_mul_prelu_multipliers():
    p = qops.add_params(node("Add", [q(0.5, 3), q(0.25, -4)], q(1.0, 7), {"clamp": [0.0, None]}))
    assert (p.input1_multiplier, p.input1_shift) == (1 << 30, 0)       # 0.5 / (2 * 0.5)
    assert (p.input2_multiplier, p.input2_shift) == (1 << 30, -1)      # 0.25 / 1.0
    assert math.isclose(real_of(p.output_multiplier, p.output_shift), 1.0 / (1 << 20))
    assert (p.left_shift, p.input1_zero_point, p.input2_zero_point) == (20, 3, -4)
    assert (p.act_min, p.act_max) == (7, 127)                          # RELU clamps at the zero point
    m = qops.mul_params(node("Mul", [q(0.5), q(0.25)], q(1.0)))
    assert (m.multiplier, m.shift) == (1 << 30, -2)
    r = qops.prelu_params(node("PRelu", [q(0.5, 1), q(0.25, 2)], q(0.25, 3)))
    assert (r.identity_multiplier, r.identity_shift) == (1 << 30, 2)    # 0.5 / 0.25 = 2
    assert (r.alpha_multiplier, r.alpha_shift) == (1 << 30, 0)          # 0.5 * 0.25 / 0.25
    with pytest.raises(ValueError):
        qops.add_params(node("Add", [q(1.0), q(1.0)], q(1e-9)))     # TFLM aborts: multiplier >= 1


# ---- pooling, mean, resize -----------------------------------------------------------------

def test_pool_geometry_counts_and_ceil_mode():
    x = q(0.1, 5)
    p = qops.pool_params(node("AveragePool", [x], x, {"kernel_shape": [2, 2], "strides": [2, 2],
                                                       "ceil_mode": 1}, shape=(1, 1, 5, 5)))
    assert p.out_hw == (3, 3) and p.padded_hw == (6, 6)
    assert p.counts.tolist() == [[4, 4, 2], [4, 4, 2], [2, 2, 1]]
    p = qops.pool_params(node("MaxPool", [x], x, {"kernel_shape": [3, 3], "strides": [2, 2],
                                                   "pads": [1, 1, 1, 1]}, shape=(1, 1, 5, 5)))
    assert p.out_hw == (3, 3) and p.counts[0].tolist() == [4, 6, 4]
    assert qops.pooled_size(7, 3, 2, 1, 1, 1, 1) == 4 and qops.pooled_size(7, 3, 2, 1, 1, 1, 0) == 4
    with pytest.raises(GraphError, match="share quantization"):
        qops.pool_params(node("MaxPool", [x], q(0.2, 5), {"kernel_shape": [2, 2]}))
    with pytest.raises(GraphError, match="count_include_pad"):
        qops.pool_params(node("AveragePool", [x], x, {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1],
                                                       "count_include_pad": 1}))


def test_mean_folds_one_over_n_into_the_multiplier():
    axes = (np.array([2, 3], np.int64), None)
    p = qops.mean_params(node("ReduceMean", [q(0.5, 3), axes], q(0.5, -1)), shape=(1, 2, 2, 3))
    # in_s / out_s = 1 -> (2^30, 1); n = 6: 2 extra bits, (2^30 << 2) // 6, shift 1 - 2
    assert (p.count, p.multiplier, p.shift) == (6, ((1 << 30) << 2) // 6, -1)
    assert (p.axes, p.keepdims, p.noop) == ((2, 3), 1, 0)
    p = qops.mean_params(node("ReduceMean", [q(0.5)], q(0.5), {"noop_with_empty_axes": 1}))
    assert p.noop == 1 and p.axes == ()


def test_resize_index_tables():
    x = q(0.1)
    n = node("Resize", [x], x, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                "nearest_mode": "floor"}, shape=(1, 1, 2, 3), out_shape=(1, 1, 4, 6))
    p = qops.resize_params(n)
    assert p.mode == "nearest" and p.y_lo.tolist() == [0, 0, 1, 1] and p.x_lo.tolist() == [0, 0, 1, 1, 2, 2]
    n = node("Resize", [x], x, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
             shape=(1, 1, 2, 2), out_shape=(1, 1, 3, 3))
    p = qops.resize_params(n)
    # align_corners 2 -> 3: positions 0, 0.5, 1 in input rows, weights in 1/1024
    assert (p.y_lo.tolist(), p.y_hi.tolist(), p.y_frac.tolist()) == ([0, 0, 1], [0, 1, 1], [0, 512, 0])
    assert p.align_corners == 1 and p.half_pixel_centers == 0


# ---- activations ------------------------------------------------------------------------------

def test_logistic_tanh_relu_leaky_hard_swish():
    p = qops.logistic_params(node("Sigmoid", [q(1 / 16, 4)], q(1 / 256, -128)))
    # 1/16 * 2^27 = 2^23: frexp gives (0.5, 24); radius = 15 * 2^27 / 2^24 = 120
    assert (p.input_multiplier, p.input_left_shift, p.input_range_radius) == (1 << 30, 24, 120)
    assert (p.input_zero_point, p.output_shift, p.output_offset) == (4, 23, -128)
    assert qops.tanh_params(node("Tanh", [q(1 / 16)], q(1 / 128, 0))).output_shift == 24
    with pytest.raises(GraphError, match="zero point -128"):
        qops.logistic_params(node("Sigmoid", [q(1 / 16)], q(1 / 256, 0)))
    r = qops.relu_params(node("Relu", [q(0.5, 2)], q(0.25, -5)))
    assert (r.multiplier, r.shift, r.act_min, r.act_max) == (1 << 30, 2, -5, 127)
    lk = qops.leaky_relu_params(node("LeakyRelu", [q(0.5)], q(0.5), {"alpha": -0.25}))
    assert (lk.identity_multiplier, lk.identity_shift) == (1 << 30, 1)
    assert (lk.alpha_multiplier, lk.alpha_shift) == (-(1 << 30), -1)    # -0.25 = -0.5 * 2^-1
    hs = qops.hard_swish_params(node("HardSwish", [q(0.5)], q(0.25)))
    # hires = 0.5 / 128; out: hires / 0.25 = 2^-6 -> Q0.15 2^14, exponent -5
    assert (hs.output_multiplier, hs.output_exponent) == (1 << 14, -5)


def test_clip_bounds():
    x = q(0.05, -28)
    lo, hi = (np.float32(0.0), None), (np.float32(6.0), None)
    assert qops.clip_params(node("Clip", [x, lo], q(0.1, -128))).relu == 1   # max(x, 0): RELU, rescaled
    p = qops.clip_params(node("Clip", [x, lo, hi], x))
    assert (p.relu, p.act_min, p.act_max) == (0, -28, -28 + 120)
    p = qops.clip_params(node("Clip", [x], x, {"min": -1.0}))                 # opset < 11 attributes
    assert (p.act_min, p.act_max) == (-48, 127)
    with pytest.raises(GraphError, match="share quantization"):
        qops.clip_params(node("Clip", [x, lo, hi], q(0.1)))


def test_rsqrt_table_follows_its_multiplier():
    p = qops.rsqrt_params(node("Rsqrt", [q(1 / 64, -128)], q(1 / 16, -128)))
    # 1 / (sqrt(1/64) * 1/16) = 128 = 2^30 * 2^(8 - 31): M = 2^30, shift 8
    assert (p.multiplier, p.shift) == (1 << 30, 8)
    assert p.table.dtype == np.int8 and p.table.shape == (256,) and p.table[0] == 127   # v = 0
    v = np.arange(1, 256)
    expect = np.clip(np.round(1 / np.sqrt(v / 64.0) * 16) - 128, -128, 127)
    assert np.max(np.abs(p.table[1:].astype(int) - expect)) <= 1


# ---- softmax and requantize ------------------------------------------------------------------

def test_softmax_int8_params_and_tables():
    p = qops.softmax_params(node("Softmax", [q(1.0)], q(1 / 256, -128), {"axis": -1}))
    assert (p.input_multiplier, p.input_left_shift, p.diff_min, p.output_bits) == (1 << 30, 27, -15, 8)
    assert p.exp_table.dtype == p.sum_table.dtype == np.int32 and p.exp_table.shape == (256,)
    assert p.exp_table[0] == qm.INT32_MAX and np.all(p.exp_table[16:] == 0)    # beyond diff_min
    d = np.arange(16)
    np.testing.assert_allclose(p.exp_table[:16] / 2.0 ** 31, np.exp(-d), atol=1e-6)
    assert p.sum_table.tolist() == qm.rounding_divide_by_pot(p.exp_table, 12).tolist()
    exp, _, valid = exp_terms(-d, p.input_multiplier, p.input_left_shift, p.diff_min)
    assert exp.tolist() == p.exp_table[:16].tolist() and valid.all()
    p16 = qops.softmax_params(node("Softmax", [q(1.0)], q(1 / 65536, -32768, np.int16)))
    assert p16.output_bits == 16 and p16.exp_table is not p.exp_table


def test_softmax_int16_params():
    p = qops.softmax_params(node("Softmax", [q(10 / 65535, 0, np.int16)], q(1 / 32768, 0, np.int16)))
    assert isinstance(p, qops.Softmax16Params)
    assert math.isclose(real_of(p.input_multiplier, p.input_left_shift), 1.0, rel_tol=1e-6)
    assert p.exp_lut.dtype == np.int16 and p.exp_lut.shape == (513,)
    assert p.exp_lut[-1] == 32767 and abs(int(p.one_over_one_plus_x_lut[0]) - 32767) <= 1
    with pytest.raises(GraphError, match="int16 output"):
        qops.softmax_params(node("Softmax", [q(1.0)], q(1 / 128, 0)))


def test_wide_softmax_must_end_in_int8():
    n = node("Softmax", [q(0.1)], q(1 / 65536, -32768, np.int16), {WIDE_SOFTMAX_ATTR: "int16"})
    with pytest.raises(GraphError, match="wide softmax"):
        qops.softmax_params(n)


def test_requantize_and_pad():
    p = qops.requantize_params(node("Requantize", [q(0.5, 3)], q(0.25, -4, np.int16)))
    assert (p.multiplier, p.shift, p.input_zero_point, p.output_zero_point) == (1 << 30, 2, 3, -4)
    assert (p.qmin, p.qmax) == (-32768, 32767)
    x = q(0.5, 3)
    pads = (np.array([0, 1, 0, -2], np.int64), None)
    p = qops.pad_params(node("Pad", [x, pads, (np.array([2.0], np.float32), None)], x,
                             shape=(1, 4)))
    assert (p.before, p.after, p.fill) == ((0, 1), (0, -2), 3 + 4)   # 2.0 / 0.5 + zp


# ---- the record contract -----------------------------------------------------------------------

def _every_op():
    """One valid node per QOPS op."""
    w = (np.ones((4, 4, 3, 3), np.int8), q(0.01))
    x, y = q(0.05, -3), q(0.08, 10)
    pool = {"kernel_shape": [2, 2], "strides": [2, 2]}
    return [
        node("Conv", [x, w], y), node("ConvTranspose", [x, w], y),
        node("Gemm", [x, (np.ones((3, 144), np.int8), q(0.01))], y, shape=(1, 144)),
        node("Add", [x, y], y), node("Sub", [x, y], y), node("Mul", [x, y], y),
        node("PRelu", [x, y], y), node("MaxPool", [x], x, pool), node("AveragePool", [x], x, pool),
        node("GlobalAveragePool", [x], x), node("ReduceMean", [x], y),
        node("Resize", [x], x, {"mode": "linear"}, out_shape=(1, 4, 12, 12)),
        node("Sigmoid", [x], q(1 / 256, -128)), node("Tanh", [x], q(1 / 128)),
        node("Relu", [x], y), node("Clip", [x, (np.float32(0), None), (np.float32(1), None)], x),
        node("LeakyRelu", [x], y), node("HardSwish", [x], y), node("Rsqrt", [x], y),
        node("Softmax", [x], q(1 / 256, -128)), node("Requantize", [x], q(0.01, 0, np.int16)),
        node("Pad", [x, (np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), None)], x),
        node("Slice", [x, (np.array([5, 0]), None), (np.array([-99, 3]), None), (np.array([3, 1]), None),
                       (np.array([-2, 1]), None)], x),
        node("Split", [x, (np.array([4]), None)], x, {"axis": 1}), node("GlobalMaxPool", [x], x),
    ]


def test_slice_and_split_numbers_by_hand():
    """numpy's slice clamping and negative steps; Split sizes given or the whole axis."""
    x = q(0.05, 3)
    p = qops.slice_params(node("Slice", [x, (np.array([5, 0]), None), (np.array([-99, 3]), None),
                                         (np.array([3, 1]), None), (np.array([-2, 1]), None)], x))
    assert (p.begin, p.step, p.count) == ((0, 0, 0, 5), (1, 1, 1, -2), (1, 3, 6, 3))
    assert qops.split_params(node("Split", [x], x, {"axis": 2})).sizes == (6,)
    assert qops.split_params(node("Split", [x, (np.array([4]), None)], x, {"axis": 1})).sizes == (4,)


def test_qops_covers_every_integer_op_with_parameters():
    assert set(qops.QOPS) == set(INT_KERNELS) - DATA_MOVEMENT
    assert {n.op for n in _every_op()} == set(qops.QOPS)


@pytest.mark.parametrize("n", _every_op(), ids=lambda n: n.op)
def test_records_hold_only_what_a_c_emitter_prints(n):
    p = qops.QOPS[n.op](n)
    assert isinstance(p, qops.QopParams)
    for name, value in p.items():
        if isinstance(value, np.ndarray):
            assert value.dtype in (np.int8, np.int16, np.int32), (name, value.dtype)
            assert not value.flags.writeable, name
        elif isinstance(value, tuple):
            assert all(type(v) is int for v in value), (name, value)
        else:
            assert value is None or type(value) in (int, str, float), (name, type(value))
    with pytest.raises(AttributeError):
        p.nothing = 1
