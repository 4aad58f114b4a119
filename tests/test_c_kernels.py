"""The C backend's kernels against the integer reference, bit for bit, on random shapes and
quantization parameters (one small graph per case, compiled for the host with -Werror)."""
from __future__ import annotations

import numpy as np
import pytest

from c_harness import Net, check, pq, rand_act, rand_q, rand_scale

SEEDS = [0, 1]
ACTS = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]


# a fused activation as the IR spells it: the clamp of the output in float units (ir/activation.py)
CLAMPS = {"NONE": None, "RELU": [0.0, None], "RELU6": [0.0, 6.0], "RELU_N1_TO_1": [-1.0, 1.0]}


def clamp(act: str) -> dict:
    return {} if CLAMPS[act] is None else {"clamp": CLAMPS[act]}


def ids(d):
    return ",".join(f"{k}={v}" for k, v in d.items()) or "default"


# ---- convolution, fully connected ------------------------------------------------------------

def conv_net(rng, net, x, cin, cout, k=3, stride=1, dil=1, pads=(1, 1, 1, 1), act="NONE", group=1,
             bias=True, one_d=False):
    qi = x.quant
    w = rng.integers(-127, 128, size=(cout, cin // group) + ((k,) if one_d else (k, k))).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=cout)).astype(np.float32)
    qw = pq(ws[0]) if rng.random() < 0.2 else None
    from qcompiler.ir import QuantParams
    qw = qw or QuantParams(ws, np.zeros(cout, np.int32), axis=0)
    acc_std = 50 * 73 * np.sqrt(k * (1 if one_d else k) * cin // group) * float(qi.scale[0]) * float(np.median(ws))
    qo = pq(acc_std * rng.uniform(0.02, 0.06), int(rng.integers(-100, 100)))
    b = None
    if bias:
        bs = (qi.scale[0].astype(np.float64) * qw.scale).astype(np.float32)
        b = net.const(np.round(rng.normal(0, 0.5 * acc_std, cout) / bs).astype(np.int32), pq(1.0))
    attrs = {"strides": [stride] if one_d else [stride, stride], "dilations": [dil] if one_d else [dil, dil],
             "pads": list(pads), "group": group, **clamp(act)}
    return net.node("Conv", [x, net.const(w, qw), b], qo, attrs)


def conv_case(tmp_path, seed, cin=5, cout=6, hw=(9, 11), batch=1, depthwise=0, **kw):
    rng = np.random.default_rng(seed)
    net = Net()
    qi = rand_q(rng)
    shape = (batch, cin, hw[1]) if kw.get("one_d") else (batch, cin, *hw)
    x = net.input(rand_act(rng, shape, int(qi.zero_point[0])), qi)
    if depthwise:
        cout, kw["group"] = cin * depthwise, cin
    net.output(conv_net(rng, net, x, cin, cout, **kw))
    check(net, tmp_path)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [
    dict(), dict(act="RELU"), dict(act="RELU6"), dict(act="RELU_N1_TO_1"), dict(stride=2), dict(dil=2),
    dict(pads=(0, 0, 0, 0)), dict(pads=(2, 0, 1, 3), stride=2), dict(k=1, pads=(0, 0, 0, 0)),
    dict(k=5, stride=3, pads=(2, 2, 2, 2)), dict(bias=False), dict(group=5, cin=10, cout=15),
    dict(batch=2), dict(depthwise=1), dict(depthwise=2, stride=2), dict(depthwise=1, dil=2, act="RELU6"),
    dict(one_d=True, pads=(1, 1)), dict(one_d=True, pads=(0, 2), stride=2, group=5, cin=5, cout=10),
    dict(hw=(1, 1), pads=(1, 1, 1, 1)),
], ids=ids)
def test_conv(tmp_path, seed, cfg):
    conv_case(tmp_path, seed, **cfg)


def gemm_net(rng, net, x, m, per_channel=False, act="NONE", bias=True, trans_b=1):
    from qcompiler.ir import QuantParams
    k = x.shape[-1]
    w = rng.integers(-127, 128, size=(m, k)).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=m if per_channel else 1)).astype(np.float32)
    qw = QuantParams(ws, np.zeros(m, np.int32), axis=0) if per_channel else pq(ws[0])
    acc_std = 50 * 73 * np.sqrt(k) * float(x.quant.scale[0]) * float(np.median(ws))
    qo = pq(acc_std * rng.uniform(0.02, 0.06), int(rng.integers(-100, 100)))
    b = None
    if bias:
        bs = (x.quant.scale[0].astype(np.float64) * np.broadcast_to(ws, (m,))).astype(np.float32)
        b = net.const(np.round(rng.normal(0, 0.5 * acc_std, m) / bs).astype(np.int32), pq(1.0))
    return net.node("Gemm", [x, net.const(w if trans_b else w.T.copy(), qw), b], qo,
                    {"transB": trans_b, **clamp(act)})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(), dict(per_channel=True), dict(act="RELU", per_channel=True),
                                 dict(act="RELU6"), dict(bias=False), dict(trans_b=0), dict(rows=3),
                                 dict(m=1, k=8)], ids=ids)
