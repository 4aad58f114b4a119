#!/usr/bin/env python3
"""Fuzz the `qcc` command line with hostile inputs and classify every run (issue 17).

Each case takes one sample or MLPerf Tiny model, applies ONE mutation (to the ONNX
bytes, an ONNX protobuf field, the calibration file, a CLI option, the output path
or external data), runs `python -m qcompiler ...` in a fresh sandbox folder
(timeout + address-space limit), and classifies the run, worst first:

    outside-write   a file created or changed outside -o (the sandbox is snapshotted
                    before/after; every path a case can escape to lies inside it)
    signal          killed by a signal (SIGSEGV, SIGFPE, SIGABRT, ...)
    memory          an allocation failure that is not a clean `qcc: error:`
    timeout         still running after --timeout seconds
    silently-wrong  exit 0, but the emitted model disagrees with onnxruntime on the
                    mutated model (relative error > 0.3 of the reference output range),
                    declares output sizes that differ from the computed ones, fails to
                    run in LiteRT, or its C source does not compile with -Werror
    outside-read    exit 0 although external data lies outside the model's folder
    traceback       a Python traceback (qcc's "internal error", exit 70)
    leftover        a `.qcc-` temp folder, a file in TMPDIR, partial output in -o
    warned          (not bad) exit 0 in data-free mode, outside the tolerance, after qcc's
                    warning that data-free ranges are estimates
                    after a failure, or unrelated files in -o changed
    unclear         a failure whose stderr is not qcc's own one-line error: usage
                    dumps, ANSI colours, numpy / onnxruntime / TFLM log lines,
                    "allow_pickle" advice, no `qcc: error:` line
    noisy           exit 0 and a correct model, but foreign lines in stderr
    clean-error     non-zero exit, one `qcc: error:` line (qcc's own warnings allowed)
    ok              exit 0, output checked (or not checkable: see `check`)

Every case is reproducible from (seed, case index, model list):

    python tools/fuzz.py --seed 1 --cases 1500 --out /tmp/fuzz        # a campaign
    python tools/fuzz.py --seed 1 --case 17 --keep /tmp/case17        # one case, kept

Output: DIR/cases.jsonl (one JSON line per case) and DIR/summary.md (class counts,
an example per class, distinct causes grouped by last traceback frame / message).

Only the standard library, numpy, onnx and onnxruntime are imported here. The
emitted .tflite is run in LiteRT (qcc's `tflite` extra) in a child process, so a
crash there is classified instead of killing the fuzzer.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"
MLPERF_DIR = Path(os.environ.get("QCC_MLPERF_DIR", ROOT.parent / "shared" / "models" / "mlperf_tiny"))
DIGITS = ("digits_cnn", "digits_dwsep", "digits_resnet")
# ONNX file stem -> data kind (calibration file and conversion: see the MLPerf README)
MLPERF = {"ad01_fp32": "ad", "kws_ref_model_float32": "kws", "kws_savedmodel_float": "kws",
          "pretrainedResnet": "ic", "vww_96_float": "vww"}
CALIB_SAMPLES = 64          # calibration samples kept per model (speed; the data are real)
CHECK_SAMPLES = 4           # samples fed to onnxruntime and LiteRT for the silently-wrong check
REL_TOL = 0.3               # |emitted - onnxruntime| / reference output range
HUGE = 10 ** 10             # declared element counts that must never be allocated

CLASSES = ("outside-write", "signal", "memory", "timeout", "silently-wrong", "outside-read",
           "traceback", "leftover", "unclear", "warned", "noisy", "clean-error", "ok")
BAD_CLASSES = CLASSES[:9]
DATA_FREE_WARNING = "warning: DATA-FREE quantization"


# --------------------------------------------------------------------------- models

@dataclass
class ModelSpec:
    name: str
    onnx_bytes: bytes
    calib: np.ndarray          # float32 [N, *input shape[1:]]
    input_name: str
    lo: float
    hi: float


def available_models(selection: str) -> list[str]:
    """'all' | 'digits' | 'mlperf' | comma-separated stems -> sorted stems that exist."""
    have = [m for m in DIGITS if (MODELS_DIR / f"{m}.onnx").is_file()]
    have += [m for m in MLPERF if (MLPERF_DIR / f"{m}.onnx").is_file()]
    out: list[str] = []
    for item in selection.split(","):
        item = item.strip()
        if item in ("all", "digits", "mlperf"):
            out += [m for m in have if item == "all" or (m in DIGITS) == (item == "digits")]
        elif item in have:
            out.append(item)
        elif item:
            raise SystemExit(f"fuzz: unknown or missing model {item!r} (have: {', '.join(have)})")
    return sorted(set(out))


def _calib_array(name: str) -> np.ndarray:
    if name in DIGITS:
        x = np.load(MODELS_DIR / "digits_calib.npy")
    else:
        kind = MLPERF[name]
        d = MLPERF_DIR / "data"
        if kind == "vww":
            x = np.load(d / "vww_calib_u8.npy")[:CALIB_SAMPLES].astype(np.float32) / 255.0
        elif kind == "ic":
            x = np.load(d / "ic_calib_u8.npy")[:CALIB_SAMPLES].astype(np.float32)
        else:
            x = np.load(d / f"{kind}_calib.npy")
    return np.ascontiguousarray(x[:CALIB_SAMPLES], dtype=np.float32)


def load_spec(name: str) -> ModelSpec:
    path = MODELS_DIR / f"{name}.onnx" if name in DIGITS else MLPERF_DIR / f"{name}.onnx"
    data = path.read_bytes()
    m = onnx.load_from_string(data)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0].name
    x = _calib_array(name)
    return ModelSpec(name, data, x, inp, float(x.min()), float(x.max()))


# --------------------------------------------------------------------------- cases

@dataclass
class Case:
    seed: int
    index: int
    model: str
    family: str = ""
    kind: str = ""
    desc: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)    # qcc arguments; {BASE} = sandbox root
    setup: list[tuple] = field(default_factory=list)  # materialized into the sandbox in order
    out_arg: str | None = "out"                      # -o as given (None: qcc's default)
    calib_array: np.ndarray | None = None            # what the calibration file holds, if an array
    input_range: tuple | None = None                 # data-free range given
    same_function: bool = False                      # mutation keeps the float function (ref fallback)
    outside_data: bool = False                       # external data outside the model folder
    dump_dir: str | None = None


class Ctx:
    """What a mutator sees and edits: the model proto (or raw bytes), files, options."""

    def __init__(self, case: Case, spec: ModelSpec, specs: list[ModelSpec], rng: random.Random):
        self.case, self.spec, self.specs, self.rng = case, spec, specs, rng
        self.np = np.random.default_rng(rng.getrandbits(63))
        self.model = onnx.load_from_string(spec.onnx_bytes)
        self.model_bytes: bytes | None = None     # set by byte-level mutators
        self.model_arg = "model.onnx"
        self.model_file: str | None = "w/model.onnx"  # where the model goes (None: mutator wrote it)
        self.calib_arg: str | None = "calib.npy"
        self.calib_file: bytes | None = None      # None: the model's calibration array, saved
        self.write_calib = True                   # False: --calib names a path the mutator set up
        self.data_free = False
        self.range_arg = f"{spec.lo:.6g},{spec.hi:.6g}"
        self.range_sep = False                    # True: give a range starting with '-' as its own word
        self.target = "tflm"
        self.extra: list[str] = []

    def note(self, text: str) -> None:
        self.case.desc.append(text)

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]


def _npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(descr: str, shape: tuple, fortran: bool = False) -> bytes:
    """A version-1.0 .npy header declaring any shape (the data is not written by us)."""
    d = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, repr(tuple(shape)))
    pad = 64 - (10 + len(d) + 1) % 64
    text = (d + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _npz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for k, v in members.items():
            info = zipfile.ZipInfo(k, date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, v)
    return buf.getvalue()


# ----- helpers on the model proto

def nm(name: str) -> str:
    """A tensor / node name for a mutation note: MLPerf names run to 300 characters."""
    return repr(name) if len(name) <= 48 else repr(name[:24] + "..." + name[-12:]) + f" ({len(name)} chars)"


def real_inputs(m: onnx.ModelProto) -> list:
    inits = {i.name for i in m.graph.initializer}
    return [i for i in m.graph.input if i.name not in inits]


def float_inits(m: onnx.ModelProto, min_size: int = 1) -> list:
    return [t for t in m.graph.initializer
            if t.data_type == TensorProto.FLOAT and math.prod(t.dims) >= min_size]


def rename_value(m: onnx.ModelProto, old: str, new: str) -> None:
    g = m.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name == old:
            vi.name = new
    for t in g.initializer:
        if t.name == old:
            t.name = new
    for n in g.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new


def set_init_array(t: TensorProto, arr: np.ndarray) -> None:
    new = numpy_helper.from_array(arr.astype(np.float32), t.name)
    t.CopyFrom(new)


# ----- mutators: ONNX protobuf fields ("proto")

WEIRD_DIMS = [0, -1, -7, 2, 3, 12345, 10 ** 9, 2 ** 31, 2 ** 40]
DTYPES = [("BOOL", TensorProto.BOOL), ("INT32", TensorProto.INT32), ("INT64", TensorProto.INT64),
          ("INT8", TensorProto.INT8), ("UINT8", TensorProto.UINT8), ("STRING", TensorProto.STRING),
          ("FLOAT16", TensorProto.FLOAT16), ("DOUBLE", TensorProto.DOUBLE),
          ("BFLOAT16", TensorProto.BFLOAT16), ("COMPLEX64", TensorProto.COMPLEX64),
          ("UNDEFINED(0)", 0), ("unknown 999", 999), ("unknown -3", -3)]


def m_input_dim(c: Ctx):
    inp = c.choice(real_inputs(c.model))
    dims = inp.type.tensor_type.shape.dim
    k = c.rng.randrange(len(dims))
    v = c.choice(WEIRD_DIMS + ["param"])
    if v == "param":
        dims[k].Clear()
        dims[k].dim_param = c.choice(["N", "", "batch", "h"])
        c.note(f"graph input {nm(inp.name)} dim {k} := dim_param {dims[k].dim_param!r}")
    else:
        dims[k].dim_value = v
        c.note(f"graph input {nm(inp.name)} dim {k} := {v}")


def m_input_rank(c: Ctx):
    inp = c.choice(real_inputs(c.model))
    shape = inp.type.tensor_type.shape
    op = c.choice(["drop", "add", "clear", "scalar"])
    if op == "drop" and len(shape.dim) > 1:
        del shape.dim[c.rng.randrange(len(shape.dim))]
    elif op == "add":
        shape.dim.add().dim_value = c.choice([1, 2, 3])
    elif op == "clear":
        inp.type.tensor_type.ClearField("shape")
    else:
        del shape.dim[:]
    c.note(f"graph input {nm(inp.name)} shape {op} -> "
           f"{[d.dim_value or d.dim_param for d in shape.dim] if inp.type.tensor_type.HasField('shape') else None}")


def m_output_shape(c: Ctx):
    out = c.choice(list(c.model.graph.output))
    shape = out.type.tensor_type.shape
    op = c.choice(["dim", "dim", "dim", "rank+", "rank-", "clear"])
    if op == "dim" and len(shape.dim):
        k = c.rng.randrange(len(shape.dim))
        v = c.choice([12345, 0, -1, 2, 11, 10 ** 9])
        shape.dim[k].dim_value = v
        c.note(f"graph output {nm(out.name)} dim {k} := {v}")
    elif op == "rank+":
        shape.dim.add().dim_value = c.choice([1, 7])
        c.note(f"graph output {nm(out.name)} gains a dim -> {[d.dim_value for d in shape.dim]}")
    elif op == "rank-" and len(shape.dim) > 1:
        del shape.dim[-1]
        c.note(f"graph output {nm(out.name)} loses its last dim -> {[d.dim_value for d in shape.dim]}")
    else:
        out.type.tensor_type.ClearField("shape")
        c.note(f"graph output {nm(out.name)} shape cleared")
    c.case.same_function = True


def _inferred(c: Ctx) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(c.model)
    except Exception:
        return c.model


def m_value_info(c: Ctx):
    m = _inferred(c)
    c.model = m
    vis = [v for v in m.graph.value_info if v.type.tensor_type.HasField("shape")]
    if not vis:
        c.note("no value_info to corrupt")
        return
    vi = c.choice(vis)
    dims = vi.type.tensor_type.shape.dim
    op = c.choice(["dim", "dim", "dim", "dtype", "rank", "clear"])
    if op == "dim" and len(dims):
        k = c.rng.randrange(len(dims))
        old = dims[k].dim_value
        v = c.choice([old + 1, old * 2, max(old - 1, 0), 12345, 0, -3, 1])
        dims[k].dim_value = v
        c.note(f"value_info {nm(vi.name)} dim {k}: {old} -> {v}")
    elif op == "dtype":
        name, code = c.choice(DTYPES)
        vi.type.tensor_type.elem_type = code
        c.note(f"value_info {nm(vi.name)} elem_type := {name}")
    elif op == "rank":
        dims.add().dim_value = 2
        c.note(f"value_info {nm(vi.name)} gains a dim of 2")
    else:
        vi.type.tensor_type.ClearField("shape")
        c.note(f"value_info {nm(vi.name)} shape cleared")
    c.case.same_function = op != "dtype"


def m_io_dtype(c: Ctx):
    which = c.choice(["input", "input", "output"])
    vi = c.choice(real_inputs(c.model) if which == "input" else list(c.model.graph.output))
    name, code = c.choice(DTYPES)
    vi.type.tensor_type.elem_type = code
    c.note(f"graph {which} {nm(vi.name)} elem_type := {name}")


INTERESTING_ATTRS = ("group", "auto_pad", "pads", "strides", "kernel_shape", "dilations", "axis",
                     "epsilon", "momentum", "alpha", "beta", "transA", "transB", "perm", "ceil_mode",
                     "count_include_pad", "keepdims", "min", "max", "storage_order")


def _mutate_attr_value(c: Ctx, a: onnx.AttributeProto) -> str:
    t = a.type
    A = onnx.AttributeProto
    if a.name == "auto_pad" or t == A.STRING:
        v = c.choice([b"", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"NOTSET", b"same_upper", b"FOO",
                      b"\xff\xfe", b"SAME_UPPER\x00", b"\xc3\x28"])
        a.type, a.s = A.STRING, v
        return f"{a.name} := {v!r}"
    if t == A.INT:
        old = a.i
        v = c.choice([0, -1, 2, old + 1, old * 2 if old else 3, 10 ** 9, 2 ** 62, -(2 ** 63)])
        a.i = v
        return f"{a.name}: {old} -> {v}"
    if t == A.INTS:
        old = list(a.ints)
        op = c.choice(["neg", "huge", "zero", "longer", "shorter", "empty", "swap"])
        new = list(old)
        if op == "neg" and new:
            new[c.rng.randrange(len(new))] = c.choice([-1, -3])
        elif op == "huge" and new:
            new[c.rng.randrange(len(new))] = c.choice([1000, 10 ** 9, 2 ** 40])
        elif op == "zero" and new:
            new[c.rng.randrange(len(new))] = 0
        elif op == "longer":
            new = new + [c.choice([0, 1, 2])]
        elif op == "shorter" and new:
            new = new[:-1]
        elif op == "empty":
            new = []
        elif len(new) > 1:
            new = new[::-1]
        else:
            new = [v + 1 for v in new]
        del a.ints[:]
        a.ints.extend(new)
        return f"{a.name}: {old} -> {new}"
    if t == A.FLOAT:
        old = a.f
        v = c.choice([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 3e38, 1e-45])
        a.f = v
        return f"{a.name}: {old:g} -> {v:g}"
    if t == A.FLOATS:
        old = list(a.floats)
        new = [float("nan")] + old[1:]
        del a.floats[:]
        a.floats.extend(new)
        return f"{a.name}: first element -> nan"
    if t == A.TENSOR:
        arr = numpy_helper.to_array(a.t).copy()
        if arr.size == 0:
            return f"{a.name}: empty tensor left unchanged"
        if np.issubdtype(arr.dtype, np.floating):
            v = c.choice([np.nan, np.inf, 3e38, -9.4e37])
            with np.errstate(all="ignore"):
                arr.flat[0] = v
        elif np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            v = c.choice([info.max, info.min, 0])
            arr.flat[0] = v
        else:
            return f"{a.name}: {arr.dtype} tensor left unchanged"
        a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        return f"{a.name}: tensor element 0 -> {v:g}"
    return f"{a.name}: left unchanged (type {t})"


def m_attr(c: Ctx):
    cands = [(n, a) for n in c.model.graph.node for a in n.attribute]
    interesting = [(n, a) for n, a in cands if a.name in INTERESTING_ATTRS]
    if not cands:
        c.note("no attribute to mutate")
        return
    n, a = c.choice(interesting if interesting and c.rng.random() < 0.85 else cands)
    c.note(f"node {nm(n.name)} ({n.op_type}) attribute " + _mutate_attr_value(c, a))


def m_attr_add(c: Ctx):
    convs = [n for n in c.model.graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool")]
    n = c.choice(convs or list(c.model.graph.node))
    what = c.choice(["auto_pad", "auto_pad", "group", "dilations", "unknown", "duplicate"])
    if what == "auto_pad":
        v = c.choice([b"", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"FOO", b"\xff\xfe\xfd"])
        for a in list(n.attribute):
            if a.name == "auto_pad":
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("auto_pad", v))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains auto_pad={v!r}")
    elif what == "group":
        n.attribute.append(helper.make_attribute("group", c.choice([2, 0, -1, 3])))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains a second/extra group={n.attribute[-1].i}")
    elif what == "dilations":
        n.attribute.append(helper.make_attribute("dilations", c.choice([[2, 2], [0, 0], [-1, 1], [9, 9]])))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains dilations={list(n.attribute[-1].ints)}")
    elif what == "unknown":
        n.attribute.append(helper.make_attribute("fuzz_unknown", 1))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains unknown attribute fuzz_unknown=1")
    elif n.attribute:
        dup = onnx.AttributeProto()
        dup.CopyFrom(n.attribute[0])
        n.attribute.append(dup)
        c.note(f"node {nm(n.name)} ({n.op_type}) attribute {dup.name!r} duplicated")


def m_ref_attr(c: Ctx):
    cands = [(n, a) for n in c.model.graph.node for a in n.attribute]
    if not cands:
        return
    n, a = c.choice(cands)
    a.ref_attr_name = c.choice(["x", a.name, ""]) or "r"
    c.note(f"node {nm(n.name)} ({n.op_type}) attribute {a.name!r} ref_attr_name := {a.ref_attr_name!r}")


def m_bad_utf8(c: Ctx):
    n = c.choice(list(c.model.graph.node))
    v = c.choice([b"\xff\xfe", b"\xc3\x28", b"SAME\xe2\x82", b"\xed\xa0\x80"])
    name = c.choice(["auto_pad", "fuzz_str", "mode"])
    for a in list(n.attribute):
        if a.name == name:
            n.attribute.remove(a)
    n.attribute.append(helper.make_attribute(name, v))
    c.note(f"node {nm(n.name)} ({n.op_type}) string attribute {name}={v!r} (invalid UTF-8)")


def m_init_dims(c: Ctx):
    t = c.choice(list(c.model.graph.initializer))
    old = list(t.dims)
    op = c.choice(["plus1", "minus1", "extra", "drop", "empty", "huge", "negative", "zero"])
    new = list(old)
    if op == "plus1" and new:
        new[c.rng.randrange(len(new))] += 1
    elif op == "minus1" and new:
        k = c.rng.randrange(len(new))
        new[k] = max(new[k] - 1, 1) if new[k] > 1 else 2
    elif op == "extra":
        new.append(c.choice([1, 2]))
    elif op == "drop" and new:
        new = new[:-1]
    elif op == "empty":
        new = []
    elif op == "huge":
        new = [HUGE] + new[1:] if new else [HUGE]
    elif op == "negative":
        new = [-1] + new[1:] if new else [-1]
    else:
        new = [0] + new[1:] if new else [0]
    del t.dims[:]
    t.dims.extend(new)
    c.note(f"initializer {nm(t.name)} dims {old} -> {new} (data unchanged)")


def m_init_dtype(c: Ctx):
    t = c.choice(list(c.model.graph.initializer))
    name, code = c.choice(DTYPES)
    old = t.data_type
    if not t.raw_data and t.float_data:  # keep the bytes, as raw data, so only the code lies
        t.raw_data = np.asarray(t.float_data, np.float32).tobytes()
        del t.float_data[:]
    t.data_type = code
    c.note(f"initializer {nm(t.name)} data_type {TensorProto.DataType.Name(old) if old in TensorProto.DataType.values() else old} "
           f"-> {name} (bytes unchanged)")


def m_init_raw(c: Ctx):
    t = c.choice([t for t in c.model.graph.initializer if t.raw_data] or list(c.model.graph.initializer))
    op = c.choice(["truncate", "extend", "empty"])
    raw = t.raw_data
    if op == "truncate" and raw:
        t.raw_data = raw[: c.rng.randrange(len(raw))]
    elif op == "extend":
        t.raw_data = raw + bytes(c.choice([1, 3, 4, 400]))
    else:
        t.raw_data = b""
    c.note(f"initializer {nm(t.name)} raw_data {op}: {len(raw)} -> {len(t.raw_data)} bytes")


EXTREMES = [3e38, -3e38, -9.4e37, 1e30, 1e20, float("nan"), float("inf"), -float("inf"),
            1e-45, np.finfo(np.float32).max]


def m_weights(c: Ctx):
    inits = float_inits(c.model)
    t = c.choice(inits)
    arr = numpy_helper.to_array(t).astype(np.float32, copy=True)
    v = c.choice(EXTREMES)
    how = c.choice(["one", "one", "few", "all", "scale"])
    if how == "one":
        k = c.rng.randrange(arr.size)
        arr.flat[k] = v
        what = f"element {k} := {v:g}"
    elif how == "few":
        ks = sorted({c.rng.randrange(arr.size) for _ in range(3)})
        arr.flat[ks] = v
        what = f"elements {ks} := {v:g}"
    elif how == "all":
        arr[...] = v
        what = f"all {arr.size} elements := {v:g}"
    else:
        f = c.choice([1e30, 1e-30, -1e20, 1e36])
        with np.errstate(all="ignore"):
            arr = (arr * np.float32(f)).astype(np.float32)
        what = f"all elements x {f:g}"
    set_init_array(t, arr)
    c.note(f"initializer {nm(t.name)} {list(t.dims)}: {what}")


def m_bn_params(c: Ctx):
    bns = [n for n in c.model.graph.node if n.op_type == "BatchNormalization"]
    if not bns:
        return m_weights(c)
    n = c.choice(bns)
    which = c.rng.randrange(1, 5)  # scale, B, mean, var
    inits = {t.name: t for t in c.model.graph.initializer}
    t = inits.get(n.input[which])
    if t is None:
        return m_weights(c)
    arr = numpy_helper.to_array(t).astype(np.float32, copy=True)
    v = c.choice([-1.0, 0.0, -1e-6, float("nan"), 1e38, -3e38]) if which == 4 else c.choice(EXTREMES)
    arr.flat[c.rng.randrange(arr.size)] = v
    set_init_array(t, arr)
    c.note(f"BatchNormalization {nm(n.name)} input {which} ({nm(t.name)}): one element := {v:g}")


def m_constant(c: Ctx):
    consts = [n for n in c.model.graph.node if n.op_type == "Constant"]
    if not consts:
        return m_weights(c)
    n = c.choice(consts)
    for a in n.attribute:
        if a.name == "value":
            c.note(f"Constant {nm(n.name)} " + _mutate_attr_value(c, a))
            return


EVIL_NAMES = ["*/ int evil; /*", 'a"b', "a\\b", "line\nbreak", "", "x" * 5000, "modèle",
              "模型", "../../x", "a b", "%s%n", "$(id)", "\t", "-", "1abc", "int", "input;",
              "\x00nul", "??=", "#define"]


def m_names(c: Ctx):
    what = c.choice(["input", "input", "output", "node", "graph"])
    new = c.choice(EVIL_NAMES)
    if what == "input":
        old = c.choice(real_inputs(c.model)).name
        rename_value(c.model, old, new)
    elif what == "output":
        old = c.choice(list(c.model.graph.output)).name
        rename_value(c.model, old, new)
    elif what == "node":
        n = c.choice(list(c.model.graph.node))
        old, n.name = n.name, new
    else:
        old, c.model.graph.name = c.model.graph.name, new
    c.note(f"{what} name {nm(old)} -> {new[:60]!r}{'...' if len(new) > 60 else ''} ({len(new)} chars)")
    c.case.same_function = True


def m_topology(c: Ctx):
    g = c.model.graph
    op = c.choice(["drop_node", "dangling_input", "cycle", "dup_output", "drop_init", "dup_init",
                   "no_outputs", "output_is_input", "extra_output", "empty_input_name", "input_is_init"])
    n = c.choice(list(g.node))
    if op == "drop_node":
        g.node.remove(n)
        c.note(f"node {nm(n.name)} ({n.op_type}) removed")
    elif op == "dangling_input" and n.input:
        n.input[0] = "fuzz_missing_tensor"
        c.note(f"node {nm(n.name)} input 0 -> nonexistent tensor")
    elif op == "cycle" and len(g.node) > 2:
        last = g.node[len(g.node) - 2]
        g.node[0].input[0] = last.output[0]
        c.note(f"node {nm(g.node[0].name)} input 0 := output of {nm(last.name)} (cycle)")
    elif op == "dup_output" and len(g.node) > 2:
        g.node[1].output[0] = g.node[0].output[0]
        c.note(f"node {nm(g.node[1].name)} output 0 := {nm(g.node[0].output[0])} (two producers)")
    elif op == "drop_init" and g.initializer:
        t = c.choice(list(g.initializer))
        g.initializer.remove(t)
        c.note(f"initializer {nm(t.name)} removed")
    elif op == "dup_init" and g.initializer:
        t = c.choice(list(g.initializer))
        dup = g.initializer.add()
        dup.CopyFrom(t)
        arr = numpy_helper.to_array(t).copy()
        dup.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), t.name))
        c.note(f"initializer {nm(t.name)} duplicated (second copy all zeros)")
    elif op == "no_outputs":
        del g.output[:]
        c.note("graph outputs removed")
    elif op == "output_is_input":
        g.output[0].name = real_inputs(c.model)[0].name
        c.note("graph output 0 renamed to the graph input (identity graph)")
    elif op == "extra_output":
        mid = c.choice(list(g.node)).output[0]
        g.output.append(helper.make_tensor_value_info(mid, TensorProto.FLOAT, None))
        c.note(f"extra graph output {nm(mid)}")
    elif op == "empty_input_name" and n.input:
        n.input[0] = ""
        c.note(f"node {nm(n.name)} input 0 := '' (optional-absent)")
    else:
        t = c.choice(float_inits(c.model))
        vi = helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims))
        g.input.append(vi)
        c.note(f"initializer {nm(t.name)} also listed as graph input (overridable)")


def m_opset(c: Ctx):
    op = c.choice(["version", "version", "domain", "none", "ir", "node_domain", "op_type"])
    if op == "version":
        v = c.choice([1, 6, 7, 10, 18, 21, 99, 10 ** 6, -1])
        for imp in c.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = v
        c.note(f"default opset version := {v}")
    elif op == "domain":
        for imp in c.model.opset_import:
            imp.domain = "com.fuzz"
        c.note("opset domain := 'com.fuzz'")
    elif op == "none":
        del c.model.opset_import[:]
        c.note("opset_import removed")
    elif op == "ir":
        v = c.choice([0, 1, 3, 99, -1])
        c.model.ir_version = v
        c.note(f"ir_version := {v}")
    elif op == "node_domain":
        n = c.choice(list(c.model.graph.node))
        n.domain = c.choice(["com.microsoft", "ai.onnx.ml", "x"])
        c.note(f"node {nm(n.name)} ({n.op_type}) domain := {n.domain!r}")
    else:
        n = c.choice(list(c.model.graph.node))
        old, n.op_type = n.op_type, c.choice(["Sigmoid", "ConvTranspose", "Foo", "", "conv", "Relu",
                                              "MaxPool", "Identity", "Softmax"])
        c.note(f"node {nm(n.name)} op_type {old!r} -> {n.op_type!r}")


PROTO_MUTATORS = [(m_input_dim, 4), (m_input_rank, 2), (m_output_shape, 4), (m_value_info, 5),
                  (m_io_dtype, 3), (m_attr, 10), (m_attr_add, 4), (m_ref_attr, 2), (m_bad_utf8, 2),
                  (m_init_dims, 4), (m_init_dtype, 3), (m_init_raw, 2), (m_weights, 8), (m_bn_params, 3),
                  (m_constant, 1), (m_names, 4), (m_topology, 5), (m_opset, 4)]


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
                             _npy_header("<f4", (2, 2))[:-8] + b"\n"])
    c.note("calibration .npy with a garbage header")


def c_header_shape(c: Ctx):
    x = _calib(c)
    rest = tuple(x.shape[1:])
    shape = c.choice([(-1,) + rest, (-5,) + rest, (HUGE,) + rest, (0,) + rest, (4, -3) + rest[1:],
                      (2 ** 62,) + rest, (len(x),)])
    c.calib_file = _npy_header("<f4", shape) + x[:4].tobytes()
    c.note(f"calibration .npy header declares shape {shape} over {4 * math.prod(rest)} floats of data")


def c_descr(c: Ctx):
    x = _calib(c)
    descr = c.choice(["O", "|V8", "<U4", "<f16", "<c8", "|b1", "<M8[s]", "not a dtype"])
    c.calib_file = _npy_header(descr, x.shape) + x.tobytes()
    c.note(f"calibration .npy header declares dtype {descr!r} over float32 bytes")


def c_pickle(c: Ctx):
    x = _calib(c)
    obj = np.empty(len(x), dtype=object)
    for i in range(len(x)):
        obj[i] = x[i]  # builtins only: the pickle, if ever loaded, builds numpy arrays
    c.calib_file = _npy_bytes(obj, allow_pickle=True)
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
    c.calib_file = _npy_bytes(np.ascontiguousarray(y))
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
    c.calib_file = _npy_bytes(y)
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
    c.calib_file = _npy_bytes(x)
    c.case.calib_array = x
    c.note(f"calibration values: {v}")


def c_npz(c: Ctx):
    x = _calib(c)
    name = c.spec.input_name
    op = c.choice(["valid", "wrong_key", "huge_extra", "pickled_extra", "pickled_input", "empty",
                   "corrupt", "text_member", "npy_named_npz", "npz_named_npy", "zip_slip_key"])
    members: dict[str, bytes] = {f"{name}.npy": _npy_bytes(x)}
    fname = "calib.npz"
    if op == "wrong_key":
        members = {"not_the_input.npy": members[f"{name}.npy"]}
    elif op == "huge_extra":
        members["extra.npy"] = _npy_header("<f4", (HUGE,))
    elif op == "pickled_extra":
        members["extra.npy"] = _npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    elif op == "pickled_input":
        obj = np.empty(len(x), dtype=object)
        for i in range(len(x)):
            obj[i] = x[i]
        members = {f"{name}.npy": _npy_bytes(obj, allow_pickle=True)}
    elif op == "empty":
        members = {}
    elif op == "text_member":
        members["extra.npy"] = b"not an npy"
    elif op == "zip_slip_key":
        members["../../escape.npy"] = _npy_bytes(np.zeros(3, np.float32))
    data = _npz_bytes(members)
    if op == "corrupt":
        data = data[: len(data) // 2]
    elif op == "npy_named_npz":
        data = _npy_bytes(x)
    elif op == "npz_named_npy":
        fname = "calib.npy"
    c.calib_file, c.calib_arg = data, fname
    if op in ("valid", "npz_named_npy", "zip_slip_key", "huge_extra", "pickled_extra", "text_member"):
        c.case.calib_array = x
    c.note(f"calibration .npz: {op}")


def c_path(c: Ctx):
    op = c.choice(["missing", "directory", "model_file", "dangling_symlink", "fifo", "empty_arg"])
    if op == "missing":
        c.calib_arg = "nope.npy"
    elif op == "directory":
        c.case.setup.append(("dir", "w/calibdir.npy"))
        c.calib_arg = "calibdir.npy"
    elif op == "model_file":
        c.calib_arg = "model.onnx"
    elif op == "dangling_symlink":
        c.case.setup.append(("symlink", "w/link.npy", "{BASE}/w/nothing_here.npy"))
        c.calib_arg = "link.npy"
    elif op == "fifo":
        c.case.setup.append(("fifo", "w/pipe.npy"))
        c.calib_arg = "pipe.npy"
    else:
        c.calib_arg = ""
    c.write_calib = op == "empty_arg"
    c.note(f"--calib path: {op} ({c.calib_arg!r})")


CALIB_MUTATORS = [(c_empty, 1), (c_garbage_header, 2), (c_header_shape, 3), (c_descr, 2), (c_pickle, 2),
                  (c_text, 1), (c_shape, 3), (c_dtype, 3), (c_values, 4), (c_npz, 5), (c_path, 2)]


# ----- mutators: CLI options

NAMES = ["../x", "../../x", "{BASE}/abs/x", "{BASE}/", ".", "..", "_", "\t", "a\tb", "modèle", "模型",
         "n" * 251, "n" * 300, "a/b", "", "*/ int evil; /*", "x y", 'x"y', "x\\y", "a\nb", "report",
         "layer_sqnr", "-", "con", "model", "~x", "$HOME"]


def o_name(c: Ctx):
    v = c.choice(NAMES)
    c.extra += ["--name", v]
    c.note(f"--name {v[:40]!r}{'...' if len(v) > 40 else ''} ({len(v)} chars)")


def o_input_range(c: Ctx):
    v = c.choice(["1", "1,0", "0,0", "nan,1", "-inf,inf", "0,1e39", "0,3e38", "1,2,3", ",", "a,b", "",
                  "-1e-45,1e-45", "0,1e-30", "-3e38,3e38", "0x10,1", "1_0,2", "-1,1"])
    c.data_free = True
    c.range_arg = v
    c.range_sep = v == "-1,1"  # `--input-range -1,1`: argparse takes -1,1 for an option
    c.note(f"--input-range {v!r} (data-free)")


def o_input_shape(c: Ctx):
    x = c.spec.calib
    dims = [1] + list(x.shape[1:])
    name = c.spec.input_name
    op = c.choice(["zero", "neg", "wrong", "batch2", "huge", "rank", "empty", "noname", "unknown",
                   "float", "overflow", "same"])
    d = list(dims)
    if op == "zero":
        v = f"{name}=" + ",".join(map(str, [0] + d[1:]))
    elif op == "neg":
        v = f"{name}=" + ",".join(map(str, [-1] + d[1:]))
    elif op == "wrong":
        d[-1] += 1
        v = f"{name}=" + ",".join(map(str, d))
    elif op == "batch2":
        v = f"{name}=" + ",".join(map(str, [2] + d[1:]))
    elif op == "huge":
        v = f"{name}=" + ",".join(map(str, [10 ** 9] + d[1:]))
    elif op == "rank":
        v = f"{name}=" + ",".join(map(str, d[:-1]))
    elif op == "empty":
        v = f"{name}="
    elif op == "noname":
        v = "=" + ",".join(map(str, d))
    elif op == "unknown":
        v = "nope=1,2"
    elif op == "float":
        v = f"{name}=1.5," + ",".join(map(str, d[1:]))
    elif op == "overflow":
        v = f"{name}=99999999999999999999," + ",".join(map(str, d[1:]))
    else:
        v = f"{name}=" + ",".join(map(str, d))
    c.extra += ["--input-shape", v]
    c.note(f"--input-shape {v!r}")
    if op in ("batch2", "huge", "wrong", "rank"):
        c.case.calib_array = None


def o_numbers(c: Ctx):
    op = c.choice(["percentile", "max_calib", "percentile", "max_calib"])
    if op == "percentile":
        v = c.choice(["0", "100", "150", "-1", "nan", "inf", "1e-300"])
        c.extra += ["--percentile", v]
    else:
        v = c.choice(["0", "-1", "1", "99999999999999999999", "2"])
        c.extra += ["--max-calib-samples", v]
    c.note(f"--{op.replace('_', '-')} {v}")


def o_graph_opts(c: Ctx):
    op = c.choice(["outputs", "passes", "disable", "dump"])
    if op == "outputs":
        m = c.model
        mid = c.choice(list(m.graph.node)).output[0]
        v = c.choice(["nope", ",", mid, f"{mid},{mid}", m.graph.output[0].name + ",nope", "", real_inputs(m)[0].name])
        c.extra += ["--outputs", v]
    elif op == "passes":
        v = c.choice(["", "nope", ",,", "dead_code", "fold_batchnorm,dead_code", "fuse_activation",
                      "dead_code,dead_code,canonicalize"])
        c.extra += ["--passes", v]
    elif op == "disable":
        v = c.choice(["nope", "fold_batchnorm", "canonicalize,fold_constants", "dead_code", ""])
        c.extra += ["--disable-pass", v]
    else:
        v = c.choice(["fold_batchnorm", "nope", "dead_code"])
        c.extra += ["--dump-after", v, "--dump-dir", "dump"]
        c.case.dump_dir = "w/dump"
    c.note(f"--{op} {v!r}")


def o_target_io(c: Ctx):
    op = c.choice(["tflite", "ncnn", "bogus", "io_float", "uint8", "io_float_uint8", "ncnn_io", "unknown_opt",
                   "both_calib_range", "tvm_target"])
    if op == "tflite":
        c.target = "tflite"
    elif op == "ncnn":
        c.target = "ncnn"
    elif op == "bogus":
        c.target = "bogus"
    elif op == "io_float":
        c.extra += ["--io", "float"]
    elif op == "uint8":
        c.extra += ["--input-dtype", "uint8"]
    elif op == "io_float_uint8":
        c.extra += ["--io", "float", "--input-dtype", "uint8"]
    elif op == "ncnn_io":
        c.target = "ncnn"
        c.extra += ["--io", "float"]
    elif op == "unknown_opt":
        c.extra += ["--bogus-option"]
    elif op == "both_calib_range":
        c.extra += [f"--input-range={c.range_arg}"]
    else:
        c.extra += ["--tvm-target", c.choice(["{", '{"kind": 1}', "nope"])]
    c.note(f"options: {op}")


def o_model_path(c: Ctx):
    op = c.choice(["missing", "directory", "no_suffix", "empty", "calib_as_model", "dangling", "dash"])
    if op == "missing":
        c.model_arg = "nope.onnx"
    elif op == "directory":
        c.case.setup.append(("dir", "w/dir.onnx"))
        c.model_arg = "dir.onnx"
    elif op == "no_suffix":
        c.model_file, c.model_arg = "w/model", "model"
    elif op == "empty":
        c.model_arg = ""
    elif op == "calib_as_model":
        c.model_arg = "calib.npy"
    elif op == "dangling":
        c.case.setup.append(("symlink", "w/link.onnx", "{BASE}/w/gone.onnx"))
        c.model_arg = "link.onnx"
    else:
        c.model_arg = "-"
    c.note(f"model path: {op} ({c.model_arg!r})")


CLI_MUTATORS = [(o_name, 6), (o_input_range, 3), (o_input_shape, 3), (o_numbers, 2), (o_graph_opts, 2),
                (o_target_io, 3), (o_model_path, 1)]


# ----- mutators: output paths

def p_out(c: Ctx):
    case = c.case
    op = c.choice(["readonly_parent", "dangling_symlink", "symlink_to_dir", "through_file", "is_file",
                   "long_250", "long_256", "long_path", "report_json_dir", "unrelated_files", "name_collision",
                   "dot", "empty", "trailing_slash", "nested_new", "absolute", "default", "unicode", "tab",
                   "dash", "readonly_existing"])
    if op == "readonly_parent":
        case.setup += [("dir", "w/ro"), ("readonly", "w/ro")]
        case.out_arg = "ro/out"
    elif op == "readonly_existing":
        case.setup += [("dir", "w/rout"), ("readonly", "w/rout")]
        case.out_arg = "rout"
    elif op == "dangling_symlink":
        case.setup.append(("symlink", "w/out", "{BASE}/w/missing_target"))
    elif op == "symlink_to_dir":
        case.setup += [("dir", "outside/target"), ("symlink", "w/out", "{BASE}/outside/target")]
    elif op == "through_file":
        case.setup.append(("file", "w/afile", b"x"))
        case.out_arg = "afile/out"
    elif op == "is_file":
        case.setup.append(("file", "w/out", b"precious"))
    elif op == "long_250":
        case.out_arg = "o" * 250
    elif op == "long_256":
        case.out_arg = "o" * 256
    elif op == "long_path":
        case.out_arg = "/".join(["p" * 200] * 25)
    elif op == "report_json_dir":
        case.setup += [("dir", "w/out"), ("file", "w/out/keep.txt", b"keep"), ("dir", "w/out/report.json")]
    elif op == "unrelated_files":
        case.setup += [("dir", "w/out"), ("file", "w/out/keep.txt", b"keep"),
                       ("file", "w/out/model.tflite", b"old artifact")]
    elif op == "name_collision":
        case.setup += [("dir", "w/out"), ("dir", f"w/out/{c.spec.name}.tflite"),
                       ("file", "w/out/keep.txt", b"keep")]
        c.extra += ["--name", c.spec.name]
    elif op == "dot":
        case.out_arg = "."
    elif op == "empty":
        case.out_arg = ""
    elif op == "trailing_slash":
        case.out_arg = "out/"
    elif op == "nested_new":
        case.out_arg = "a/b/c/out"
    elif op == "absolute":
        case.out_arg = "{BASE}/w/absout"
    elif op == "default":
        case.out_arg = None
    elif op == "unicode":
        case.out_arg = "ausgäbe_模型"
    elif op == "tab":
        case.out_arg = "o\tut"
    else:
        case.out_arg = "-x"
    c.note(f"-o {op}: {case.out_arg if case.out_arg is None else case.out_arg[:50]!r}")


# ----- mutators: external data

def e_external(c: Ctx):
    t = max(c.model.graph.initializer, key=lambda t: len(t.raw_data) or 4 * len(t.float_data))
    raw = t.raw_data or np.asarray(t.float_data, np.float32).tobytes()
    op = c.choice(["inside", "dotdot", "absolute", "symlink_file", "symlink_dir", "missing", "offset_beyond",
                   "length_huge", "length_negative", "location_dir", "self", "bad_number", "abs_inside"])
    loc, offset, length = "weights.bin", None, None
    files = [("file", "w/weights.bin", raw)]
    if op == "dotdot":
        loc, files = "../outside/weights.bin", [("file", "outside/weights.bin", raw)]
        c.case.outside_data = True
    elif op == "absolute":
        loc, files = "{BASE}/outside/weights.bin", [("file", "outside/weights.bin", raw)]
        c.case.outside_data = True
    elif op == "abs_inside":
        loc = "{BASE}/w/weights.bin"
    elif op == "symlink_file":
        files = [("file", "outside/secret.bin", raw), ("symlink", "w/weights.bin", "../outside/secret.bin")]
        c.case.outside_data = True
    elif op == "symlink_dir":
        loc = "sub/weights.bin"
        files = [("file", "outside/weights.bin", raw), ("symlink", "w/sub", "{BASE}/outside")]
        c.case.outside_data = True
    elif op == "missing":
        files = []
    elif op == "offset_beyond":
        offset = len(raw) + 16
    elif op == "length_huge":
        length = HUGE * 4
    elif op == "length_negative":
        length = -4
    elif op == "location_dir":
        loc, files = "wdir", [("dir", "w/wdir")]
    elif op == "self":
        loc, files, length = "model.onnx", [], len(raw)
    elif op == "bad_number":
        offset = "abc"
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in (("location", loc), ("offset", offset), ("length", length)):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, str(v)
    c.case.setup += files
    c.model_file = None
    c.case.setup.append(("onnx", "w/model.onnx", c.model))  # {BASE} filled in at materialization
    c.note(f"initializer {nm(t.name)} ({len(raw)} bytes) as external data: {op} (location {loc!r}"
           f"{f', offset {offset}' if offset is not None else ''}{f', length {length}' if length is not None else ''})")
    if op in ("inside", "abs_inside"):
        c.case.same_function = True


def baseline(c: Ctx):
    c.note("no mutation (control)")
    c.case.same_function = True


FAMILIES = [("proto", 40, PROTO_MUTATORS), ("bytes", 10, BYTE_MUTATORS), ("calib", 17, CALIB_MUTATORS),
            ("cli", 16, CLI_MUTATORS), ("out", 9, [(p_out, 1)]), ("ext", 5, [(e_external, 1)]),
            ("baseline", 3, [(baseline, 1)])]
BASE_OPTIONS = [["--per-tensor"], ["--cle"], ["--calib-method", "minmax"], ["--calib-method", "kl"],
                ["--calib-method", "mse"], ["--bias-correction", "analytic"], ["--io", "float"],
                ["--input-dtype", "uint8"], ["--per-channel-fc"], ["--no-act-eq"], ["--per-tensor-fc"]]


def _weighted(rng: random.Random, items):
    total = sum(w for _, w, *rest in items)
    r = rng.random() * total
    for it in items:
        r -= it[1]
        if r < 0:
            return it
    return items[-1]


def build_case(seed: int, index: int, specs: list[ModelSpec], only: str | None = None) -> Case:
    rng = random.Random(f"qcc-fuzz/{seed}/{index}")
    spec = specs[rng.randrange(len(specs))]
    case = Case(seed, index, spec.name)
    c = Ctx(case, spec, specs, rng)
    # data-free mode needs BatchNorm statistics: only the sample models keep BatchNorm nodes
    c.data_free = rng.random() < (0.25 if spec.name in DIGITS else 0.0)
    if rng.random() < 0.15:
        c.extra += rng.choice(BASE_OPTIONS)
    family, _, mutators = _weighted(rng, [f for f in FAMILIES if only in (None, f[0])])
    if family == "calib":
        c.data_free = False
    else:
        case.calib_array = spec.calib
    mut, _ = _weighted(rng, mutators)
    case.family, case.kind = family, mut.__name__
    if c.extra:
        c.note(f"base options {c.extra}")
    mut(c)
    if c.model_file is not None:
        data = c.model_bytes if c.model_bytes is not None else c.model.SerializeToString()
        case.setup.insert(0, ("file", c.model_file, data))
    if c.calib_file is None and c.write_calib:
        c.calib_file = _npy_bytes(spec.calib)
    if c.calib_file is not None:
        case.setup.insert(0, ("file", f"w/{c.calib_arg or 'calib.npy'}", c.calib_file))
    argv = [c.model_arg]
    if c.data_free:
        argv += [f"--input-range={c.range_arg}"] if c.range_arg[:1] == "-" and not c.range_sep else \
                ["--input-range", c.range_arg]
        case.input_range = _parse_range(c.range_arg)
        case.calib_array = None
    else:
        argv += ["--calib", c.calib_arg]
    if case.out_arg is not None:
        argv += ["-o", case.out_arg]
    if c.target != "tflm":
        argv += ["--target", c.target]
    case.argv = argv + c.extra
    return case


def _parse_range(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
        return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo < hi else None
    except ValueError:
        return None


# --------------------------------------------------------------------------- sandbox

def _fill_base(model: onnx.ModelProto, base: Path) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        for e in t.external_data:
            e.value = e.value.replace("{BASE}", str(base))
    return m.SerializeToString()


def materialize(case: Case, base: Path) -> list[Path]:
    """Create the sandbox: w/ (cwd, model, calibration), home/, tmp/, outside/; returns locked dirs."""
    for d in ("w", "home", "tmp", "outside"):
        (base / d).mkdir(parents=True, exist_ok=True)
    locked = []
    for op in case.setup:
        kind, p = op[0], base / op[1]
        if kind != "readonly":
            p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            p.write_bytes(op[2])
        elif kind == "dir":
            p.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            os.symlink(op[2].replace("{BASE}", str(base)), p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "onnx":
            p.write_bytes(_fill_base(op[2], base))
        elif kind == "readonly":
            locked.append(p)
    for p in locked:
        os.chmod(p, 0o555)
        if os.geteuid() == 0 and shutil.which("chattr"):  # root ignores permission bits
            subprocess.run(["chattr", "+i", str(p)], capture_output=True)
    return locked


def cleanup(base: Path, locked: list[Path]) -> None:
    for p in locked:
        if os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)
    for dirpath, dirnames, _ in os.walk(base):
        for d in dirnames:
            try:
                q = os.path.join(dirpath, d)
                if not os.path.islink(q):
                    os.chmod(q, 0o755)
            except OSError:
                pass
    shutil.rmtree(base, ignore_errors=True)
    if base.exists():  # paths longer than PATH_MAX: remove level by level
        subprocess.run(["rm", "-rf", "--", str(base)], capture_output=True)


def snapshot(base: Path) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            snap[os.path.relpath(p, base)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino, link)
    return snap


def run_limited(cmd: list[str], cwd: Path, env: dict, timeout: float, mem_bytes: int) -> dict:
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))

    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=limits, start_new_session=True)
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
    return {"rc": p.returncode, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "timed_out": timed_out, "seconds": round(time.monotonic() - t0, 2)}


def child_env(base: Path) -> dict:
    env = dict(os.environ)
    env.update(HOME=str(base / "home"), TMPDIR=str(base / "tmp"), PYTHONFAULTHANDLER="1",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    return env


# --------------------------------------------------------------------------- classification

TRACEBACK = "Traceback (most recent call last):"
RUNTIME_STATE = {"tmp/.ses"}
MEMORY = re.compile(r"MemoryError|Unable to allocate|bad_alloc|Cannot allocate memory|out of memory", re.I)
ANSI = re.compile(r"\x1b\[")
FRAME = re.compile(r'^\s*File "(.+?)", line (\d+), in (.+)$')


def short_path(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    stdlib = os.path.dirname(os.__file__) + "/"
    if path.startswith(stdlib):
        return "<stdlib>/" + path[len(stdlib):]
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        return path


def normalize(text: str, base: Path | None = None) -> str:
    if base is not None:
        text = text.replace(str(base), "<sandbox>")
    text = re.sub(r"/\S*/(site|dist)-packages/", "", text)
    text = text.replace(str(ROOT) + "/", "")
    text = re.sub(r"/tmp/\S+", "<tmp>", text)
    text = re.sub(r"0x[0-9a-fA-F]+", "0x_", text)
    text = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "N", text)
    text = re.sub(r"'[^']{40,}'", "'...'", text)
    return text.strip()[:160]


def parse_traceback(err: str) -> tuple[str, str]:
    """(last frame 'file:function', exception line) of the last traceback in `err`; when the
    last frame is outside qcc, the last qcc frame comes first: 'qcc frame (in last frame)'."""
    block = err[err.rindex(TRACEBACK):].splitlines()[1:]
    frame, own, exc = "?", None, "?"
    for i, line in enumerate(block):
        m = FRAME.match(line)
        if m:
            frame = f"{short_path(m.group(1))}:{m.group(3).strip()}"
            if _is_qcc(m.group(1)):
                own = frame
            continue
        if line and not line.startswith((" ", "\t", "^", "~")) and frame != "?":
            exc = line.strip()
            break
    return (frame if own in (None, frame) else f"{own} (in {frame})"), exc


def _is_qcc(path: str) -> bool:
    try:
        rel = Path(path).resolve().relative_to(ROOT)
    except (ValueError, OSError):
        return False
    return rel.parts[0] in ("qcompiler", "passes", "backends")


def faulthandler_frame(err: str) -> str:
    lines = err.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("Current thread", "Thread 0x")) and "most recent call first" in line:
            for nxt in lines[i + 1:]:
                m = re.match(r'\s*File "(.+?)", line (\d+) in (.+)$', nxt)
                if m:
                    return f"{short_path(m.group(1))}:{m.group(3).strip()}"
    return "no Python frame"


def stderr_noise(err: str, out: str) -> list[str]:
    """Why stderr is not just qcc's own lines."""
    issues = []
    if ANSI.search(err) or ANSI.search(out):
        issues.append("ANSI colour codes")
    lines = [l for l in err.splitlines() if l.strip()]
    if any(l.startswith("usage:") for l in lines):
        issues.append(f"usage dump ({len(lines)} lines)")
    if "allow_pickle" in err:
        issues.append("'allow_pickle' advice")
    foreign = [l for l in lines if not l.startswith(("qcc:", "usage:")) and not l.startswith(" ")]
    if foreign and not any(i.startswith("usage") for i in issues):
        issues.append(noise_kind(normalize(ANSI.sub("", foreign[0]))))
    return issues


