"""Hostile input (issue 17): every class the fuzzer found, as a minimal reproducer.

No traceback, no file outside -o, nothing half-written, a clear one-line error."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import MODELS
from test_cli_errors import assert_clean_failure, run_qcc

CALIB = MODELS / "digits_calib.npy"


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name,stem", [("../x", "x"), ("/abs/x", "abs_x"), ("a\tb", "a_b"), ("ünï", "n"),
                                       ("a" * 300, "a" * 64)])
def test_name_never_leaves_the_output_folder(tmp_path, name, stem):
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, "-m", "qcompiler", str(MODELS / "digits_cnn.onnx"), "--calib", str(CALIB),
                           "-o", "out", "-q", "--name", name], cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {p.split("/")[0] for p in _files(work)} == {"out"}
    assert (work / "out" / f"{stem}.tflite").is_file()


@pytest.mark.parametrize("name", ["/", ".", "..", "_", "***"])
def test_name_without_usable_characters_is_refused(tmp_path, name):
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "out", "--name", name)
    assert_clean_failure(proc, "--name", "no usable file name")
    assert not (tmp_path / "out").exists()


def test_output_path_problems_are_clean_errors(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_clean_failure(run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "afile"),
                         "not a directory")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert_clean_failure(run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "dangling"),
                         "dangling")
    assert_clean_failure(run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / "afile" / "sub"),
                         "cannot create the output directory")
    deep = "/".join(["d" * 200] * 25)
    assert_clean_failure(run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", tmp_path / deep),
                         "File name too long")
    assert not (tmp_path / "nowhere").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".qcc-")]


def test_folder_in_the_way_moves_nothing(tmp_path):
    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    (out / "mine.txt").write_text("keep me")
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", out)
    assert_clean_failure(proc, "report.json")
    assert _files(out) == ["mine.txt", "report.json"]  # nothing half-published
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".qcc-")]


def test_long_output_folder_name_works(tmp_path):
    """The staging folder's name once repeated the output's and passed 255 characters."""
    out = tmp_path / ("o" * 250)
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", CALIB, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "digits_cnn.tflite").is_file()


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return b"\x93NUMPY\x01\x00" + buf.getvalue()[8:]


def _calib_files(tmp_path):
    x = np.load(CALIB)
    files = {}
    files["object.npz"] = lambda p: np.savez(p, input=np.array([{"a": 1}], dtype=object))
    files["empty.npy"] = lambda p: p.write_bytes(b"")
    files["garbage.npy"] = lambda p: p.write_bytes(b"\x93NUMPY\x01\x00garbage")
    files["text.npy"] = lambda p: p.write_text("hello world")
    files["negative.npy"] = lambda p: p.write_bytes(_npy_header((-5, 1, 8, 8)))

    def huge_used(p):
        with zipfile.ZipFile(p, "w") as zf:
            zf.writestr("input.npy", _npy_header((100000, 1, 8, 100000)))
    files["huge_used.npz"] = huge_used
    return files, x


@pytest.mark.parametrize("kind,needle", [("object.npz", "dtype object"), ("empty.npy", "not a readable"),
                                         ("garbage.npy", "not a readable"), ("text.npy", "never loads"),
                                         ("negative.npy", "not a readable"), ("huge_used.npz", "--max-memory")])
def test_malformed_calibration_files(tmp_path, kind, needle):
    files, _ = _calib_files(tmp_path)
    path = tmp_path / kind
    files[kind](path)
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", path, "-o", tmp_path / "out")
    assert_clean_failure(proc, kind, needle)
    assert "allow_pickle" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unused_huge_npz_member_is_never_read(tmp_path):
    x = np.load(CALIB)
    buf = io.BytesIO()
    np.save(buf, x)
    with zipfile.ZipFile(tmp_path / "c.npz", "w") as zf:
        zf.writestr("input.npy", buf.getvalue())
        zf.writestr("extra.npy", _npy_header((100000, 100000)))  # 40 GB declared, no data
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", tmp_path / "c.npz", "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args,needle", [(["--input-range", "1"], "--input-range"),
                                         (["--input-range", "0,inf"], "--input-range"),
                                         (["--input-shape", "input=0,1,8,8"], "positive"),
                                         (["--input-shape", "input=-1,1,8,8"], "positive"),
                                         (["--max-memory", "0"], "--max-memory")])
def test_bad_option_values(tmp_path, args, needle):
    assert_clean_failure(run_qcc(MODELS / "digits_cnn.onnx", *args, "-o", tmp_path / "out"), needle)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_names_cannot_break_the_generated_c(tmp_path):
    """An input named like a comment terminator once made the header fail -Werror=comment."""
    import onnx
    m = onnx.load(MODELS / "digits_cnn.onnx")
    evil = "*/ int evil; /* ??="
    for node in m.graph.node:
        node.input[:] = [evil if i == "input" else i for i in node.input]
    m.graph.input[0].name = evil
    onnx.save(m, tmp_path / "evil.onnx")
    np.savez(tmp_path / "c.npz", **{evil: np.load(CALIB)})
    proc = run_qcc(tmp_path / "evil.onnx", "--calib", tmp_path / "c.npz", "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr
    header = tmp_path / "out" / "evil_model_data.h"
    cc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wcomment", "-Wtrigraphs",
                         "-fsyntax-only", "-x", "c", str(header)], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr


def _with_extreme(tmp_path, ndim: int, value: float, index=None):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(MODELS / "digits_cnn.onnx")
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init).copy()
        if a.ndim == ndim:
            if index is None:
                a[...] = value
            else:
                a.flat[index] = value
            init.CopyFrom(numpy_helper.from_array(a, init.name))
            break
    onnx.save(m, tmp_path / "m.onnx")
    return tmp_path / "m.onnx"


@pytest.mark.parametrize("ndim,value,index", [(1, -3e38, None), (4, 3.4028e38, 15)])
def test_extreme_weights_are_named_without_warnings(tmp_path, ndim, value, index):
    """Finite extremes overflow BatchNorm folding and the histograms: a traceback, numpy
    RuntimeWarnings, or (a bias of -3e38) a model that ran but computed garbage."""
    proc = run_qcc(_with_extreme(tmp_path, ndim, value, index), "--calib", CALIB, "-o", tmp_path / "out")
    assert_clean_failure(proc, "NaN or Inf")
    assert "RuntimeWarning" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_extreme_calibration_value_is_named(tmp_path):
    x = np.load(CALIB).copy()
    x[0, 0, 0, 0] = -3e38
    np.save(tmp_path / "c.npy", x)
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", tmp_path / "c.npy", "-o", tmp_path / "out")
    assert_clean_failure(proc, "sample 0", "3e+38")  # refused as an outlier sample, before any range


def test_native_crashes_are_isolated():
    """TFLM's C++ aborted (SIGABRT) or divided by zero (SIGFPE) inside qcc's own process."""
    import os
    from qcompiler.util.forked import ChildFailed, isolated
    assert isolated(lambda: 6 * 7) == 42

    def crash():
        os.write(2, b"kernel_util.cc:42 scale_diff / output_scale <= 0.02 was not true.\n")
        os.abort()
    with pytest.raises(ChildFailed, match="SIGABRT: kernel_util.cc:42 scale_diff"):
        isolated(crash)
    with pytest.raises(ChildFailed, match="ValueError: bad"):
        isolated(lambda: (_ for _ in ()).throw(ValueError("bad")))


def _external_model(folder, location="weights.bin"):
    """digits_cnn saved with its weights in `location` (relative to the model's folder)."""
    import onnx
    folder.mkdir(parents=True, exist_ok=True)
    m = onnx.load(MODELS / "digits_cnn.onnx")
    onnx.save(m, folder / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    if location != "weights.bin":
        m = onnx.load(folder / "m.onnx", load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, folder / "m.onnx")
    return folder / "m.onnx"


def test_external_data_symlink_out_of_the_folder_is_refused(tmp_path):
    """onnx 1.14 / 1.15 follow such a link; qcc resolves external data itself on every version."""
    model = _external_model(tmp_path / "model")
    secret = tmp_path / "secret.bin"
    shutil.move(tmp_path / "model" / "weights.bin", secret)
    (tmp_path / "model" / "weights.bin").symlink_to(secret)
    proc = run_qcc(model, "--calib", CALIB, "-o", tmp_path / "out")
    assert_clean_failure(proc, "weights.bin", "leaves the model's folder")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("location,needle", [("../secret.bin", "relative path inside"),
                                             ("/etc/passwd", "relative path inside"),
                                             ("missing.bin", "not a file beside the model")])
def test_external_data_outside_or_missing_is_refused(tmp_path, location, needle):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 100000)
    model = _external_model(tmp_path / "model", location)
    assert_clean_failure(run_qcc(model, "--calib", CALIB, "-o", tmp_path / "out"), needle)


def test_external_data_beyond_the_file_is_refused(tmp_path):
    import onnx
    model = _external_model(tmp_path / "model")
    m = onnx.load(model, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "offset":
            e.value = str(10 ** 12)
    onnx.save(m, model)
    assert_clean_failure(run_qcc(model, "--calib", CALIB, "-o", tmp_path / "out"), "bytes", "file")


def test_external_data_inside_the_folder_loads(tmp_path):
    model = _external_model(tmp_path / "model")
    proc = run_qcc(model, "--calib", CALIB, "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr


def test_one_corrupt_calibration_sample_is_refused(tmp_path):
    """Fuzz seed 2, case 623: one value 1e20 in a calibration file compiled (exit 0) into a model
    whose every output was wrong."""
    data = np.load(CALIB).copy()
    data[17, 0, 3, 3] = 1e20
    np.save(tmp_path / "c.npy", data)
    proc = run_qcc(MODELS / "digits_cnn.onnx", "--calib", tmp_path / "c.npy", "-o", tmp_path / "out")
    assert_clean_failure(proc, "sample 17", "corrupt sample")
    assert not (tmp_path / "out").exists()
