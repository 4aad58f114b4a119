"""The command line as a new user meets it: version, usage, grouped help, output volume."""
from __future__ import annotations

import subprocess
import sys

from conftest import MODELS
from qcompiler.driver.cli import _short, main as qcc

QCC = [sys.executable, "-m", "qcompiler"]


def test_version_and_bare_usage():
    v = subprocess.run([*QCC, "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("qcc 0.")
    bare = subprocess.run(QCC, capture_output=True, text=True)
    assert bare.returncode == 2
    for command in ("inspect", "verify", "passes", "--version"):
        assert command in bare.stderr


def test_help_is_grouped_with_defaults(capsys):
    try:
        qcc(["-h"])
    except SystemExit as e:
        assert e.code == 0
    text = capsys.readouterr().out
    for group in ("input:", "calibration:", "quantization:", "target:", "output:"):
        assert group in text
    assert "(default: percentile)" in text and "(default: tflm)" in text and "(default: None)" not in text


def test_argparse_mistakes_are_one_line(tmp_path):
    bad = subprocess.run([*QCC, str(MODELS / "digits_cnn.onnx"), "--calib-method", "best"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("qcc: error: argument --calib-method")


def test_default_output_is_a_few_lines_and_quiet_is_silent(tmp_path):
    args = [*QCC, str(MODELS / "digits_cnn.onnx"), "--calib", str(MODELS / "digits_calib.npy")]
    # a relative -o: the line names it, and pytest's numbered tmp paths grow with its run counter
    normal = subprocess.run(args + ["-o", "a"], capture_output=True, text=True, cwd=tmp_path)
    assert normal.returncode == 0 and 1 <= len(normal.stdout.splitlines()) <= 3, normal.stdout
    assert all(len(line) <= 160 for line in normal.stdout.splitlines())
    quiet = subprocess.run(args + ["-o", str(tmp_path / "b"), "-q"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stdout == "" and (tmp_path / "b" / "report.json").is_file()
    verbose = subprocess.run(args + ["-o", str(tmp_path / "c"), "-v"], capture_output=True, text=True)
    assert "digits_cnn.tflite" in verbose.stdout and "pass fold_batchnorm" in verbose.stdout


def test_long_layer_names_are_shortened():
    name = "StatefulPartitionedCall/functional_1/batch_normalization_8/FusedBatchNormV3;conv2d_8/Conv2D" * 3
    short = _short(name)
    assert len(short) <= 48 and short.startswith("StatefulPartitioned") and short.endswith(name[-10:])