def noise_kind(line: str) -> str:
    """A foreign stderr line -> what printed it (also applied to stored causes: idempotent)."""
    m = re.search(r"\[([EWIV]):onnxruntime:[^\]]*?(\w+\.cc):N ([^\]]+)\]", line)
    if m:
        return f"onnxruntime log line [{m.group(1)}] {m.group(2)} {m.group(3)}"
    m = re.search(r"tensorflow/lite/micro/\S*?(\w+\.cc):N (.{0,40})", line)
    if m:
        return f"TFLM log line {m.group(1)}: {m.group(2)}"
    m = re.search(r"(\S+\.py):N: (\w+Warning): (.{0,50})", line)
    if m:
        return f"{m.group(2)} from {m.group(1)}: {m.group(3)}"
    return line if line.startswith(("onnxruntime log", "TFLM log", "foreign line")) or "Warning from" in line \
        else "foreign line: " + line[:100]


def classify(case: Case, base: Path, run: dict, before: dict, after: dict, opts) -> dict:
    rc, err, out = run["rc"], run["stderr"], run["stdout"]
    flags: dict[str, str] = {}
    # ---- filesystem
    out_abs = None
    if case.out_arg:  # qcc treats `-o ''` like no -o
        o = case.out_arg.replace("{BASE}", str(base))
        out_abs = os.path.realpath(os.path.join(base / "w", o))
    else:
        out_abs = os.path.realpath(base / "w" / f"{Path(case.argv[0]).stem}_{_target(case)}")
    allowed = [out_abs]
    if case.dump_dir:
        allowed.append(str(base / case.dump_dir))
    rbase = os.path.realpath(base)

    def inside(rel: str, roots) -> bool:
        full = os.path.realpath(os.path.join(rbase, os.path.dirname(rel)))
        full = os.path.join(full, os.path.basename(rel))
        return any(full == r or full.startswith(r.rstrip("/") + "/") for r in roots)

    def is_ancestor_dir(rel: str) -> bool:
        full = os.path.join(rbase, rel)
        return after.get(rel, (None,))[0] == stat.S_IFDIR and out_abs.startswith(full.rstrip("/") + "/")

    # created paths, and files / links whose content or identity changed (a folder's mtime
    # changes whenever an entry comes or goes: not a write of its own)
    changed = [k for k in after if k not in before or (after[k][:4] != before[k][:4]
                                                       and not (after[k][0] == before[k][0] == stat.S_IFDIR))]
    removed = [k for k in before if k not in after]
    outside = [k for k in changed if not inside(k, allowed) and not k.startswith(("home/", "tmp/"))
               and not is_ancestor_dir(k) and ".qcc-" not in k]
    if outside:
        flags["outside-write"] = ", ".join(sorted(outside)[:3])
    temps = [k for k in after if ".qcc-" in os.path.basename(k)]
    # onnxruntime (1.2x) keeps a session id in $TMPDIR/.ses and a device id under ~/.cache:
    # runtime state, not qcc's temporary files
    tmpfiles = [k for k in after if k.startswith("tmp/") and k not in RUNTIME_STATE]
    in_out = [k for k in changed + removed if inside(k, [out_abs])]
    if temps:
        flags["leftover"] = f"temp folder {normalize(temps[0])} left behind"
    elif tmpfiles:
        flags["leftover"] = f"file left in TMPDIR: {normalize(tmpfiles[0])}"
    elif rc != 0 and in_out:
        flags["leftover"] = f"partial output in -o after a failure ({len(in_out)} paths changed)"
    elif rc == 0:
        lost = [k for k in before if inside(k, [out_abs]) and (base / k).name in ("keep.txt",)
                and (k not in after or after[k][:4] != before[k][:4])]
        if lost:
            flags["leftover"] = "an unrelated file in -o was changed or removed"
    # ---- process
    cls, cause, check = None, "", None
    if run["timed_out"]:
        cls, cause = "timeout", f"timeout ({case.kind})"
    elif rc < 0 or rc in (128 + 6, 128 + 9, 128 + 11):
        sig = -rc if rc < 0 else rc - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if MEMORY.search(err):
            cls, cause = "memory", f"{name} after an allocation failure at {faulthandler_frame(err)}"
        else:
            cls, cause = "signal", f"{name} at {faulthandler_frame(err)}"
    elif rc != 0:
        clean = _clean_error(err, out)
        if TRACEBACK in err:
            frame, exc = parse_traceback(err)
            kind = "memory" if MEMORY.search(exc) else "traceback"
            cls, cause = kind, f"{exc.split(':')[0]} at {frame}"
            flags["message"] = normalize(exc, base)
        elif MEMORY.search(err) and not clean:
            cls, cause = "memory", normalize(err.strip().splitlines()[-1], base)
        elif clean:
            cls, cause = "clean-error", f"exit {rc}: " + normalize(_error_line(err), base)[:90]
        else:
            noise = stderr_noise(err, out) or ["no 'qcc: error:' line"]
            cls, cause = "unclear", "; ".join(noise)
            flags["message"] = normalize(_error_line(err) or err.strip()[-200:], base)
    else:
        if case.outside_data:
            cls, cause = "outside-read", f"external data outside the model folder accepted ({case.desc[-1][:80]})"
        else:
            check = check_output(case, base, out_abs, opts)
            if check["status"] == "fail" and case.data_free and DATA_FREE_WARNING in err:
                # not silent: data-free ranges are estimates and qcc said so (quality, not a lie)
                cls, cause = "warned", f"data-free, warned: {check['reason']}"
            elif check["status"] == "fail":
                cls, cause = "silently-wrong", check["reason"]
            else:
                noise = stderr_noise(err, out)
                cls, cause = ("noisy", "; ".join(noise)) if noise else ("ok", check["status"])
    # the worst class wins; the others stay in flags
    for k in ("outside-write", "leftover"):
        if k in flags and CLASSES.index(k) < CLASSES.index(cls):
            flags["process"] = f"{cls}: {cause}"
            cls, cause = k, f"{flags[k] if k == 'leftover' else 'writes ' + normalize(flags[k])} ({case.kind})"
    return {"class": cls, "cause": cause, "flags": flags, "check": check}