def test_gemm(tmp_path, seed, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    qi = rand_q(rng)
    rows, k, m = cfg.pop("rows", 1), cfg.pop("k", 33), cfg.pop("m", 7)
    x = net.input(rand_act(rng, (rows, k), int(qi.zero_point[0])), qi)
    net.output(gemm_net(rng, net, x, m, **cfg))
    check(net, tmp_path)


@pytest.mark.parametrize("view", ["Flatten", "Reshape", "Transpose"])
def test_gemm_after_conv_reads_nhwc_without_a_copy(tmp_path, view):
    """Conv (NHWC) -> Flatten / Reshape -> Gemm: the weight columns follow the NHWC order."""
    rng = np.random.default_rng(7)
    net = Net()
    qi = rand_q(rng)
    x = net.input(rand_act(rng, (1, 3, 5, 4), int(qi.zero_point[0])), qi)
    y = conv_net(rng, net, x, 3, 6)
    if view == "Flatten":
        f = net.node("Flatten", [y], y.quant, {"axis": 1})
    elif view == "Reshape":
        f = net.node("Reshape", [y, net.const(np.array([1, -1], np.int64))], y.quant)
    else:
        t = net.node("Transpose", [y], y.quant, {"perm": [0, 2, 3, 1]})
        f = net.node("Reshape", [t, net.const(np.array([1, -1], np.int64))], y.quant)
    net.output(gemm_net(rng, net, f, 10, per_channel=True))
    report = check(net, tmp_path)
    assert "copy" not in report["ops"], report["ops"]


# ---- elementwise --------------------------------------------------------------------------------

def binary_case(tmp_path, seed, op, shape_a=(1, 4, 5, 6), shape_b=(1, 4, 5, 6), act="NONE", const_b=False,
                const_a=False, after_conv=False):
    rng = np.random.default_rng(seed)
    net = Net()
    q1, q2 = rand_q(rng), rand_q(rng)
    a_arr, b_arr = rand_act(rng, shape_a, int(q1.zero_point[0])), rand_act(rng, shape_b, int(q2.zero_point[0]))
    a = net.const(a_arr, q1) if const_a else net.input(a_arr, q1)
    b = net.const(b_arr, q2) if const_b else net.input(b_arr, q2)
    if after_conv:   # an NHWC operand
        a = conv_net(rng, net, a, shape_a[1], shape_a[1])
        q1 = a.quant
    s1, s2 = float(q1.scale[0]), float(q2.scale[0])
    so = s1 * s2 * rng.uniform(10, 60) if op == "Mul" else max(s1, s2) * rng.uniform(1.0, 2.5)
    y = net.node(op, [a, b], pq(so, int(rng.integers(-100, 100))), {**clamp(act)})
    net.output(y)
    check(net, tmp_path)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["Add", "Sub", "Mul"])
