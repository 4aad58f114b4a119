"""ONNX frontend and exporter: dynamic dims, constant folding, external data, round trip."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS, SAMPLE_MODELS
from qcompiler.errors import QccError, UnsupportedOpError
from qcompiler.interp import run_float
from qcompiler.frontend.onnx_export import graph_to_onnx
from qcompiler.frontend.onnx_import import load_model, parse_input_shapes
from qcompiler.driver.pipeline import default_pipeline, optimize

ort = pytest.importorskip("onnxruntime")


def _reshape_chain_model(path, dims=("N", 3, "H", "W")):
    """x -> Conv -> Reshape(x, Concat(Shape(x)[0], -1)) : the exporter idiom for Flatten."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "F"])
    w = numpy_helper.from_array(np.random.default_rng(1).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"]),
        helper.make_node("Constant", [], ["i0"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["c", "shape"], ["y"]),
    ]
    ax = numpy_helper.from_array(np.array([0], np.int64), "ax")
    g = helper.make_graph(nodes, "chain", [x], [y], [w, ax])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8  # loadable by onnxruntime
    onnx.save(m, path)


def test_shape_chain_folds_and_dynamic_dims_need_a_shape(tmp_path):
    p = tmp_path / "chain.onnx"
    _reshape_chain_model(p)
    with pytest.raises(QccError, match=r"dynamic dimension 2.*--input-shape x="):
        load_model(p)
    g = load_model(p, parse_input_shapes("x=1,3,8,8"))
    assert [n.op for n in g.nodes] == ["Conv", "Reshape"]
    assert g.nodes[1].inputs[1].is_constant and g.nodes[1].inputs[1].data.tolist() == [1, -1]
    assert g.outputs[0].shape == (1, 256)
    x = np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(p)).run(None, {"x": x})[0]
    assert np.allclose(run_float(g, {"x": x})["y"], ref, atol=1e-5)


def test_dynamic_batch_defaults_to_one():
    g = load_model(MODELS / "digits_cnn.onnx")
    assert g.inputs[0].shape == (1, 1, 8, 8)
    assert all(v.shape is not None for v in g.values())


def test_bad_input_shape_flags():
    with pytest.raises(QccError, match="NAME=D0"):
        parse_input_shapes("x=1,a")
    with pytest.raises(QccError, match="unknown input"):
        load_model(MODELS / "digits_cnn.onnx", {"nope": (1, 1, 8, 8)})


def test_external_data(tmp_path):
    m = onnx.load(MODELS / "digits_resnet.onnx")
    p = tmp_path / "ext.onnx"
    onnx.save(m, p, save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin",
              size_threshold=0)
    assert (tmp_path / "weights.bin").stat().st_size > 10000
    g = load_model(p)
    ref = load_model(MODELS / "digits_resnet.onnx")
    x = np.load(MODELS / "digits_eval.npy")[:1]
    assert np.array_equal(run_float(g, {"input": x})["output"], run_float(ref, {"input": x})["output"])


def test_all_unsupported_ops_in_one_error(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    nodes = [helper.make_node("Det", ["x"], ["a"], name="d1"), helper.make_node("Relu", ["x"], ["b"]),
             helper.make_node("Einsum", ["b"], ["c"], name="e1", equation="ij->ij"),
             helper.make_node("Det", ["c"], ["y"], name="d2")]
    p = tmp_path / "u.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 13)]), p)
    with pytest.raises(UnsupportedOpError) as e:
        load_model(p)
    assert len(e.value.problems) == 2 and "d1" in str(e.value) and "d2" in str(e.value) and "e1" in str(e.value)


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_export_round_trip_runs_in_onnxruntime(name):
    g = load_model(MODELS / f"{name}.onnx")
    g, _ = optimize(g, default_pipeline("tflm"))  # includes fused activations to expand
    model = graph_to_onnx(g)
    x = np.load(MODELS / "digits_eval.npy")[:4]
    sess = ort.InferenceSession(model.SerializeToString())
    ref = ort.InferenceSession(str(MODELS / f"{name}.onnx"))
    for i in range(4):
        a = sess.run(None, {"input": x[i:i + 1]})[0]
        b = ref.run(None, {"input": x[i:i + 1]})[0]
        assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.max(np.abs(b)))