def _target(case: Case) -> str:
    return case.argv[case.argv.index("--target") + 1] if "--target" in case.argv else "tflm"


def _error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("qcc: error:")]
    return lines[-1][len("qcc: error:"):].strip() if lines else ""


def _clean_error(err: str, out: str) -> bool:
    lines = [l for l in err.splitlines() if l.strip()]
    return (bool(lines) and lines[-1].startswith("qcc: error:") and all(l.startswith("qcc:") for l in lines)
            and sum(l.startswith("qcc: error:") for l in lines) == 1 and not ANSI.search(err + out)
            and "allow_pickle" not in err)


# --------------------------------------------------------------------------- silently wrong?

REF_CODE = r"""
import sys, numpy as np, onnxruntime as ort
model, feed, out = sys.argv[1:4]
so = ort.SessionOptions()
so.log_severity_level = 4
so.intra_op_num_threads = so.inter_op_num_threads = 1
s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
if len(s.get_inputs()) != 1:
    raise SystemExit("the model has %d inputs" % len(s.get_inputs()))
x = np.load(feed)["x"]
name = s.get_inputs()[0].name
res = [s.run(None, {name: x[k:k + 1]}) for k in range(len(x))]
np.savez(out, **{"o%d" % i: np.concatenate([np.asarray(r[i]) for r in res]) for i in range(len(res[0]))})
"""

