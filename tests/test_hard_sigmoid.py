"""lower_hard_sigmoid: the affine map folded into a Conv/Gemm or spelled as Mul/Add, the clamp
[0, 1] fused; the quantizer realizes that clamp by the output range; TFLM runs it bit-exactly."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnx_builders import assert_matches_onnxruntime, const, ops, run_passes, save_model
from qcompiler.errors import QuantizationError
from qcompiler.ir.activation import clamp_of
from qcompiler.quant.quantize import quantize_graph
from qcompiler.quant.scheme import TFLITE_INT8, QuantScheme

X = {"x": (1, 3, 6, 6)}
HS = dict(alpha=1.0 / 6.0, beta=0.5)


def conv_hard_sigmoid(tmp_path, bias=True, extra_use=False, **attrs):
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("HardSigmoid", ["c"], ["y"], **(attrs or HS))]
    outputs = {"y": (1, 4, 6, 6)}
    if extra_use:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        outputs["r"] = (1, 4, 6, 6)
    inits = [const("w", (4, 3, 3, 3), scale=2.0)] + ([const("b", (4,))] if bias else [])
    return save_model(tmp_path / "m.onnx", nodes, X, outputs, inits)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("attrs", [HS, dict(alpha=0.2, beta=0.5), dict(alpha=-0.5, beta=0.25), {}])
def test_folds_into_the_conv(tmp_path, bias, attrs):
    path = conv_hard_sigmoid(tmp_path, bias, **attrs)
    g, ctx = run_passes(path, ["lower_hard_sigmoid"])
    assert ops(g) == ["Conv"]
    assert clamp_of(g.nodes[0]) == (0.0, 1.0) and g.outputs[0].name == "y"
    assert ctx.log == ["lower_hard_sigmoid: 1 folded into their Conv/Gemm, 0 as Mul/Add, each with the clamp [0, 1]"]
    assert_matches_onnxruntime(path, g, samples=4, tol=1e-5)


def test_folds_into_a_gemm(tmp_path):
    nodes = [helper.make_node("Gemm", ["v", "w", "b"], ["c"], transB=1),
             helper.make_node("HardSigmoid", ["c"], ["y"], **HS)]
    path = save_model(tmp_path / "m.onnx", nodes, {"v": (2, 5)}, {"y": (2, 3)},
                      [const("w", (3, 5), scale=3.0), const("b", (3,))])
    g, _ = run_passes(path, ["lower_hard_sigmoid"])
    assert ops(g) == ["Gemm"] and clamp_of(g.nodes[0]) == (0.0, 1.0)
    assert_matches_onnxruntime(path, g, tol=1e-5)


def test_shared_producer_gets_mul_and_add(tmp_path):
    path = conv_hard_sigmoid(tmp_path, extra_use=True)
    g, ctx = run_passes(path, ["lower_hard_sigmoid"])
    assert ops(g) == ["Conv", "Mul", "Add", "Relu"]
    mul, add = g.nodes[1:3]
    assert clamp_of(add) == (0.0, 1.0) and clamp_of(mul) is None and add.outputs[0].name == "y"
    assert float(mul.inputs[1].data) == np.float32(1 / 6) and float(add.inputs[1].data) == 0.5
    assert "0 folded into their Conv/Gemm, 1 as Mul/Add" in ctx.log[0]
    assert_matches_onnxruntime(path, g, tol=1e-5)


@pytest.mark.parametrize("attrs,expect", [(dict(alpha=1.0, beta=0.5), ["Add"]),
                                          (dict(alpha=0.25, beta=0.0), ["Mul"])])
def test_graph_input_with_trivial_parts(tmp_path, attrs, expect):
    path = save_model(tmp_path / "m.onnx", [helper.make_node("HardSigmoid", ["x"], ["y"], **attrs)], X, {"y": X["x"]})
    g, _ = run_passes(path, ["lower_hard_sigmoid"])
    assert ops(g) == expect and clamp_of(g.nodes[-1]) == (0.0, 1.0)
    assert_matches_onnxruntime(path, g, tol=1e-6)


# ---- the clamp [0, 1] in the integer scheme ------------------------------------------------

def _folded(tmp_path):
    g, _ = run_passes(conv_hard_sigmoid(tmp_path), ["lower_hard_sigmoid"])
    return g


def test_scheme_realizes_the_clamp_by_the_output_range(tmp_path):
    """TFLite has no fused [0, 1]: the Conv's output gets exactly [0, 1] (1/255, -128), whatever
    was observed; a scheme fusing every clamp keeps the calibrated range."""
    g = _folded(tmp_path)
    ranges = {"x": (-1.0, 1.0), "y": (0.1, 0.7)}
    y = quantize_graph(g, ranges, scheme=TFLITE_INT8).outputs[0].quant
    assert (float(y.scale[0]), int(y.zero_point[0])) == (np.float32(1 / 255), -128)
    other = quantize_graph(g, ranges, scheme=QuantScheme("fuses-all")).outputs[0].quant
    assert float(other.scale[0]) == pytest.approx(0.7 / 255, rel=1e-6)


def test_clamp_excluding_zero_is_refused(tmp_path):
    g = _folded(tmp_path)
    g.nodes[0].attrs["clamp"] = [0.5, 1.0]
    with pytest.raises(QuantizationError, match=r"node .* \(Conv\): its clamp \[0.5, 1\] excludes 0"):
        quantize_graph(g, {"x": (-1.0, 1.0), "y": (0.5, 1.0)}, scheme=TFLITE_INT8)


def test_tflm_runs_the_squeeze_excite_gate_bit_exactly(tmp_path):
    """Conv -> GAP -> Conv -> Relu -> Conv -> HardSigmoid -> Mul: the gate's Conv runs with
    no activation in TFLite, its int8 range saturating at 0 and 1."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from test_tflite_lowering import Net, compile_verify
    from qcompiler.backends.tflite.flatbuffer import read_model
    n = Net(x=(1, 8, 5, 5))
    c = n.conv("x", 8, 8, pads=[1, 1, 1, 1])
    s = n.conv(n.op("Relu", n.conv(n.op("GlobalAveragePool", c), 8, 4, k=1)), 4, 8, k=1)
    y = n.op("Mul", c, n.op("HardSigmoid", s, **HS))
    report = compile_verify(tmp_path, n, y, expect=["CONV_2D", "MUL"])
    assert report["ops"] == {"AVERAGE_POOL_2D": 1, "CONV_2D": 3, "MUL": 1}
    model = read_model((tmp_path / "out" / "m.tflite").read_bytes())
    gate = model.operators[-2]       # the last CONV_2D, before the MUL
    out = model.tensors[gate.outputs[0]]
    assert gate.opcode == "CONV_2D" and gate.options["fused_activation_function"] == "NONE"
    assert (out.scale, out.zero_point) == ([np.float32(1 / 255)], [-128])