@pytest.mark.parametrize("cfg", [
    dict(), dict(act="RELU"), dict(shape_b=(1, 4, 1, 1)), dict(shape_b=(1, 1, 5, 6)), dict(shape_b=(6,)),
    dict(shape_b=(1, 4, 1, 1), const_b=True), dict(shape_b=(1,), const_b=True, act="RELU6"),
    dict(shape_a=(1, 4, 1, 6), shape_b=(1, 1, 5, 1)), dict(shape_a=(3, 7), shape_b=(7,)),
    dict(after_conv=True), dict(after_conv=True, shape_b=(1, 4, 1, 1)), dict(const_a=True, after_conv=False),
], ids=ids)
def test_binary(tmp_path, seed, op, cfg):
    binary_case(tmp_path, seed, op, **cfg)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha_shape", [(4, 1, 1), (1,)])
def test_prelu(tmp_path, seed, alpha_shape):
    rng = np.random.default_rng(seed)
    net = Net()
    qi, qa = rand_q(rng), pq(rand_scale(rng, -3, -2), int(rng.integers(-20, 20)))
    x = net.input(rand_act(rng, (1, 4, 5, 6), int(qi.zero_point[0])), qi)
    alpha = net.const(rng.integers(-128, 128, size=alpha_shape).astype(np.int8), qa)
    net.output(net.node("PRelu", [x, alpha], pq(float(qi.scale[0]) * 1.3, int(rng.integers(-50, 50)))))
    check(net, tmp_path)


def _unary_net(rng, op, out_q, attrs=None, extra=(), in_q=None, shape=(1, 3, 4, 5)):
    net = Net()
    qi = in_q or rand_q(rng)
    x = net.input(rand_act(rng, shape, int(qi.zero_point[0]), 70), qi)
    net.output(net.node(op, [x, *[net.const(e) for e in extra]], out_q(qi), attrs))
    return net


UNARY = {
    "Sigmoid": dict(out_q=lambda q: pq(1 / 256, -128)),
    "Tanh": dict(out_q=lambda q: pq(1 / 128, 0)),
    "Relu": dict(out_q=lambda q: pq(float(q.scale[0]) * 0.7, -128)),
    "Clip6": dict(op="Clip", out_q=lambda q: q, extra=(np.float32(0), np.float32(6))),
    "Clip0": dict(op="Clip", out_q=lambda q: pq(float(q.scale[0]), -128), extra=(np.float32(0),)),
    "LeakyRelu": dict(out_q=lambda q: pq(float(q.scale[0]) * 0.9, 10), attrs={"alpha": 0.1}),
    "HardSwish": dict(out_q=lambda q: pq(float(q.scale[0]) * 0.8, -20)),
    "Rsqrt": dict(out_q=lambda q: pq(0.05, -128), in_q=pq(0.02, -128)),
    "Requantize": dict(out_q=lambda q: pq(float(q.scale[0]) * 1.7, 5)),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_ops_as_tables(tmp_path, seed, name):
    cfg = dict(UNARY[name])
    op = cfg.pop("op", name)
    if name == "Rsqrt":   # no negative inputs
        net = Net()
        x = net.input(np.random.default_rng(seed).integers(-128, 128, (1, 2, 16, 8)).astype(np.int8), cfg["in_q"])
        net.output(net.node("Rsqrt", [x], cfg["out_q"](x.quant)))
    else:
        net = _unary_net(np.random.default_rng(seed), op, **cfg)
    report = check(net, tmp_path)
    assert report["ops"] == {"lut_s8": 1}


def test_requantize_through_int16(tmp_path):
    """int8 -> int16 (table to int16), int16 -> int8 (requantize kernel)."""
    rng = np.random.default_rng(3)
    net = Net()
    x = net.input(rand_act(rng, (2, 50), -10, 70), pq(0.05, -10))
    w = net.node("Requantize", [x], pq(0.05 / 128, 0, np.int16))
    net.output(net.node("Requantize", [w], pq(0.07, 3)))
    report = check(net, tmp_path)
    assert set(report["ops"]) == {"lut_s8_s16", "requantize_s16_s8"}


# ---- pooling, mean, softmax -------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("cfg", [
    dict(), dict(k=2, stride=2, pads=(0, 0, 0, 0)), dict(k=3, stride=2, pads=(1, 0, 1, 2)),
    dict(k=5, stride=3, pads=(2, 2, 2, 2), act="RELU"), dict(ceil_mode=1, k=2, stride=2, pads=(0, 0, 0, 0)),
    dict(act="RELU6"), dict(hw=(1, 7), k=1),
], ids=ids)
def test_pool(tmp_path, seed, op, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    q = rand_q(rng)
    hw, k = cfg.pop("hw", (9, 10)), cfg.pop("k", 3)
    x = net.input(rand_act(rng, (2, 4, *hw), int(q.zero_point[0])), q)
    attrs = {"kernel_shape": [k, k] if hw[0] > 1 else [1, k], "strides": [cfg.pop("stride", 1)] * 2,
             "pads": list(cfg.pop("pads", (1, 1, 1, 1))), **clamp(cfg.pop("act", "NONE")), **cfg}
    net.output(net.node(op, [x], q, attrs))
    check(net, tmp_path)


def test_max_pool_dilation_and_global_average(tmp_path):
    rng = np.random.default_rng(5)
    net = Net()
    q = rand_q(rng)
    x = net.input(rand_act(rng, (1, 3, 9, 8), int(q.zero_point[0])), q)
    m = net.node("MaxPool", [x], q, {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 1, 2, 1]})
    net.output(net.node("GlobalAveragePool", [m], q, clamp("RELU")))
    check(net, tmp_path)