EMIT_CODE = r"""
import sys, json, numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
tfl, feed, out, layouts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
PERM = {"NHWC": (0, 2, 3, 1), "NWC": (0, 2, 1)}
# the reference kernels, as TFLite Micro runs them (no XNNPACK delegate)
it = Interpreter(model_path=tfl, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
it.allocate_tensors()
ins, outs = it.get_input_details(), it.get_output_details()
if len(ins) != 1:
    raise SystemExit("the emitted model has %d inputs" % len(ins))
x = np.load(feed)["x"]
res = []
for k in range(len(x)):
    xi = x[k:k + 1]
    perm = PERM.get(layouts["in"][0])
    if perm and xi.ndim == len(perm):
        xi = xi.transpose(perm)
    d = ins[0]
    scale, zp = d["quantization"]
    if np.issubdtype(d["dtype"], np.integer):
        info = np.iinfo(d["dtype"])
        xi = np.clip(np.round(xi / scale) + zp, info.min, info.max)
    xi = xi.astype(d["dtype"])
    if xi.size != int(np.prod(d["shape"])):
        raise SystemExit("input size %d != declared %s" % (xi.size, list(d["shape"])))
    it.set_tensor(d["index"], xi.reshape(d["shape"]))
    it.invoke()
    row = []
    for j, od in enumerate(outs):
        o = it.get_tensor(od["index"]).astype(np.float64)
        s, z = od["quantization"]
        if np.issubdtype(od["dtype"], np.integer) and s:
            o = (o - z) * s
        perm = PERM.get(layouts["out"][j] if j < len(layouts["out"]) else "same")
        if perm and o.ndim == len(perm):
            o = o.transpose(np.argsort(perm))
        row.append(o)
    res.append(row)
np.savez(out, **{"o%d" % j: np.concatenate([r[j] for r in res]) for j in range(len(outs))})
print(json.dumps({"shapes": [list(map(int, od["shape"])) for od in outs]}))
"""


