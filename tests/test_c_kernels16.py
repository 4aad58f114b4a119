"""The C backend's 16x8 kernels (int16 activations, zero point 0, int8 weights, int64 or int32
biases) against the integer reference, bit for bit: one small graph per case compiled for the
host with -Werror, as tests/test_c_kernels.py does for int8. Elementwise ops run on every int16
input; the convolution cases include saturating outputs, int64 accumulators beyond the int32
range and the largest and smallest requantization shifts the int64 path takes."""
from __future__ import annotations

import numpy as np
import pytest

from c_harness import Net, check, pq, rand_scale
from qcompiler.errors import BackendError, UnsupportedOpError
from qcompiler.ir import QuantParams
from test_c_kernels import clamp, ids

SEEDS = [0, 1]
ALL16 = np.arange(-32768, 32768, dtype=np.int16)


def q16(scale):
    return pq(scale, 0, np.int16)


def rand16(rng, shape, std=9000.0):
    """int16 data around 0, some of it saturated."""
    return np.clip(np.round(rng.normal(0, std, size=shape)), -32768, 32767).astype(np.int16)


# ---- convolution, fully connected ------------------------------------------------------------

def _bias(net, rng, in_scale, ws, acc_std, dtype, n, big=False):
    bs = (np.float64(in_scale) * ws).astype(np.float32)
    b = np.round(rng.normal(0, 0.5 * acc_std, n) / bs)
    if big:   # biases far outside int32: the int64 accumulator must carry them
        b = b + rng.choice([-1, 1], n) * float(1 << 40)
    lim = np.iinfo(dtype)
    return net.const(np.clip(b, lim.min, lim.max).astype(dtype), QuantParams(np.ones(1, np.float32), 0, dtype=dtype))


