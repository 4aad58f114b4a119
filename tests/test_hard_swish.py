"""fuse_hard_swish: every written form of hard-swish becomes one HardSwish; near misses stay."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from onnx_builders import assert_matches_onnxruntime, ops, run_passes, save_model

X = {"x": (1, 3, 4, 5)}


def scalar(name, value):
    return numpy_helper.from_array(np.float32(value), name)


INITS = [scalar("three", 3.0), scalar("zero", 0.0), scalar("six", 6.0), scalar("sixth", 1.0 / 6.0)]
GATE = [helper.make_node("Add", ["x", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["g"])]
FORMS = {  # name: nodes after the gate (x * relu6(x + 3) / 6 in its spellings)
    "div_after": [helper.make_node("Mul", ["x", "g"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])],
    "mul_after": [helper.make_node("Mul", ["g", "x"], ["m"]), helper.make_node("Mul", ["sixth", "m"], ["y"])],
    "div_before": [helper.make_node("Div", ["g", "six"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])],
    "mul_before": [helper.make_node("Mul", ["g", "sixth"], ["s"]), helper.make_node("Mul", ["s", "x"], ["y"])],
}


def model(tmp_path, nodes, inits=INITS, opset=13, outputs=None):
    return save_model(tmp_path / "m.onnx", nodes, X, outputs or {"y": X["x"]}, inits, opset=opset)


def assert_hard_swish(g):
    assert ops(g) == ["HardSwish"]
    assert g.nodes[0].inputs[0] is g.inputs[0] and g.outputs[0].name == "y"


@pytest.mark.parametrize("form", sorted(FORMS))
def test_written_forms(tmp_path, form):
    path = model(tmp_path, GATE + FORMS[form])
    g, ctx = run_passes(path, ["fuse_hard_swish", "dead_code"])
    assert_hard_swish(g)
    assert ctx.log == ["fuse_hard_swish: 1 hard-swish pattern(s) -> HardSwish"]
    assert_matches_onnxruntime(path, g, samples=4, tol=1e-5)


def test_add_operands_swapped_and_clip_with_attributes(tmp_path):
    """Opset 6 Clip keeps its bounds as attributes; 3 + x instead of x + 3."""
    nodes = [helper.make_node("Add", ["three", "x"], ["a"]), helper.make_node("Clip", ["a"], ["g"], min=0.0, max=6.0),
             *FORMS["div_after"]]
    path = model(tmp_path, nodes, opset=10)
    g, _ = run_passes(path, ["fuse_hard_swish"])
    assert_hard_swish(g)
    assert_matches_onnxruntime(path, g, tol=1e-5)


def test_hard_sigmoid_form(tmp_path):
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=1.0 / 6.0, beta=0.5),
             helper.make_node("Mul", ["h", "x"], ["y"])]
    path = model(tmp_path, nodes, inits=[])
    g, _ = run_passes(path, ["fuse_hard_swish"])
    assert_hard_swish(g)
    assert_matches_onnxruntime(path, g, tol=1e-5)


def test_after_fuse_activation(tmp_path):
    """With the Clip already fused into the Add (clamp [0, 6]) the pattern is still found."""
    path = model(tmp_path, GATE + FORMS["mul_before"])
    g, _ = run_passes(path, ["fuse_activation", "fuse_hard_swish"])
    assert_hard_swish(g)
    assert_matches_onnxruntime(path, g, tol=1e-5)


def div_after(x: str, y: str, tag: str) -> list:
    """y = x * Clip(x + 3, 0, 6) / 6 with intermediate tensors named after `tag`."""
    return [helper.make_node("Add", [x, "three"], [f"{tag}a"]),
            helper.make_node("Clip", [f"{tag}a", "zero", "six"], [f"{tag}g"]),
            helper.make_node("Mul", [x, f"{tag}g"], [f"{tag}m"]), helper.make_node("Div", [f"{tag}m", "six"], [y])]


def test_chain_of_two(tmp_path):
    """The output of one hard-swish feeding the next (the layout model does this 94 times)."""
    path = save_model(tmp_path / "m.onnx", div_after("x", "y", "p") + div_after("y", "z", "q"), X, {"z": X["x"]},
                      INITS)
    g, _ = run_passes(path, ["fuse_hard_swish"])
    assert ops(g) == ["HardSwish", "HardSwish"]
    assert_matches_onnxruntime(path, g, tol=1e-5)


NEAR_MISSES = {
    "add_2": dict(three=2.0), "clip_to_5": dict(six_clip=5.0), "div_by_5": dict(six_div=5.0),
    "other_tensor": dict(other=True), "gate_also_output": dict(gate_out=True),
}


@pytest.mark.parametrize("case", sorted(NEAR_MISSES))
def test_near_misses_stay(tmp_path, case):
    k = NEAR_MISSES[case]
    inits = [scalar("three", k.get("three", 3.0)), scalar("zero", 0.0), scalar("cmax", k.get("six_clip", 6.0)),
             scalar("dv", k.get("six_div", 6.0))]
    src = "x2" if k.get("other") else "x"
    nodes = [helper.make_node("Add", [src, "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "cmax"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["m"]), helper.make_node("Div", ["m", "dv"], ["y"])]
    outputs = {"y": X["x"], **({"g": X["x"]} if k.get("gate_out") else {})}
    inputs = {**X, **({"x2": X["x"]} if k.get("other") else {})}
    path = save_model(tmp_path / "m.onnx", nodes, inputs, outputs, inits)
    g, ctx = run_passes(path, ["fuse_hard_swish"])
    assert "HardSwish" not in ops(g) and ctx.log == []


def test_hard_sigmoid_with_other_parameters_stays(tmp_path):
    nodes = [helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.2, beta=0.5),
             helper.make_node("Mul", ["x", "h"], ["y"])]
    g, _ = run_passes(model(tmp_path, nodes, inits=[]), ["fuse_hard_swish"])
    assert ops(g) == ["HardSigmoid", "Mul"]


def test_decompose_round_trip(tmp_path):
    """decompose_hard_swish writes HardSwish out of Add (relu6) and Muls, same function; the
    driver runs it only under --activations int16 (auto keeps HardSwish: int8 HARD_SWISH)."""
    path = model(tmp_path, [helper.make_node("HardSwish", ["x"], ["y"])], inits=[], opset=14)
    g, ctx = run_passes(path, ["decompose_hard_swish"])
    assert ops(g) == ["Add", "Mul", "Mul"] and g.nodes[0].attrs["clamp"] == [0.0, 6.0]
    assert g.outputs[0].name == "y" and ctx.log == ["decompose_hard_swish: 1 HardSwish -> Add (relu6) / Mul / Mul by 1/6"]
    assert_matches_onnxruntime(path, g, samples=4, tol=1e-5)
    g, _ = run_passes(path, ["decompose_hard_swish", "fuse_hard_swish"])
    assert ops(g) == ["HardSwish"]


def test_decompose_only_for_int16():
    from qcompiler.driver.pipeline import CompileOptions, pass_list
    for activations, want in (("int8", False), ("auto", False), ("int16", True)):
        passes = pass_list(CompileOptions(target="tflm", activations=activations))
        assert ("decompose_hard_swish" in passes) is want
        if want:
            assert passes.index("decompose_hard_swish") == passes.index("fuse_hard_swish") + 1
            assert passes.index("decompose_hard_swish") < passes.index("fold_affine")
    assert "decompose_hard_swish" not in pass_list(CompileOptions(target="tflm", activations="int16",
                                                                  disable_passes=("decompose_hard_swish",)))


@pytest.mark.parametrize("opset", [11, 13])
def test_calibration_runs_in_onnxruntime_below_opset_14(tmp_path, opset):
    """HardSwish is an ONNX op from opset 14 on: exporting the fused graph of an older model writes
    it as HardSigmoid * x, so calibration's float passes stay in onnxruntime (not the numpy
    interpreter, ~20x slower on an 800x608 detector) and compute the same function."""
    pytest.importorskip("onnxruntime")
    from qcompiler.quant.calibration import FloatRunner
    path = model(tmp_path, GATE + FORMS["div_after"], opset=opset)
    g, _ = run_passes(path, ["fuse_hard_swish", "dead_code"])
    assert_hard_swish(g)
    runner = FloatRunner(g)
    assert runner.engine == "onnxruntime"
    x = np.random.default_rng(0).uniform(-5, 5, X["x"]).astype(np.float32)
    want = x * np.clip(x / 6 + 0.5, 0, 1)
    np.testing.assert_allclose(runner.run({"x": x})["y"], want, rtol=1e-6, atol=1e-6)