def _to_onnx_layout(shape: list[int], layout: str | None) -> list[int]:
    if layout == "NHWC" and len(shape) == 4:
        return [shape[0], shape[3], shape[1], shape[2]]
    if layout == "NWC" and len(shape) == 3:
        return [shape[0], shape[2], shape[1]]
    return list(shape)


def _feeds(case: Case, spec: ModelSpec, shape: list[int]) -> np.ndarray | None:
    per = math.prod(shape[1:]) if shape else 0
    if not shape or shape[0] != 1 or per <= 0 or per > 10 ** 7:
        return None
    src = None
    declared = case.input_range
    if declared and not np.allclose(declared, (spec.lo, spec.hi), rtol=1e-4):
        # a mutated data-free range: the inputs the user claims are uniform over it
        big = float(np.finfo(np.float32).max)
        lo, hi = max(declared[0], -big), min(declared[1], big)
        with np.errstate(over="ignore"):
            return np.random.default_rng(case.index).uniform(lo, hi, [CHECK_SAMPLES] + list(shape[1:])) \
                .astype(np.float32)
    for cand in (case.calib_array, spec.calib):
        if cand is not None and cand.ndim >= 1 and len(cand) and cand[0].size == per:
            src = cand.reshape(len(cand), per).astype(np.float32)
            break
    if src is None:
        lo, hi = case.input_range or (spec.lo, spec.hi)
        src = np.random.default_rng(case.index).uniform(lo, hi, (CHECK_SAMPLES, per)).astype(np.float32)
    idx = sorted(set(np.linspace(0, len(src) - 1, CHECK_SAMPLES).astype(int).tolist()
                     + [int(np.argmax(np.abs(src).max(axis=1)))]))
    x = src[idx]
    if case.input_range:
        x = np.clip(x, *case.input_range)
    return x.reshape([len(idx)] + list(shape[1:])) if np.all(np.isfinite(x)) else None