def conv16_net(rng, net, x, cin, cout, k=3, stride=1, dil=1, pads=(1, 1, 1, 1), act="NONE", group=1,
               bias="int64", one_d=False, out_gain=1.0, big_bias=False):
    qi = x.quant
    w = rng.integers(-127, 128, size=(cout, cin // group) + ((k,) if one_d else (k, k))).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=cout)).astype(np.float32)
    qw = QuantParams(ws, np.zeros(cout, np.int32), axis=0)
    taps = k * (1 if one_d else k) * cin // group
    acc_std = 9000 * 73 * np.sqrt(taps) * float(qi.scale[0]) * float(np.median(ws))
    qo = q16(acc_std * rng.uniform(0.1, 0.3) / 256 / out_gain)
    b = _bias(net, rng, qi.scale[0], ws, acc_std, np.dtype(bias), cout, big_bias) if bias else None
    if big_bias:   # the output range follows the bias: 2^40 accumulator steps are about 2^14 output steps
        qo = q16(float(qi.scale[0]) * float(np.max(ws)) * 2.0 ** 26)
    attrs = {"strides": [stride] if one_d else [stride, stride], "dilations": [dil] if one_d else [dil, dil],
             "pads": list(pads), "group": group, **clamp(act)}
    return net.node("Conv", [x, net.const(w, qw), b], qo, attrs)


def conv16_case(tmp_path, seed, cin=5, cout=6, hw=(9, 11), batch=1, depthwise=0, **kw):
    rng = np.random.default_rng(seed)
    net = Net()
    qi = q16(rand_scale(rng, -4, -2))
    shape = (batch, cin, hw[1]) if kw.get("one_d") else (batch, cin, *hw)
    x = net.input(rand16(rng, shape), qi)
    if depthwise:
        cout, kw["group"] = cin * depthwise, cin
    y = conv16_net(rng, net, x, cin, cout, **kw)
    net.output(y)
    report = check(net, tmp_path)
    assert report["ops"] == {"conv2d_s16": 1}, report["ops"]
    return net.arrays[y.name]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [
    dict(), dict(act="RELU"), dict(act="RELU6"), dict(act="RELU_N1_TO_1"), dict(stride=2), dict(dil=2),
    dict(pads=(0, 0, 0, 0)), dict(pads=(2, 0, 1, 3), stride=2), dict(k=1, pads=(0, 0, 0, 0)),
    dict(k=5, stride=3, pads=(2, 2, 2, 2)), dict(bias=None), dict(bias="int32"), dict(group=5, cin=10, cout=15),
    dict(batch=2), dict(depthwise=1), dict(depthwise=2, stride=2), dict(depthwise=1, dil=2, act="RELU6"),
    dict(depthwise=1, bias="int64", k=5, pads=(2, 2, 2, 2)), dict(one_d=True, pads=(1, 1)),
    dict(one_d=True, pads=(0, 2), stride=2, group=5, cin=5, cout=10), dict(hw=(1, 1), pads=(1, 1, 1, 1)),
    dict(cin=300, cout=4, k=1, pads=(0, 0, 0, 0), hw=(3, 4)),   # dot products longer than one int32 run
], ids=ids)
def test_conv16(tmp_path, seed, cfg):
    conv16_case(tmp_path, seed, **cfg)


def test_conv16_saturates_both_ends(tmp_path):
    """A 40x smaller output scale: many outputs at -32768 and at 32767, the clamp exact there."""
    y = conv16_case(tmp_path, 3, out_gain=40.0)
    assert (y == 32767).mean() > 0.1 and (y == -32768).mean() > 0.1


def test_conv16_int64_accumulator_beyond_int32(tmp_path):
    """Biases of +-2^40: the accumulators leave the int32 range, and only the int64 path keeps them."""
    y = conv16_case(tmp_path, 4, big_bias=True)
    assert np.abs(y).max() > 8000


@pytest.mark.parametrize("log2_mult", [13.5, 10.2, -20.3, -30.7])
def test_conv16_extreme_multipliers(tmp_path, log2_mult):
    """Requantization multipliers from about 2^13.5 (shift 14, the largest the int64 path takes:
    15 - shift >= 1) down to 2^-31 (the rounding term 2^45)."""
    rng = np.random.default_rng(int(abs(log2_mult) * 10))
    net = Net()
    qi = q16(1e-3)
    x = net.input(rand16(rng, (1, 3, 6, 7), std=20000 if log2_mult < 0 else 30), qi)
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    ws = np.full(4, 1e-2, np.float32) * np.array([1, 0.9, 0.8, 0.7], np.float32)
    qo = q16(1e-3 * 1e-2 / 2.0 ** log2_mult)
    b = net.const(rng.integers(-1000, 1000, 4).astype(np.int64), QuantParams(np.ones(1, np.float32), 0, dtype=np.int64))
    y = net.node("Conv", [x, net.const(w, QuantParams(ws, np.zeros(4, np.int32), axis=0)), b], qo,
                 {"pads": [1, 1, 1, 1]})
    net.output(y)
    check(net, tmp_path)


def test_conv16_shift_beyond_the_int64_path_is_refused(tmp_path):
    net = Net()
    x = net.input(rand16(np.random.default_rng(0), (1, 2, 4, 4), std=3), q16(1.0))
    w = np.ones((2, 2, 1, 1), np.int8)
    qo = q16(1.0 / 2.0 ** 16)
    y = net.node("Conv", [x, net.const(w, QuantParams(np.ones(2, np.float32), np.zeros(2, np.int32), axis=0)), None],
                 qo, {})
    net.output(y)
    with pytest.raises(BackendError, match="15 - shift >= 1"):
        check(net, tmp_path)


def gemm16_net(rng, net, x, m, per_channel=False, act="NONE", bias="int64", trans_b=1):
    k = x.shape[-1]
    w = rng.integers(-127, 128, size=(m, k)).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=m if per_channel else 1)).astype(np.float32)
    qw = QuantParams(ws, np.zeros(m, np.int32), axis=0) if per_channel else pq(ws[0])
    acc_std = 9000 * 73 * np.sqrt(k) * float(x.quant.scale[0]) * float(np.median(ws))
    qo = q16(acc_std * rng.uniform(0.1, 0.3) / 256)
    b = _bias(net, rng, x.quant.scale[0], np.broadcast_to(ws, (m,)), acc_std, np.dtype(bias), m) if bias else None
    return net.node("Gemm", [x, net.const(w if trans_b else w.T.copy(), qw), b], qo, {"transB": trans_b, **clamp(act)})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(), dict(per_channel=True), dict(act="RELU", per_channel=True),
                                 dict(act="RELU6"), dict(bias=None), dict(bias="int32"),
                                 dict(bias="int32", per_channel=True), dict(trans_b=0), dict(rows=3),
                                 dict(m=1, k=8), dict(k=700)], ids=ids)
