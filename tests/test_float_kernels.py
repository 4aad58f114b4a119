"""Float reference kernels vs onnxruntime: one single-node ONNX model per case."""
from __future__ import annotations

import os
import time
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ort = pytest.importorskip("onnxruntime")

from qcompiler.interp import FLOAT_KERNELS  # noqa: E402
from qcompiler.frontend.onnx_attrs import attrs_from_onnx  # noqa: E402
RNG = np.random.default_rng(1234)
F32 = np.float32


def R(*shape, lo=None, hi=None):
    if lo is not None:
        return RNG.uniform(lo, hi, shape).astype(F32)
    return RNG.standard_normal(shape).astype(F32)


def I64(*vals):
    return np.array(vals, np.int64)


def FL(*vals):
    return np.array(vals, F32)


class Case:
    """One single-node model: `inputs[:feed]` are graph inputs, the rest initializers."""

    def __init__(self, op, inputs, *, opset=13, n_out=1, feed=1, name=None, **attrs):
        self.op, self.inputs, self.opset, self.n_out, self.feed, self.attrs = op, inputs, opset, n_out, feed, attrs
        self.name = name or op

    def param(self):
        return pytest.param(self, id=f"{self.name}-op{self.opset}")


def _model(case: Case):
    in_names, graph_inputs, inits = [], [], []
    for i, arr in enumerate(case.inputs):
        if arr is None:
            in_names.append("")
            continue
        name = f"in{i}"
        in_names.append(name)
        if i < case.feed:
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(arr.dtype), arr.shape))
        else:
            inits.append(numpy_helper.from_array(arr, name))
    out_names = [f"out{j}" for j in range(case.n_out)]
    node = helper.make_node(case.op, in_names, out_names, name="n0", **case.attrs)
    outputs = [onnx.ValueInfoProto(name=n) for n in out_names]
    graph = helper.make_graph([node], "g", graph_inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)], ir_version=8)
    model = onnx.shape_inference.infer_shapes(model)
    return model, node


def run_ort(case: Case):
    model, _ = _model(case)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {f"in{i}": a for i, a in enumerate(case.inputs[:case.feed]) if a is not None}
    return sess.run(None, feeds)


def run_kernel(case: Case):
    _, node_proto = _model(case)
    node = types.SimpleNamespace(op=case.op, name="n0", attrs=attrs_from_onnx(node_proto),
                                 outputs=[None] * case.n_out, meta={"opset": case.opset})
    return FLOAT_KERNELS[case.op](node, list(case.inputs))


def assert_close(got, ref, what=""):
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    assert got.dtype == ref.dtype, f"{what}: dtype {got.dtype} != {ref.dtype}"
    if ref.dtype.kind == "f":
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
        assert err <= 1e-4 * scale, f"{what}: max |diff| {err:.3g} (scale {scale:.3g})"
    else:
        np.testing.assert_array_equal(got, ref, err_msg=what)


def C(op, inputs, **kw):
    return Case(op, inputs, **kw).param()


