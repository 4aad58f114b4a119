"""The fast paths behind calibration, bias correction and the report against the plain numpy
code they replaced (kept here as the oracle): the same bits, on every special value."""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.ir.quant import FAKE_QUANT_BLOCK, QuantParams


def fake_quantize_reference(q: QuantParams, x: np.ndarray) -> np.ndarray:
    """QuantParams.fake_quantize before the blocked path: whole-array float64 operations."""
    s = q.scale.astype(np.float64).reshape(q.broadcast_shape(x.ndim))
    z = q.zero_point.astype(np.float64).reshape(q.broadcast_shape(x.ndim))
    t = np.array(x, np.float64)
    t /= s
    np.round(t, out=t)
    t += z
    np.clip(t, q.qmin, q.qmax, out=t)
    t -= z
    t *= s
    return t.astype(np.float32)


SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 3e38, 1e-45, -1e-45], np.float32)


def halfway_values(q: QuantParams) -> np.ndarray:
    """Every code's half steps (ties round to even), a float32 step either side, and beyond."""
    s, z = float(q.scale[0]), int(q.zero_point[0])
    k = np.arange(q.qmin - z - 3, q.qmax - z + 4, dtype=np.float64)
    mid = ((k + 0.5) * s).astype(np.float32)
    return np.concatenate([mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf)),
                           (k * s).astype(np.float32)])


@pytest.mark.parametrize("dtype,zero_point", [(np.int8, 0), (np.int8, -128), (np.int8, 127), (np.int8, 5),
                                              (np.int16, 0), (np.uint8, 128)])
@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0371, 1e-6, 3.5e3])
def test_blocked_fake_quantize_equals_the_whole_array_one(dtype, zero_point, scale):
    q = QuantParams(np.float32(scale), np.int32(zero_point), dtype=dtype)
    rng = np.random.default_rng([int(scale * 1e6) % 1000, zero_point % 256])
    values = np.tile(np.concatenate([SPECIAL, halfway_values(q),
                                     (rng.normal(0, 200 * scale, FAKE_QUANT_BLOCK)).astype(np.float32)]), 2)
    for n in (FAKE_QUANT_BLOCK + 1, 2 * FAKE_QUANT_BLOCK, values.size):  # a whole or partial last block
        x = rng.permutation(values)[:n].reshape(1, -1) if n < values.size else values.reshape(1, -1)
        for arr in (x, x.astype(np.float64), x[:, ::-1]):  # float64 input, non-contiguous view
            got, want = q.fake_quantize(arr), fake_quantize_reference(q, arr)
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


# ---- float kernels: Sigmoid (vectorized exp, ties redone) and the blocked float64 unaries ------

def every_float32(step: int) -> np.ndarray:
    """Every `step`-th float32 bit pattern: all signs, binades, subnormals, infinities and NaNs."""
    return np.arange(0, 1 << 32, step, dtype=np.uint64).astype(np.uint32).view(np.float32)


def test_sigmoid_float32_equals_the_logaddexp_formula():
    from qcompiler.interp.float_kernels.core import _UNARY, sigmoid_float32
    rng = np.random.default_rng(5)
    x = np.concatenate([every_float32(997), SPECIAL, rng.normal(0, 8, 200_000).astype(np.float32),
                        rng.uniform(-104, 17, 200_000).astype(np.float32)])  # where the results are not 0 / 1
    with np.errstate(all="ignore"):
        want = _UNARY["Sigmoid"](None, x).astype(np.float32)
        got = sigmoid_float32(x)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("op,attrs", [("Sigmoid", {}), ("HardSwish", {}), ("HardSigmoid", {}),
                                      ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("LeakyRelu", {"alpha": 0.1})])
def test_blocked_unary_kernels_equal_the_whole_array_formula(op, attrs):
    from qcompiler.interp.float_kernels.core import _UNARY, BLOCK, _unary
    from qcompiler.ir import Graph
    g = Graph("g")
    x = g.add_input("x", np.float32, (1, 3 * BLOCK + 5))
    node = g.add_node(op, [x], attrs=dict(attrs), name="n")
    rng = np.random.default_rng(2)
    values = np.concatenate([SPECIAL, every_float32(1 << 20), rng.normal(0, 4, 3 * BLOCK).astype(np.float32)])
    arr = rng.permutation(np.resize(values, 3 * BLOCK + 5)).reshape(1, -1)
    with np.errstate(all="ignore"):
        want = np.asarray(_UNARY[op](node, arr)).astype(np.float32)
        got = _unary(node, [arr])[0]
    assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))


# ---- integer kernels: elementwise int8 activations through a 256-entry table ------------------

def int8_node(op: str, attrs: dict, q_in: QuantParams, q_out: QuantParams, size: int):
    from qcompiler.ir import Graph
    g = Graph("g")
    x = g.add_input("x", np.int8, (1, size))
    x.quant = q_in
    node = g.add_node(op, [x], attrs=attrs, name="n")
    node.outputs[0].quant = q_out
    return node


@pytest.mark.parametrize("op,attrs,out", [
    ("Sigmoid", {}, (1 / 256, -128)), ("Tanh", {}, (1 / 128, 0)), ("Relu", {}, None), ("Clip", {"min": 0.0}, None),
    ("Clip", {"min": 0.0, "max": 6.0}, "same"), ("LeakyRelu", {"alpha": 0.1}, None),
    ("LeakyRelu", {"alpha": 1.7}, None), ("HardSwish", {}, None)])
