"""Structural Before/Expected and numerical checks (vs onnxruntime) for the simple passes."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnx_builders import assert_matches_onnxruntime, const, ops, run_passes, save_model
from qcompiler.errors import QccError

X = {"x": (1, 3, 8, 8)}


def conv_bn_relu(tmp_path, with_bias=True, act="Relu"):
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if with_bias else []), ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "m", "v"], ["n"], epsilon=1e-3)]
    inits = [const("w", (4, 3, 3, 3)), const("g", (4,)), const("beta", (4,)), const("m", (4,)),
             const("v", (4,), positive=True)] + ([const("b", (4,))] if with_bias else [])
    if act == "Relu":
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
    else:
        nodes.append(helper.make_node("Clip", ["n", "lo", "hi"], ["y"]))
        inits += [helper.make_tensor("lo", 1, [], [0.0]), helper.make_tensor("hi", 1, [], [6.0])]
    return save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 4, 8, 8)}, inits)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("act,fused", [("Relu", [0.0, None]), ("Clip", [0.0, 6.0])])
def test_fold_batchnorm_then_fuse_activation(tmp_path, with_bias, act, fused):
    path = conv_bn_relu(tmp_path, with_bias, act)
    g, _ = run_passes(path, ["fold_constants", "fold_batchnorm", "fuse_activation", "dead_code"])
    assert ops(g) == ["Conv"]
    conv = g.nodes[0]
    assert conv.attrs["clamp"] == fused
    assert set(conv.meta["bn"]) == {"gamma", "beta", "mean", "var", "eps"}
    assert g.outputs[0].name == "y"
    assert_matches_onnxruntime(path, g)


def test_standalone_batchnorm_becomes_scale_shift(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "g", "beta", "m", "v"], ["y"])]
    inits = [const("g", (3,)), const("beta", (3,)), const("m", (3,)), const("v", (3,), positive=True)]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 3, 8, 8)}, inits)
    g, _ = run_passes(path, ["fold_batchnorm"])
    assert ops(g) == ["Relu", "Mul", "Add"]
    assert "bn" in g.nodes[2].meta
    assert_matches_onnxruntime(path, g)


def test_fold_affine_after_and_before_conv(tmp_path):
    nodes = [helper.make_node("Mul", ["x", "s_in"], ["xs"]),          # per-input-channel scale
             helper.make_node("Conv", ["xs", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s_out"], ["cm"]),
             helper.make_node("Add", ["cm", "t_out"], ["y"])]
    inits = [const("s_in", (3, 1, 1)), const("w", (4, 3, 3, 3)), const("b", (4,)), const("s_out", (4, 1, 1)),
             const("t_out", (1, 4, 1, 1))]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 4, 8, 8)}, inits)
    g, _ = run_passes(path, ["fold_affine"])
    assert ops(g) == ["Conv"]
    assert_matches_onnxruntime(path, g)


def test_fold_affine_refuses_inexact_add_before_padded_conv(tmp_path):
    nodes = [helper.make_node("Add", ["x", "t"], ["xt"]),
             helper.make_node("Conv", ["xt", "w"], ["y"], pads=[1, 1, 1, 1])]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 4, 8, 8)}, [const("t", (3, 1, 1)), const("w", (4, 3, 3, 3))])
    g, _ = run_passes(path, ["fold_affine"])
    assert ops(g) == ["Add", "Conv"]


def test_simplify_cancels_transposes_and_collapses_reshapes(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
             helper.make_node("Relu", ["t2"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Reshape", ["f", "s1"], ["r1"]),
             helper.make_node("Reshape", ["r1", "s2"], ["y"])]
    inits = [helper.make_tensor("s1", 7, [2], [1, -1]), helper.make_tensor("s2", 7, [3], [1, 12, 16])]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 12, 16)}, inits)
    g, _ = run_passes(path, ["simplify", "dead_code"])
    assert ops(g) == ["Relu", "Reshape"]
    assert g.nodes[1].inputs[1].data.tolist() == [1, 12, 16]
    assert_matches_onnxruntime(path, g)


def test_simplify_composes_non_cancelling_transposes(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t1"], perm=[0, 2, 3, 1]),
             helper.make_node("Transpose", ["t1"], ["y"], perm=[0, 2, 1, 3])]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 8, 8, 3)})
    g, _ = run_passes(path, ["simplify"])
    assert ops(g) == ["Transpose"] and g.nodes[0].attrs["perm"] == [0, 3, 2, 1]
    assert_matches_onnxruntime(path, g)


def test_simplify_turns_a_transpose_of_unit_axes_into_a_reshape(tmp_path):
    """[5, 2, 1, 4] -> perm [0, 2, 1, 3]: only the size-1 axis moves, the bytes stay."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1, 3]),
             helper.make_node("Relu", ["t"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, {"x": (5, 2, 1, 4)}, {"y": (5, 1, 2, 4)})
    g, _ = run_passes(path, ["simplify"])
    assert ops(g) == ["Reshape", "Relu"] and g.nodes[0].inputs[1].data.tolist() == [5, 1, 2, 4]
    assert_matches_onnxruntime(path, g)
    moving = [helper.make_node("Transpose", ["x"], ["y"], perm=[1, 0, 2, 3])]
    path = save_model(tmp_path / "m2.onnx", moving, {"x": (5, 2, 1, 4)}, {"y": (2, 5, 1, 4)})
    assert ops(run_passes(path, ["simplify"])[0]) == ["Transpose"]


def test_dead_code_and_selected_outputs(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Tanh", ["x"], ["unused"]), helper.make_node("Identity", ["b"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 3, 8, 8)})
    g, _ = run_passes(path, ["eliminate_identity", "dead_code"])
    assert ops(g) == ["Relu", "Sigmoid"] and g.outputs[0].name == "y"
    assert_matches_onnxruntime(path, g)
    g, _ = run_passes(path, ["select_outputs", "dead_code"], outputs=["a"])
    assert ops(g) == ["Relu"] and [v.name for v in g.outputs] == ["a"]
    with pytest.raises(QccError, match="unknown tensor"):
        run_passes(path, ["select_outputs"], outputs=["nope"])


def test_normalize_gemm(tmp_path):
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "c"], ["g"], alpha=0.5, beta=2.0),
             helper.make_node("MatMul", ["g", "w2"], ["y"])]
    inits = [const("w", (192, 10)), const("c", (1, 10)), const("w2", (10, 4))]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 4)}, inits)
    g, _ = run_passes(path, ["normalize_gemm"])
    assert ops(g) == ["Flatten", "Gemm", "Gemm"]
    assert all(n.attrs == {"transB": 1} for n in g.nodes[1:])
    assert g.nodes[1].inputs[1].shape == (10, 192)
    assert_matches_onnxruntime(path, g)