# ---- cases ---------------------------------------------------------------------
CONV = [
    C("Conv", [R(1, 3, 8, 8), R(4, 3, 3, 3), R(4)], pads=[1, 1, 1, 1], name="conv-pad1-bias"),
    C("Conv", [R(2, 3, 9, 8), R(5, 3, 3, 3)], strides=[2, 2], name="conv-s2"),
    C("Conv", [R(1, 3, 11, 10), R(4, 3, 3, 2)], dilations=[2, 3], pads=[2, 1, 0, 3], name="conv-dil-asympad"),
    C("Conv", [R(2, 4, 7, 9), R(6, 2, 3, 2), R(6)], group=2, strides=[1, 2], name="conv-group2"),
    C("Conv", [R(1, 16, 6, 6), R(8, 2, 3, 3)], group=8, pads=[1, 1, 1, 1], name="conv-group8"),
    C("Conv", [R(1, 4, 9, 9), R(4, 1, 3, 3), R(4)], group=4, strides=[2, 2], pads=[1, 1, 1, 1], name="conv-dw"),
    C("Conv", [R(1, 3, 8, 8), R(6, 1, 3, 3)], group=3, dilations=[2, 2], name="conv-dw-mult2"),
    C("Conv", [R(1, 3, 7, 7), R(4, 3, 3, 3)], auto_pad="SAME_UPPER", strides=[2, 2], name="conv-same-upper"),
    C("Conv", [R(1, 3, 8, 7), R(4, 3, 4, 2)], auto_pad="SAME_LOWER", strides=[2, 3], name="conv-same-lower"),
    C("Conv", [R(1, 3, 7, 7), R(4, 3, 3, 3)], auto_pad="VALID", strides=[2, 2], name="conv-valid"),
    C("Conv", [R(1, 8, 5, 5), R(16, 8, 1, 1), R(16)], kernel_shape=[1, 1], name="conv-1x1"),
    C("Conv", [R(2, 3, 10), R(5, 3, 3), R(5)], strides=[2], pads=[1, 2], dilations=[2], name="conv1d"),
    C("Conv", [R(1, 4, 12), R(4, 2, 3)], group=2, auto_pad="SAME_UPPER", name="conv1d-group"),
    C("Conv", [R(1, 6, 12), R(6, 1, 5)], group=6, pads=[2, 2], name="conv1d-dw"),
    C("Conv", [R(1, 2, 5, 6, 7), R(3, 2, 2, 3, 3)], pads=[0, 1, 1, 1, 0, 1], name="conv3d"),
    C("Conv", [R(1, 3, 9, 9), R(4, 3, 3, 3)], opset=9, pads=[1, 1, 1, 1], strides=[2, 2], name="conv"),
]
CONVT = [
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3), R(2)], strides=[2, 2], name="convt-s2"),
    C("ConvTranspose", [R(2, 3, 4, 5), R(3, 4, 3, 3)], strides=[2, 2], pads=[1, 1, 1, 1],
      output_padding=[1, 1], name="convt-pad-outpad"),
    C("ConvTranspose", [R(1, 2, 4, 4), R(2, 3, 3, 2)], dilations=[2, 2], pads=[1, 0, 2, 1], name="convt-dil"),
    C("ConvTranspose", [R(1, 4, 4, 4), R(4, 3, 3, 3), R(6)], group=2, strides=[2, 1], name="convt-group2"),
    C("ConvTranspose", [R(1, 4, 5, 5), R(4, 1, 4, 4)], group=4, strides=[2, 2], pads=[1, 1, 1, 1], name="convt-dw"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], output_shape=[10, 10], name="convt-outshape"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], output_shape=[10, 10],
      auto_pad="SAME_UPPER", name="convt-outshape-same-upper"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], auto_pad="SAME_UPPER", name="convt-same-upper"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 4, 4)], strides=[2, 2], auto_pad="SAME_LOWER", name="convt-same-lower"),
    C("ConvTranspose", [R(2, 3, 6), R(3, 4, 3), R(4)], strides=[3], pads=[1, 2], name="convt1d"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], opset=9, strides=[2, 2], pads=[1, 1, 1, 1], name="convt"),
]
MATH = [
    C("Gemm", [R(3, 4), R(4, 5), R(3, 5)], name="gemm"),
    C("Gemm", [R(4, 3), R(5, 4), R(5)], transA=1, transB=1, alpha=0.5, beta=2.0, name="gemm-trans-ab"),
    C("Gemm", [R(3, 4), R(5, 4), R(1, 5)], transB=1, beta=0.0, name="gemm-beta0"),
    C("Gemm", [R(3, 4), R(4, 5)], name="gemm-noC"),
    C("Gemm", [R(3, 4), R(4, 5), R(1)], opset=9, alpha=2.0, name="gemm-scalarC"),
    C("MatMul", [R(3, 4), R(4, 5)], feed=2, name="matmul"),
    C("MatMul", [R(2, 1, 3, 4), R(5, 4, 6)], feed=2, name="matmul-bcast"),
    C("MatMul", [R(4), R(4, 5)], feed=2, name="matmul-vec-mat"),
    C("MatMul", [R(2, 3, 4), R(4)], feed=2, name="matmul-mat-vec"),
    C("BatchNormalization", [R(2, 3, 4, 5), R(3), R(3), R(3), R(3, lo=0.5, hi=2)], name="bn"),
    C("BatchNormalization", [R(2, 3, 4, 5), R(3), R(3), R(3), R(3, lo=0.5, hi=2)], opset=9, epsilon=1e-3, name="bn"),
    C("BatchNormalization", [R(4, 3), R(3), R(3), R(3), R(3, lo=0.5, hi=2)], opset=15, training_mode=0, name="bn-2d"),
    C("BatchNormalization", [R(2, 3, 4, 5), R(3), R(3), R(3), R(3, lo=0.5, hi=2)], opset=9, n_out=5,
      name="bn-training-outputs"),
    C("BatchNormalization", [R(2, 3, 4), R(3), R(3), R(3), R(3, lo=0.5, hi=2)], opset=15, n_out=3,
      training_mode=1, momentum=0.8, name="bn-training"),
    C("InstanceNormalization", [R(2, 3, 4, 5), R(3), R(3)], epsilon=1e-4),
    C("LayerNormalization", [R(2, 3, 8), R(8), R(8)], opset=17),
    C("LayerNormalization", [R(2, 3, 4), R(3, 4)], opset=17, axis=1, name="layernorm-axis1"),
    C("LRN", [R(2, 7, 4, 4)], size=3, name="lrn3"),
    C("LRN", [R(1, 8, 3, 3)], size=5, alpha=1e-2, beta=0.5, bias=2.0, name="lrn5", opset=9),
]
ACT = [C(op, [R(2, 3, 4, 5)], **kw) for op, kw in [
    ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("Exp", {}), ("Neg", {}), ("Abs", {}), ("Erf", {}),
    ("Sign", {}), ("Floor", {}), ("Ceil", {}), ("Round", {}), ("Sin", {}), ("Cos", {}), ("Softsign", {}),
    ("Softplus", {}), ("LeakyRelu", {}), ("LeakyRelu", {"alpha": 0.2, "name": "leakyrelu-0.2"}),
    ("Elu", {"alpha": 0.7}), ("Selu", {}), ("Celu", {"alpha": 1.5, "opset": 13}),
    ("ThresholdedRelu", {"alpha": 0.3}), ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4, "name": "hardsigmoid-ab", "opset": 9}),
    ("HardSwish", {"opset": 14}), ("Mish", {"opset": 18}), ("Gelu", {"opset": 20}),
    ("Gelu", {"opset": 20, "approximate": "tanh", "name": "gelu-tanh"}), ("Identity", {}),
    ("Relu", {"opset": 9}), ("Sigmoid", {"opset": 9}),
]] + [
    C("Sqrt", [R(3, 4, lo=0.01, hi=4)]), C("Log", [R(3, 4, lo=0.01, hi=4)]),
    C("Reciprocal", [R(3, 4, lo=0.5, hi=4)]),
    C("Clip", [R(3, 4, 5)], opset=9, min=-0.5, max=0.7, name="clip-attrs"),
    C("Clip", [R(3, 4, 5)], opset=9, name="clip-noattrs"),
    C("Clip", [R(3, 4, 5), FL(-0.3)], opset=11, name="clip-min-input"),
    C("Clip", [R(3, 4, 5), None, FL(0.2)], opset=13, name="clip-max-input"),
    C("Clip", [R(3, 4, 5), FL(-0.3), FL(0.6)], opset=13, name="clip-both"),
    C("PRelu", [R(2, 3, 4, 5), R(3, 1, 1)], name="prelu-channel"),
    C("PRelu", [R(2, 3, 4, 5), R(5)], name="prelu-lastaxis"),
    C("PRelu", [R(2, 3, 4, 5), R(1)], opset=9, name="prelu-scalar"),
]
for op in ("Softmax", "LogSoftmax", "Hardmax"):
    ACT += [C(op, [R(2, 3, 4, 5)], name=op.lower()),
            C(op, [R(2, 3, 4, 5)], axis=1, name=op.lower() + "-axis1"),
            C(op, [R(2, 3, 4, 5)], opset=11, name=op.lower() + "-legacy-default"),
            C(op, [R(2, 3, 4, 5)], opset=9, axis=2, name=op.lower() + "-legacy-axis2"),
            C(op, [R(3, 7)], opset=11, axis=-1, name=op.lower() + "-legacy-2d")]