def test_gemm16(tmp_path, seed, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    rows, k, m = cfg.pop("rows", 1), cfg.pop("k", 33), cfg.pop("m", 7)
    x = net.input(rand16(rng, (rows, k)), q16(rand_scale(rng, -4, -2)))
    net.output(gemm16_net(rng, net, x, m, **cfg))
    report = check(net, tmp_path)
    assert report["ops"] == {"conv2d_s16": 1}


def test_gemm16_after_conv_reads_nhwc_without_a_copy(tmp_path):
    rng = np.random.default_rng(7)
    net = Net()
    x = net.input(rand16(rng, (1, 3, 5, 4)), q16(2e-4))
    y = conv16_net(rng, net, x, 3, 6)
    f = net.node("Flatten", [y], y.quant, {"axis": 1})
    net.output(gemm16_net(rng, net, f, 10, per_channel=True))
    report = check(net, tmp_path)
    assert "copy" not in report["ops"], report["ops"]


# ---- elementwise --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("cfg", [
    dict(), dict(act="RELU"), dict(act="RELU6"), dict(shape_b=(1, 4, 1, 1)), dict(shape_b=(1, 1, 5, 6)),
    dict(shape_b=(6,)), dict(shape_b=(1, 4, 1, 1), const_b=True), dict(shape_a=(3, 7), shape_b=(7,)),
    dict(after_conv=True), dict(saturate=True),
], ids=ids)
def test_binary16(tmp_path, seed, op, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    shape_a, shape_b = cfg.get("shape_a", (1, 4, 5, 6)), cfg.get("shape_b", (1, 4, 5, 6))
    q1, q2 = q16(rand_scale(rng, -4, -2)), q16(rand_scale(rng, -4, -2))
    a = net.input(rand16(rng, shape_a, 20000), q1)
    b_arr = rand16(rng, shape_b, 20000)
    b = net.const(b_arr, q2) if cfg.get("const_b") else net.input(b_arr, q2)
    if cfg.get("after_conv"):
        a = conv16_net(rng, net, a, shape_a[1], shape_a[1])
        q1 = a.quant
    s1, s2 = float(q1.scale[0]), float(q2.scale[0])
    gain = 8.0 if cfg.get("saturate") else 1.0
    so = (s1 * s2 * 9000 * rng.uniform(0.5, 2) if op == "Mul" else max(s1, s2) * rng.uniform(1.0, 2.5)) / gain
    net.output(net.node(op, [a, b], q16(so), clamp(cfg.get("act", "NONE"))))
    check(net, tmp_path)


def _every_input(op, qi, qo, attrs=None, extra=()):
    net = Net()
    x = net.input(ALL16.reshape(1, 16, 64, 64), qi)
    net.output(net.node(op, [x, *[net.const(e) for e in extra]], qo, attrs))
    return net


SIGMOID_SCALES = [2.0 ** -12, 2.0 ** -11, 2.0 ** -10, 2.0 ** -14, 1 / 3000, 0.00037, 1.7e-5, 0.0011]


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh"])
@pytest.mark.parametrize("scale", SIGMOID_SCALES)
def test_logistic_tanh16_every_input(tmp_path, op, scale):
    report = check(_every_input(op, q16(scale), q16(2.0 ** -15)), tmp_path)
    assert report["ops"] == {"act_s16": 1}


@pytest.mark.parametrize("seed", SEEDS)
def test_relu16_every_input(tmp_path, seed):
    rng = np.random.default_rng(seed)
    qi = q16(rand_scale(rng, -4, -2))
    nets = [_every_input("Relu", qi, q16(float(qi.scale[0]) * rng.uniform(0.4, 1.5))), _every_input("Relu", qi, qi),
            _every_input("Clip", qi, q16(float(qi.scale[0]) * 0.3), extra=(np.float32(0),))]
    for i, net in enumerate(nets):
        (tmp_path / str(i)).mkdir()
        check(net, tmp_path / str(i))


@pytest.mark.parametrize("bounds", [(0.0, 6.0), (-1.5, 2.25), (-1.0, 1.0)])
def test_clip16_every_input(tmp_path, bounds):
    q = q16(3.3e-4)
    check(_every_input("Clip", q, q, extra=tuple(np.float32(b) for b in bounds)), tmp_path)


@pytest.mark.parametrize("alpha", [0.01, 0.2, -0.3])
def test_leaky_relu16_every_input(tmp_path, alpha):
    check(_every_input("LeakyRelu", q16(3e-4), q16(2.1e-4), {"alpha": alpha}), tmp_path)


@pytest.mark.parametrize("pair", [("int8", "int16"), ("int16", "int8"), ("int16", "int16")])
def test_requantize_every_input(tmp_path, pair):
    """QUANTIZE at the int8 / int16 borders of mixed models, every input code."""
    qs = {"int8": pq(0.031, -7), "int16": q16(0.031 / 200)}
    qi, qo = qs[pair[0]], qs[pair[1]] if pair[0] != pair[1] else q16(0.031 / 77)
    codes = np.arange(-128, 128, dtype=np.int8).reshape(2, 128) if pair[0] == "int8" else ALL16.reshape(2, -1)
    net = Net()
    x = net.input(codes, qi)
    net.output(net.node("Requantize", [x], qo))
    check(net, tmp_path)


# ---- pooling, mean, softmax ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("cfg", [
    dict(), dict(k=2, stride=2, pads=(0, 0, 0, 0)), dict(k=3, stride=2, pads=(1, 0, 1, 2)),
    dict(k=5, stride=3, pads=(2, 2, 2, 2), act="RELU"), dict(act="RELU6"), dict(hw=(1, 7), k=1),
], ids=ids)
def test_pool16(tmp_path, seed, op, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    q = q16(rand_scale(rng, -4, -2))
    hw, k = cfg.pop("hw", (9, 10)), cfg.pop("k", 3)
    x = net.input(rand16(rng, (2, 4, *hw), 20000), q)
    attrs = {"kernel_shape": [k, k] if hw[0] > 1 else [1, k], "strides": [cfg.pop("stride", 1)] * 2,
             "pads": list(cfg.pop("pads", (1, 1, 1, 1))), **clamp(cfg.pop("act", "NONE")), **cfg}
    net.output(net.node(op, [x], q, attrs))
    report = check(net, tmp_path)
    assert set(report["ops"]) == {"max_pool_s16" if op == "MaxPool" else "avg_pool_s16"}


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool16(tmp_path, op):
    rng = np.random.default_rng(5)
    net = Net()
    q = q16(2e-4)
    x = net.input(rand16(rng, (1, 3, 9, 8), 25000), q)
    net.output(net.node(op, [x], q, clamp("RELU")))
    check(net, tmp_path)


@pytest.mark.parametrize("cfg", [dict(axes=[2, 3], keepdims=1), dict(axes=[2, 3], keepdims=0),
                                 dict(axes=[1], keepdims=0), dict(axes=[-1], keepdims=1, shape=(3, 11)),
                                 dict(axes=[1, 3], keepdims=1), dict(axes=[2, 3], keepdims=1, gain=3.0)], ids=ids)
def test_reduce_mean16(tmp_path, cfg):
    rng = np.random.default_rng(11)
    net = Net()
    shape = cfg.pop("shape", (2, 4, 5, 6))
    x = net.input(rand16(rng, shape, 20000), q16(2e-4))
    axes = cfg.pop("axes")
    so = 2e-4 * 0.8 / cfg.pop("gain", 1.0)    # gain 3: the means saturate
    net.output(net.node("ReduceMean", [x, net.const(np.array(axes, np.int64))], q16(so), cfg))
    report = check(net, tmp_path)
    assert set(report["ops"]) <= {"mean_s16", "copy"}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(shape=(2, 12)), dict(shape=(1, 6, 3, 4), axis=1),
                                 dict(shape=(3, 1000), scale=1e-3)], ids=ids)
