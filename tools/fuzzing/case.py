"""A case (what one qcc run gets), the context a mutator edits, and helpers on .npy/.npz bytes
and on the model proto."""
from __future__ import annotations

import io
import math
import random
import struct
import zipfile
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .models import ModelSpec

HUGE = 10 ** 10             # declared element counts that must never be allocated
EXTREMES = [3e38, -3e38, -9.4e37, 1e30, 1e20, float("nan"), float("inf"), -float("inf"),
            1e-45, np.finfo(np.float32).max]


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


def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple, fortran: bool = False) -> bytes:
    """A version-1.0 .npy header declaring any shape (the data is not written by us)."""
    d = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, repr(tuple(shape)))
    pad = 64 - (10 + len(d) + 1) % 64
    text = (d + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npz_bytes(members: dict[str, bytes]) -> bytes:
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