POOL = [
    C("MaxPool", [R(1, 3, 8, 8)], kernel_shape=[2, 2], strides=[2, 2], name="maxpool-2x2"),
    C("MaxPool", [R(2, 3, 9, 9)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], name="maxpool-3x3s2p1"),
    C("MaxPool", [R(1, 2, 9, 10)], kernel_shape=[3, 2], strides=[2, 2], ceil_mode=1, name="maxpool-ceil"),
    C("MaxPool", [R(1, 2, 5, 5)], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
      name="maxpool-ceil-lastwindow"),
    C("MaxPool", [R(1, 2, 10, 10)], kernel_shape=[3, 3], dilations=[2, 2], strides=[1, 2], name="maxpool-dil"),
    C("MaxPool", [R(1, 2, 7, 7)], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER",
      name="maxpool-same-upper"),
    C("MaxPool", [R(1, 2, 8, 7)], kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER",
      name="maxpool-same-lower"),
    C("MaxPool", [R(1, 2, 8, 7)], kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID", name="maxpool-valid"),
    C("MaxPool", [R(2, 3, 11)], kernel_shape=[3], strides=[2], pads=[1, 1], name="maxpool1d"),
    C("MaxPool", [R(1, 2, 7, 8)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], n_out=2,
      name="maxpool-indices"),
    C("MaxPool", [R(2, 2, 6, 7)], kernel_shape=[2, 2], strides=[2, 2], storage_order=1, n_out=2,
      name="maxpool-indices-colmajor"),
    C("MaxPool", [RNG.integers(0, 255, (1, 2, 6, 6)).astype(np.uint8)], opset=12, kernel_shape=[3, 3],
      pads=[1, 1, 1, 1], name="maxpool-uint8"),
    C("MaxPool", [R(1, 3, 8, 8)], opset=9, kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1], name="maxpool"),
    C("AveragePool", [R(1, 3, 8, 8)], kernel_shape=[2, 2], strides=[2, 2], name="avgpool-2x2"),
    C("AveragePool", [R(1, 3, 9, 9)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], name="avgpool-pad-excl"),
    C("AveragePool", [R(1, 3, 9, 9)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2],
      count_include_pad=1, name="avgpool-pad-incl"),
    C("AveragePool", [R(1, 2, 9, 10)], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1, name="avgpool-ceil"),
    C("AveragePool", [R(1, 2, 9, 10)], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
      count_include_pad=1, name="avgpool-ceil-incl"),
    C("AveragePool", [R(1, 2, 7, 7)], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER",
      name="avgpool-same-upper"),
    C("AveragePool", [R(1, 2, 7, 7)], kernel_shape=[2, 2], strides=[2, 2], auto_pad="SAME_LOWER",
      count_include_pad=1, name="avgpool-same-lower-incl"),
    C("AveragePool", [R(1, 2, 7, 7)], kernel_shape=[3, 3], auto_pad="VALID", name="avgpool-valid"),
    C("AveragePool", [R(2, 3, 12)], kernel_shape=[4], strides=[3], pads=[2, 1], name="avgpool1d"),
    C("AveragePool", [R(1, 2, 10, 10)], opset=19, kernel_shape=[3, 3], dilations=[2, 2], pads=[1, 1, 1, 1],
      name="avgpool-dil"),
    C("AveragePool", [R(1, 3, 8, 8)], opset=9, kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], name="avgpool"),
    C("LpPool", [R(1, 3, 8, 8)], opset=18, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], p=2),
    C("GlobalAveragePool", [R(2, 3, 5, 6)]), C("GlobalMaxPool", [R(2, 3, 5, 6)]),
    C("GlobalAveragePool", [R(2, 3, 7)], opset=9, name="globalavgpool-1d"), C("GlobalLpPool", [R(2, 3, 4, 4)], p=3),
]
ELT = [C(op, [R(2, 3, 4), R(3, 1)], feed=2) for op in ("Add", "Sub", "Mul")] + [
    C("Div", [R(2, 3, 4), R(4, lo=0.5, hi=2)], feed=2),
    C("Div", [np.array([7, -7, 9, -9], np.int32), np.array([2, 2, -4, -4], np.int32)], feed=2, name="div-int"),
    C("Add", [R(2, 3, 4), R(2, 3, 4)], opset=9, feed=2),
    C("Pow", [R(3, 4, lo=0.1, hi=3), R(4)], feed=2), C("Pow", [R(3, 4), FL(2.0)], name="pow-square"),
    C("Sum", [R(2, 3), R(3), R(1, 3)], feed=3, name="sum3"), C("Sum", [R(2, 3)], opset=9, name="sum1"),
    C("Max", [R(2, 3), R(3), R(2, 1)], feed=3), C("Min", [R(2, 3), R(3)], feed=2), C("Mean", [R(2, 3), R(3)], feed=2),
    C("Mod", [np.array([7, -7, 9], np.int64), np.array([3, 3, -4], np.int64)], feed=2, name="mod-int"),
    C("Mod", [R(5), R(5, lo=0.5, hi=2)], feed=2, fmod=1, name="mod-fmod"),
    C("Equal", [np.array([1, 2, 3], np.int64), np.array([1, 0, 3], np.int64)], feed=2),
    C("Greater", [R(3, 4), R(4)], feed=2), C("Less", [R(3, 4), R(4)], feed=2),
    C("Where", [np.array([[True, False, True]]), R(2, 3), R(3)], feed=3),
    C("Not", [np.array([True, False])]), C("And", [np.array([True, False]), np.array([True, True])], feed=2),
]
SHAPE = [
    C("Concat", [R(2, 3, 4), R(2, 1, 4), R(2, 2, 4)], axis=1, feed=3),
    C("Concat", [R(2, 3), R(2, 2)], axis=-1, feed=2, opset=9, name="concat-neg"),
    C("Reshape", [R(2, 3, 4), I64(0, -1)], name="reshape-copy0"),
    C("Reshape", [R(2, 3, 4), I64(-1, 4, 1)], name="reshape-infer"),
    C("Reshape", [R(2, 3, 4), I64(4, 6)], opset=14, allowzero=1, name="reshape-allowzero"),
    C("Flatten", [R(2, 3, 4, 5)]), C("Flatten", [R(2, 3, 4, 5)], axis=0, name="flatten-0"),
    C("Flatten", [R(2, 3, 4, 5)], axis=3, opset=9, name="flatten-3"),
    C("Flatten", [R(2, 3, 4, 5)], axis=-1, name="flatten-neg"),
    C("Transpose", [R(2, 3, 4)]), C("Transpose", [R(2, 3, 4, 5)], perm=[0, 2, 3, 1], name="transpose-nhwc"),
    C("Squeeze", [R(1, 3, 1, 5)], opset=11, axes=[0, -2], name="squeeze-attr"),
    C("Squeeze", [R(1, 3, 1, 5), I64(2)], name="squeeze-input"),
    C("Squeeze", [R(1, 3, 1, 5)], name="squeeze-all"),
    C("Squeeze", [R(1, 3, 1, 5), np.zeros(0, np.int64)], name="squeeze-empty-axes"),
    C("Unsqueeze", [R(3, 5)], opset=11, axes=[0, 3], name="unsqueeze-attr"),
    C("Unsqueeze", [R(3, 5), I64(0, -1)], name="unsqueeze-input"),
    C("Unsqueeze", [R(3, 5)], opset=9, axes=[1], name="unsqueeze"),
    C("Pad", [R(1, 2, 3, 4)], opset=9, pads=[0, 0, 1, 2, 0, 0, 2, 1], value=1.5, name="pad-attrs"),
    C("Pad", [R(1, 2, 3, 4), I64(0, 0, 1, 2, 0, 0, 2, 1), FL(-2.0)], opset=11, name="pad-const"),
    C("Pad", [R(1, 2, 4, 5), I64(0, 0, 2, 1, 0, 0, 1, 3)], mode="reflect", name="pad-reflect"),
    C("Pad", [R(1, 2, 4, 5), I64(0, 0, 2, 1, 0, 0, 1, 3)], mode="edge", name="pad-edge"),
    C("Pad", [R(1, 2, 4, 5)], opset=9, mode="edge", pads=[0, 0, 2, 1, 0, 0, 1, 3],
      name="pad-edge-attr"),
    C("Pad", [R(2, 4, 5), I64(0, 1, -1, 0, 2, -2)], name="pad-negative"),
    C("Pad", [R(1, 2, 4, 5), I64(1, 2, 3, 0), FL(0.5), I64(2, -1)], opset=18, name="pad-axes"),
    C("Pad", [R(1, 2, 4, 5), I64(0, 0, 2, 1, 0, 0, 1, 3)], opset=19, mode="wrap", name="pad-wrap"),
    C("Split", [R(2, 6, 3)], opset=11, axis=1, split=[1, 2, 3], n_out=3, name="split-attr"),
    C("Split", [R(2, 6, 3), I64(4, 2)], axis=1, n_out=2, name="split-input"),
    C("Split", [R(6, 3)], n_out=3, name="split-equal"),
    C("Split", [R(6, 3)], opset=9, n_out=2, name="split-equal"),
    C("Split", [R(2, 7)], opset=18, axis=-1, num_outputs=3, n_out=3, name="split-num-outputs"),
    C("Slice", [R(5, 6, 7)], opset=9, starts=[1, 0], ends=[4, -1], axes=[0, 2], name="slice-attrs"),
    C("Slice", [R(5, 6, 7)], opset=9, starts=[1, -3], ends=[1000, 5], name="slice-attrs-noaxes"),
    C("Slice", [R(5, 6, 7), I64(4, 1), I64(-1000, 100), I64(0, -1), I64(-2, 3)], name="slice-neg-steps"),
    C("Slice", [R(5, 6, 7), I64(-1), I64(-9223372036854775807), I64(1), I64(-1)], name="slice-reverse"),
    C("Slice", [R(5, 6), I64(1, 0), I64(3, 6)], name="slice-noaxes"),
    C("Gather", [R(5, 4), I64(0, -1, 2)], name="gather-axis0"),
    C("Gather", [R(3, 5, 2), np.array([[0, 4], [-2, 1]], np.int64)], axis=1, name="gather-axis1"),
    C("Gather", [R(5, 4), np.array(3, np.int64)], name="gather-scalar"),
    C("GatherElements", [R(3, 4), np.array([[0, 3], [1, -1], [2, 0]], np.int64)], axis=1),
    C("Expand", [R(3, 1), I64(2, 3, 4)]), C("Expand", [R(2, 3), I64(3, 1, 1)], name="expand-grow"),
    C("Tile", [R(2, 3), I64(2, 3)]),
    C("Shape", [R(2, 3, 4)]), C("Shape", [R(2, 3, 4, 5)], opset=15, start=1, end=-1, name="shape-start-end"),
    C("Size", [R(2, 3, 4)]),
    C("Cast", [R(3, 4) * 5], to=TensorProto.INT64, name="cast-f2i"),
    C("Cast", [np.array([1, -2, 3], np.int32)], to=TensorProto.FLOAT, name="cast-i2f"),
    C("Cast", [R(3, 4)], to=TensorProto.FLOAT16, opset=9, name="cast-f2h"),
    C("Cast", [R(3, 4)], to=TensorProto.BOOL, name="cast-f2b"),
    C("CastLike", [R(3, 4) * 5, np.zeros(1, np.int32)], opset=15),
    C("ConstantOfShape", [I64(2, 3)], opset=9, name="constofshape-default"),
    C("ConstantOfShape", [I64(2, 3)], value=numpy_helper.from_array(np.array([7], np.int64)), name="constofshape-int"),
    C("ConstantOfShape", [I64(4)], value=numpy_helper.from_array(np.array([0.25], F32)), name="constofshape-float"),
    C("Constant", [], feed=0, value=numpy_helper.from_array(R(2, 3)), name="constant-tensor"),
    C("Constant", [], feed=0, value_floats=[1.0, 2.5], name="constant-floats"),
    C("Constant", [], feed=0, value_int=7, name="constant-int"),
    C("Range", [np.array(1, np.int64), np.array(10, np.int64), np.array(3, np.int64)], feed=3),
    C("Range", [np.array(0.5, F32), np.array(-2, F32), np.array(-0.75, F32)], feed=3, name="range-float"),
    C("DepthToSpace", [R(1, 8, 2, 3)], blocksize=2), C("DepthToSpace", [R(1, 8, 2, 3)], blocksize=2, mode="CRD",
                                                           name="depthtospace-crd"),
    C("SpaceToDepth", [R(1, 2, 4, 6)], blocksize=2),
    C("Dropout", [R(3, 4)], n_out=2, name="dropout-mask"),
    C("Dropout", [R(3, 4), np.array(0.3, F32)], opset=12, name="dropout-ratio-input"),
    C("Dropout", [R(3, 4)], opset=9, ratio=0.2, name="dropout"),
    C("Dropout", [R(3, 4)], opset=9, n_out=2, name="dropout-mask"),
    C("Dropout", [R(3, 4)], opset=10, n_out=2, name="dropout-mask"),
    C("ArgMax", [R(3, 4, 5)], axis=1), C("ArgMin", [R(3, 4, 5)], axis=-1, keepdims=0, name="argmin-nokeep"),
]
REDUCE = [
    C("ReduceMean", [R(2, 3, 4)], axes=[1], keepdims=0, name="reducemean-attr"),
    C("ReduceMean", [R(2, 3, 4, 5)], opset=9, axes=[2, 3], name="reducemean-hw"),
    C("ReduceMean", [R(2, 3, 4)], name="reducemean-all"),
    C("ReduceMean", [R(2, 3, 4), I64(-1, 0)], opset=18, name="reducemean-input"),
    C("ReduceMean", [R(2, 3, 4)], opset=18, noop_with_empty_axes=1, name="reducemean-noop"),
    C("ReduceSum", [R(2, 3, 4), I64(1)], name="reducesum-input"),
    C("ReduceSum", [R(2, 3, 4)], opset=11, axes=[0, 2], keepdims=0, name="reducesum-attr"),
    C("ReduceSum", [R(2, 3, 4), np.zeros(0, np.int64)], noop_with_empty_axes=1, name="reducesum-noop"),
    C("ReduceMax", [R(2, 3, 4)], axes=[1], name="reducemax-attr"),
    C("ReduceMax", [R(2, 3, 4), I64(2)], opset=18, keepdims=0, name="reducemax-input"),
    C("ReduceMin", [R(2, 3, 4)], axes=[0]), C("ReduceProd", [R(2, 3, 4)], axes=[2]),
    C("ReduceL1", [R(2, 3, 4)], axes=[1]), C("ReduceL2", [R(2, 3, 4)], axes=[1]),
    C("ReduceSumSquare", [R(2, 3, 4)], axes=[1]), C("ReduceLogSumExp", [R(2, 3, 4)], axes=[1]),
    C("ReduceLogSumExp", [R(2, 3, 4)], axes=[0, 2], keepdims=0, name="reducelogsumexp-2axes"),
    C("ReduceLogSumExp", [R(2, 3, 4)], name="reducelogsumexp-all"),
    C("ReduceLogSum", [R(2, 3, 4, lo=0.1, hi=2)], axes=[1]),
]
SC = lambda *v: np.array(v, F32)  # noqa: E731
RESIZE = []
for ctm in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn"):
    for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        RESIZE.append(C("Resize", [R(1, 2, 4, 5), None, SC(1, 1, 2.5, 1.6)], mode="nearest",
                        coordinate_transformation_mode=ctm, nearest_mode=nm, name=f"resize-nn-up-{ctm}-{nm}"))
    RESIZE.append(C("Resize", [R(1, 2, 9, 10), None, SC(1, 1, 0.5, 0.7)], mode="nearest",
                    coordinate_transformation_mode=ctm, name=f"resize-nn-down-{ctm}"))