def test_softmax16(tmp_path, seed, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    x = net.input(rand16(rng, cfg["shape"], 12000), q16(cfg.get("scale", 3e-4)))
    net.output(net.node("Softmax", [x], q16(1 / 32768), {"axis": cfg.get("axis", -1)}))
    check(net, tmp_path)


# ---- data movement ------------------------------------------------------------------------------

@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_data_movement16(tmp_path, c_io):
    """Concat, Pad (not fused, and fused into a Conv), Transpose, Slice, Split, reshapes on int16."""
    rng = np.random.default_rng(6)
    net = Net()
    q = q16(2e-4)
    a = conv16_net(rng, net, net.input(rand16(rng, (1, 3, 4, 5)), q), 3, 4)
    b = net.input(rand16(rng, (1, 2, 4, 5)), a.quant)
    cat = net.node("Concat", [a, b], a.quant, {"axis": 1})
    padded = net.node("Pad", [cat, net.const(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))], a.quant)
    conv_in = net.node("Pad", [cat, net.const(np.array([0, 0, 1, 1, 0, 0, 0, 1], np.int64))], a.quant)
    c = conv16_net(rng, net, conv_in, 6, 3, pads=(0, 0, 0, 0))
    t = net.node("Transpose", [padded], a.quant, {"perm": [0, 3, 1, 2]})
    s = net.node("Slice", [t] + [net.const(np.array(v, np.int64)) for v in ([1, 0], [6, 2], [1, 3])], a.quant)
    parts = net.node("Split", [c, net.const(np.array([1, 2], np.int64))], c.quant, {"axis": 1}, n_out=2)
    r = net.node("Reshape", [parts[1], net.const(np.array([1, -1], np.int64))], c.quant)
    net.output(padded, s, parts[0], r)
    check(net, tmp_path, c_io=c_io)