def _sub(code: str, args: list[str], base: Path, opts, timeout: float = 120) -> dict:
    return run_limited([sys.executable, "-c", code, *args], base / "check", child_env(base), timeout, opts.mem_bytes)


def _first_line(run: dict) -> str:
    if run["timed_out"]:
        return "timed out"
    if run["rc"] < 0:
        return f"killed by {signal.Signals(-run['rc']).name}"
    lines = [l for l in run["stderr"].strip().splitlines() if l.strip()]
    return normalize(lines[-1] if lines else f"exit {run['rc']}")


def check_output(case: Case, base: Path, out_abs: str, opts) -> dict:
    """Run the emitted .tflite (LiteRT) and the mutated model (onnxruntime) on the same inputs."""
    spec = opts.specs_by_name[case.model]
    outdir = Path(out_abs)
    rp = outdir / "report.json"
    if not rp.is_file():
        return {"status": "fail", "reason": "exit 0 but no report.json in -o"}
    try:
        report = json.loads(rp.read_text())
    except ValueError:
        return {"status": "fail", "reason": "exit 0 but report.json is not JSON"}
    target = report.get("target")
    big = float(np.finfo(np.float32).max)
    if case.input_range and max(abs(v) for v in case.input_range) > big:
        return {"status": "fail", "reason": "--input-range beyond float32 accepted (its end is infinite in float32)"}
    if target not in ("tflm", "tflite"):
        return {"status": f"unchecked: target {target}"}
    if "--outputs" in case.argv:
        return {"status": "unchecked: --outputs"}
    tfl = outdir / f"{report['name']}.tflite"
    if not tfl.is_file():
        return {"status": "fail", "reason": "report names a .tflite that is not in -o"}
    ins, outs = report.get("inputs", []), report.get("outputs", [])
    layouts = report.get("io_layout", {})
    if len(ins) != 1:
        return {"status": f"unchecked: {len(ins)} inputs"}
    shape = _to_onnx_layout(ins[0]["shape"], layouts.get(ins[0]["name"]))
    x = _feeds(case, spec, shape)
    if x is None:
        return {"status": f"unchecked: no finite feed for input shape {shape}"}
    chk = base / "check"
    chk.mkdir(exist_ok=True)
    np.savez(chk / "feed.npz", x=x)
    result: dict = {}
    # C source: must compile (tflm emits it)
    cfiles = sorted(outdir.glob("*_model_data.c"))
    if target == "tflm" and cfiles and opts.cc:
        cc = subprocess.run([opts.cc, "-std=c99", "-fsyntax-only", "-Wall", "-Werror", "-I", str(outdir),
                             str(cfiles[0])], capture_output=True, text=True, timeout=60)
        if cc.returncode != 0:
            first = next((l for l in cc.stderr.splitlines() if "error" in l), cc.stderr[:200])
            first = first.split("error:", 1)[-1].strip()
            return {"status": "fail", "reason": f"generated C does not compile: {normalize(first, base)}"}
    # the reference: onnxruntime on the mutated model (or the original one, if the mutation keeps
    # the float function, e.g. a lying declared shape that onnxruntime refuses)
    model_path = base / "w" / case.argv[0]
    ref = _sub(REF_CODE, [str(model_path), str(chk / "feed.npz"), str(chk / "ref.npz")], base, opts)
    result["reference"] = "mutated model"
    if ref["rc"] != 0 and case.same_function:
        (chk / "orig.onnx").write_bytes(spec.onnx_bytes)
        ref = _sub(REF_CODE, [str(chk / "orig.onnx"), str(chk / "feed.npz"), str(chk / "ref.npz")], base, opts)
        result["reference"] = "original model (mutation keeps the function)"
    lay = {"in": [layouts.get(ins[0]["name"], "same")], "out": [layouts.get(o["name"], "same") for o in outs]}
    emit = _sub(EMIT_CODE, [str(tfl), str(chk / "feed.npz"), str(chk / "emit.npz"), json.dumps(lay)], base, opts)
    if emit["rc"] != 0 or emit["timed_out"]:
        return {**result, "status": "fail", "reason": f"LiteRT cannot run the emitted model: {_first_line(emit)}"}
    emitted = np.load(chk / "emit.npz")
    e_outs = [emitted[f"o{j}"] for j in range(len(emitted.files))]
    declared = json.loads(emit["stdout"].strip().splitlines()[-1])["shapes"]
    header = {}
    hfiles = sorted(outdir.glob("*_model_data.h"))
    if hfiles:
        for m in re.finditer(r"#define \w+_OUTPUT(\d+)_ELEMENT_COUNT (\d+)", hfiles[0].read_text(errors="replace")):
            header[int(m.group(1))] = int(m.group(2))
    # sizes the emitted model declares (report, header, flatbuffer) must agree with each other
    for j, o in enumerate(outs):
        sizes = {"report.json": math.prod(o["shape"]), "tflite": math.prod(declared[j]) if j < len(declared) else None}
        if j in header:
            sizes["header"] = header[j]
        if len(set(sizes.values())) > 1:
            return {**result, "status": "fail", "reason": f"declared output sizes disagree: {sizes}"}
    if ref["rc"] != 0 or ref["timed_out"]:
        return {**result, "status": f"unchecked: onnxruntime cannot run the model ({_first_line(ref)[:100]})"}
    refd = np.load(chk / "ref.npz")
    r_outs = [refd[f"o{j}"] for j in range(len(refd.files))]
    if len(r_outs) != len(e_outs):
        return {**result, "status": "fail", "reason": f"{len(e_outs)} outputs emitted, onnxruntime computes {len(r_outs)}"}
    worst = 0.0
    for j, (r, e) in enumerate(zip(r_outs, e_outs)):
        if r.size != e.size:
            return {**result, "status": "fail",
                    "reason": f"output {j}: emitted model declares {e.size // len(x)} elements per sample, "
                              f"onnxruntime computes {r.size // len(x)}"}
        r = r.astype(np.float64)
        if not np.all(np.isfinite(r)):
            return {**result, "status": "unchecked: non-finite reference output"}
        e = e.reshape(r.shape)
        if not np.all(np.isfinite(e)):
            return {**result, "status": "fail", "reason": f"output {j}: non-finite emitted values"}
        span = float(r.max() - r.min())
        scale = float(outs[j].get("scale") or 0.0)
        tol = REL_TOL * max(span, 0.1 * float(np.abs(r).max())) + 1.5 * scale
        err = float(np.abs(e - r).max())
        rel = err / max(span, 1e-30)
        worst = max(worst, rel)
        if err > tol:
            return {**result, "status": "fail", "max_abs_err": err, "ref_span": span,
                    "reason": f"output {j}: emitted vs onnxruntime relative error > {REL_TOL} of the output range"}
    return {**result, "status": "pass", "worst_rel_err": round(worst, 4)}


