"""Mutators of whole files: the ONNX bytes (family "bytes") and the calibration file
(family "calib")."""
from __future__ import annotations

import math

import numpy as np

from .case import EXTREMES, HUGE, Ctx, npy_bytes, npy_header, npz_bytes


# ----- mutators: ONNX bytes

def _bytes(c: Ctx) -> bytes:
    return c.model.SerializeToString()


def b_bitflip(c: Ctx):
    data = bytearray(_bytes(c))
    k = c.choice([1, 1, 2, 4, 16])
    pos = sorted(c.rng.randrange(len(data) * 8) for _ in range(k))
    for p in pos:
        data[p // 8] ^= 1 << (p % 8)
    c.model_bytes = bytes(data)
    c.note(f"flipped {k} bit(s) at bit offsets {pos[:6]}")


def b_truncate(c: Ctx):
    data = _bytes(c)
    n = c.choice([0, 1, 16, c.rng.randrange(len(data)), len(data) - 1, len(data) // 2])
    c.model_bytes = data[:n]
    c.note(f"truncated to {n} of {len(data)} bytes")


def b_splice(c: Ctx):
    data = _bytes(c)
    other = c.choice(c.specs).onnx_bytes
    a = c.rng.randrange(len(data))
    b = min(len(data), a + c.rng.randrange(1, 4096))
    oa = c.rng.randrange(len(other))
    ob = min(len(other), oa + c.rng.randrange(1, 4096))
    c.model_bytes = data[:a] + other[oa:ob] + data[b:]
    c.note(f"bytes [{a}:{b}] replaced by [{oa}:{ob}] of another model ({ob - oa} bytes)")


def b_byteset(c: Ctx):
    data = bytearray(_bytes(c))
    k = c.choice([1, 3, 10])
    pos = sorted(c.rng.randrange(len(data)) for _ in range(k))
    v = c.choice([0x00, 0xFF, 0x7F, 0x80])
    for p in pos:
        data[p] = v
    c.model_bytes = bytes(data)
    c.note(f"bytes at {pos[:6]} := 0x{v:02x}")


def b_garbage(c: Ctx):
    kind = c.choice(["empty", "text", "append", "zeros", "repeat"])
    data = _bytes(c)
    c.model_bytes = {"empty": b"", "text": b"this is not an onnx model\n", "append": data + b"\xff" * 64,
                     "zeros": bytes(4096), "repeat": data + data}[kind]
    c.note(f"model file := {kind}")


BYTE_MUTATORS = [(b_bitflip, 5), (b_truncate, 3), (b_splice, 3), (b_byteset, 3), (b_garbage, 1)]


# ----- mutators: calibration files

def _calib(c: Ctx) -> np.ndarray:
    return c.spec.calib


def c_empty(c: Ctx):
    c.calib_file = b""
    c.note("calibration file is empty (0 bytes)")


def c_garbage_header(c: Ctx):
    c.calib_file = c.choice([b"\x93NUMPY\x01\x00\xff\xff" + b"garbage" * 10,
                             b"\x93NUMPY\x09\x09" + bytes(100),
                             b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n" + bytes(64),
                             npy_header("<f4", (2, 2))[:-8] + b"\n"])
    c.note("calibration .npy with a garbage header")


def c_header_shape(c: Ctx):
    x = _calib(c)
    rest = tuple(x.shape[1:])
    shape = c.choice([(-1,) + rest, (-5,) + rest, (HUGE,) + rest, (0,) + rest, (4, -3) + rest[1:],
                      (2 ** 62,) + rest, (len(x),)])
    c.calib_file = npy_header("<f4", shape) + x[:4].tobytes()
    c.note(f"calibration .npy header declares shape {shape} over {4 * math.prod(rest)} floats of data")


def c_descr(c: Ctx):
    x = _calib(c)
    descr = c.choice(["O", "|V8", "<U4", "<f16", "<c8", "|b1", "<M8[s]", "not a dtype"])
    c.calib_file = npy_header(descr, x.shape) + x.tobytes()
    c.note(f"calibration .npy header declares dtype {descr!r} over float32 bytes")


def _pickled_samples(x: np.ndarray) -> bytes:
    """An object array holding one array per sample, pickled: builtins only, so the pickle,
    if ever loaded, builds numpy arrays."""
    obj = np.empty(len(x), dtype=object)
    for i in range(len(x)):
        obj[i] = x[i]
    return npy_bytes(obj, allow_pickle=True)


def c_pickle(c: Ctx):
    c.calib_file = _pickled_samples(_calib(c))
    c.note("calibration .npy is a pickled object array (one array per sample)")


def c_text(c: Ctx):
    c.calib_file = c.choice([b"0.1,0.2,0.3\n0.4,0.5,0.6\n", b"# just text\n", "\u00e9\u00e8\n".encode()])
    c.note("calibration file is a text file named .npy")


def c_shape(c: Ctx):
    x = _calib(c)
    op = c.choice(["nhwc", "one_sample", "extra_axis", "flat", "zero", "one", "swap_last"])
    if op == "nhwc" and x.ndim == 4:
        y = x.transpose(0, 2, 3, 1)
    elif op == "one_sample":
        y = x[0]
    elif op == "extra_axis":
        y = x[:, None]
    elif op == "flat":
        y = x.reshape(len(x), -1)
    elif op == "zero":
        y = x[:0]
    elif op == "one":
        y = x[:1]
    elif x.ndim >= 3:
        y = np.ascontiguousarray(np.swapaxes(x, -1, -2))
    else:
        y = x.reshape(len(x), 1, -1)
    c.calib_file = npy_bytes(np.ascontiguousarray(y))
    c.note(f"calibration array {op}: shape {list(x.shape)} -> {list(y.shape)}")
    if op == "one":
        c.case.calib_array = y


def c_dtype(c: Ctx):
    x = _calib(c)
    dt = c.choice(["int8", "uint8", "float64", "float16", "int64", "bool", "complex64", "U3", "struct", ">f4"])
    with np.errstate(all="ignore"):
        if dt == "U3":
            y = x.astype("U3")
        elif dt == "struct":
            y = np.zeros(x.shape, dtype=[("a", "<f4"), ("b", "<i4")])
        else:
            y = x.astype(dt)
    c.calib_file = npy_bytes(y)
    c.note(f"calibration array dtype float32 -> {dt}")
    if dt in ("float64", "float16", ">f4", "int64", "int8", "uint8"):
        c.case.calib_array = y.astype(np.float32)


def c_values(c: Ctx):
    x = _calib(c).copy()
    v = c.choice(EXTREMES + ["zeros", "const", "tiny"])
    if v == "zeros":
        x[...] = 0
    elif v == "const":
        x[...] = 0.5
    elif v == "tiny":
        x *= np.float32(1e-40)
    else:
        how = c.choice(["one", "all"])
        if how == "one":
            x.flat[c.rng.randrange(x.size)] = v
        else:
            x[...] = v
        v = f"{how} := {v:g}"
    c.calib_file = npy_bytes(x)
    c.case.calib_array = x
    c.note(f"calibration values: {v}")


def c_npz(c: Ctx):
    x = _calib(c)
    name = c.spec.input_name
    op = c.choice(["valid", "wrong_key", "huge_extra", "pickled_extra", "pickled_input", "empty",
                   "corrupt", "text_member", "npy_named_npz", "npz_named_npy", "zip_slip_key"])
    members: dict[str, bytes] = {f"{name}.npy": npy_bytes(x)}
    fname = "calib.npz"
    if op == "wrong_key":
        members = {"not_the_input.npy": members[f"{name}.npy"]}
    elif op == "huge_extra":
        members["extra.npy"] = npy_header("<f4", (HUGE,))
    elif op == "pickled_extra":
        members["extra.npy"] = npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif op == "pickled_input":
        members = {f"{name}.npy": _pickled_samples(x)}
    elif op == "empty":
        members = {}
    elif op == "text_member":
        members["extra.npy"] = b"not an npy"
    elif op == "zip_slip_key":
        members["../../escape.npy"] = npy_bytes(np.zeros(3, np.float32))
    data = npz_bytes(members)
    if op == "corrupt":
        data = data[: len(data) // 2]
    elif op == "npy_named_npz":
        data = npy_bytes(x)
    elif op == "npz_named_npy":
        fname = "calib.npy"
    c.calib_file, c.calib_arg = data, fname
    if op in ("valid", "npz_named_npy", "zip_slip_key", "huge_extra", "pickled_extra", "text_member"):
        c.case.calib_array = x
    c.note(f"calibration .npz: {op}")


# what --calib names -> (the argument, what the sandbox holds there)
CALIB_PATHS = {"missing": ("nope.npy", []), "directory": ("calibdir.npy", [("dir", "w/calibdir.npy")]),
               "model_file": ("model.onnx", []),
               "dangling_symlink": ("link.npy", [("symlink", "w/link.npy", "{BASE}/w/nothing_here.npy")]),
               "fifo": ("pipe.npy", [("fifo", "w/pipe.npy")]), "empty_arg": ("", [])}


def c_path(c: Ctx):
    op = c.choice(list(CALIB_PATHS))
    c.calib_arg, setup = CALIB_PATHS[op]
    c.case.setup += setup
    c.write_calib = op == "empty_arg"
    c.note(f"--calib path: {op} ({c.calib_arg!r})")


CALIB_MUTATORS = [(c_empty, 1), (c_garbage_header, 2), (c_header_shape, 3), (c_descr, 2), (c_pickle, 2),
                  (c_text, 1), (c_shape, 3), (c_dtype, 3), (c_values, 4), (c_npz, 5), (c_path, 2)]