for ctm in ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric"):
    RESIZE.append(C("Resize", [R(2, 3, 4, 5), None, SC(1, 1, 2, 1.5)], mode="linear",
                    coordinate_transformation_mode=ctm, opset=19, name=f"resize-linear-up-{ctm}"))
    RESIZE.append(C("Resize", [R(1, 2, 9, 10), None, None, I64(1, 2, 4, 3)], mode="linear",
                    coordinate_transformation_mode=ctm, opset=19, name=f"resize-linear-sizes-{ctm}"))
RESIZE += [
    C("Resize", [RNG.integers(0, 255, (1, 2, 5, 6)).astype(np.uint8), None, SC(1, 1, 1.7, 1.3)], mode="linear",
      name="resize-linear-uint8"),
    C("Resize", [R(1, 2, 4, 4), FL(), SC(1, 1, 2, 2)], opset=11, mode="nearest", name="resize-opset11-roi-empty"),
    C("Resize", [R(1, 2, 4, 4), FL(0, 0, 0, 0, 1, 1, 1, 1), SC(1, 1, 2, 3)], opset=11, mode="linear",
      coordinate_transformation_mode="asymmetric", name="resize-opset11-linear"),
    C("Resize", [R(1, 2, 5, 4), None, None, I64(1, 2, 1, 7)], mode="linear",
      coordinate_transformation_mode="pytorch_half_pixel", name="resize-pytorch-size1"),
    C("Resize", [R(1, 2, 4, 4), SC(1, 1, 2, 2)], opset=10, mode="nearest", name="resize-opset10-nearest"),
    C("Resize", [R(1, 2, 8, 8), SC(1, 1, 0.6, 0.5)], opset=10, mode="nearest", name="resize-opset10-down"),
    C("Resize", [R(1, 2, 4, 4), SC(1, 1, 2, 1.5)], opset=10, mode="linear", name="resize-opset10-linear"),
    C("Resize", [R(1, 2, 5, 6), None, SC(1, 1, 1.7, 0.8)], mode="cubic", name="resize-cubic"),
    C("Resize", [R(1, 2, 5, 6), None, SC(1, 1, 1.7, 0.8)], mode="cubic", exclude_outside=1, cubic_coeff_a=-0.5,
      name="resize-cubic-exclude"),
    C("Resize", [R(1, 2, 5, 6), None, SC(1, 1, 2, 2)], mode="cubic", coordinate_transformation_mode="asymmetric",
      name="resize-cubic-asym"),
    C("Resize", [R(1, 2, 6, 7), FL(0, 0, 0.2, 0.1, 1, 1, 0.9, 1.2), None, I64(1, 2, 4, 5)], mode="linear",
      coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-3.0, name="resize-tf-crop-linear"),
    C("Resize", [R(1, 2, 6, 7), FL(0, 0, -0.2, 0.1, 1, 1, 0.9, 0.8), None, I64(1, 2, 4, 5)], mode="nearest",
      coordinate_transformation_mode="tf_crop_and_resize", name="resize-tf-crop-nearest"),
    C("Resize", [R(1, 2, 4, 6), None, None, I64(8, 9)], opset=18, axes=[2, 3], mode="linear",
      keep_aspect_ratio_policy="not_larger", name="resize-axes-not-larger"),
    C("Resize", [R(1, 2, 4, 6), None, None, I64(8, 9)], opset=18, axes=[2, 3], mode="nearest",
      keep_aspect_ratio_policy="not_smaller", name="resize-axes-not-smaller"),
    C("Resize", [R(1, 2, 4, 6), None, SC(2, 0.5)], opset=18, axes=[-1, 2], mode="nearest", name="resize-axes-scales"),
    C("Resize", [R(1, 2, 12, 14), None, SC(1, 1, 0.4, 0.6)], opset=18, mode="linear", antialias=1,
      name="resize-antialias-linear"),
    C("Resize", [R(1, 2, 12, 14), None, SC(1, 1, 0.4, 0.6)], opset=18, mode="cubic", antialias=1,
      name="resize-antialias-cubic"),
    C("Resize", [R(2, 3, 7), None, SC(1, 1, 1.5)], mode="linear", name="resize-1d"),
    C("Upsample", [R(1, 2, 3, 4), SC(1, 1, 2, 3)], opset=9, mode="nearest", name="upsample-nearest"),
    C("Upsample", [R(1, 2, 3, 4), SC(1, 1, 2, 1.5)], opset=9, mode="linear", name="upsample-linear"),
    C("Upsample", [R(1, 2, 3, 4), SC(1, 1, 2, 2)], opset=9, name="upsample-default"),
]
EDGE = [  # geometry corner cases
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], output_shape=[10, 11], auto_pad="SAME_LOWER",
      name="convt-outshape-same-lower"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], output_shape=[12, 12],
      name="convt-outshape-big"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[2, 2], output_padding=[1, 0], output_shape=[10, 10],
      name="convt-outshape-outpad"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], strides=[3, 3], dilations=[2, 1], auto_pad="SAME_LOWER",
      name="convt-same-lower-dil"),
    C("ConvTranspose", [R(1, 3, 5, 5), R(3, 2, 3, 3)], auto_pad="VALID", strides=[2, 2], name="convt-valid"),
    C("ConvTranspose", [R(1, 2, 3, 4, 3), R(2, 2, 2, 3, 2)], strides=[2, 1, 2], pads=[0, 1, 0, 1, 0, 1],
      name="convt3d"),
    C("MaxPool", [R(1, 2, 10, 11)], kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2], ceil_mode=1,
      pads=[1, 1, 1, 1], name="maxpool-ceil-dil"),
    C("AveragePool", [R(1, 2, 10, 11)], kernel_shape=[3, 2], strides=[3, 2], ceil_mode=1, pads=[1, 0, 1, 1],
      name="avgpool-ceil-excl"),
    C("AveragePool", [R(1, 2, 10, 11)], opset=19, kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2], ceil_mode=1,
      pads=[1, 1, 1, 1], count_include_pad=1, name="avgpool-ceil-dil-incl"),
    C("MaxPool", [R(1, 2, 8, 8)], kernel_shape=[3, 3], strides=[3, 3], auto_pad="VALID", ceil_mode=1,
      name="maxpool-valid-ceil"),
    C("MaxPool", [R(1, 2, 8, 8)], kernel_shape=[3, 3], strides=[3, 3], auto_pad="SAME_UPPER", ceil_mode=1,
      name="maxpool-same-ceil"),
    C("MaxPool", [R(1, 2, 5, 6, 7)], kernel_shape=[2, 3, 2], strides=[2, 2, 2], pads=[0, 1, 0, 1, 1, 1],
      name="maxpool3d"),
    C("MaxPool", [R(1, 2, 7, 8)], kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 1], pads=[1, 1, 1, 1], n_out=2,
      opset=12, name="maxpool-indices-dil"),
    C("Resize", [R(1, 2, 6, 7), FL(0, 0, 0.3, -0.1, 1, 1, 0.6, 1.3), None, I64(1, 2, 2, 5)], mode="nearest",
      coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=2.0, name="resize-tf-crop-down"),
    C("Resize", [R(1, 2, 6, 7), None, None, I64(1, 2, 3, 14)], mode="nearest", name="resize-nn-sizes"),
    C("Resize", [R(1, 2, 12, 14), None, None, I64(1, 2, 5, 9)], opset=18, mode="linear", antialias=1,
      coordinate_transformation_mode="align_corners", name="resize-antialias-sizes"),
    C("Resize", [R(1, 2, 12, 14), None, SC(1, 1, 0.3, 0.45)], opset=18, mode="cubic", antialias=1, exclude_outside=1,
      name="resize-antialias-cubic-exclude"),
    C("Resize", [R(1, 2, 12, 14), None, SC(1, 1, 0.3, 1.45)], opset=18, mode="linear", antialias=1,
      name="resize-antialias-mixed"),
    C("Resize", [R(2, 3, 4, 5, 6), None, SC(1, 1, 2, 1.5, 0.5)], mode="linear", name="resize-trilinear"),
    C("Resize", [R(2, 3, 4, 5, 6), None, SC(1, 1, 2, 1.5, 0.5)], mode="nearest", name="resize-nn-5d"),
    C("Resize", [R(1, 2, 3, 4), None, SC(1, 1, 3, 2)], opset=19, mode="nearest",
      coordinate_transformation_mode="half_pixel_symmetric", name="resize-nn-half-pixel-symmetric"),
    C("Resize", [R(1, 2, 5, 7), None, None, I64(1, 2, 8, 4)], opset=18, mode="cubic", name="resize-cubic-sizes"),
    C("Upsample", [R(1, 2, 3, 4)], opset=7, scales=[1.0, 1.0, 2.0, 2.0], name="upsample-scales-attr"),
    C("Softmax", [R(2, 3, 4)], opset=9, axis=0, name="softmax-legacy-axis0"),
    C("Gather", [R(3, 4, 5), I64(1, 0)], axis=-1, name="gather-neg-axis"),
    C("Slice", [R(9, 8), I64(-7, 1), I64(8, -1), I64(0, 1), I64(3, 2)], name="slice-steps"),
]
# LSTM: inputs X, W, R, B, sequence_lens, initial_h, initial_c, P (hidden 3, input 4)
H3, B2 = 3, 2
RNN = [
    C("LSTM", [R(5, B2, 4), R(1, 4 * H3, 4), R(1, 4 * H3, H3)], feed=1, n_out=3, hidden_size=H3, name="lstm-fwd"),
    C("LSTM", [R(5, B2, 4), R(2, 4 * H3, 4), R(2, 4 * H3, H3), R(2, 8 * H3), None, R(2, B2, H3), R(2, B2, H3)],
      n_out=3, hidden_size=H3, direction="bidirectional", name="lstm-bidi-state"),
    C("LSTM", [R(4, B2, 4), R(1, 4 * H3, 4), R(1, 4 * H3, H3), R(1, 8 * H3), None, None, R(1, B2, H3),
               R(1, 3 * H3)], n_out=3, hidden_size=H3, direction="reverse", name="lstm-rev-peephole"),
    C("LSTM", [R(6, B2, 4), R(2, 4 * H3, 4), R(2, 4 * H3, H3), R(2, 8 * H3), np.array([6, 3], np.int32)],
      n_out=3, hidden_size=H3, direction="bidirectional", name="lstm-seq-lens"),
    C("LSTM", [R(3, B2, 4), R(1, 4 * H3, 4), R(1, 4 * H3, H3)], n_out=3, hidden_size=H3, clip=0.5,
      input_forget=1, name="lstm-clip-coupled"),
]
ALL = CONV + CONVT + MATH + ACT + POOL + ELT + SHAPE + REDUCE + RESIZE + EDGE + RNN


