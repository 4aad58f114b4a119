"""int8 / int16 mixed models (--activations auto): the border QUANTIZE ops, bit-exact in TFLM
and TVM, and the search's report.

The mixed model puts borders on an ADD whose inputs come from an int16 and an int8 layer, on a
CONCATENATION of an int16 and an int8 tensor, and on a SOFTMAX computing in int16 after an
int8 FULLY_CONNECTED:

    x (int16) -> ConvA (int16, relu) -> a ------------------+-> Concat (int16) -> GAP -> Flatten -> Gemm (int8) -> Softmax (int16)
    x -> QUANTIZE -> ConvB (int8) -> b -> Add (int8) <- a |
                                      -> ConvC (int8) -> c --^
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir
from qcompiler.errors import QccError


def _model(path):
    rng = np.random.default_rng(0)

    def w(name, shape, scale=0.4):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    inits = [w("wa", (6, 3, 3, 3)), w("ba", (6,), 0.1), w("wb", (6, 3, 1, 1)), w("wc", (6, 6, 3, 3), 0.2),
             w("wg", (5, 12), 1.0), w("bg", (5,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a0"], name="ConvA", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a0"], ["a"], name="ReluA"),
             helper.make_node("Conv", ["x", "wb"], ["b"], name="ConvB"),
             helper.make_node("Add", ["a", "b"], ["s"], name="Add"),
             helper.make_node("Conv", ["s", "wc"], ["c"], name="ConvC", pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["a", "c"], ["cat"], name="Concat", axis=1),
             helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="GAP"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="Flatten"),
             helper.make_node("Gemm", ["flat", "wg", "bg"], ["logits"], name="Gemm", transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], name="Softmax", axis=1)]
    g = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32)


def _borders(q):
    return {(b.outputs[0].consumers[0].op, b.inputs[0].quant.dtype.name, b.outputs[0].quant.dtype.name)
            for b in q.nodes if b.meta.get("precision_border")}


@pytest.mark.parametrize("target", ["tflm", pytest.param("tvm", marks=pytest.mark.slow)])
def test_mixed_borders_are_bit_exact(tmp_path, data, target):
    if target == "tvm":
        pytest.importorskip("tvm")
    model = _model(tmp_path / "mixed.onnx")
    res = compile_model(model, tmp_path / target, CompileOptions(
        target=target, calib=data, activations="auto", int16_nodes=("ConvA", "Softmax")))
    q = res.quant_graph
    dtypes = {n.name: n.outputs[0].quant.dtype.name for n in q.nodes}
    assert dtypes["ConvA"] == "int16" and dtypes["Concat"] == "int16" and dtypes["Softmax"] == "int16"
    assert dtypes["ConvB"] == dtypes["Add"] == dtypes["ConvC"] == dtypes["Gemm"] == "int8"
    # ADD (int16 a -> int8), CONCATENATION (int8 c -> int16), FC (int16 -> int8), SOFTMAX (int8 -> int16);
    # the input takes its widest reader's type (ConvA): ConvB reads an int8 copy
    assert q.inputs[0].quant.dtype.name == "int16"
    assert _borders(q) == {("Add", "int16", "int8"), ("Concat", "int8", "int16"), ("Gemm", "int16", "int8"),
                           ("Softmax", "int8", "int16"), ("Conv", "int16", "int8")}
    check = verify_outdir(tmp_path / target, data[:24], **({"with_litert": False} if target == "tflm" else {}))
    assert check[target]["bit_exact"], check[target]
    assert check["fidelity"][target]["y"]["sqnr_db"] > 25
    if target == "tflm":
        ops = json.loads((tmp_path / target / "report.json").read_text())["ops"]
        assert ops["QUANTIZE"] == 5 and ops["CONCATENATION"] == 1 and ops["SOFTMAX"] == 1


def test_search_reaches_the_target_and_reports_it(tmp_path, data):
    model = _model(tmp_path / "mixed.onnx")
    int8 = compile_model(model, tmp_path / "int8", CompileOptions(calib=data))
    base = int8.report["calibration"]
    res = compile_model(model, tmp_path / "auto", CompileOptions(calib=data, activations="auto", min_sqnr=45.0))
    a = res.report["calibration"]["activations"]
    assert a["mode"] == "auto" and a["reached"] and a["search_sqnr_db"] >= 45.0
    assert a["int16_layers"] and all("gain_db" in e for e in a["int16_layers"])
    assert {s["knob"] for s in a["sensitivity"]} >= {"ConvA", "ConvB", "ConvC", "Add", "Gemm", "Softmax"}
    rows = a["pareto"]
    assert rows[0]["config"] == "all int8" or any(r["config"] == "all int8" for r in rows)
    assert sum(r["chosen"] for r in rows) == 1 and any(r["config"] == "all int16" or r["int16_nodes"] for r in rows)
    chosen = next(r for r in rows if r["chosen"])
    assert chosen["arena_bytes"] == res.report["arena"]["arena_bytes"]
    assert chosen["arena_bytes"] >= int8.report["arena"]["arena_bytes"]
    assert "fc_per_channel" in base
    check = verify_outdir(tmp_path / "auto", data[:24], with_litert=False)
    assert check["tflm"]["bit_exact"]


def test_auto_options_are_checked(tmp_path, data):
    model = _model(tmp_path / "mixed.onnx")
    with pytest.raises(QccError, match="needs a target"):
        compile_model(model, tmp_path / "a", CompileOptions(calib=data, activations="auto"))
    with pytest.raises(QccError, match="with --activations auto"):
        compile_model(model, tmp_path / "b", CompileOptions(calib=data, min_sqnr=30.0))
    with pytest.raises(QccError, match="no node named"):
        compile_model(model, tmp_path / "c", CompileOptions(calib=data, activations="auto", int16_nodes=("Nope",)))
    with pytest.raises(QccError, match="no int16 activation scheme"):
        compile_model(model, tmp_path / "ncnn", CompileOptions(target="ncnn", calib=data, activations="int16"))


def test_int16_keeps_ops_without_an_int16_kernel_in_int8(tmp_path, data):
    """HardSwish has no int16 TFLM kernel: inside an int16 model it stays int8 between QUANTIZEs."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array((rng.normal(size=(4, 3, 3, 3)) * 0.4).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.normal(size=(4, 4, 1, 1)) * 0.4).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["h"], name="Conv1", pads=[1, 1, 1, 1]),
             helper.make_node("HardSwish", ["h"], ["hs"], name="HardSwish"),
             helper.make_node("Conv", ["hs", "w2"], ["y"], name="Conv2")]
    g = helper.make_graph(nodes, "hs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "hs.onnx")
    res = compile_model(tmp_path / "hs.onnx", tmp_path / "out", CompileOptions(calib=data, activations="int16"))
    a = res.report["calibration"]["activations"]
    assert a["mode"] == "int16" and "HARD_SWISH" in a["int8_nodes"]["HardSwish"]
    assert [c["to"] for c in a["conversions"]] == ["int8", "int16"]
    check = verify_outdir(tmp_path / "out", data[:16], with_litert=False)
    assert check["tflm"]["bit_exact"]
