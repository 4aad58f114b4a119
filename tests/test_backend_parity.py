"""Backend parity (issue 20): every op that some backend lowers runs on every backend, or
that backend declares why not.

The ops come from the tables themselves: the union of `supported_ops()` of every registered
backend (a backend registered later, such as `--target c`, joins by itself) and of the
integer reference's kernels. For each op and backend, the op's tiny model
(tests/parity_models.py) either compiles and verifies -- bit-exact against the integer
reference for TFLM / TFLite / TVM, within ncnn's tolerance of its scheme simulation --,
with `qcc inspect --target` (driver.pipeline.target_support) reporting no problem, or the
backend's `unsupported_reason(op)` names what its runtime lacks and both compiling and
inspecting refuse the model with that reason. An op added to one table fails here until the
other backends lower it or declare why they cannot; a declared refusal that compiles fails
too (the declaration is stale).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from parity_models import MODELS
from qcompiler.backends import registry
from qcompiler.driver.pipeline import CompileOptions, compile_model, optimize, pass_list, target_support
from qcompiler.driver.verify import verify_outdir
from qcompiler.errors import MissingDependencyError, UnsupportedOpError
from qcompiler.frontend.onnx_import import load_model
from qcompiler.interp import INT_KERNELS


def _backends() -> dict:
    out = {}
    for name in registry.names():
        try:
            out[name] = registry.get(name)
        except MissingDependencyError:
            continue  # its runtime is not installed here: nothing to hold it to
    return out


BACKENDS = _backends()
OPS = sorted(set(INT_KERNELS).union(*(b.supported_ops() for b in BACKENDS.values())))


def test_every_op_has_a_parity_model():
    missing = sorted(set(OPS) - set(MODELS))
    assert not missing, f"add a tiny model to tests/parity_models.py for: {', '.join(missing)}"


def _data(model: onnx.ModelProto, n: int, seed: int) -> np.ndarray:
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal([n] + dims[1:]).astype(np.float32)


def run_parity(op: str, target: str, tmp_path) -> str:
    """Hold `target` to its answer for `op`; returns "runs" or "refused: <reason>"."""
    backend = registry.get(target)
    model = MODELS[op]()
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, str(path))
    calib, check = _data(model, 16, 0), _data(model, 4, 1)
    opts = CompileOptions(target=target, calib=calib)
    graph, _ = optimize(load_model(path), pass_list(opts), opts)
    problems = target_support(graph, backend)
    # an op the default pipeline rewrites away (Div by a constant -> Mul) is held to running;
    # the backend's declaration covers only the forms that stay (Div by a tensor)
    reason = backend.unsupported_reason(op) if any(n.op == op for n in graph.nodes) else None
    if reason is not None:
        assert any(reason in p for p in problems), (f"qcc inspect --target {target} does not give the "
                                                    f"declared reason for {op}: {problems}")
        try:
            compile_model(path, tmp_path / "out", opts)
        except UnsupportedOpError as e:
            assert reason in str(e), f"{target} refuses {op} without its declared reason: {e}"
            return f"refused: {reason}"
        raise AssertionError(f"{target} declares it cannot run {op} ({reason}) but compiles it: "
                             "drop the declaration")
    if problems:
        raise AssertionError(f"{target} neither runs {op} nor declares why (unsupported_reason); "
                             f"qcc inspect --target {target} reports: {problems}")
    try:
        compile_model(path, tmp_path / "out", opts)
    except UnsupportedOpError as e:
        raise AssertionError(f"{target} neither runs {op} nor declares why (unsupported_reason): {e}") from None
    result = verify_outdir(tmp_path / "out", check)
    assert result["ok"], f"{target} runs {op} but verify fails: {result}"
    return "runs"


@pytest.mark.parametrize("target", sorted(BACKENDS))
@pytest.mark.parametrize("op", OPS)
def test_op_runs_or_is_declared(op, target, tmp_path):
    if op not in MODELS:
        pytest.fail(f"no parity model for {op} (tests/parity_models.py)")
    run_parity(op, target, tmp_path)


def test_parity_fails_when_a_table_loses_an_op(monkeypatch, tmp_path):
    """The check bites: without its lowering (and without a declared reason) PRelu fails."""
    from qcompiler.backends.tflite.lower_core import LOWERINGS
    assert run_parity("PRelu", "tflm", tmp_path / "a") == "runs"
    monkeypatch.delitem(LOWERINGS, "PRelu")
    with pytest.raises(AssertionError, match="neither runs PRelu nor declares why"):
        run_parity("PRelu", "tflm", tmp_path / "b")


def test_parity_fails_on_a_stale_declaration(monkeypatch, tmp_path):
    """A declared refusal of an op the backend runs is reported as stale."""
    backend = registry.get("tflm")
    monkeypatch.setattr(type(backend), "unsupported_reason", lambda self, op: "no such kernel")
    with pytest.raises(AssertionError, match="does not give the declared reason"):
        run_parity("Relu", "tflm", tmp_path)