@pytest.mark.parametrize("cfg", [dict(axes=[2, 3], keepdims=1), dict(axes=[2, 3], keepdims=0),
                                 dict(axes=[1], keepdims=0), dict(axes=[-1], keepdims=1, shape=(3, 11)),
                                 dict(axes=[1, 3], keepdims=1), dict(axes=None, keepdims=0)], ids=ids)
def test_reduce_mean(tmp_path, cfg):
    rng = np.random.default_rng(11)
    net = Net()
    q = rand_q(rng)
    shape = cfg.pop("shape", (2, 4, 5, 6))
    x = net.input(rand_act(rng, shape, int(q.zero_point[0])), q)
    if len(shape) == 4:
        x = conv_net(rng, net, x, 4, 4)   # NHWC data
    axes = cfg.pop("axes")
    ins = [x] + ([net.const(np.array(axes, np.int64))] if axes is not None else [])
    net.output(net.node("ReduceMean", ins, pq(float(x.quant.scale[0]) * 0.8, 7), cfg))
    check(net, tmp_path)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(shape=(2, 12)), dict(shape=(1, 6, 3, 4), axis=1, conv=True),
                                 dict(shape=(1, 6, 3, 4), axis=-1, conv=True), dict(shape=(2, 3, 4), axis=1, opset=11),
                                 dict(shape=(3, 10), out16=True), dict(shape=(1, 700), wide=True)], ids=ids)
def test_softmax(tmp_path, seed, cfg):
    rng = np.random.default_rng(seed)
    net = Net()
    q = pq(rand_scale(rng, -1.5, -0.5), int(rng.integers(-50, 50)))
    x = net.input(rand_act(rng, cfg["shape"], int(q.zero_point[0]), 60), q)
    if cfg.get("conv"):
        x = conv_net(rng, net, x, 6, 6)
    attrs = {"axis": cfg.get("axis", -1)}
    if cfg.get("wide"):   # the int16 path: Requantize to int16, SOFTMAX int16, Requantize back
        x16 = net.node("Requantize", [x], pq(float(x.quant.scale[0]) / 128, 0, np.int16))
        y16 = net.node("Softmax", [x16], pq(1 / 32768, 0, np.int16), attrs)
        y = net.node("Requantize", [y16], pq(1 / 256, -128))
    elif cfg.get("out16"):
        y16 = net.node("Softmax", [x], pq(1 / 65536, -32768, np.int16), attrs)
        y = net.node("Requantize", [y16], pq(1 / 256, -128))
    else:
        y = net.node("Softmax", [x], pq(1 / 256, -128), attrs, opset=cfg.get("opset"))
    net.output(y)
    check(net, tmp_path)


# ---- data movement ------------------------------------------------------------------------------

def _conv_input(rng, net, shape=(1, 4, 5, 6)):
    q = rand_q(rng)
    x = net.input(rand_act(rng, shape, int(q.zero_point[0])), q)
    return conv_net(rng, net, x, shape[1], shape[1]) if len(shape) == 4 else x