# --------------------------------------------------------------------------- driver

def models_arg(opts) -> str:
    for key, names in (("all", DIGITS + tuple(MLPERF)), ("digits", DIGITS), ("mlperf", tuple(MLPERF))):
        if opts.model_names == sorted(names):
            return key
    return ",".join(opts.model_names)


def repro_command(opts, index: int, keep: str | None = None) -> str:
    cmd = f"python tools/fuzz.py --seed {opts.seed} --models {models_arg(opts)} --case {index}"
    if opts.family:
        cmd += f" --family {opts.family}"
    return cmd + f" --keep {keep}" if keep else cmd


def show_argv(argv: list[str]) -> str:
    import shlex
    return "qcc " + " ".join(shlex.quote(a if len(a) <= 80 else a[:40] + f"...<{len(a)} chars>") for a in argv)


def run_case(index: int, opts) -> dict:
    case = build_case(opts.seed, index, opts.specs, opts.family)
    keep = opts.keep
    base = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix=f"qccfuzz-{opts.seed}-{index}-",
                                                                  dir=opts.tmp))
    if keep:
        if base.exists() and any(base.iterdir()):
            raise SystemExit(f"fuzz: --keep {base} exists and is not empty")
        base.mkdir(parents=True, exist_ok=True)
    locked: list[Path] = []
    try:
        locked = materialize(case, base)
        before = snapshot(base)
        argv = [a.replace("{BASE}", str(base)) for a in case.argv]
        run = run_limited([sys.executable, "-m", "qcompiler", *argv], base / "w", child_env(base),
                          opts.timeout, opts.mem_bytes)
        after = snapshot(base)
        verdict = classify(case, base, run, before, after, opts)
    finally:
        if not keep:
            cleanup(base, locked)
        elif locked and os.geteuid() == 0 and shutil.which("chattr"):
            for p in locked:
                subprocess.run(["chattr", "-i", str(p)], capture_output=True)
    err_lines = [l for l in run["stderr"].splitlines() if l.strip()]
    rec = {"seed": opts.seed, "case": index, "model": case.model, "family": case.family, "kind": case.kind,
           "mutation": case.desc, "argv": case.argv, "class": verdict["class"], "cause": verdict["cause"],
           "rc": run["rc"], "seconds": run["seconds"], "flags": verdict["flags"], "check": verdict["check"],
           "stderr_tail": [normalize(l, base) if len(l) > 300 else l.replace(str(base), "<sandbox>")
                           for l in err_lines[-4:]],
           "repro": repro_command(opts, index, "/tmp/qccfuzz-case")}
    if keep:
        print(f"sandbox kept in {base}; from {base / 'w'} run:\n  {sys.executable} -m qcompiler "
              + " ".join(__import__('shlex').quote(a) for a in argv))
    return rec


