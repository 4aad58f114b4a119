"""Host builds of an emitted model: a shared library run through ctypes (`qcc verify`) and
the example executable (tests: sanitizers, other compilers).

The library is compiled with the system C compiler (`$CC`, else cc / gcc / clang) and
`-std=c99 -O2 -Wall -Wextra -Werror -pedantic`, so a warning fails verification. Each run
fills guard bytes after the scratch buffer and the outputs and checks them afterwards: a
kernel writing out of bounds fails loudly instead of passing by luck.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from qcompiler.errors import BackendError, MissingDependencyError

CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic")
GUARD = 64
GUARD_BYTE = 0xA5


def c_compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise MissingDependencyError("target 'c' needs a C compiler to verify (cc, gcc or clang; or set CC)")


def compile_c(sources: list[Path], output: Path, flags=(), cc: str | None = None) -> None:
    cmd = [cc or c_compiler(), *CFLAGS, *flags, "-o", str(output), *map(str, sources)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BackendError(f"compiling the emitted C failed ({' '.join(cmd)}):\n{res.stderr.strip()[:4000]}")


_OBJECTS: dict[tuple, Path] = {}
_CACHE: list[Path] = []


def kernels_object(source: Path, flags=(), cc: str | None = None) -> Path:
    """qcc_kernels.c compiled once per process for each content / compiler / flags."""
    cc = cc or c_compiler()
    key = (hashlib.sha256(source.read_bytes()).hexdigest(), cc, tuple(flags))
    if key not in _OBJECTS or not _OBJECTS[key].is_file():
        if not _CACHE:
            _CACHE.append(Path(tempfile.mkdtemp(prefix="qcc-c-kernels-")))
            atexit.register(shutil.rmtree, _CACHE[0], True)
        obj = _CACHE[0] / f"qcc_kernels_{len(_OBJECTS)}.o"
        compile_c([source], obj, ("-c", *flags), cc)
        _OBJECTS[key] = obj
    return _OBJECTS[key]


class HostModel:
    """The emitted model as a shared library: `run([input memory...]) -> [output memory...]`."""

    def __init__(self, outdir: Path, ident: str, in_sizes: list[int], out_sizes: list[int], scratch_bytes: int,
                 flags=(), cc: str | None = None, io_offsets=None, in_dtypes=None, out_dtypes=None):
        """Sizes in elements of `in_dtypes` / `out_dtypes` (default int8). io_offsets: (input
        offsets, output offsets) in the scratch buffer (--c-io scratch): the inputs are written
        there and the outputs read there, as a caller of that mode does."""
        build = Path(tempfile.mkdtemp(prefix="qcc-c-"))
        try:
            lib = build / f"lib{ident}.so"
            kernels = kernels_object(outdir / "qcc_kernels.c", ("-fPIC", *flags), cc)
            compile_c([outdir / f"{ident}.c", kernels], lib, ("-fPIC", "-shared", *flags), cc)
            self.lib = ctypes.CDLL(str(lib))
        finally:
            shutil.rmtree(build, ignore_errors=True)   # the loaded library stays mapped
        self.fn = getattr(self.lib, f"{ident}_invoke")
        self.fn.restype = ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p] * (len(in_sizes) + len(out_sizes) + 1)
        self.in_dtypes = [np.dtype(d) for d in (in_dtypes or ["int8"] * len(in_sizes))]
        self.out_dtypes = [np.dtype(d) for d in (out_dtypes or ["int8"] * len(out_sizes))]
        self.in_sizes, self.out_sizes = in_sizes, out_sizes
        self.out_bytes = [n * d.itemsize for n, d in zip(out_sizes, self.out_dtypes)]
        # scratch keeps whatever earlier runs left there: the model may not depend on it
        self.scratch = np.full(scratch_bytes + GUARD, 0x5A, np.uint8)
        self.scratch_bytes = scratch_bytes
        self.io_offsets = io_offsets

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        ins = [np.ascontiguousarray(a, d).reshape(-1) for a, d in zip(inputs, self.in_dtypes)]
        for a, n in zip(ins, self.in_sizes):
            if a.size != n:
                raise BackendError(f"input of {a.size} elements, the model takes {n}")
        outs = [np.full(n + GUARD, GUARD_BYTE, np.uint8) for n in self.out_bytes]
        self.scratch[self.scratch_bytes:] = GUARD_BYTE
        base = self.scratch.ctypes.data
        if self.io_offsets is not None:
            for a, off in zip(ins, self.io_offsets[0]):
                self.scratch[off:off + a.nbytes] = a.view(np.uint8)
            in_ptrs, out_ptrs = [base + off for off in self.io_offsets[0]], [base + off for off in self.io_offsets[1]]
        else:
            in_ptrs, out_ptrs = [a.ctypes.data for a in ins], [o.ctypes.data for o in outs]
        status = self.fn(*in_ptrs, *out_ptrs, base)
        if self.io_offsets is not None:
            for o, off, n in zip(outs, self.io_offsets[1], self.out_bytes):
                o[:n] = self.scratch[off:off + n]
        if status != 0:
            raise BackendError(f"the model's invoke returned {status}")
        for what, buf, n in [("scratch", self.scratch, self.scratch_bytes)] + \
                [(f"output {i}", o, n) for i, (o, n) in enumerate(zip(outs, self.out_bytes))]:
            if np.any(buf[n:] != GUARD_BYTE):
                raise BackendError(f"the model wrote past the end of its {what} buffer ({n} bytes)")
        return [o[:n].view(d).copy() for o, n, d in zip(outs, self.out_bytes, self.out_dtypes)]
