"""div_to_mul: Div by a constant -> Mul by its reciprocal; what it leaves alone."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_builders import assert_matches_onnxruntime, ops, run_passes, save_model

X = {"x": (1, 3, 4, 5)}


def div_model(tmp_path, divisor, swap=False):
    c = numpy_helper.from_array(np.asarray(divisor, np.float32), "c")
    ins = ["c", "x"] if swap else ["x", "c"]
    nodes = [helper.make_node("Div", ins, ["y"], name="div")]
    return save_model(tmp_path / "m.onnx", nodes, X, {"y": X["x"]}, [c])


@pytest.mark.parametrize("divisor", [2.0, 6.0, -0.3, [[[0.5]], [[3.0]], [[-7.0]]]])
def test_div_by_constant_becomes_mul(tmp_path, divisor):
    path = div_model(tmp_path, divisor)
    g, ctx = run_passes(path, ["div_to_mul"])
    assert ops(g) == ["Mul"]
    mul = g.nodes[0]
    assert mul.name == "div" and mul.inputs[0] is g.inputs[0] and g.outputs[0].name == "y"
    np.testing.assert_allclose(mul.inputs[1].data, 1.0 / np.asarray(divisor, np.float64), rtol=1e-7)
    assert mul.inputs[1].data.dtype == np.float32
    assert ctx.log == ["div_to_mul: 1 Div by a constant -> Mul (div)"]
    assert_matches_onnxruntime(path, g, tol=1e-6)


@pytest.mark.parametrize("divisor", [0.0, [[[1.0]], [[0.0]], [[2.0]]], np.inf, np.nan, 1e-45])
def test_unusable_divisors_stay(tmp_path, divisor):
    """A zero, Inf or NaN divisor, or one whose reciprocal overflows float32, keeps the Div."""
    g, ctx = run_passes(div_model(tmp_path, divisor), ["div_to_mul"])
    assert ops(g) == ["Div"] and ctx.log == []


def test_constant_divided_by_a_tensor_stays(tmp_path):
    g, _ = run_passes(div_model(tmp_path, 2.0, swap=True), ["div_to_mul"])
    assert ops(g) == ["Div"]


def test_integer_division_stays(tmp_path):
    """Shape arithmetic (int64) is exact integer division: not a float reciprocal."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Div", ["s", "two"], ["h"]),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT)]
    inits = [numpy_helper.from_array(np.array([2], np.int64), "two")]
    path = save_model(tmp_path / "m.onnx", nodes, X, {"y": (4,)}, inits)
    g, _ = run_passes(path, ["div_to_mul"])
    assert "Mul" not in ops(g)