def test_resize_nearest16(tmp_path):
    rng = np.random.default_rng(12)
    net = Net()
    x = net.input(rand16(rng, (1, 3, 4, 5)), q16(2e-4))
    ins = [x, None, None, net.const(np.array([1, 3, 8, 10], np.int64))]
    net.output(net.node("Resize", ins, x.quant, {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                                  "nearest_mode": "floor"}))
    report = check(net, tmp_path)
    assert report["ops"] == {"resize_nearest_s16": 1}


# ---- ops without an int16 form in the reference --------------------------------------------------

def test_an_int16_op_the_reference_lacks_is_refused_with_its_reason(tmp_path):
    """PRelu has no int16 kernel in the integer reference: an int16 PRelu node is refused, saying
    why (the quantizer keeps it int8 behind QUANTIZE ops, so compiled models never carry one)."""
    from qcompiler.backends.c.lower import check_supported, why_unsupported_int16
    net = Net()
    x = net.input(rand16(np.random.default_rng(0), (1, 2, 3, 3)), q16(1e-3))
    node = net.g.add_node("PRelu", [x, net.const(np.ones((2, 1, 1), np.int8), pq(0.1))], attrs={})
    node.outputs[0].quant, node.outputs[0].shape, node.outputs[0].dtype = q16(1e-3), x.shape, np.dtype(np.int16)
    net.output(node.outputs[0])
    with pytest.raises(UnsupportedOpError, match=r"int16 nodes.*PRelu.*PRELU is not implemented"):
        check_supported(net.g)
    assert why_unsupported_int16("Conv") is None and "HARD_SWISH" in why_unsupported_int16("HardSwish")


@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_views_into_int16_inputs(tmp_path, c_io):
    """Split pieces of an int16 graph input are views at element offsets of the caller's array."""
    rng = np.random.default_rng(14)
    net = Net()
    x = net.input(rand16(rng, (4, 2, 5, 5)), q16(2e-4))
    parts = net.node("Split", [x, net.const(np.array([1, 3], np.int64))], x.quant, {"axis": 0}, n_out=2)
    net.output(conv16_net(rng, net, parts[1], 2, 3), net.node("Relu", [parts[0]], x.quant))
    report = check(net, tmp_path, c_io=c_io)
    assert "copy" not in report["ops"] or c_io == "scratch", report["ops"]
