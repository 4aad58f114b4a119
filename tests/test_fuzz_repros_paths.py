"""Fuzz reproducers (see tests/fuzz_repro.py): --name and -o never write outside -o, and a
bad output path is a clean error that leaves -o as it was."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fuzz_repro import assert_clean_error, assert_handled, compile_cnn


def _files(tmp: Path) -> set[str]:
    return {str(p.relative_to(tmp)) for p in tmp.rglob("*")}


def written_outside_o(tmp: Path, *extra) -> list[str]:
    """Compile with these options (compiling or refusing cleanly); the files written outside
    tmp/out, besides the model and the calibration file."""
    before = _files(tmp) | {"model.onnx", "calib.npy"}
    assert_handled(compile_cnn(tmp, *extra))
    out = (tmp / "out").resolve()
    return sorted(p for p in _files(tmp) - before if not (tmp / p).resolve().is_relative_to(out)
                  and not (tmp / p).is_dir() and p != ".ses")


def no_staging_folder(tmp: Path) -> bool:
    return not [p for p in tmp.iterdir() if ".qcc-" in p.name]


# ---------------------------------------------------------------- files outside -o / --name

def test_name_with_parent_dir_writes_inside_o(tmp_path):
    assert written_outside_o(tmp_path, "--name", "../x") == []


@pytest.mark.parametrize("name", ["abs/x", ""], ids=["abs-x", "trailing-slash"])
def test_absolute_name_writes_inside_o(tmp_path, name):
    # "<folder>/" stands for `--name /`, which wrote /.tflite and /.qir at the root
    (tmp_path / "abs").mkdir()
    assert written_outside_o(tmp_path, "--name", f"{tmp_path}/{name}") == []


def test_name_with_subfolder(tmp_path):
    assert_handled(compile_cnn(tmp_path, "--name", "a/b"))


@pytest.mark.parametrize("name", ["..", ".", "_", "\t", "模型"])
def test_name_without_identifier_characters(tmp_path, name):
    assert_handled(compile_cnn(tmp_path, "--name", name))


def test_name_of_251_characters(tmp_path):
    assert_handled(compile_cnn(tmp_path, "--name", "n" * 251))


# ---------------------------------------------------------------- -o paths

def test_output_folder_name_of_250_characters(tmp_path):
    assert_handled(compile_cnn(tmp_path, out="o" * 250))


def test_output_path_of_5000_characters(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, out="/".join(["p" * 200] * 25)))


def test_existing_output_holding_a_folder_named_report_json(tmp_path):
    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    (out / "keep.txt").write_text("keep")
    assert_clean_error(compile_cnn(tmp_path))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "report.json"]
    assert no_staging_folder(tmp_path)


def test_output_is_a_dangling_symlink(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "missing")
    assert_clean_error(compile_cnn(tmp_path))
    assert no_staging_folder(tmp_path)


def test_output_path_through_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_clean_error(compile_cnn(tmp_path, out="afile/out"))


@contextlib.contextmanager
def read_only_folder(path: Path):
    """A new folder nobody may write into (as root: the immutable flag), or skip."""
    path.mkdir()
    path.chmod(0o555)
    as_root = os.geteuid() == 0
    if as_root and not (shutil.which("chattr") and
                        subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0):
        path.chmod(0o755)
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    try:
        yield path
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755)


def test_output_in_a_read_only_folder(tmp_path):
    with read_only_folder(tmp_path / "ro"):
        assert_clean_error(compile_cnn(tmp_path, out="ro/out"))


def test_output_is_an_existing_read_only_folder(tmp_path):
    with read_only_folder(tmp_path / "out"):
        assert_clean_error(compile_cnn(tmp_path))
        assert no_staging_folder(tmp_path)
