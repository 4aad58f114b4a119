"""TFLite lowering, op by op: small ONNX graphs compiled end to end, run in TFLM.

Each case builds a graph with onnx.helper, compiles it with random calibration
data (`compile_model`), requires TFLite Micro to equal the integer reference bit
for bit (`verify_outdir`) and checks the emitted structure: the expected
opcodes and the number of TRANSPOSE ops (0 unless the graph itself transposes
data in a way no layout choice can avoid).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompiler.errors import QccError, BackendError, GraphError, UnsupportedOpError
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir

pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
SAMPLES = 6


class Net:
    """A tiny ONNX graph builder: inputs, initializers, nodes; random weights per seed."""

    def __init__(self, opset: int = 13, seed: int = 0, **inputs):
        self.opset, self.inputs = opset, inputs
        self.nodes, self.inits = [], []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def init(self, array, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape, scale: float = 0.3) -> str:
        return self.init(self.rng.normal(0, scale, shape).astype(np.float32), "w")

    def op(self, op_type: str, *inputs: str, outputs: int = 1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=outs[0], **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, bias: bool = True, **attrs):
        ins = [x, self.weight(cout, cin // group, *([k] * attrs.pop("rank", 2)))]
        if bias:
            ins.append(self.init(self.rng.normal(0, 0.2, cout).astype(np.float32), "b"))
        return self.op("Conv", *ins, group=group, **attrs)

    def save(self, path, *outputs: str):
        vi = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s)) for k, s in self.inputs.items()]
        out = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        g = helper.make_graph(self.nodes, "t", vi, out, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)])
        m.ir_version = 8
        done = onnx.shape_inference.infer_shapes(m).graph
        ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(done.value_info) + list(done.output)}
        for o in m.graph.output:  # rank only: qcc computes the sizes itself
            o.CopyFrom(helper.make_tensor_value_info(o.name, TensorProto.FLOAT, [None] * ranks[o.name]))
        onnx.save(m, str(path))
        return path


def calib_file(tmp_path, net: Net, samples: int = SAMPLES):
    rng = np.random.default_rng(7)
    data = {k: rng.normal(0, 1, (samples * s[0], *s[1:])).astype(np.float32) for k, s in net.inputs.items()}
    if len(data) == 1:
        path = tmp_path / "calib.npy"
        np.save(path, next(iter(data.values())))
    else:
        path = tmp_path / "calib.npz"
        np.savez(path, **data)
    return path


def compile_verify(tmp_path, net: Net, outputs, expect=(), transposes: int = 0, **options):
    """Compile, verify in TFLM (bit-exact), check opcodes; returns the report."""
    model = net.save(tmp_path / "m.onnx", *([outputs] if isinstance(outputs, str) else outputs))
    calib = calib_file(tmp_path, net)
    out = tmp_path / "out"
    compile_model(model, out, CompileOptions(target="tflite", calib=str(calib), **options))
    report = json.loads((out / "report.json").read_text())
    res = verify_outdir(out, calib, with_litert=False)
    assert res["samples"] == SAMPLES
    assert res["tflm"]["bit_exact"], (res, report["ops"])
    ops = report["ops"]
    missing = [op for op in expect if op not in ops]
    assert not missing, f"expected {missing} in {ops}"
    assert ops.get("TRANSPOSE", 0) == transposes, ops
    return report


# ---- convolutions ------------------------------------------------------------------------

CONV_CASES = {
    "same_relu": (dict(pads=[1, 1, 1, 1]), "relu", ["CONV_2D"], []),
    "stride2_even_pads": (dict(pads=[1, 1, 1, 1], strides=[2, 2]), None, ["PAD", "CONV_2D"], []),
    "stride2_same_upper": (dict(pads=[0, 0, 1, 1], strides=[2, 2]), None, ["CONV_2D"], ["PAD"]),
    "dilated": (dict(pads=[2, 2, 2, 2], dilations=[2, 2]), None, ["CONV_2D"], ["PAD"]),
    "asymmetric": (dict(pads=[0, 1, 2, 0]), "clip6", ["PAD", "CONV_2D"], []),
    "valid_5x5": (dict(k=5, strides=[2, 1]), None, ["CONV_2D"], ["PAD"]),
    "no_bias_1x1": (dict(k=1, bias=False), None, ["CONV_2D"], []),
    "depthwise": (dict(group=6, cout=6, pads=[1, 1, 1, 1]), "relu", ["DEPTHWISE_CONV_2D"], []),
    "depthwise_mult2": (dict(group=6, cout=12, pads=[0, 0, 1, 1], strides=[2, 2]), None,
                        ["DEPTHWISE_CONV_2D"], ["PAD"]),
    "grouped": (dict(group=2, cout=4, pads=[1, 1, 1, 1]), None, ["CONV_2D"], ["DEPTHWISE_CONV_2D"]),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv(tmp_path, case):
    attrs, act, expect, absent = CONV_CASES[case]
    attrs = dict(attrs)
    k, cout = attrs.pop("k", 3), attrs.pop("cout", 5)
    net = Net(x=(1, 6, 10, 12))
    y = net.conv("x", 6, cout, k=k, **attrs)
    if act == "relu":
        y = net.op("Relu", y)
    elif act == "clip6":
        y = net.op("Clip", y, net.init(np.float32(0)), net.init(np.float32(6)))
    report = compile_verify(tmp_path, net, y, expect)
    assert not set(absent) & set(report["ops"]), report["ops"]
    assert set(report["ops"]) == set(expect), report["ops"]  # activations fused
    assert report["io_layout"] == {"x": "NHWC", y: "NHWC"}


def test_conv1d_is_nwc_without_transposes(tmp_path):
    net = Net(x=(1, 4, 20))
    y = net.conv("x", 4, 6, k=5, rank=1, pads=[2, 2], strides=[2])
    y = net.conv(y, 6, 6, k=3, rank=1, group=6, pads=[1, 1])
    report = compile_verify(tmp_path, net, y, ["CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE"])
    assert report["io_layout"] == {"x": "NWC", y: "NWC"}


@pytest.mark.parametrize("k,stride,pads,out_pad", [(3, 2, [1, 1, 1, 1], [1, 1]), (2, 2, [0, 0, 0, 0], [0, 0]),
                                                   (4, 2, [1, 1, 1, 1], [0, 0]), (3, 1, [1, 1, 1, 1], [0, 0]),
                                                   (3, 2, [0, 0, 1, 1], [0, 0])])
def test_conv_transpose(tmp_path, k, stride, pads, out_pad):
    net = Net(x=(1, 4, 5, 6))
    ins = ["x", net.weight(4, 3, k, k), net.init(np.linspace(-0.3, 0.3, 3).astype(np.float32))]
    y = net.op("ConvTranspose", *ins, strides=[stride, stride], pads=pads, output_padding=out_pad)
    compile_verify(tmp_path, net, y, ["TRANSPOSE_CONV"])


# ---- fully connected and the rank-4 -> rank-2 boundary -----------------------------------

def test_flatten_into_gemm_permutes_weights_not_data(tmp_path):
    net = Net(x=(1, 3, 6, 6))
    y = net.conv("x", 3, 4, pads=[1, 1, 1, 1])
    y = net.op("Flatten", net.op("MaxPool", y, kernel_shape=[2, 2], strides=[2, 2]))
    y = net.op("Gemm", y, net.weight(10, 36), net.init(np.zeros(10, np.float32)), transB=1)
    report = compile_verify(tmp_path, net, y, ["CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"])
    assert report["io_layout"][y] == "same"


def test_reshape_to_rank2_for_other_consumers_transposes_once(tmp_path):
    """A CHW-ordered flatten that is a graph output needs the data in CHW order."""
    net = Net(x=(2, 3, 4, 5))
    y = net.conv("x", 3, 4, pads=[1, 1, 1, 1])
    compile_verify(tmp_path, net, net.op("Reshape", y, net.init(np.array([2, -1]))), ["RESHAPE"],
                   transposes=1)


def test_gemm_chain_per_tensor(tmp_path):
    net = Net(x=(3, 12))
    y = net.op("Gemm", "x", net.weight(8, 12), net.init(np.ones(8, np.float32)), transB=1)
    y = net.op("Gemm", net.op("Relu", y), net.weight(8, 5), transB=0)
    compile_verify(tmp_path, net, y, ["FULLY_CONNECTED"], per_channel_fc=False)


def test_gemm_chain_per_channel(tmp_path):
    net = Net(x=(3, 12))
    y = net.op("Gemm", "x", net.weight(8, 12), net.init(np.ones(8, np.float32)), transB=1)
    y = net.op("Gemm", net.op("Relu", y), net.weight(8, 5), transB=0)
    report = compile_verify(tmp_path, net, y, ["FULLY_CONNECTED"], per_channel_fc=True)
    assert len(report["calibration"]["fc_per_channel"]) == 2


# ---- elementwise --------------------------------------------------------------------------

@pytest.mark.parametrize("op,opcode", [("Add", "ADD"), ("Sub", "SUB"), ("Mul", "MUL")])
def test_binary_two_activations(tmp_path, op, opcode):
    net = Net(x=(1, 3, 6, 7))
    a = net.conv("x", 3, 4, pads=[1, 1, 1, 1])
    b = net.conv("x", 3, 4, k=1)
    compile_verify(tmp_path, net, net.op(op, a, b), [opcode])


@pytest.mark.parametrize("shape", [(4, 1, 1), (1, 1, 7), (1,), (1, 4, 6, 1)])
def test_binary_broadcast_constant(tmp_path, shape):
    net = Net(x=(1, 3, 6, 7))
    a = net.op("MaxPool", net.conv("x", 3, 4, pads=[1, 1, 1, 1]), kernel_shape=[1, 1])  # no folding
    c = net.init(np.random.default_rng(3).uniform(0.5, 2, shape).astype(np.float32))
    compile_verify(tmp_path, net, net.op("Mul", net.op("Add", a, c), c), ["ADD", "MUL"])


def test_binary_lower_rank_activation(tmp_path):
    """[N, C, H, W] + [W] (an activation): ONNX broadcasts from the right."""
    net = Net(x=(1, 3, 4, 5), v=(1, 5))
    y = net.op("Add", net.conv("x", 3, 2, pads=[1, 1, 1, 1]), net.op("Relu", "v"))
    compile_verify(tmp_path, net, y, ["ADD", "RESHAPE"])


def test_channel_scale_from_pooled_activation(tmp_path):
    """Squeeze-and-excitation: x * sigmoid(fc(gap(x))) reshaped back to [N, C, 1, 1]."""
    net = Net(x=(1, 4, 6, 6))
    x = net.conv("x", 4, 4, pads=[1, 1, 1, 1])
    s = net.op("Flatten", net.op("GlobalAveragePool", x))
    s = net.op("Sigmoid", net.op("Gemm", s, net.weight(4, 4), transB=1))
    s = net.op("Reshape", s, net.init(np.array([1, 4, 1, 1])))
    compile_verify(tmp_path, net, net.op("Mul", x, s), ["MUL", "LOGISTIC", "FULLY_CONNECTED"])


# ---- activations ----------------------------------------------------------------------------

UNARY = {
    "Sigmoid": ({}, "LOGISTIC"), "Tanh": ({}, "TANH"), "HardSwish": ({}, "HARD_SWISH"),
    "LeakyRelu": ({"alpha": 0.2}, "LEAKY_RELU"), "Relu": ({}, "RELU"),
}


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary_standalone(tmp_path, op):
    attrs, opcode = UNARY[op]
    net = Net(opset=14, x=(1, 3, 5, 6))
    y = net.op(op, net.op("MaxPool", "x", kernel_shape=[2, 2]), **attrs)
    compile_verify(tmp_path, net, y, [opcode])


def test_prelu(tmp_path):
    net = Net(x=(1, 3, 5, 6))
    slope = net.init(np.array([0.1, -0.3, 0.7], np.float32).reshape(3, 1, 1))
    compile_verify(tmp_path, net, net.op("PRelu", net.conv("x", 3, 3, k=1), slope), ["PRELU"])


@pytest.fixture
def clip_shares_params(monkeypatch):
    """A standalone Clip must keep its input's int8 parameters (RELU6, MINIMUM and MAXIMUM
    copy raw values). Until qcompiler/quant/quantize.py lists Clip in SAME_PARAMS, add it here."""
    from qcompiler.quant import quantize
    monkeypatch.setattr(quantize, "SAME_PARAMS", quantize.SAME_PARAMS | {"Clip"})


@pytest.mark.parametrize("lo,hi,expect", [(0.0, 6.0, ["RELU6"]), (-1.0, 1.0, ["MINIMUM", "MAXIMUM"]),
                                          (-0.4, 0.7, ["MINIMUM", "MAXIMUM"]), (0.0, 0.5, ["MINIMUM"]),
                                          (None, 0.3, ["MINIMUM"]), (-0.2, None, ["MAXIMUM"])])
def test_clip_standalone(tmp_path, clip_shares_params, lo, hi, expect):
    net = Net(x=(1, 3, 5, 6))
    bounds = [net.init(np.float32(v)) if v is not None else "" for v in (lo, hi)]
    y = net.op("Clip", net.op("MaxPool", "x", kernel_shape=[2, 2]), *bounds)
    report = compile_verify(tmp_path, net, y, expect)
    assert "RELU_N1_TO_1" not in report["ops"]


def test_clip_0_inf_is_relu(tmp_path):
    net = Net(x=(1, 3, 5, 6))
    y = net.op("Clip", net.op("MaxPool", "x", kernel_shape=[2, 2]), net.init(np.float32(0)))
    compile_verify(tmp_path, net, y, ["RELU"])


@pytest.mark.parametrize("opset,axis,shape,expect", [
    (13, 1, (2, 5, 3, 4), ["SOFTMAX"]), (13, -1, (2, 5, 3, 4), ["SOFTMAX"]),
    (11, None, (2, 7, 1, 1), ["SOFTMAX"]), (11, 1, (1, 3, 2, 2), ["SOFTMAX", "RESHAPE"]),
    (13, None, (3, 9), ["SOFTMAX"]), (11, 2, (1, 3, 4, 2), ["SOFTMAX", "RESHAPE"])])
def test_softmax(tmp_path, opset, axis, shape, expect):
    net = Net(opset=opset, x=shape)
    attrs = {} if axis is None else {"axis": axis}
    y = net.op("Softmax", net.op("Mul", "x", net.init(np.float32(3.0))), **attrs)
    # W innermost, or H and W without C: to that order and back to NHWC (the output)
    transposes = 2 if (opset, axis) in ((13, -1), (11, 2)) else 0
    compile_verify(tmp_path, net, y, expect, transposes=transposes)


# ---- pooling, reductions, resize -------------------------------------------------------------

POOLS = {
    "max_same": ("MaxPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), ["MAX_POOL_2D"], ["PADV2"]),
    "max_s2_even": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), ["PADV2"], []),
    "max_ceil": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), ["MAX_POOL_2D"], []),
    "max_valid": ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2]), ["MAX_POOL_2D"], ["PADV2"]),
    "avg_same": ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), ["AVERAGE_POOL_2D"],
                 ["STRIDED_SLICE"]),
    "avg_s2_pads1": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                     ["AVERAGE_POOL_2D", "STRIDED_SLICE"], []),
    "avg_end_pad": ("AveragePool", dict(kernel_shape=[5, 5], pads=[0, 0, 1, 1]),
                    ["AVERAGE_POOL_2D", "STRIDED_SLICE"], []),
    "avg_valid": ("AveragePool", dict(kernel_shape=[2, 3], strides=[2, 1]), ["AVERAGE_POOL_2D"],
                  ["STRIDED_SLICE"]),
    "avg_ceil": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
                 ["AVERAGE_POOL_2D"], []),
}


@pytest.mark.parametrize("case", sorted(POOLS))
def test_pool(tmp_path, case):
    op, attrs, expect, absent = POOLS[case]
    net = Net(x=(2, 3, 8, 10))
    report = compile_verify(tmp_path, net, net.op(op, "x", **attrs), expect)
    assert not set(absent) & set(report["ops"]), report["ops"]


def test_average_pool_count_include_pad_is_refused(tmp_path):
    net = Net(x=(1, 3, 8, 8))
    net.save(tmp_path / "m.onnx", net.op("AveragePool", "x", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                         count_include_pad=1))
    # refused by the lowering, or earlier by the integer reference if quantization runs it
    with pytest.raises((BackendError, GraphError), match="count_include_pad"):
        compile_model(tmp_path / "m.onnx", tmp_path / "out",
                      CompileOptions(calib=str(calib_file(tmp_path, net))))


def test_global_average_pool_then_flatten(tmp_path):
    net = Net(x=(2, 5, 7, 6))
    y = net.op("Flatten", net.op("GlobalAveragePool", net.conv("x", 5, 8, k=1)))
    report = compile_verify(tmp_path, net, y, ["AVERAGE_POOL_2D", "RESHAPE"])
    assert report["io_layout"][y] == "same"


@pytest.mark.parametrize("axes,keep", [([2, 3], 1), ([2, 3], 0), ([1], 1), ([1], 0), ([3], 0),
                                       ([1, 2, 3], 1)])
def test_reduce_mean(tmp_path, axes, keep):
    net = Net(x=(1, 5, 6, 7))
    y = net.op("ReduceMean", net.conv("x", 5, 5, k=1), axes=axes, keepdims=keep)
    transposes = 1 if (axes, keep) == ([3], 0) else 0  # [N, C, H] out: back to ONNX order
    compile_verify(tmp_path, net, y, ["MEAN"], transposes=transposes)


@pytest.mark.parametrize("mode,ctm,nearest,scale", [
    ("nearest", "asymmetric", "floor", 2), ("nearest", "half_pixel", "round_prefer_floor", 2),
    ("nearest", "align_corners", "round_prefer_ceil", 1.5), ("linear", "half_pixel", None, 2),
    ("linear", "align_corners", None, 1.75), ("linear", "asymmetric", None, 2)])
def test_resize(tmp_path, mode, ctm, nearest, scale):
    net = Net(x=(1, 3, 4, 6))
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
    if nearest:
        attrs["nearest_mode"] = nearest
    sizes = net.init(np.array([1, 3, int(4 * scale), int(6 * scale)], np.int64))
    y = net.op("Resize", net.conv("x", 3, 3, k=1), "", "", sizes, **attrs)
    compile_verify(tmp_path, net, y, ["RESIZE_NEAREST_NEIGHBOR" if mode == "nearest" else "RESIZE_BILINEAR"])


# ---- data movement --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [1, 2, 3, -3])
def test_concat(tmp_path, axis):
    net = Net(x=(1, 3, 6, 6))
    a, b = net.conv("x", 3, 4, pads=[1, 1, 1, 1]), net.conv("x", 3, 4, k=1)
    compile_verify(tmp_path, net, net.op("Concat", a, b, axis=axis), ["CONCATENATION"])


def test_concat_rank2(tmp_path):
    net = Net(x=(2, 6))
    a = net.op("Gemm", "x", net.weight(3, 6), transB=1)
    compile_verify(tmp_path, net, net.op("Concat", a, net.op("Relu", "x"), axis=1), ["CONCATENATION"])


@pytest.mark.parametrize("pads,value,expect", [
    ([0, 0, 1, 2, 0, 0, 2, 1], None, "PAD"), ([0, 1, 0, 0, 0, 2, 1, 1], None, "PAD"),
    ([0, 0, 1, 1, 0, 0, 1, 1], 0.25, "PADV2"), ([0, 0, -1, 2, 0, 0, 1, -2], None, "STRIDED_SLICE")])
def test_pad(tmp_path, pads, value, expect):
    net = Net(x=(1, 3, 5, 6))
    ins = [net.conv("x", 3, 3, k=1), net.init(np.array(pads, np.int64))]
    if value is not None:
        ins.append(net.init(np.float32(value)))
    compile_verify(tmp_path, net, net.op("Pad", *ins), [expect])


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1, 0], [3, 4], [1, 3], [1, 2]), ([0, 5], [2, -100], [1, 2], [1, -2]),
    ([-4, 1, 2], [100, 5, -1], [1, 2, 3], [2, 1, 3]), ([3], [0], [3], [-1]), ([6], [-100], [3], [-3])])
def test_slice(tmp_path, starts, ends, axes, steps):
    net = Net(x=(1, 4, 7, 8))
    ins = [net.conv("x", 4, 4, k=1)] + [net.init(np.array(v, np.int64)) for v in (starts, ends, axes, steps)]
    compile_verify(tmp_path, net, net.op("Slice", *ins), ["STRIDED_SLICE"])


@pytest.mark.parametrize("axis,split,expect", [(1, None, "SPLIT"), (1, [2, 4], "SPLIT_V"),
                                               (2, [1, 3, 2], "SPLIT_V"), (3, None, "SPLIT")])
def test_split(tmp_path, axis, split, expect):
    net = Net(x=(1, 6, 6, 4))
    ins = [net.conv("x", 6, 6, k=1)] + ([net.init(np.array(split, np.int64))] if split else [])
    n = len(split) if split else 2
    outs = net.op("Split", *ins, outputs=n, axis=axis)
    ys = [net.conv(o, 6 if axis != 1 else o_c, 3, k=1)
          for o, o_c in zip(outs, split or [3, 3])]
    compile_verify(tmp_path, net, ys, [expect, "CONV_2D"])


def test_split_after_merged_convs(tmp_path):
    """horizontal_merge turns sibling convs into one conv + Split(axis=1) with sizes."""
    net = Net(x=(1, 4, 6, 6))
    a, b = net.conv("x", 4, 3, k=1), net.conv("x", 4, 5, k=1)
    report = compile_verify(tmp_path, net, [net.op("Relu", net.op("MaxPool", a, kernel_shape=[2, 2])),
                                            net.op("MaxPool", b, kernel_shape=[2, 2])], ["CONV_2D"])
    assert report["ops"]["CONV_2D"] in (1, 2)


def test_channel_shuffle_one_transpose(tmp_path):
    """Reshape [N,C,H,W] -> [N,g,C/g,H,W], Transpose(0,2,1,3,4), Reshape back (ShuffleNet):
    one TRANSPOSE, which the data permutation itself requires."""
    net = Net(x=(1, 6, 4, 5))
    y = net.conv("x", 6, 6, k=1)
    y = net.op("Reshape", y, net.init(np.array([1, 2, 3, 4, 5])))
    y = net.op("Transpose", y, perm=[0, 2, 1, 3, 4])
    y = net.op("Reshape", y, net.init(np.array([1, 6, 4, 5])))
    compile_verify(tmp_path, net, net.conv(y, 6, 4, k=3, pads=[1, 1, 1, 1]), ["RESHAPE", "CONV_2D"],
                   transposes=1)


def test_transpose_at_io_keeps_onnx_order(tmp_path):
    """An NHWC ONNX model (Transpose in, Transpose out) runs with no TRANSPOSE at all."""
    net = Net(x=(1, 6, 7, 3))
    y = net.op("Transpose", "x", perm=[0, 3, 1, 2])
    y = net.op("Transpose", net.conv(y, 3, 4, pads=[1, 1, 1, 1]), perm=[0, 2, 3, 1])
    report = compile_verify(tmp_path, net, y, ["CONV_2D"])
    assert report["io_layout"] == {"x": "same", y: "same"}


def test_transpose_spatial_swap(tmp_path):
    net = Net(x=(1, 3, 5, 7))
    y = net.op("Transpose", net.conv("x", 3, 4, k=1), perm=[0, 1, 3, 2])
    compile_verify(tmp_path, net, net.conv(y, 4, 2, k=3), ["CONV_2D"], transposes=1)


@pytest.mark.parametrize("op,args", [("Squeeze", [[2, 3]]), ("Unsqueeze", None), ("Identity", None)])
def test_squeeze_unsqueeze_identity(tmp_path, op, args):
    net = Net(x=(2, 4, 5, 5))
    pooled = net.op("GlobalAveragePool", net.conv("x", 4, 6, k=1))
    if op == "Squeeze":
        y = net.op("Squeeze", pooled, net.init(np.array(args[0], np.int64)))
        y = net.op("Gemm", y, net.weight(3, 6), transB=1)
    elif op == "Unsqueeze":
        flat = net.op("Flatten", pooled)
        y = net.op("Unsqueeze", flat, net.init(np.array([2, 3], np.int64)))
        y = net.conv(y, 6, 3, k=1)
    else:
        y = net.conv(net.op("Identity", pooled), 6, 3, k=1)
    compile_verify(tmp_path, net, y, [])


# ---- graph I/O modes and errors ---------------------------------------------------------------

def _small_cnn():
    net = Net(x=(1, 3, 8, 8))
    y = net.op("MaxPool", net.conv("x", 3, 6, pads=[1, 1, 1, 1]), kernel_shape=[2, 2], strides=[2, 2])
    y = net.op("Gemm", net.op("Flatten", y), net.weight(5, 96), transB=1)
    return net, net.op("Softmax", y)


def test_io_float(tmp_path):
    net, y = _small_cnn()
    report = compile_verify(tmp_path, net, y, ["QUANTIZE", "DEQUANTIZE"], target_options={"io": "float"})
    assert report["io"] == {"mode": "float", "input_dtype": "int8"}
    assert report["inputs"][0]["dtype"] == "float32" and report["outputs"][0]["dtype"] == "float32"


def test_io_uint8_input(tmp_path):
    net, y = _small_cnn()
    report = compile_verify(tmp_path, net, y, ["QUANTIZE"], target_options={"input_dtype": "uint8"})
    inp = report["inputs"][0]
    assert inp["dtype"] == "uint8" and report["outputs"][0]["dtype"] == "int8"
    q = inp["zero_point"] - 128  # same scale, zero point shifted by 128
    assert -128 <= q <= 127


def test_float_io_quantizes_ties_like_tflm():
    """The verify path quantizes float inputs as TFLM's QUANTIZE does: x / scale in float32,
    halves away from zero (QuantParams.quantize rounds to even)."""
    from qcompiler.backends.tflite import tflm_quantize
    from qcompiler.ir import QuantParams
    q = QuantParams(np.float32(0.5), 3)
    x = np.array([0.25, -0.25, 0.75, -0.75, 100.0, -100.0], np.float32)
    assert tflm_quantize(x, q).tolist() == [4, 2, 5, 1, 127, -128]


def test_uint8_with_float_io_is_refused(tmp_path):
    net, y = _small_cnn()
    net.save(tmp_path / "m.onnx", y)
    with pytest.raises(QccError, match="uint8"):
        compile_model(tmp_path / "m.onnx", tmp_path / "out",
                      CompileOptions(calib=str(calib_file(tmp_path, net)),
                                     target_options={"io": "float", "input_dtype": "uint8"}))
    assert not (tmp_path / "out").exists()


def test_global_max_pool_lowering_in_tflm():
    """GlobalMaxPool as one MAX_POOL_2D window, run in TFLM against the per-channel maximum."""
    from qcompiler.backends.tflite.flatbuffer import write_model
    from qcompiler.backends.tflite.lower import lower
    from qcompiler.ir import Graph, QuantParams
    from qcompiler.backends.tflite.runtime import TflmRunner
    g = Graph("g")
    x = g.add_input("x", np.int8, (2, 3, 5, 7))
    y, = g.add_node("GlobalMaxPool", [x]).outputs
    y.dtype, y.shape = np.dtype(np.int8), (2, 3, 1, 1)
    x.quant = y.quant = QuantParams(np.float32(0.1), 4)
    g.outputs.append(y)
    model = lower(g).model
    assert [op.opcode for op in model.operators] == ["MAX_POOL_2D"]
    data = np.random.default_rng(0).integers(-128, 128, (2, 3, 5, 7)).astype(np.int8)
    got, = TflmRunner(write_model(model))([data.transpose(0, 2, 3, 1).copy()])
    assert np.array_equal(got.reshape(2, 3), data.max(axis=(2, 3)))


def test_unsupported_ops_listed_once():
    """One error naming every op without a TFLite lowering and its nodes."""
    from qcompiler.backends.tflite.lower import check_supported
    from qcompiler.ir import Graph
    g = Graph("g")
    x = g.add_input("x", np.int8, (1, 4))
    a, = g.add_node("LRN", [x], name="lrn_a").outputs
    b, = g.add_node("LRN", [a], name="lrn_b").outputs
    c, = g.add_node("LpPool", [b], name="gmp").outputs
    g.outputs.append(c)
    with pytest.raises(UnsupportedOpError) as e:
        check_supported(g)
    msg = str(e.value)
    assert "2 unsupported op(s)" in msg and "lrn_a, lrn_b" in msg and "gmp" in msg and "decompose_lrn" in msg


# ---- layout algebra ------------------------------------------------------------------------------

def test_reshape_layout_derivation_is_exact():
    """Whenever reshape_perm finds an output layout, a plain RESHAPE of the stored input
    bytes equals the ONNX reshape stored in that layout (random shapes and layouts)."""
    from qcompiler.backends.tflite.lower_core import permute, reshape_perm
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(3000):
        in_shape = tuple(int(d) for d in rng.choice([1, 1, 2, 3, 4], size=rng.integers(1, 6)))
        factors = [f for d in in_shape for f in ([d] if d < 4 or rng.random() < 0.5 else [2, d // 2])]
        groups, out_shape = list(factors), []
        while groups:  # merge random neighbours, sprinkle unit axes
            k = int(rng.integers(1, min(3, len(groups)) + 1))
            out_shape.append(int(np.prod(groups[:k])))
            groups = groups[k:]
            if rng.random() < 0.2:
                out_shape.append(1)
        x = np.arange(int(np.prod(in_shape))).reshape(in_shape)
        px = tuple(int(a) for a in rng.permutation(len(in_shape)))
        py = reshape_perm(in_shape, px, tuple(out_shape))
        if py is None:
            continue
        found += 1
        stored = x.transpose(px).reshape(permute(out_shape, py))
        assert np.array_equal(stored, x.reshape(out_shape).transpose(py)), (in_shape, px, out_shape, py)
    assert found > 500
