"""`qcc inspect MODEL --target T` reports exactly the op problems compiling for T reports."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompiler.backends import registry
from qcompiler.driver.cli import main as qcc
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.errors import MissingDependencyError, UnsupportedOpError


def _model(path, op: str, **attrs):
    """x -> Conv -> Relu -> op -> y (op unary, or binary with a constant slope for PRelu)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32) * 0.3, "w")]
    extra = []
    if op == "PRelu":
        inits.append(numpy_helper.from_array(np.full((4, 1, 1), 0.1, np.float32), "slope"))
        extra = ["slope"]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node(op, ["r", *extra], ["y"], **attrs)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


@pytest.mark.parametrize("op,attrs", [("Exp", {}), ("PRelu", {}), ("LRN", {"size": 3}), ("Sigmoid", {})])
def test_inspect_agrees_with_compile(tmp_path, op, attrs, capsys):
    model = tmp_path / f"{op}.onnx"
    _model(model, op, **attrs)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(1).uniform(0, 1, (8, 1, 8, 8)).astype(np.float32))
    for target in registry.names():
        try:
            registry.get(target)
        except MissingDependencyError:
            continue
        rc = qcc(["inspect", str(model), "--target", target, "--json"])
        said = json.loads(capsys.readouterr().out)["unsupported_ops"]
        try:
            compile_model(model, tmp_path / f"out_{target}", CompileOptions(target=target, calib=str(calib)))
            problems = []
        except UnsupportedOpError as e:
            problems = e.problems
        assert (rc == 3) == bool(problems), (target, said, problems)
        assert set(problems) <= set(said), (target, said, problems)