def summarize(records: list[dict], opts, seconds: float) -> str:
    by_class = Counter(r["class"] for r in records)
    lines = [f"# qcc fuzz campaign: seed {opts.seed}, {len(records)} cases", "",
             f"Command: `nice python tools/fuzz.py --seed {opts.seed} --cases {len(records)} "
             f"--models {models_arg(opts)}{' --family ' + opts.family if opts.family else ''} --jobs {opts.jobs}` "
             f"({seconds / 60:.1f} min wall clock, {opts.jobs} job(s); timeout {opts.timeout:g} s, "
             f"address space {opts.mem_bytes >> 20} MiB per run).", "",
             f"Versions: python {sys.version.split()[0]}, numpy {np.__version__}, onnx {onnx.__version__}, "
             f"onnxruntime {_ort_version()}; qcc at {_git_head()}.", "",
             f"Models: {', '.join(opts.model_names)}. Families: "
             + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['family'] for r in records).items())) + ".", "",
             "Reproduce one case: `python tools/fuzz.py --seed S --models M --case N --keep DIR` "
             "(prints the qcc command; DIR keeps the sandbox).", "",
             "| class | cases | distinct causes | example case | example mutation | example command |",
             "|---|---|---|---|---|---|"]
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["class"]][r["cause"]].append(r)
    for cls in CLASSES:
        if not by_class.get(cls):
            continue
        ex = min((rs[0] for rs in groups[cls].values()), key=lambda r: r["case"])
        lines.append(f"| {cls} | {by_class[cls]} | {len(groups[cls])} | {ex['case']} | "
                     f"{_md(ex['mutation'][-1] if ex['mutation'] else '')} | `{_md(show_argv(ex['argv']))}` |")
    lines += ["", f"Bad classes (must be 0): {sum(by_class.get(c, 0) for c in BAD_CLASSES)} cases.", ""]
    secondary = Counter((k, r["class"]) for r in records for k in ("outside-write", "leftover")
                        if k in r["flags"] and r["class"] != k)
    if secondary:
        lines += ["Also flagged in cases counted under a worse class: " + ", ".join(
            f"{k} in {v} {cls} case(s)" for (k, cls), v in sorted(secondary.items())) + ".", ""]
    for cls in CLASSES:
        if not groups.get(cls) or cls == "ok":
            continue
        lines += [f"## {cls}: {by_class[cls]} cases, {len(groups[cls])} distinct causes", ""]
        rows = sorted(groups[cls].items(), key=lambda kv: (-len(kv[1]), kv[0]))
        if cls == "clean-error":  # the expected outcome: exit codes, then the most frequent messages
            codes = Counter(r["rc"] for r in records if r["class"] == cls)
            lines += ["By exit code: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) + ".", "",
                      f"The {min(len(rows), 20)} most frequent messages:", ""]
            rows = rows[:20]
        lines += ["| cases | cause | example case (model) | mutation | message |", "|---|---|---|---|---|"]
        for cause, rs in rows:
            r = rs[0]
            msg = r["flags"].get("message") or (r["stderr_tail"][-1] if r["stderr_tail"] else "")
            lines.append(f"| {len(rs)} | {_md(cause)} | {r['case']} ({r['model']}) | "
                         f"{_md('; '.join(r['mutation']))[:200]} | {_md(msg)[:160]} |")
        lines.append("")
    ok = [r for r in records if r["class"] in ("ok", "noisy") and r["check"]]
    checked = Counter(("pass" if r["check"]["status"] == "pass" else r["check"]["status"].split(":")[0])
                      for r in ok)
    lines += ["## checks of exit-0 runs", "", ", ".join(f"{k}: {v}" for k, v in sorted(checked.items())), ""]
    unchecked = Counter(r["check"]["status"] for r in ok if r["check"]["status"] != "pass")
    if unchecked:
        lines += ["| unchecked because | cases |", "|---|---|"] + \
                 [f"| {_md(k)} | {v} |" for k, v in unchecked.most_common(12)] + [""]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "\\n").replace("\t", "\\t").replace("`", "'")


def _ort_version() -> str:
    try:
        import onnxruntime
        return onnxruntime.__version__
    except ImportError:
        return "absent"


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=100, help="cases 0..N-1")
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--case", type=int, action="append", help="run only this case index (repeatable)")
    p.add_argument("--out", help="write cases.jsonl and summary.md here")
    p.add_argument("--models", default="all", help="all | digits | mlperf | comma-separated model stems")
    p.add_argument("--family", choices=[f[0] for f in FAMILIES],
                   help="only this mutation family (part of a case's identity, like --seed)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per qcc run")
    p.add_argument("--mem-mb", type=int, default=2048, help="address-space limit per run (MiB)")
    p.add_argument("--keep", help="with one --case: keep its sandbox in this (new or empty) folder")
    p.add_argument("--tmp", help="where sandboxes are made (default: the system temp folder)")
    p.add_argument("--list", action="store_true", help="print the cases' mutations without running qcc")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--summary-from", metavar="JSONL",
                   help="only rewrite summary.md (in --out) from a cases.jsonl; with --wall-minutes")
    p.add_argument("--wall-minutes", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prepare(opts) -> None:
    opts.model_names = available_models(opts.models)
    if not opts.model_names:
        raise SystemExit("fuzz: no models found")
    opts.specs = [load_spec(n) for n in opts.model_names]
    opts.specs_by_name = {s.name: s for s in opts.specs}
    opts.mem_bytes = opts.mem_mb << 20
    opts.cc = shutil.which("cc") or shutil.which("gcc")
    if opts.keep and (not opts.case or len(opts.case) != 1):
        raise SystemExit("fuzz: --keep needs exactly one --case")


def run_batch(opts, progress=None) -> list[dict]:
    indices = opts.case or list(range(opts.start, opts.start + opts.cases))
    with ThreadPoolExecutor(max_workers=max(opts.jobs, 1)) as pool:
        records = []
        for rec in pool.map(lambda i: run_case(i, opts), indices):
            records.append(rec)
            if progress:
                progress(rec)
    return records


def main(argv=None) -> int:
    opts = parse_args(argv)
    prepare(opts)
    if opts.list:
        for i in opts.case or range(opts.start, opts.start + opts.cases):
            c = build_case(opts.seed, i, opts.specs, opts.family)
            print(f"{i:5} {c.model:24} {c.kind:16} {'; '.join(c.desc)[:110]}\n      {show_argv(c.argv)}")
        return 0
    out = Path(opts.out) if opts.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if opts.summary_from:
        records = [json.loads(line) for line in open(opts.summary_from)]
        for r in records:  # causes are re-normalized: the rules may have changed since the run
            if r["class"] in ("unclear", "noisy"):
                r["cause"] = "; ".join(noise_kind(normalize(p.replace("foreign line: ", "")))
                                       if p.startswith("foreign line") else p for p in r["cause"].split("; "))
            elif r["class"] != "ok":
                r["cause"] = normalize(r["cause"])
        opts.seed = records[0]["seed"]
        summary = summarize(records, opts, opts.wall_minutes * 60)
        (out / "summary.md" if out else Path("/dev/stdout")).write_text(summary)
        return 0
    jsonl = open(out / "cases.jsonl", "w") if out else None
    t0 = time.monotonic()

    def progress(rec):
        if jsonl:
            jsonl.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
            jsonl.flush()
        if not opts.quiet:
            print(f"{rec['case']:5} {rec['model']:22} {rec['kind']:15} {rec['class']:14} {rec['seconds']:6.1f}s "
                  f"{rec['cause'][:70]}", flush=True)
            if rec["class"] in BAD_CLASSES:
                print(f"      {'; '.join(rec['mutation'])[:150]}\n      repro: {rec['repro']}", flush=True)

    records = run_batch(opts, progress)
    seconds = time.monotonic() - t0
    if jsonl:
        jsonl.close()
    summary = summarize(records, opts, seconds)
    if out:
        (out / "summary.md").write_text(summary)
    if not opts.quiet or not out:
        print(summary.split("\n## ")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