@pytest.mark.parametrize("seed", range(6))
def test_int8_activation_tables_equal_the_direct_kernels(op, attrs, out, seed):
    from qcompiler.interp.int_kernels import INT_KERNELS
    from qcompiler.interp.int_kernels.act import TABLE_FROM
    rng = np.random.default_rng(seed)
    q_in = QuantParams(np.float32(10 ** rng.uniform(-3, 0.5)), np.int32(rng.integers(-128, 100)))
    q_out = (q_in if out == "same" else QuantParams(np.float32(out[0]), np.int32(out[1])) if out else
             QuantParams(np.float32(float(q_in.scale[0]) * rng.uniform(0.3, 1.5)), np.int32(rng.integers(-128, 100))))
    size = 4 * TABLE_FROM
    x = np.concatenate([np.arange(-128, 128), rng.integers(-128, 128, size - 256)]).astype(np.int8)
    node = int8_node(op, attrs, q_in, q_out, size)
    kernel = INT_KERNELS[op]
    x = rng.permutation(x).reshape(1, -1)  # every code, in a tensor big enough for the table
    got, want = kernel(node, [x])[0], kernel.direct(node, [x])[0]
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


# ---- float Conv: the depthwise tap loop in NCHW blocks -----------------------------------------

def depthwise_reference(node, x, w, b):
    """The depthwise path of float_kernels.nn.conv before the NCHW blocks: channels-last, every tap
    over the whole batch."""
    import math

    from qcompiler.interp.float_kernels.nn import WindowGeometry, _taps
    nd, kernel, m = x.ndim - 2, list(w.shape[2:]), w.shape[0]
    mg = m // x.shape[1]
    geo = WindowGeometry(node, x.shape[2:], kernel)
    dtype = np.result_type(x.dtype, w.dtype)
    xp = np.pad(np.moveaxis(x, 1, -1).astype(dtype, copy=False), [(0, 0)] + list(zip(geo.begin, geo.end)) + [(0, 0)])
    xr = xp if mg == 1 else np.repeat(xp, mg, axis=-1)
    wk = w.reshape(m, math.prod(kernel)).astype(dtype, copy=False)
    y = np.zeros((x.shape[0], *geo.out, m), dtype)
    for t, (_, sl) in enumerate(_taps(kernel, geo.dil, [0] * nd, geo.out, geo.strides)):
        y += xr[(slice(None),) + sl] * wk[:, t]
    y = y.reshape(-1, m)
    if b is not None:
        y += b.astype(dtype, copy=False)
    return np.ascontiguousarray(np.moveaxis(y.reshape(x.shape[0], *geo.out, m), -1, 1))


DEPTHWISE_CASES = [  # (spatial, kernel, strides, dilations, pads, multiplier, batch)
    ((9, 11), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 2), ((9, 11), (5, 5), (2, 2), (1, 1), (2, 2, 2, 2), 1, 3),
    ((8, 8), (3, 3), (2, 1), (2, 1), (0, 1, 2, 0), 2, 1), ((7, 10), (1, 1), (1, 1), (1, 1), (0, 0, 0, 0), 3, 2),
    ((12, 5), (3, 1), (1, 2), (1, 1), (1, 0, 1, 0), 1, 2), ((16,), (5,), (3,), (2,), (4, 1), 2, 2),
    ((6, 6, 5), (3, 3, 3), (1, 2, 1), (1, 1, 2), (1, 1, 0, 1, 1, 2), 1, 1), ((40, 60), (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 1, 4),
]


@pytest.mark.parametrize("case", range(len(DEPTHWISE_CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_depthwise_blocks_equal_the_channels_last_loop(case, dtype, bias, monkeypatch):
    from qcompiler.interp.float_kernels import nn
    from qcompiler.ir import Graph
    spatial, kernel, strides, dil, pads, mult, batch = DEPTHWISE_CASES[case]
    c = 5
    rng = np.random.default_rng(case)
    x = rng.normal(0, 2, (batch, c, *spatial)).astype(dtype)
    x.flat[::7] = 0.0
    x.flat[3::11] = -0.0
    x.flat[5::97] = [np.nan, np.inf, -np.inf][case % 3]
    w = rng.normal(0, 1, (c * mult, 1, *kernel)).astype(np.float32)
    w.flat[::5] = -0.0
    b = rng.normal(0, 1, c * mult).astype(np.float32) if bias else None
    g = Graph("g")
    v = g.add_input("x", dtype, x.shape)
    node = g.add_node("Conv", [v], attrs={"group": c, "strides": list(strides), "dilations": list(dil),
                                          "pads": list(pads), "kernel_shape": list(kernel)}, name="dw")
    with np.errstate(all="ignore"):
        want = depthwise_reference(node, x, w, b)
    for block in (1, 7, nn.DEPTHWISE_BLOCK):  # one channel, a few, all at once
        monkeypatch.setattr(nn, "DEPTHWISE_BLOCK", block)
        with np.errstate(all="ignore"):
            got = nn.conv(node, [x, w] + ([b] if bias else []))[0]
        assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
