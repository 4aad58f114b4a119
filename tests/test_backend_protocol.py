"""The Backend protocol: a backend defined outside qcompiler (tests/toy_backend.py, < 100
lines) plugs in with one registry line and gets compile, CLI options and `qcc verify`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qcompiler.backends import registry
from qcompiler.driver.cli import main as qcc
from qcompiler.driver.pipeline import CompileOptions, compile_model, default_pipeline
from qcompiler.driver.verify import verify_outdir
from qcompiler.errors import QccError, UnsupportedOpError

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


@pytest.fixture
def toy():
    registry.register("toy", "toy_backend:TOY")
    yield registry.get("toy")
    del registry.BACKENDS["toy"]


def test_toy_backend_is_small():
    assert len((ROOT / "tests" / "toy_backend.py").read_text().splitlines()) < 100


def test_compile_and_verify_through_the_protocol(toy, tmp_path):
    out = tmp_path / "out"
    res = compile_model(MODELS / "digits_cnn.onnx", out, CompileOptions(target="toy", calib=str(MODELS / "digits_calib.npy")))
    assert {"digits_cnn.ops.json", "digits_cnn.arrays.npz", "digits_cnn.qir", "report.json"} <= set(res.report["files"])
    assert default_pipeline("toy") == list(toy.default_passes)
    result = verify_outdir(out, np.load(MODELS / "digits_eval.npy")[:20])
    assert result["ok"] and result["numpy"]["bit_exact"] and result["samples"] == 20, result


def test_verify_fails_when_the_runtime_differs(toy, tmp_path):
    """The generic loop really compares: a corrupted weight file is caught."""
    out = tmp_path / "out"
    compile_model(MODELS / "digits_cnn.onnx", out, CompileOptions(target="toy", calib=str(MODELS / "digits_calib.npy")))
    arrays = dict(np.load(out / "digits_cnn.arrays.npz"))
    big = max(arrays, key=lambda k: arrays[k].size)
    arrays[big] = (arrays[big] // 2).astype(arrays[big].dtype)
    np.savez(out / "digits_cnn.arrays.npz", **arrays)
    result = verify_outdir(out, np.load(MODELS / "digits_eval.npy")[:20])
    assert not result["ok"] and result["numpy"]["mismatched_elements"] > 0


def test_cli_gets_the_backend_and_its_options(toy, tmp_path, capsys):
    out = tmp_path / "cli"
    assert qcc([str(MODELS / "digits_cnn.onnx"), "--target", "toy", "--toy-indent", "2",
                "--calib", str(MODELS / "digits_calib.npy"), "-o", str(out)]) == 0
    assert (out / "digits_cnn.ops.json").read_text().startswith('[\n  {')
    assert "--toy-indent 2" in json.loads((out / "report.json").read_text())["generated_by"]
    # an option of one target given to another is an error naming both
    assert qcc([str(MODELS / "digits_cnn.onnx"), "--target", "tflm", "--toy-indent", "2", "-o", str(tmp_path / "x")]) != 0
    assert "--toy-indent applies to target toy, not tflm" in capsys.readouterr().err


def test_unsupported_ops_come_from_the_backend(toy, tmp_path):
    with pytest.raises(UnsupportedOpError, match="toy backend"):
        compile_model(MODELS / "digits_dwsep.onnx", tmp_path / "o",
                      CompileOptions(target="toy", calib=str(MODELS / "digits_calib.npy")))


def test_unknown_target_and_unknown_option_are_clear_errors(tmp_path):
    with pytest.raises(QccError, match="unknown target 'nope'"):
        registry.get("nope")
    with pytest.raises(QccError, match="has no option"):
        compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions(target_options={"speed": 1}))
