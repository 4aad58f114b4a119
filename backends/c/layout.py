"""Memory layouts of activations: which ONNX element sits at which byte.

A value of ONNX shape `s` is stored as `x.reshape(view).transpose(perm)` in C order:

    plain          view = s, perm = identity             (ONNX order)
    channels last  view = s, perm = (0, 2, 3, 1) / (0, 2, 1)   (NHWC / NWC: what convolution,
                   pooling and the graph's image inputs and outputs use, as in TFLite)

Reshapes are free: the reshaped value keeps its input's (view, perm), since ONNX reshapes
keep the flat element order; a Transpose of a value whose view is its own shape is free as
well (its perm composes). Two layouts are the same memory when their order maps (memory
position -> flat ONNX index) are equal, whatever their views; `same_memory` compares them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

NHWC = (0, 2, 3, 1)
NWC = (0, 2, 1)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_last_perm(rank: int) -> tuple[int, ...]:
    return {4: NHWC, 3: NWC}.get(rank, identity(rank))


def inverse(perm) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


@dataclass(frozen=True)
class Layout:
    view: tuple[int, ...]
    perm: tuple[int, ...]

    @staticmethod
    def plain(shape) -> "Layout":
        shape = tuple(int(d) for d in shape)
        return Layout(shape, identity(len(shape)))

    @staticmethod
    def channels_last(shape) -> "Layout":
        shape = tuple(int(d) for d in shape)
        return Layout(shape, channels_last_perm(len(shape)))

    @staticmethod
    def transposed(shape, perm) -> "Layout":
        return Layout(tuple(int(d) for d in shape), tuple(int(p) for p in perm))

    @property
    def size(self) -> int:
        return math.prod(self.view)

    @property
    def memory_shape(self) -> tuple[int, ...]:
        return tuple(self.view[p] for p in self.perm)

    def is_plain(self) -> bool:
        return _is_plain(self.view, self.perm)

    def is_transpose_of(self, shape) -> bool:
        """Memory is a pure transpose of an array of `shape` (the view is that shape)."""
        return self.view == tuple(int(d) for d in shape)

    def order(self) -> np.ndarray:
        """memory position -> flat ONNX index (read-only, cached)."""
        return _order(self.view, self.perm)

    def axis_strides(self) -> tuple[int, ...]:
        """Element stride in memory of each view axis."""
        mem = self.memory_shape
        strides = [0] * len(self.view)
        step = 1
        for j in range(len(mem) - 1, -1, -1):
            strides[self.perm[j]] = step
            step *= mem[j]
        return tuple(strides)

    def store(self, arr: np.ndarray) -> np.ndarray:
        """An ONNX-ordered array as this layout's memory (a C-contiguous copy)."""
        return np.ascontiguousarray(np.asarray(arr).reshape(self.view).transpose(self.perm))

    def load(self, mem: np.ndarray, shape) -> np.ndarray:
        """Memory back to the ONNX-ordered array of `shape`."""
        return np.asarray(mem).reshape(self.memory_shape).transpose(inverse(self.perm)).reshape(shape)


def _is_plain(view, perm) -> bool:
    moved = [p for p in perm if view[p] != 1]
    return moved == sorted(moved)


@functools.lru_cache(maxsize=512)
def _order(view: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    order = np.arange(math.prod(view), dtype=np.int64).reshape(view).transpose(perm).reshape(-1)
    order.flags.writeable = False
    return order


def same_memory(a: Layout, b: Layout) -> bool:
    """Do the two layouts place every element at the same position?"""
    if a == b or (a.is_plain() and b.is_plain()):
        return True
    if a.size != b.size:
        return False
    return bool(np.array_equal(a.order(), b.order()))


def strides_for(src: Layout, dst: Layout) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(dims, src strides, dst strides) copying `src` memory into `dst` memory, iterating in
    dst's memory order, or None when the two views differ and neither layout is plain."""
    if src.view != dst.view:
        if dst.is_plain():
            dst = Layout.plain(src.view)
        elif src.is_plain():
            src = Layout.plain(dst.view)
        else:
            return None
    s_axis, d_axis = src.axis_strides(), dst.axis_strides()
    dims = tuple(dst.view[p] for p in dst.perm)
    return dims, tuple(s_axis[p] for p in dst.perm), tuple(d_axis[p] for p in dst.perm)


def merge_dims(dims, *strides) -> tuple[tuple[int, ...], ...]:
    """Drop size-1 axes and merge neighbours that are contiguous in every stride list."""
    keep = [i for i, d in enumerate(dims) if d != 1]
    out_d: list[int] = []
    out_s: list[list[int]] = [[] for _ in strides]
    for i in keep:
        if out_d and all(s[i] * dims[i] == prev[-1] for s, prev in zip(strides, out_s)):
            out_d[-1] *= dims[i]
            for k, s in enumerate(strides):
                out_s[k][-1] = s[i]
            continue
        out_d.append(dims[i])
        for k, s in enumerate(strides):
            out_s[k].append(s[i])
    if not out_d:
        out_d = [1]
        out_s = [[1] for _ in strides]
    return (tuple(out_d), *(tuple(s) for s in out_s))
