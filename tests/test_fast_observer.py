"""HistogramObserver's block-by-block passes against the whole-array code they replaced."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qcompiler.quant import observers
from qcompiler.quant.observers import HistogramObserver


class WholeArrayObserver(HistogramObserver):
    """observe() / _add() as they were: every pass over the whole array."""

    def observe(self, arr):
        x = np.asarray(arr).ravel()
        if x.size == 0:
            return
        if x.dtype != np.float32:
            x = x.astype(np.float64)
        batch_min, batch_max = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, batch_min), max(self.max, batch_max)
        self.n += x.size
        if self.moments:
            self._sum += float(np.sum(x, dtype=np.float64))
            self._sumsq += float(np.sum(np.square(x, dtype=np.float64)))
        if not self.keeps_histogram:
            return
        zeros = x.size - int(np.count_nonzero(x))
        self.zeros += zeros
        if zeros < x.size:
            self._add(x, batch_min, batch_max, zeros)

    def _add(self, x, lo, hi, zeros):
        if self.exp is None:
            span = hi - lo if hi > lo else abs(hi) * 1e-6
            self.exp = math.ceil(math.log2(span / (self.bins // 2 - 2)))
            self.start = int(math.floor(math.ldexp(lo, -self.exp)))
        first, last = self._occupied if self._occupied is not None else (None, None)
        while True:
            i0 = int(math.floor(math.ldexp(lo, -self.exp)))
            i1 = int(math.floor(math.ldexp(hi, -self.exp)))
            if first is not None:
                i0, i1 = min(i0, first), max(i1, last)
            if i1 - i0 < self.bins:
                break
            self._coarsen()
            if first is not None:
                first, last = first // 2, last // 2
        if i0 < self.start or i1 >= self.start + self.bins:
            self._move(i0)
        self._occupied = (i0, i1)
        idx = self._index(x, nonnegative=lo >= 0) - self.start
        zero_bin = -self.start
        if zeros and not 0 <= zero_bin < self.bins:
            idx, zeros = idx[x != 0], 0
        self.counts += np.bincount(idx, minlength=self.bins)
        if zeros:
            self.counts[zero_bin] -= zeros


def state(o: HistogramObserver):
    return (np.float64(o.min).tobytes(), np.float64(o.max).tobytes(), o.n, o.zeros, o.exp, o._occupied,
            o.histogram()[0].tobytes(), o.histogram()[1].tobytes(), o._sum, o._sumsq)


def batches(rng, kind: str, n: int):
    """Sample-sized arrays of one kind of activation, some crossing block boundaries."""
    for i in range(5):
        size = observers.BLOCK * (i % 3) + int(rng.integers(1, 3000))
        x = rng.normal(0, 1 + 3 * i, size).astype(np.float32)
        if kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "signed_zeros":
            x = np.where(x < 0, np.float32(-0.0), x)  # a ReLU that keeps -0.0: the min is a signed zero
        elif kind == "shifted":
            x = x + np.float32(1000 * (i + 1))  # far from 0: the zeros' bin leaves the window
            x[: size // 7] = 0
        elif kind == "float64":
            x = x.astype(np.float64)
        elif kind == "tiny":
            x = x * np.float32(1e-30)
        yield x[:n] if n else x


@pytest.mark.parametrize("kind", ["normal", "relu", "signed_zeros", "shifted", "float64", "tiny"])
@pytest.mark.parametrize("histogram,moments", [(True, False), (True, True), (False, False)])
def test_blocked_observer_equals_whole_array_one(kind, histogram, moments):
    rng = np.random.default_rng(sum(map(ord, kind)))
    arrays = list(batches(rng, kind, 0))
    fast, slow = (cls(moments=moments, histogram=histogram) for cls in (HistogramObserver, WholeArrayObserver))
    for x in arrays:
        fast.observe(x)
        slow.observe(x)
        assert state(fast) == state(slow)


def test_nan_reaches_both_extremes():
    x = np.random.default_rng(0).normal(size=3 * observers.BLOCK).astype(np.float32)
    x[observers.BLOCK + 5] = np.nan
    lo, hi, _ = observers._extremes(x, True)
    assert math.isnan(lo) and math.isnan(hi)


def test_observing_samples_one_by_one_equals_stacked():
    """calibration observes big tensors sample by sample (no stacking copy): same histogram."""
    rng = np.random.default_rng(3)
    arrays = [rng.normal(k, 1 + k, (1, 4, 64, 300)).astype(np.float32) for k in range(6)]
    one, stacked = HistogramObserver(moments=False), HistogramObserver(moments=False)
    one.observe(arrays[0])
    stacked.observe(arrays[0])
    for x in arrays[1:]:
        one.observe(x)
    stacked.observe(np.concatenate(arrays[1:]))
    assert state(one)[1:] == state(stacked)[1:] and one.min == stacked.min
