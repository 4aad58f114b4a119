"""One tiny ONNX model per op, for tests/test_backend_parity.py.

`MODELS[op]()` returns an onnx.ModelProto whose single float input `x` reaches `op`
(after the targets' default passes). Ops that are not ONNX ops come from the ONNX op
that produces them: Rsqrt from LRN (decompose_lrn), Requantize from a Softmax over more
than 511 classes (the wide int16 softmax). The parity test fails for an op of any
backend's table that has no model here, so a new op needs one line.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N = helper.make_node
X = [1, 4, 6, 6]


def _r(shape, seed: int, scale: float = 0.5, positive: bool = False) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale
    return np.abs(a) + 0.5 if positive else a


def model(nodes, consts: dict | None = None, shape=X, opset: int = 13, outputs=("y",)) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    g = helper.make_graph(nodes, "parity", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def unary(op: str, positive: bool = False, opset: int = 13, **attrs):
    """x -> op (after a Sigmoid where the op needs a positive input)."""
    if positive:
        return lambda: model([N("Sigmoid", ["x"], ["s"]), N(op, ["s"], ["y"], **attrs)], opset=opset)
    return lambda: model([N(op, ["x"], ["y"], **attrs)], opset=opset)


def binary(op: str, positive: bool = False):
    """op(x, c) with a per-channel constant c."""
    return lambda: model([N(op, ["x", "c"], ["y"])], {"c": _r([1, 4, 1, 1], 3, positive=positive)})


def _conv():
    return model([N("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
                 {"w": _r([3, 4, 3, 3], 1), "b": _r([3], 2)})


def _conv_transpose():
    return model([N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2])],
                 {"w": _r([4, 3, 2, 2], 1), "b": _r([3], 2)})


def _gemm():
    return model([N("Gemm", ["x", "w", "b"], ["y"], transB=1)], {"w": _r([5, 8], 1), "b": _r([5], 2)},
                 shape=[1, 8])


MODELS = {
    **{op: unary(op) for op in ("Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Ceil", "Floor", "Exp", "Sin",
                                "Cos", "Elu", "HardSigmoid", "GlobalAveragePool", "GlobalMaxPool",
                                "Identity")},
    **{op: unary(op, positive=True) for op in ("Log", "Sqrt", "Reciprocal")},
    **{op: binary(op) for op in ("Add", "Sub", "Mul", "Max", "Min")},
    "Div": binary("Div", positive=True),
    # positive bases: ncnn's x86 BinaryOp pow returns garbage for negative ones (measured)
    "Pow": lambda: model([N("Sigmoid", ["x"], ["s"]), N("Pow", ["s", "e"], ["y"])],
                         {"e": np.array(1.5, np.float32)}),
    "HardSwish": unary("HardSwish", opset=14),
    "LeakyRelu": unary("LeakyRelu", alpha=0.1),
    "Clip": lambda: model([N("Clip", ["x", "lo", "hi"], ["y"])],
                          {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}),
    "PRelu": lambda: model([N("PRelu", ["x", "slope"], ["y"])], {"slope": _r([4, 1, 1], 4)}),
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MaxPool": unary("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    "AveragePool": unary("AveragePool", kernel_shape=[2, 2], strides=[2, 2]),
    "ReduceMean": unary("ReduceMean", axes=[2, 3], keepdims=1),
    "LRN": unary("LRN", size=3, alpha=0.5),
    "Rsqrt": unary("LRN", size=3, alpha=0.5),          # decompose_lrn makes RSQRT
    "Softmax": lambda: model([N("Softmax", ["x"], ["y"], axis=-1)], shape=[1, 10]),
    "Requantize": lambda: model([N("Softmax", ["x"], ["y"], axis=-1)], shape=[1, 600]),
    "Concat": lambda: model([N("Concat", ["x", "x"], ["y"], axis=1)]),
    "Flatten": unary("Flatten"),
    "Reshape": lambda: model([N("Reshape", ["x", "shape"], ["y"])], {"shape": np.array([1, 4, 36])}),
    "Squeeze": lambda: model([N("Squeeze", ["x", "axes"], ["y"])], {"axes": np.array([2])},
                             shape=[1, 4, 1, 6]),
    "Unsqueeze": lambda: model([N("Unsqueeze", ["x", "axes"], ["y"])], {"axes": np.array([2])},
                               shape=[1, 4, 6]),
    "Transpose": unary("Transpose", perm=[0, 2, 3, 1]),
    "Pad": lambda: model([N("Pad", ["x", "pads"], ["y"])], {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 1])}),
    "Slice": lambda: model([N("Slice", ["x", "starts", "ends", "axes"], ["y"])],
                           {"starts": np.array([1, 0]), "ends": np.array([3, 4]), "axes": np.array([1, 2])}),
    "Split": lambda: model([N("Split", ["x", "split"], ["y", "z"], axis=1)], {"split": np.array([1, 3])},
                           outputs=("y", "z")),
    "Resize": lambda: model([N("Resize", ["x", "", "scales"], ["y"], mode="nearest",
                               coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                            {"scales": np.array([1, 1, 2, 2], np.float32)}),
    "Upsample": lambda: model([N("Upsample", ["x", "scales"], ["y"], mode="nearest")],
                              {"scales": np.array([1, 1, 2, 2], np.float32)}, opset=9),
}
