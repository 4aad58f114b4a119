"""Fuzz reproducers (see tests/fuzz_repro.py): hostile calibration files and option values are
clean errors."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS
from fuzz_repro import assert_clean_error, assert_handled, calib, cnn, qcc

PICKLED = np.array([{"a": 1}, None], dtype=object)


def npy_header(descr: str, shape: tuple) -> bytes:
    """A .npy v1.0 header declaring any shape; the caller writes as little data as it likes."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    text = (d + " " * (64 - (10 + len(d) + 1) % 64) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npy(arr, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def npz(tmp: Path, members: dict[str, bytes]) -> Path:
    path = tmp / "calib.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def compile_with(tmp: Path, calib_path: Path, out: str = "out"):
    return qcc(tmp, cnn(tmp), "--calib", calib_path, "-o", out)


# ---------------------------------------------------------------- calibration files

@pytest.mark.parametrize("shape,data", [((-1, 1, 8, 8), "4 samples"), ((2 ** 62, 1, 8, 8), bytes(1024))],
                         ids=["negative", "huge"])
def test_npy_header_with_a_shape_out_of_range(tmp_path, shape, data):
    if data == "4 samples":
        data = np.load(MODELS / "digits_calib.npy")[:4].tobytes()
    assert_clean_error(compile_with(tmp_path, calib(tmp_path, npy_header("<f4", shape) + data)))


def test_npz_with_a_pickled_member(tmp_path):
    x = np.load(MODELS / "digits_calib.npy")
    members = {"input.npy": npy(x), "extra.npy": npy(PICKLED, True)}
    assert_handled(compile_with(tmp_path, npz(tmp_path, members)))  # never read
    members = {"input.npy": npy(PICKLED, True)}
    assert_clean_error(compile_with(tmp_path, npz(tmp_path, members), "out2"), "dtype object")


def test_npz_with_an_unused_member_declaring_1e10_floats(tmp_path):
    x = np.load(MODELS / "digits_calib.npy")
    members = {"input.npy": npy(x), "extra.npy": npy_header("<f4", (10 ** 10,))}
    assert_handled(compile_with(tmp_path, npz(tmp_path, members)))  # not an input: ignoring it is fine too


def test_calibration_value_near_float32_min(tmp_path):
    x = np.load(MODELS / "digits_calib.npy").copy()
    x.flat[5] = -3e38
    assert_clean_error(compile_with(tmp_path, calib(tmp_path, x)))


@pytest.mark.parametrize("data", [b"", b"\x08\x07not numpy"], ids=["empty", "garbage"])
def test_calibration_file_that_is_not_npy(tmp_path, data):
    assert_clean_error(compile_with(tmp_path, calib(tmp_path, data)))


# ---------------------------------------------------------------- CLI options

@pytest.mark.parametrize("value", ["1", "0,1e39"], ids=["one-value", "beyond-float32"])
def test_input_range_refused(tmp_path, value):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--input-range", value, "-o", "out"))


@pytest.mark.parametrize("args", [["--input-range", "-1,1"], ["-o", "-x"]], ids=["input-range", "output"])
def test_option_value_starting_with_dash(tmp_path, args):
    assert_handled(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), *args))


@pytest.mark.parametrize("shape", ["input=-1,1,8,8", "input=0,1,8,8", "input=99999999999999999999,1,8,8"])
def test_input_shape_out_of_range(tmp_path, shape):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "out", "--input-shape", shape))