@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (0, 3, 1, 2), (1, 0, 2, 3)])
@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_transpose_then_conv_and_output(tmp_path, c_io, perm):
    rng = np.random.default_rng(2)
    net = Net()
    y = _conv_input(rng, net)
    t = net.node("Transpose", [y], y.quant, {"perm": list(perm)})
    t2 = net.node("Transpose", [t], y.quant, {"perm": [int(i) for i in np.argsort(perm)]})
    net.output(t, conv_net(rng, net, t2, 4, 3))
    check(net, tmp_path, c_io=c_io)


@pytest.mark.parametrize("axis", [1, 2, -1])
@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_concat(tmp_path, c_io, axis):
    rng = np.random.default_rng(4)
    net = Net()
    a = _conv_input(rng, net)
    b = net.node("Relu", [a], a.quant)
    q = rand_q(rng)
    shape = list(a.shape)
    shape[axis] = 3
    c = net.input(rand_act(rng, tuple(shape), int(q.zero_point[0])), a.quant)
    net.output(net.node("Concat", [a, b, c], a.quant, {"axis": axis}))
    check(net, tmp_path, c_io=c_io)


@pytest.mark.parametrize("pads", [(0, 0, 1, 2, 0, 0, 2, 1), (0, 1, -1, 0, 0, 2, 0, -2), (0, 0, 0, 0, 0, 0, 0, 0)])
def test_pad(tmp_path, pads):
    rng = np.random.default_rng(6)
    net = Net()
    y = _conv_input(rng, net)
    p = net.node("Pad", [y, net.const(np.array(pads, np.int64))], y.quant)
    net.output(conv_net(rng, net, p, p.shape[1], 5, pads=(0, 0, 0, 0)), p)
    check(net, tmp_path)


@pytest.mark.parametrize("cfg", [dict(starts=[1], ends=[3], axes=[1]), dict(starts=[0, 1], ends=[1, 5], axes=[0, 3]),
                                 dict(starts=[-1, 4], ends=[-100, 0], axes=[2, 3], steps=[-2, -1]),
                                 dict(starts=[0], ends=[2], axes=[0], shape=(4, 9))], ids=ids)
def test_slice(tmp_path, cfg):
    rng = np.random.default_rng(8)
    net = Net()
    y = _conv_input(rng, net, cfg.pop("shape", (1, 4, 5, 6)))
    ins = [y] + [net.const(np.array(cfg[k], np.int64)) for k in ("starts", "ends", "axes")]
    if "steps" in cfg:
        ins.append(net.const(np.array(cfg["steps"], np.int64)))
    net.output(net.node("Slice", ins, y.quant))
    check(net, tmp_path)


@pytest.mark.parametrize("cfg", [dict(axis=1, split=[1, 3]), dict(axis=3, split=[2, 2, 2]), dict(axis=0, split=[1, 2],
                                 shape=(3, 8))], ids=ids)
@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_split(tmp_path, c_io, cfg):
    rng = np.random.default_rng(9)
    net = Net()
    y = _conv_input(rng, net, cfg.get("shape", (1, 4, 5, 6)))
    parts = net.node("Split", [y, net.const(np.array(cfg["split"], np.int64))], y.quant, {"axis": cfg["axis"]},
                     n_out=len(cfg["split"]))
    net.output(*parts)
    check(net, tmp_path, c_io=c_io)


@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_reshape_squeeze_unsqueeze_identity(tmp_path, c_io):
    rng = np.random.default_rng(10)
    net = Net()
    y = _conv_input(rng, net, (1, 4, 1, 6))
    s = net.node("Squeeze", [y, net.const(np.array([2], np.int64))], y.quant)
    u = net.node("Unsqueeze", [s, net.const(np.array([0], np.int64))], y.quant)
    r = net.node("Reshape", [u, net.const(np.array([4, 6], np.int64))], y.quant)
    net.output(net.node("Identity", [r], y.quant), s)
    check(net, tmp_path, c_io=c_io)


