"""User mistakes: one-line error naming the problem, non-zero exit, no traceback, no output left."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS

QCC = [sys.executable, "-m", "qcompiler"]


def run_qcc(*args):
    return subprocess.run(QCC + [str(a) for a in args], capture_output=True, text=True)


def assert_clean_failure(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_malformed_onnx(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf model")
    out = tmp_path / "out"
    proc = run_qcc(bad, "--calib", MODELS / "digits_calib.npy", "-o", out)
    assert_clean_failure(proc, "broken.onnx")
    assert not out.exists()


def test_missing_model(tmp_path):
    proc = run_qcc(tmp_path / "nope.onnx", "-o", tmp_path / "out")
    assert_clean_failure(proc, "nope.onnx", "does not exist")


def _tiny_model(path, op="Relu", weights=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])
    w = weights if weights is not None else np.ones((2, 2, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1"),
             helper.make_node(op, ["c"], ["y"], name="act1")]
    g = helper.make_graph(nodes, "tiny", [x], [y], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


def test_unsupported_ops_listed_in_one_error(tmp_path):
    m = tmp_path / "m.onnx"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [helper.make_node("Det", ["x"], ["a"], name="det_node"),
             helper.make_node("Einsum", ["a"], ["y"], name="einsum_node", equation="i->i")]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 13)]), m)
    proc = run_qcc(m, "--calib", MODELS / "digits_calib.npy", "-o", tmp_path / "out")
    assert_clean_failure(proc, "unsupported", "Det", "Einsum", "einsum_node")
    assert not (tmp_path / "out").exists()


def test_calibration_file_of_wrong_shape(tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((10, 3, 8, 8), np.float32))
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", calib, "-o", tmp_path / "out")
    assert_clean_failure(proc, "calib.npy", "input", "[N, 1, 8, 8]")
    assert not (tmp_path / "out").exists()


def test_nan_weights(tmp_path):
    m = tmp_path / "nan.onnx"
    w = np.ones((2, 2, 1, 1), np.float32)
    w[1, 0, 0, 0] = np.nan
    _tiny_model(m, weights=w)
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).normal(size=(4, 2, 4, 4)).astype(np.float32))
    proc = run_qcc(m, "--calib", calib, "-o", tmp_path / "out")
    assert_clean_failure(proc, "NaN")
    assert "w" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_missing_calibration_is_a_clear_error(tmp_path):
    proc = run_qcc(MODELS / "digits_cnn.onnx", "-o", tmp_path / "out")
    assert_clean_failure(proc, "--calib")


def test_verify_reports_mismatch_with_nonzero_exit(tmp_path):
    out = tmp_path / "out"
    ok = run_qcc(MODELS / "digits_cnn.onnx", "--calib", MODELS / "digits_calib.npy", "-o", out)
    assert ok.returncode == 0, ok.stderr
    good = run_qcc("verify", out, "--data", MODELS / "digits_eval.npy", "--limit", "5")
    assert good.returncode == 0, good.stdout + good.stderr
    # tamper with the output zero point stored in the flatbuffer: runtime and reference now differ
    from qcompiler.backends.tflite.flatbuffer import read_model, write_model
    tfl = out / "digits_cnn.tflite"
    model = read_model(tfl.read_bytes())
    t = model.tensors[model.outputs[0]]
    t.zero_point = [t.zero_point[0] + 3]
    tfl.write_bytes(write_model(model))
    bad = run_qcc("verify", out, "--data", MODELS / "digits_eval.npy", "--limit", "5")
    assert bad.returncode != 0
    assert '"bit_exact": false' in bad.stdout
