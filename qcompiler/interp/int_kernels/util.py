"""Helpers shared by the integer kernels (their parameters come from qcompiler.numerics.qops)."""
from __future__ import annotations

import numpy as np


def as_int(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def to_int8(y, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(y, lo, hi).astype(np.int8)


def channel_shape(rank: int, axis: int = 1) -> tuple[int, ...]:
    shape = [1] * rank
    shape[axis] = -1
    return tuple(shape)
