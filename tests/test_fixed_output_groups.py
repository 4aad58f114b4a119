"""A Sigmoid / Softmax output (fixed int8 parameters) concatenated with wide-range tensors keeps
its parameters behind a Requantize, instead of forcing [0, 1) on the whole Concat group.
(--int8-outputs: by default such a graph output is int16, tests/test_wide_outputs.py.)"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir


def _head(path):
    """x -> Conv (box regression, values ~ +-40) and Conv -> Sigmoid (score); Concat on channels."""
    rng = np.random.default_rng(0)
    wb = numpy_helper.from_array((rng.normal(size=(4, 3, 1, 1)) * 20).astype(np.float32), "wb")
    ws = numpy_helper.from_array(rng.normal(size=(2, 3, 1, 1)).astype(np.float32), "ws")
    nodes = [helper.make_node("Conv", ["x", "wb"], ["box"]), helper.make_node("Conv", ["x", "ws"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["score"]),
             helper.make_node("Concat", ["box", "score"], ["y"], axis=1)]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 6])], [wb, ws])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def test_concat_with_sigmoid_is_not_clipped_to_its_range(tmp_path):
    _head(tmp_path / "head.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (64, 3, 6, 6)).astype(np.float32)
    res = compile_model(tmp_path / "head.onnx", tmp_path / "out", CompileOptions(calib=x, int8_outputs=True))
    q = res.quant_graph
    requant = [n for n in q.nodes if n.op == "Requantize"]
    assert len(requant) == 1 and requant[0].inputs[0].producer.op == "Sigmoid"
    sig = next(n for n in q.nodes if n.op == "Sigmoid")
    assert float(sig.outputs[0].quant.scale[0]) == 1 / 256  # TFLM's LOGISTIC keeps its parameters
    concat = next(n for n in q.nodes if n.op == "Concat")
    assert float(concat.outputs[0].quant.scale[0]) > 0.1  # the box range, not [0, 1)
    layers = {e["tensor"]: e for e in res.report["layers"]}
    assert layers["box"]["clipped_fraction"] == 0 and layers["y"]["sqnr_db"] > 30
    check = verify_outdir(tmp_path / "out", x[:16], with_litert=False)
    assert check["tflm"]["bit_exact"] and check["fidelity"]["tflm"]["y"]["sqnr_db"] > 30


def test_the_requantize_is_bit_exact_in_tvm(tmp_path):
    import pytest
    pytest.importorskip("tvm")
    _head(tmp_path / "head.onnx")
    x = np.random.default_rng(1).uniform(-1, 1, (64, 3, 6, 6)).astype(np.float32)
    compile_model(tmp_path / "head.onnx", tmp_path / "tvm", CompileOptions(target="tvm", calib=x, int8_outputs=True))
    check = verify_outdir(tmp_path / "tvm", x[:16])
    assert check["ok"] and check["tvm"]["bit_exact"] and check["fidelity"]["tvm"]["y"]["sqnr_db"] > 30