@pytest.mark.parametrize("case", ALL)
def test_kernel_matches_onnxruntime(case: Case):
    refs = run_ort(case)
    got = run_kernel(case)
    assert len(got) == len(refs), f"{len(got)} outputs, onnxruntime gives {len(refs)}"
    for j, (g, r) in enumerate(zip(got, refs)):
        assert_close(g, r, f"{case.name} output {j}")


def test_attrs_from_onnx_types():
    node = helper.make_node("Foo", [], ["y"], i=3, f=0.5, s="abc", ints=[1, 2], floats=[0.5], strings=["a", "b"],
                            t=numpy_helper.from_array(np.arange(3, dtype=np.int64)))
    a = attrs_from_onnx(node)
    assert a["i"] == 3 and a["f"] == 0.5 and a["s"] == "abc" and a["ints"] == [1, 2]
    assert a["floats"] == [0.5] and a["strings"] == ["a", "b"]
    assert isinstance(a["t"], np.ndarray) and a["t"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("op,attrs,what", [
    ("Pad", {"mode": "mirror"}, "mode='mirror'"),
    ("Conv", {"auto_pad": "SAME_MIDDLE"}, "auto_pad='SAME_MIDDLE'"),
    ("Resize", {"mode": "area"}, "mode='area'"),
    ("Dropout", {}, "training_mode=True"),
    ("Cast", {"to": TensorProto.STRING}, "STRING"),
    ("LSTM", {"layout": 1, "hidden_size": 3}, "layout=1"),
    ("LSTM", {"activations": ["Relu", "Tanh", "Tanh"], "hidden_size": 3}, "activations"),
])
def test_unsupported_attribute_values_raise(op, attrs, what):
    inputs = {"Pad": [R(1, 2, 3), I64(0, 0, 1, 0, 0, 1)], "Conv": [R(1, 1, 4, 4), R(1, 1, 3, 3)],
              "Resize": [R(1, 1, 2, 2), None, SC(1, 1, 2, 2)], "Cast": [R(2)],
              "Dropout": [R(3), np.array(0.5, F32), np.array(True)],
              "LSTM": [R(2, 1, 4), R(1, 12, 4), R(1, 12, 3)]}[op]
    node = types.SimpleNamespace(op=op, name="bad", attrs=attrs, outputs=[None], meta={})
    with pytest.raises(NotImplementedError, match=what):
        FLOAT_KERNELS[op](node, inputs)


def _run_onnx_model(model, feeds):
    """Run a whole model straight through the kernel table (no IR), like a frontend would."""
    env = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    env.update(feeds)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    for n in model.graph.node:
        node = types.SimpleNamespace(op=n.op_type, name=n.name, attrs=attrs_from_onnx(n),
                                     outputs=list(n.output), meta={"opset": opset})
        outs = FLOAT_KERNELS[n.op_type](node, [env[x] if x else None for x in n.input])
        env.update(zip(n.output, outs))
    return env


LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


@pytest.mark.parametrize("name,every_node", [("light_resnet50", True), ("light_densenet121", True),
                                             ("light_shufflenet", True), ("light_inception_v2", True),
                                             ("light_vgg19", False)])
def test_light_model_zoo(name, every_node):
    """224x224 zoo models (opset 9) run fast and match onnxruntime (every activation, where finite)."""
    path = os.path.join(LIGHT, f"{name}.onnx")
    if not os.path.exists(path):
        pytest.skip(f"{path} not shipped with this onnx")
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(F32)
    names = [o.name for o in model.graph.output]
    if every_node:
        names = [o for n in model.graph.node if n.op_type != "ConstantOfShape" for o in n.output]
        del model.graph.output[:]
        model.graph.output.extend(onnx.ValueInfoProto(name=o) for o in names)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {inp.name: x})
    t0 = time.perf_counter()
    env = _run_onnx_model(model, {inp.name: x})
    assert time.perf_counter() - t0 < 20, f"{name} took {time.perf_counter() - t0:.1f} s"
    for o, r in zip(names, ref):
        assert_close(env[o], r, f"{name}: {o}")


def test_erf_without_scipy(monkeypatch):
    import math
    import sys

    from qcompiler.interp.float_kernels import core as float_kernels
    monkeypatch.setitem(sys.modules, "scipy.special", None)  # force the polynomial fallback
    x = np.linspace(-5, 5, 2001)
    err = np.abs(float_kernels._erf(x) - np.array([math.erf(v) for v in x])).max()
    assert err < 2e-7