@pytest.mark.parametrize("c_io", ["caller", "scratch"])
def test_graph_input_straight_to_output(tmp_path, c_io):
    net = Net()
    q = pq(0.1, 3)
    x = net.input(rand_act(np.random.default_rng(0), (1, 2, 3, 4), 3), q)
    net.output(net.node("Identity", [x], q))
    check(net, tmp_path, c_io=c_io)


@pytest.mark.parametrize("cfg", [dict(mode="nearest", coordinate_transformation_mode="asymmetric",
                                      nearest_mode="floor"),
                                 dict(mode="linear", coordinate_transformation_mode="half_pixel"),
                                 dict(mode="linear", coordinate_transformation_mode="align_corners")], ids=ids)
def test_resize(tmp_path, cfg):
    rng = np.random.default_rng(12)
    net = Net()
    y = _conv_input(rng, net, (1, 3, 4, 5))
    ins = [y, None, None, net.const(np.array([1, 3, 8, 7], np.int64))]
    net.output(net.node("Resize", ins, y.quant, cfg))
    check(net, tmp_path)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("cfg", [dict(), dict(stride=2), dict(stride=2, pads=(1, 0, 0, 1), output_padding=(1, 1)),
                                 dict(k=2, stride=2, pads=(0, 0, 0, 0), act="RELU"), dict(bias=False, k=4, stride=3)],
                         ids=ids)
def test_conv_transpose(tmp_path, seed, cfg):
    from qcompiler.ir import QuantParams
    rng = np.random.default_rng(seed)
    net = Net()
    qi = rand_q(rng)
    cin, cout, k, stride = 5, 4, cfg.get("k", 3), cfg.get("stride", 1)
    x = net.input(rand_act(rng, (1, cin, 4, 5), int(qi.zero_point[0])), qi)
    w = rng.integers(-127, 128, size=(cin, cout, k, k)).astype(np.int8)
    ws = (10 ** rng.uniform(-3, -1.5, size=cout)).astype(np.float32)
    qw = QuantParams(ws, np.zeros(cout, np.int32), axis=1)
    acc_std = 50 * 73 * np.sqrt(cin * k * k / stride ** 2) * float(qi.scale[0]) * float(np.median(ws))
    qo = pq(acc_std * rng.uniform(0.02, 0.06), int(rng.integers(-100, 100)))
    b = None
    if cfg.get("bias", True):
        bs = (qi.scale[0].astype(np.float64) * ws).astype(np.float32)
        b = net.const(np.round(rng.normal(0, 0.5 * acc_std, cout) / bs).astype(np.int32), pq(1.0))
    attrs = {"strides": [stride, stride], "pads": list(cfg.get("pads", (1, 1, 1, 1))),
             "output_padding": list(cfg.get("output_padding", (0, 0))), **clamp(cfg.get("act", "NONE"))}
    net.output(net.node("ConvTranspose", [x, net.const(w, qw), b], qo, attrs))
    check(net, tmp_path)


@pytest.mark.parametrize("cfg", [dict(pads=(0, 0, 1, 2, 0, 0, 2, 1)),
                                 dict(pads=(0, 0, 0, 3, 0, 0, 0, 0), depthwise=True),
                                 dict(pads=(0, 0, 2, 0, 0, 0, 2, 1), stride=2),
                                 dict(pads=(0, 0, 2, 0, 0, 1), one_d=True)], ids=ids)
def test_pad_with_the_zero_point_becomes_conv_padding(tmp_path, cfg):
    rng = np.random.default_rng(13)
    net = Net()
    q = rand_q(rng)
    shape = (1, 4, 7) if cfg.get("one_d") else (1, 4, 6, 5)
    x = net.input(rand_act(rng, shape, int(q.zero_point[0])), q)
    p = net.node("Pad", [x, net.const(np.array(cfg["pads"], np.int64))], q)
    kw = dict(pads=(0, 0) if cfg.get("one_d") else (1, 0, 0, 1), stride=cfg.get("stride", 1),
              one_d=cfg.get("one_d", False))
    if cfg.get("depthwise"):
        kw["group"] = 4
    net.output(conv_net(rng, net, p, 4, 4, **kw))
    report = check(net, tmp_path)
    assert set(report["ops"]) <= {"conv2d", "depthwise_conv2d"}, report["ops"]
