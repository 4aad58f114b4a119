"""Helpers shared by the integer kernels (their parameters come from qcompiler.numerics.qops)."""
from __future__ import annotations

import numpy as np


def as_int(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def to_int8(y, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(y, lo, hi).astype(np.int8)


def to_output(node, y, lo: int | None = None, hi: int | None = None, index: int = 0) -> np.ndarray:
    """y clamped to [lo, hi] (default: the output type's range) in output `index`'s type."""
    q = node.outputs[index].quant
    dtype = np.dtype(q.dtype if q is not None else np.int8)
    info = np.iinfo(dtype)
    return np.clip(y, info.min if lo is None else lo, info.max if hi is None else hi).astype(dtype)


def channel_shape(rank: int, axis: int = 1) -> tuple[int, ...]:
    shape = [1] * rank
    shape[axis] = -1
    return tuple(shape)
