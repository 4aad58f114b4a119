"""Helpers of the fuzz campaign's minimal reproducers (tests/test_fuzz_repros_*.py; the campaigns:
bench/fuzz_results.md, issue 17).

Each reproducer makes ONE hostile input, mostly from models/digits_cnn.onnx, runs `qcc` in tmp_path
and asserts what must hold once issue 17 is fixed: a failure is one `qcc: error:` line with a
non-zero exit (no traceback, no log noise), nothing is written outside -o, -o is untouched
after a failure, and an exit-0 model is right. Every cause of the seed-1 campaign is fixed;
these keep it so. About 70 qcc runs (80 s on the 2-core box); the MLPerf Tiny cases skip
without ../shared.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from conftest import MODELS

QCC = [sys.executable, "-m", "qcompiler"]
MEM_LIMIT = 2 << 30  # address space of each run: a 10^10-element allocation must fail, not page


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))


def qcc(cwd: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(cwd), OMP_NUM_THREADS="1")
    return subprocess.run(QCC + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, preexec_fn=_limits, env=env)


def cnn(tmp: Path, mutate=None, name: str = "model.onnx", src: str = "digits_cnn") -> Path:
    """The sample model with one mutation applied (no checks: the point is a broken file)."""
    m = onnx.load(MODELS / f"{src}.onnx")
    if mutate is not None:
        mutate(m)
    path = tmp / name
    path.write_bytes(m.SerializeToString())
    return path


def calib(tmp: Path, data: np.ndarray | bytes | None = None, name: str = "calib.npy") -> Path:
    path = tmp / name
    if data is None:
        shutil.copyfile(MODELS / "digits_calib.npy", path)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        np.save(path, data)
    return path


def compile_cnn(tmp: Path, *extra, mutate=None, out: str = "out") -> subprocess.CompletedProcess:
    return qcc(tmp, cnn(tmp, mutate), "--calib", calib(tmp), "-o", out, *extra)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert proc.returncode not in (0, 70), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("qcc: error:"), proc.stderr
    assert all(line.startswith("qcc:") for line in lines), proc.stderr  # qcc's own warnings only
    assert "\x1b[" not in proc.stderr + proc.stdout and "allow_pickle" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


def assert_handled(proc: subprocess.CompletedProcess) -> None:
    """Either compiled or refused cleanly."""
    if proc.returncode != 0:
        assert_clean_error(proc)


def initializer(m: onnx.ModelProto, key: str | int) -> TensorProto:
    """An initializer by name, or by position (MLPerf names run to 300 characters)."""
    if isinstance(key, int):
        return m.graph.initializer[key]
    return next(t for t in m.graph.initializer if t.name == key)


def set_element(key: str | int, index: int, value):
    """A mutation: one element of an initializer := value."""
    def mutate(m):
        t = initializer(m, key)
        w = numpy_helper.to_array(t).copy()
        w.flat[index] = value
        t.CopyFrom(numpy_helper.from_array(w, t.name))
    return mutate


def io_dtype(which: str, code: int):
    """A mutation: the first graph "input" or "output" declares this element type."""
    def mutate(m):
        getattr(m.graph, which)[0].type.tensor_type.elem_type = code
    return mutate