def test_fold_affine_keeps_fused_activation_between(tmp_path):
    """Add -> Relu -> Conv: once Relu is fused into the Add, folding the Add would drop the clamp."""
    nodes = [helper.make_node("Add", ["x", "t"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (1, 4, 8, 8)}, [const("t", (3, 1, 1)), const("w", (4, 3, 1, 1))])
    g, _ = run_passes(path, ["fuse_activation", "fold_affine"])
    assert ops(g) == ["Add", "Conv"] and g.nodes[0].attrs["clamp"] == [0.0, None]
    assert_matches_onnxruntime(path, g)


def test_canonicalize_sum_and_auto_pad(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("MaxPool", ["x"], ["p"], auto_pad="SAME_LOWER", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2"], ["c2"]),
             helper.make_node("Sum", ["c", "c2", "c"], ["y"])]
    inits = [const("w", (4, 3, 3, 3)), const("w2", (4, 3, 1, 1))]
    path = save_model(tmp_path / "m.onnx", nodes, {"x": (1, 3, 7, 7)}, {"y": (1, 4, 4, 4)}, inits)
    g, _ = run_passes(path, ["canonicalize"])
    assert ops(g) == ["Conv", "MaxPool", "Conv", "Add", "Add"]
    assert g.nodes[0].attrs["pads"] == [1, 1, 1, 1] and "auto_pad" not in g.nodes[0].attrs
    assert g.nodes[1].attrs["pads"] == [1, 1, 0, 0]
    assert_matches_onnxruntime(path, g)


@pytest.mark.parametrize("opset,inputs,attrs,scales", [
    (9, ["x", "s"], {"mode": "nearest"}, [1, 1, 2, 3]),
    (9, ["x", "s"], {"mode": "linear"}, [1, 1, 2, 2]),
    (10, ["x", "s"], {"mode": "nearest"}, [1, 1, 0.5, 0.6]),
    (10, ["x", "s"], {"mode": "linear"}, [1, 1, 1.5, 2]),
])
def test_canonicalize_upsample_and_resize10_to_resize13(tmp_path, opset, inputs, attrs, scales):
    """The old forms become one opset-13 Resize that computes the same (against onnxruntime)."""
    op = "Upsample" if opset == 9 else "Resize"
    s = helper.make_tensor("s", 1, [4], np.asarray(scales, np.float32))
    path = save_model(tmp_path / "m.onnx", [helper.make_node(op, inputs, ["y"], **attrs)],
                      {"x": [1, 2, 5, 6]},
                      {"y": [1, 2] + [int(np.floor(n * f)) for n, f in zip((5, 6), scales[2:])]}, [s],
                      opset=opset)
    g, _ = run_passes(path, ["canonicalize"])
    assert ops(g) == ["Resize"] and g.nodes[0].attrs["coordinate_transformation_mode"] == "asymmetric"
    assert_matches_onnxruntime(path, g)
