"""Forked background computations (the per-layer report overlaps with the backend)."""
from __future__ import annotations

import os

import numpy as np

from conftest import MODELS
from qcompiler.util import forked
from qcompiler.util.forked import Forked
from qcompiler.driver.pipeline import CompileOptions, compile_model, optimize, pass_list, quantize
from qcompiler.frontend.onnx_import import load_model


def test_result_comes_from_the_child():
    parent = os.getpid()
    job = Forked(lambda: (os.getpid(), np.arange(5) * 2))
    pid, arr = job.result()
    assert np.array_equal(arr, np.arange(5) * 2)
    if forked.available_cores() >= 2:
        assert pid != parent  # computed in the child


def test_a_failing_child_is_recomputed_here():
    parent = os.getpid()

    def only_here():
        if os.getpid() != parent:
            raise RuntimeError("child failure")
        return "computed in the parent"
    assert Forked(only_here).result() == "computed in the parent"


def test_one_core_computes_in_process(monkeypatch):
    monkeypatch.setattr(forked, "available_cores", lambda: 1)
    job = Forked(os.getpid)
    assert job.pid is None and job.result() == os.getpid()


def test_cancel_stops_the_child():
    job = Forked(lambda: __import__("time").sleep(30))
    pid = job.pid
    job.cancel()
    assert job.pid is None
    if pid is not None:
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive


def test_deferred_report_equals_the_inline_one(tmp_path):
    model, calib = MODELS / "digits_dwsep.onnx", str(MODELS / "digits_calib.npy")
    opts = CompileOptions(calib=calib)
    g, _ = optimize(load_model(model), pass_list(opts), opts)
    _, inline, _ = quantize(g, calib, opts)
    result = compile_model(model, tmp_path / "out", opts)  # the report runs in a child there
    assert result.report["layers"] == inline["layers"]
    assert result.report["calibration"]["worst_layers"] == inline["worst_layers"]
    assert "_pending_report" not in result.report["calibration"]
