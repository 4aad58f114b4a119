"""The int16 (TFLite 16x8) integer kernels against the real TFLite Micro interpreter, bit for bit.

As tests/test_int_kernels_tflm.py for int8: one-op .tflite models with random shapes and
quantization parameters, int16 activations with zero point 0, int8 per-channel weights and
int64 (or int32) biases; exhaustive over every int16 input where the op is elementwise
(LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU, QUANTIZE). SOFTMAX int16 and QUANTIZE int8 <-> int16
on every value are in tests/test_wide_softmax.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.ir import QuantParams
from test_int_kernels_tflm import ACTS, NCHW, NHWC, assert_same, clamp_attr, ours, rand_scale

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
fb = pytest.importorskip("qcompiler.backends.tflite.flatbuffer")

SEEDS = [0, 1, 2]
ALL16 = np.arange(-32768, 32768, dtype=np.int16)


def q16(scale):
    return QuantParams(np.float32(scale), 0, dtype=np.int16)


def rand16(rng, shape, std=9000.0):
    """int16 data around 0 with some saturation."""
    return np.clip(np.round(rng.normal(0, std, size=shape)), -32768, 32767).astype(np.int16)


class Case:
    """A small TFLite model built tensor by tensor (any dtype), run in tflite-micro."""

    def __init__(self):
        self.tensors, self.ops, self.inputs, self.feeds = [], [], [], []

    def tensor(self, shape, dtype="int16", data=None, q=None, qdim=0):
        scale = zp = None
        if q is not None:
            scale, zp = [float(s) for s in q.scale], [int(z) for z in q.zero_point]
        self.tensors.append(fb.TflTensor(f"t{len(self.tensors)}", tuple(shape), dtype, data, scale, zp, qdim))
        return len(self.tensors) - 1

    def input(self, arr, q):
        i = self.tensor(arr.shape, arr.dtype.name, None, q)
        self.inputs.append(i)
        self.feeds.append(arr)
        return i

    def op(self, opcode, ins, outs, **options):
        self.ops.append(fb.TflOperator(opcode, list(ins), list(outs), options))

    def run(self, outputs):
        model = fb.TflModel(self.tensors, self.ops, self.inputs, list(outputs), "int16 kernels test")
        it = runtime.Interpreter.from_bytes(bytes(fb.write_model(model)), arena_size=1 << 23)
        for k, a in enumerate(self.feeds):
            it.set_input(a, k)
        it.invoke()
        return [it.get_output(k) for k in range(len(outputs))]


# ---- CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ----------------------------------------------

def _bias(rng, in_scale, ws, acc_std, dtype, n):
    bscale = (np.float32(in_scale).astype(np.float64) * ws).astype(np.float32)
    b = np.round(rng.normal(0, 0.5 * acc_std, n) / bscale)
    lim = np.iinfo(dtype)
    return np.clip(b, lim.min, lim.max).astype(dtype), bscale


def conv16_case(seed, *, k=3, stride=1, dil=1, padding="SAME", act="NONE", depthwise=0, cin=5, cout=6,
                hw=(9, 11), bias="int64"):
    rng = np.random.default_rng(seed)
    qi = q16(rand_scale(rng, -4, -2))
    x = rand16(rng, (1, cin, *hw))
    group = 1
    if depthwise:
        cout, group = cin * depthwise, cin
    w = rng.integers(-127, 128, size=(cout, cin // group, k, k)).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=cout)).astype(np.float32)
    qw = QuantParams(ws, np.zeros(cout, np.int32), axis=0)
    acc_std = 9000 * 73 * np.sqrt(k * k * cin // group) * float(qi.scale[0]) * float(np.median(ws))
    qo = q16(acc_std * rng.uniform(0.1, 0.3) / 256)
    b = bscale = None
    if bias:
        b, bscale = _bias(rng, qi.scale[0], ws, acc_std, np.dtype(bias), cout)
    h, wd = hw
    eff = dil * (k - 1) + 1
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        th, tw = max((oh - 1) * stride + eff - h, 0), max((ow - 1) * stride + eff - wd, 0)
        pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
    else:
        pads = [0, 0, 0, 0]
    attrs = {"strides": [stride, stride], "pads": pads, "dilations": [dil, dil], "group": group,
             **clamp_attr(act)}
    bq = QuantParams(np.ones(1, np.float32), 0, dtype=np.dtype(bias)) if bias else None
    mine = ours("Conv", attrs, [(x, qi, False), (w, qw, True), None if b is None else (b, bq, True)], qo)[0]
    assert mine.dtype == np.int16
    c = Case()
    xi = c.input(x.transpose(NHWC), qi)
    out = c.tensor(mine.transpose(NHWC).shape, q=qo)
    opts = dict(padding=padding, stride_w=stride, stride_h=stride, dilation_w_factor=dil,
                dilation_h_factor=dil, fused_activation_function=act)
    if depthwise:
        wt = c.tensor((1, k, k, cout), "int8", w.transpose(1, 2, 3, 0), qw, qdim=3)
        opcode, opts["depth_multiplier"] = "DEPTHWISE_CONV_2D", depthwise
    else:
        wt = c.tensor(w.transpose(0, 2, 3, 1).shape, "int8", w.transpose(0, 2, 3, 1), qw)
        opcode = "CONV_2D"
    ins = [xi, wt]
    if b is not None:
        ins.append(c.tensor((cout,), bias, b, QuantParams(bscale, np.zeros(cout, np.int32), 0)))
    c.op(opcode, ins, [out], **opts)
    assert_same(mine, c.run([out])[0].transpose(NCHW))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("act", ACTS)
def test_conv16_activations(seed, act):
    conv16_case(seed, act=act)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(stride=2), dict(stride=2, padding="VALID"), dict(dil=2), dict(k=1),
                                 dict(k=5, stride=2, act="RELU6"), dict(bias=None), dict(bias="int32"),
                                 dict(bias="int32", k=1, act="RELU"), dict(cin=32, cout=8, k=3)],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_conv16_geometry_and_bias(seed, cfg):
    conv16_case(seed, **cfg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(depthwise=1), dict(depthwise=2, stride=2), dict(depthwise=1, act="RELU6"),
                                 dict(depthwise=1, dil=2, padding="VALID"), dict(depthwise=3, bias=None)],
                         ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_depthwise16(seed, cfg):
    conv16_case(seed, **cfg)


def fc16_case(seed, per_channel, act="NONE", bias="int64", m=7, kdim=33, n=3):
    rng = np.random.default_rng(seed)
    qi = q16(rand_scale(rng, -4, -2))
    x = rand16(rng, (n, kdim))
    w = rng.integers(-127, 128, size=(m, kdim)).astype(np.int8)
    if per_channel:
        ws = (10 ** rng.uniform(-3, -1.5, size=m)).astype(np.float32)
        qw = QuantParams(ws, np.zeros(m, np.int32), axis=0)
    else:
        ws = np.full(m, 10 ** rng.uniform(-3, -1.5), np.float32)
        qw = QuantParams(ws[:1], 0)
    acc_std = 9000 * 73 * np.sqrt(kdim) * float(qi.scale[0]) * float(np.median(ws))
    qo = q16(acc_std * rng.uniform(0.1, 0.3) / 256)
    b = bscale = None
    if bias:
        b, bscale = _bias(rng, qi.scale[0], ws, acc_std, np.dtype(bias), m)
    bq = QuantParams(np.ones(1, np.float32), 0, dtype=np.dtype(bias)) if bias else None
    mine = ours("Gemm", {"transB": 1, **clamp_attr(act)},
                [(x, qi, False), (w, qw, True), None if b is None else (b, bq, True)], qo)[0]
    c = Case()
    ins = [c.input(x, qi), c.tensor(w.shape, "int8", w, qw)]
    if b is not None:
        tq = QuantParams(bscale, np.zeros(m, np.int32), 0) if per_channel else QuantParams(bscale[:1], 0)
        ins.append(c.tensor((m,), bias, b, tq))
    out = c.tensor((n, m), q=qo)
    c.op("FULLY_CONNECTED", ins, [out], fused_activation_function=act)
    assert_same(mine, c.run([out])[0])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("act", ["NONE", "RELU"])
@pytest.mark.parametrize("bias", ["int64", "int32", None])
def test_fully_connected16(seed, per_channel, act, bias):
    fc16_case(seed, per_channel, act, bias)


# ---- ADD / SUB / MUL ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op,opcode", [("Add", "ADD"), ("Sub", "SUB"), ("Mul", "MUL")])
@pytest.mark.parametrize("shape_b,act", [((1, 4, 5, 6), "NONE"), ((1, 4, 5, 6), "RELU"),
                                         ((1, 4, 1, 1), "NONE"), ((1, 1, 5, 6), "RELU6")])
def test_binary16(seed, op, opcode, shape_b, act):
    rng = np.random.default_rng(seed)
    q1, q2 = q16(rand_scale(rng, -4, -2)), q16(rand_scale(rng, -4, -2))
    a, b = rand16(rng, (1, 4, 5, 6)), rand16(rng, shape_b)
    s1, s2 = float(q1.scale[0]), float(q2.scale[0])
    qo = q16(s1 * s2 * 9000 * rng.uniform(0.5, 2) if op == "Mul" else max(s1, s2) * rng.uniform(1.0, 2.5))
    mine = ours(op, clamp_attr(act), [(a, q1, False), (b, q2, False)], qo)[0]
    c = Case()
    ia, ib = c.input(a.transpose(NHWC), q1), c.input(b.transpose(NHWC), q2)
    out = c.tensor(mine.transpose(NHWC).shape, q=qo)
    c.op(opcode, [ia, ib], [out], fused_activation_function=act)
    assert_same(mine, c.run([out])[0].transpose(NCHW))


# ---- pooling, MEAN -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "GlobalAveragePool"])
@pytest.mark.parametrize("k,stride,padding,act", [(3, 1, "SAME", "NONE"), (2, 2, "VALID", "RELU"),
                                                  (3, 2, "SAME", "RELU6")])
def test_pool16(seed, op, k, stride, padding, act):
    rng = np.random.default_rng(seed)
    q = q16(rand_scale(rng, -4, -2))
    hw = (9, 10)
    x = rand16(rng, (2, 4, *hw))
    if op == "GlobalAveragePool":
        attrs, (kh, kw), padding, stride = clamp_attr(act), hw, "VALID", 1
    else:
        kh = kw = k
        pads = [0, 0, 0, 0]
        if padding == "SAME":
            oh, ow = -(-hw[0] // stride), -(-hw[1] // stride)
            th, tw = max((oh - 1) * stride + k - hw[0], 0), max((ow - 1) * stride + k - hw[1], 0)
            pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
        attrs = {"kernel_shape": [k, k], "strides": [stride, stride], "pads": pads, **clamp_attr(act)}
    mine = ours(op, attrs, [(x, q, False)], q)[0]
    c = Case()
    xi = c.input(x.transpose(NHWC), q)
    out = c.tensor(mine.transpose(NHWC).shape, q=q)
    c.op("MAX_POOL_2D" if op == "MaxPool" else "AVERAGE_POOL_2D", [xi], [out], padding=padding,
         stride_w=stride, stride_h=stride, filter_width=kw, filter_height=kh, fused_activation_function=act)
    assert_same(mine, c.run([out])[0].transpose(NCHW))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("axes,keep", [([2, 3], 1), ([1], 0), ([2], 1)])
def test_mean16(seed, axes, keep):
    rng = np.random.default_rng(seed)
    qi = q16(rand_scale(rng, -4, -2))
    qo = q16(float(qi.scale[0]) * rng.uniform(0.3, 1.2))
    x = rand16(rng, (1, 6, 5, 7))
    mine = ours("ReduceMean", {"axes": axes, "keepdims": keep}, [(x, qi, False)], qo)[0]
    c = Case()
    xi = c.input(x.transpose(NHWC), qi)
    tfl_axes = [NHWC.index(a) for a in axes]
    out_shape = mine.transpose(NHWC).shape if keep else mine.shape
    out = c.tensor(out_shape, q=qo)
    c.op("MEAN", [xi, c.tensor((len(axes),), "int32", np.array(tfl_axes, np.int32))], [out], keep_dims=bool(keep))
    got = c.run([out])[0]
    assert_same(mine, got.transpose(NCHW) if keep else got)


# ---- element-wise activations: every int16 input -------------------------------------------------

def unary16(op, opcode, qi, qo, attrs=None, options=None):
    x = ALL16.reshape(1, 16, 64, 64)
    mine = ours(op, attrs or {}, [(x, qi, False)], qo)[0]
    c = Case()
    xi = c.input(x.transpose(NHWC), qi)
    out = c.tensor(mine.transpose(NHWC).shape, q=qo)
    c.op(opcode, [xi], [out], **(options or {}))
    assert_same(mine, c.run([out])[0].transpose(NCHW))


# input scales: powers of two where TFLM takes its shortcut (2^-12; 2^-11 for TANH), powers of two
# where it does not, and general scales small and large
SIGMOID_SCALES = [2.0 ** -12, 2.0 ** -11, 2.0 ** -10, 2.0 ** -14, 1 / 3000, 0.00037, 1.7e-5, 0.0011]


@pytest.mark.parametrize("scale", SIGMOID_SCALES)
def test_logistic16_every_input(scale):
    unary16("Sigmoid", "LOGISTIC", q16(scale), q16(2.0 ** -15))


@pytest.mark.parametrize("scale", SIGMOID_SCALES)
def test_tanh16_every_input(scale):
    unary16("Tanh", "TANH", q16(scale), q16(2.0 ** -15))


@pytest.mark.parametrize("seed", SEEDS)
def test_relu16_every_input(seed):
    rng = np.random.default_rng(seed)
    qi = q16(rand_scale(rng, -4, -2))
    unary16("Relu", "RELU", qi, q16(float(qi.scale[0]) * rng.uniform(0.4, 1.5)))
    unary16("Relu", "RELU", qi, qi)


@pytest.mark.parametrize("scale", [1e-4, 3.3e-4, 2.0 ** -12])
def test_relu6_and_min_max16_every_input(scale):
    q = q16(scale)
    unary16("Clip", "RELU6", q, q, attrs={"min": 0.0, "max": 6.0})
    x = ALL16.reshape(1, 16, 64, 64)
    mine = ours("Clip", {"min": -1.5, "max": 2.25}, [(x, q, False)], q)[0]
    c = Case()
    xi = c.input(x.transpose(NHWC), q)
    from qcompiler.numerics.qops import float_to_quantized
    lo, hi = (float_to_quantized(v, q.scale[0], 0, -32768, 32767) for v in (-1.5, 2.25))
    mid = c.tensor(c.tensors[xi].shape, q=q)
    out = c.tensor(c.tensors[xi].shape, q=q)
    c.op("MINIMUM", [xi, c.tensor((1,), "int16", np.array([hi], np.int16), q)], [mid])
    c.op("MAXIMUM", [mid, c.tensor((1,), "int16", np.array([lo], np.int16), q)], [out])
    assert_same(mine, c.run([out])[0].transpose(NCHW))


@pytest.mark.parametrize("alpha", [0.01, 0.2, -0.3])
def test_leaky_relu16_every_input(alpha):
    qi, qo = q16(3e-4), q16(2.1e-4)
    unary16("LeakyRelu", "LEAKY_RELU", qi, qo, attrs={"alpha": alpha}, options={"alpha": alpha})


# ---- data movement --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_concat_and_pad16(seed):
    rng = np.random.default_rng(seed)
    q = q16(rand_scale(rng, -4, -2))
    a, b = rand16(rng, (1, 3, 4, 5)), rand16(rng, (1, 2, 4, 5))
    mine = ours("Concat", {"axis": 1}, [(a, q, False), (b, q, False)], q)[0]
    padded = ours("Pad", {"mode": "constant"}, [(mine, q, False), (np.array([0, 0, 1, 2, 0, 0, 2, 1]), None, True)],
                  q)[0]
    c = Case()
    ia, ib = c.input(a.transpose(NHWC), q), c.input(b.transpose(NHWC), q)
    cat = c.tensor(mine.transpose(NHWC).shape, q=q)
    c.op("CONCATENATION", [ia, ib], [cat], axis=3)
    out = c.tensor(padded.transpose(NHWC).shape, q=q)
    pads = c.tensor((4, 2), "int32", np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32))
    c.op("PAD", [cat, pads], [out])
    assert_same(padded, c.run([out])[0].transpose(NCHW))


@pytest.mark.parametrize("seed", SEEDS)
def test_resize_nearest16(seed):
    rng = np.random.default_rng(seed)
    q = q16(rand_scale(rng, -4, -2))
    x = rand16(rng, (1, 3, 4, 5))
    from qcompiler.ir import Graph
    from qcompiler.interp import run_int
    g = Graph("t")
    v = g.add_input("x", np.int16, x.shape)
    v.quant = q
    sizes = g.add_constant("sizes", np.array([1, 3, 8, 10], np.int64))
    n = g.add_node("Resize", [v, None, None, sizes], attrs={"mode": "nearest", "nearest_mode": "floor",
                                                             "coordinate_transformation_mode": "asymmetric"})
    n.outputs[0].quant, n.outputs[0].shape, n.outputs[0].dtype = q, (1, 3, 8, 10), np.dtype(np.int16)
    g.outputs.append(n.outputs[0])
    mine = run_int(g, {"x": x})[n.outputs[0].name]
    c = Case()
    xi = c.input(x.transpose(NHWC), q)
    out = c.tensor((1, 8, 10, 3), q=q)
    c.op("RESIZE_NEAREST_NEIGHBOR", [xi, c.tensor((2,), "int32", np.array([8, 10], np.int32))], [out],
         align_corners=False, half_pixel_centers=False)
    assert_same(mine, c.run([out])[0].transpose(NCHW))
