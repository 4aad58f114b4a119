"""Streaming range observers and the range-selection rules built on them.

`HistogramObserver` keeps, for one tensor, running min / max / mean / variance,
the count of exact zeros and a fixed-size histogram of the non-zero values whose
range grows by merging bins. Memory is O(bins) whatever the number of samples.

The histogram's bins have a power-of-two width and are anchored at 0 (bin i
covers [i*w, (i+1)*w)), so growing the range is an exact merge of bin pairs and
folding negative onto positive values (|x|) is exact as well. Exact zeros (ReLU
outputs, padding) are counted apart: int8 represents 0 exactly, and leaving a
huge spike at 0 inside the histogram is what makes a naive KL search shrink
ReLU ranges (see /work/shared/NUMERICS.md).

Range rules (each returns (lo, hi) inside the observed [min, max]; the quantizer
later widens the range to include 0):
    minmax       observed extremes
    percentile   p-th / (100-p)-th percentiles (zeros count as data)
    mse          [lo, hi] minimising expected rounding + clipping error of the
                 asymmetric int8 grid
    silu         the same error measured after the SiLU x * sigmoid(x) that reads the
                 tensor (`consumer_mse_range`): clipping far below 0 costs nothing there
    kl           TensorRT-style entropy calibration: <= 2048 bins, threshold
                 minimising KL(P || Q); one-sided data uses 256 levels over
                 [0, t] (asymmetric int8), two-sided data 128 levels over |x|
"""
from __future__ import annotations

import math

import numpy as np

KL_BINS = 2048
KL_MAX_CLIPPED = 1e-4  # fraction of non-zero values a KL threshold may clip
MSE_CANDIDATES = 256  # per side; the search is exhaustive over candidate pairs
BLOCK = 1 << 16  # values per step of the streaming passes (their temporaries stay in the CPU cache)


def _extremes(x: np.ndarray, count_nonzero: bool) -> tuple[float, float, int]:
    """(x.min(), x.max(), non-zero count) of a flat array, in one pass over memory: block by
    block (a NaN anywhere makes both NaN, as over the whole array). An extreme equal to 0 is
    taken from the whole array again: which of 0.0 / -0.0 numpy's reduction returns depends
    on its order, and the sign of a zero reaches report.json's ranges."""
    if x.size <= BLOCK:
        return float(x.min()), float(x.max()), int(np.count_nonzero(x)) if count_nonzero else x.size
    lo, hi, nonzero = x[:1].min(), x[:1].max(), 0
    for i in range(0, x.size, BLOCK):
        part = x[i:i + BLOCK]
        lo, hi = np.minimum(lo, part.min()), np.maximum(hi, part.max())
        if count_nonzero:
            nonzero += int(np.count_nonzero(part))
    lo = x.min() if lo == 0 else lo
    hi = x.max() if hi == 0 else hi
    return float(lo), float(hi), nonzero if count_nonzero else x.size


class HistogramObserver:
    """Running statistics and a growable histogram of one tensor's values."""

    def __init__(self, bins: int = 4096, moments: bool = True, histogram: bool = True):
        self.bins = bins
        self.moments = moments        # keep mean / variance (only graph inputs need them)
        self.keeps_histogram = histogram  # False: extremes (and moments) only, for min-max ranges
        self.exp: int | None = None   # bin width = 2**exp
        self.start = 0                # global index of counts[0]
        self.counts = np.zeros(bins if histogram else 0, np.float64)
        self._occupied: tuple[int, int] | None = None
        self.min, self.max = math.inf, -math.inf
        self.n = 0
        self.zeros = 0
        self._sum = 0.0
        self._sumsq = 0.0

    # ---- statistics ----------------------------------------------------
    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp) if self.exp is not None else 0.0

    def _need_moments(self) -> None:
        if not self.moments:
            raise ValueError("this observer was created with moments=False (no mean / variance kept)")

    @property
    def mean(self) -> float:
        self._need_moments()
        return self._sum / self.n if self.n else 0.0

    @property
    def std(self) -> float:
        self._need_moments()
        if not self.n:
            return 0.0
        return math.sqrt(max(self._sumsq / self.n - self.mean ** 2, 0.0))

    def observe(self, arr: np.ndarray) -> None:
        x = np.asarray(arr).ravel()
        if x.size == 0:
            return
        if x.dtype != np.float32:
            x = x.astype(np.float64)
        batch_min, batch_max, nonzero = _extremes(x, self.keeps_histogram)
        self.min, self.max = min(self.min, batch_min), max(self.max, batch_max)
        self.n += x.size
        if self.moments:
            self._sum += float(np.sum(x, dtype=np.float64))
            self._sumsq += float(np.sum(np.square(x, dtype=np.float64)))
        if not self.keeps_histogram:
            return
        zeros = x.size - nonzero
        self.zeros += zeros
        if zeros < x.size:
            # with zeros present the window is sized to include 0's bin too (the extremes of the
            # non-zero values alone would cost two more passes; for ReLU outputs it is the same)
            self._add(x, batch_min, batch_max, zeros)

    # ---- histogram maintenance ------------------------------------------
    def _index(self, x: np.ndarray, nonnegative: bool = False) -> np.ndarray:
        # scaling by a power of two is exact (in float32 too), so bin assignment is reproducible;
        # a multiply by a normal float32 power of two is the same operation as ldexp, just faster
        if x.dtype == np.float32 and -126 <= self.exp <= 126:
            scaled = x * np.float32(math.ldexp(1.0, -self.exp))
        else:
            scaled = np.ldexp(x, -self.exp)
        if not nonnegative:  # truncation is floor for values >= 0
            np.floor(scaled, out=scaled)
        return scaled.astype(np.int64)

    def _add(self, x: np.ndarray, lo: float, hi: float, zeros: int) -> None:
        """Count the non-zero values of x (lo / hi: extremes the window must cover; `zeros` in x)."""
        if self.exp is None:
            span = hi - lo if hi > lo else abs(hi) * 1e-6  # some value is non-zero: span > 0
            # smallest power-of-two width that puts the first batch into about half the bins
            self.exp = math.ceil(math.log2(span / (self.bins // 2 - 2)))
            self.start = int(math.floor(math.ldexp(lo, -self.exp)))
        # bins that may hold counts (global indices; a superset of the occupied ones)
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
        zero_bin = -self.start
        drop = bool(zeros) and not 0 <= zero_bin < self.bins  # 0 lies outside the window: drop the zeros
        counts = np.zeros(self.bins, np.int64)
        for i in range(0, x.size, BLOCK):  # block by block: the index arrays stay in the CPU cache
            part = x[i:i + BLOCK]
            idx = self._index(part, nonnegative=lo >= 0)
            idx -= self.start
            counts += np.bincount(idx[part != 0] if drop else idx, minlength=self.bins)
        self.counts += counts
        if zeros and not drop:
            self.counts[zero_bin] -= zeros

    def _coarsen(self) -> None:
        """Double the bin width: bins 2k and 2k+1 merge (floor division keeps it exact)."""
        idx = self.start + np.arange(self.bins)
        new = idx // 2
        new_start = self.start // 2
        self.counts = np.bincount(new - new_start, weights=self.counts, minlength=self.bins)[:self.bins]
        self.start = new_start
        self.exp += 1

    def _move(self, new_start: int) -> None:
        shift = new_start - self.start
        moved = np.zeros_like(self.counts)
        if abs(shift) >= self.bins:
            pass  # nothing of the old window stays inside (only possible while it is empty)
        elif shift >= 0:
            moved[:self.bins - shift] = self.counts[shift:]
        else:
            moved[-shift:] = self.counts[:self.bins + shift]
        self.counts, self.start = moved, new_start

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(edges [k+1], counts [k]) of the non-zero values over the occupied bins."""
        used = np.nonzero(self.counts)[0]
        if used.size == 0:
            return np.zeros(1), np.zeros(0)
        a, b = int(used[0]), int(used[-1]) + 1
        edges = np.ldexp(np.arange(self.start + a, self.start + b + 1, dtype=np.float64), self.exp)
        edges[0], edges[-1] = max(edges[0], self.min), min(edges[-1], self.max)
        return edges, self.counts[a:b].copy()


# ---- range rules ----------------------------------------------------------

def minmax_range(obs: HistogramObserver) -> tuple[float, float]:
    return obs.min, obs.max


def _cdf_points(obs: HistogramObserver) -> tuple[np.ndarray, np.ndarray]:
    """Piecewise-linear CDF (x, F) of all values, with the zero atom as a vertical step at 0."""
    edges, counts = obs.histogram()
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    if obs.zeros == 0 or counts.size == 0:
        return (edges, cum) if counts.size else (np.zeros(2), np.array([0.0, obs.zeros]))
    k = int(np.searchsorted(edges, 0.0, side="left"))
    nxt = k + 1 if k < edges.size and edges[k] == 0 else k
    base = float(np.interp(0.0, edges, cum))
    xs = np.concatenate([edges[:k], [0.0, 0.0], edges[nxt:]])
    fs = np.concatenate([cum[:k], [base, base + obs.zeros], cum[nxt:] + obs.zeros])
    return xs, fs


def _quantile(obs: HistogramObserver, q: float) -> float:
    """Value below which a fraction q of all observed values lie (zeros included)."""
    xs, fs = _cdf_points(obs)
    target = q * fs[-1]
    j = int(np.searchsorted(fs, target, side="left"))
    if j <= 0:
        return float(xs[0])
    if j >= fs.size:
        return float(xs[-1])
    f0, f1 = fs[j - 1], fs[j]
    frac = 0.0 if f1 <= f0 else (target - f0) / (f1 - f0)
    return float(xs[j - 1] + frac * (xs[j] - xs[j - 1]))


def percentile_range(obs: HistogramObserver, percentile: float = 99.99) -> tuple[float, float]:
    """(100-p)-th and p-th percentiles of all values; a one-sided tensor keeps its 0 end."""
    p = min(max(percentile, 50.0), 100.0) / 100.0
    lo = obs.min if obs.min >= 0 else _quantile(obs, 1.0 - p)
    hi = obs.max if obs.max <= 0 else _quantile(obs, p)
    return max(lo, obs.min), min(hi, obs.max)


def _candidates(extreme: float, count: int) -> np.ndarray:
    """Thresholds between 2% and 100% of the extreme (fine near the top, where optima lie)."""
    t = np.linspace(0.0, 1.0, count) ** 2
    return extreme * (1.0 - 0.98 * t)


def mse_range(obs: HistogramObserver) -> tuple[float, float]:
    """[lo, hi] with minimal expected squared error of the asymmetric int8 grid.

    Error model per non-zero value x: (x - clip)^2 outside [lo, hi], step^2/12
    inside (uniform rounding error); exact zeros cost nothing (0 is on the grid).
    """
    return consumer_mse_range(obs, f=_identity, slope=np.ones_like)


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _silu_slope(x: np.ndarray) -> np.ndarray:
    s = 1.0 / (1.0 + np.exp(-x))
    return s * (1.0 + x * (1.0 - s))


def consumer_mse_range(obs: HistogramObserver, f=_silu, slope=_silu_slope) -> tuple[float, float]:
    """[lo, hi] minimising the expected squared error of f(x), the elementwise function that
    consumes the tensor, when x is on the asymmetric int8 grid over [lo, hi].

    Error model per non-zero value x: (f(x) - f(clip))^2 outside [lo, hi], f'(x)^2 step^2/12
    inside (rounding error carried through f's slope); exact zeros cost nothing.
    """
    edges, counts = obs.histogram()
    if counts.size == 0 or obs.max <= obs.min:
        return obs.min, obs.max
    centers = 0.5 * (edges[:-1] + edges[1:])
    fc = f(centers)
    z = np.zeros(1)
    n, sf, sff = (np.concatenate([z, np.cumsum(counts * w)]) for w in (1.0, fc, fc * fc))
    sd = np.concatenate([z, np.cumsum(counts * slope(centers) ** 2)])
    his = _candidates(obs.max, MSE_CANDIDATES) if obs.max > 0 else np.array([0.0])
    los = _candidates(obs.min, MSE_CANDIDATES) if obs.min < 0 else np.array([0.0])
    j = np.searchsorted(centers, his, side="right")
    fh = f(his)
    above = (sff[-1] - sff[j]) - 2 * fh * (sf[-1] - sf[j]) + fh ** 2 * (n[-1] - n[j])
    k = np.searchsorted(centers, los, side="left")
    fl = f(los)
    below = sff[k] - 2 * fl * sf[k] + fl ** 2 * n[k]
    step = (his[None, :] - los[:, None]) / 255.0
    inside = np.maximum(sd[-1] - (sd[-1] - sd[j])[None, :] - sd[k][:, None], 0.0)
    err = inside * step ** 2 / 12.0 + above[None, :] + below[:, None]
    a, b = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(los[a]), float(his[b])


def abs_histogram(obs: HistogramObserver, bins: int = KL_BINS) -> tuple[np.ndarray, float]:
    """(counts, width): histogram of |x| (zeros excluded) over [0, k*width), k <= `bins`.

    Built from the native bins by exact merges (bins are anchored at 0 and never
    straddle it, so negative bins fold onto positive ones), never by
    interpolation: resampling spiky histograms onto another grid aliases, and
    KL reacts strongly to such artificial spikes.
    """
    edges, counts = obs.histogram()
    if counts.size == 0:
        return np.zeros(0), obs.width
    centers = np.abs(0.5 * (edges[:-1] + edges[1:]))
    idx = np.floor(np.ldexp(centers, -obs.exp)).astype(np.int64)
    merge = 1
    while (int(idx.max()) // merge) + 1 > bins:
        merge *= 2
    return np.bincount(idx // merge, weights=counts), obs.width * merge


def _chunk_ids(i: int, levels: int) -> np.ndarray:
    """Level of each of i bins when they are split into `levels` nearly equal chunks (np.array_split)."""
    q, r = divmod(i, levels)
    j = np.arange(i)
    big = r * (q + 1)  # the first r chunks hold q + 1 bins
    return np.where(j < big, j // (q + 1), r + (j - big) // max(q, 1))


def _kl_divergence(hist: np.ndarray, i: int, levels: int) -> float:
    """KL(P || Q) of threshold bin i (TensorRT's procedure).

    P: the first i bins with the clipped mass added to the last; Q: those bins
    merged into `levels` levels, each level's mass spread evenly over its
    non-empty bins.
    """
    p = hist[:i].copy()
    p[i - 1] += hist[i:].sum()  # outliers clip onto the threshold
    nonzero = hist[:i] > 0
    ids = _chunk_ids(i, levels)
    mass = np.bincount(ids, weights=hist[:i], minlength=levels)
    used = np.bincount(ids, weights=nonzero, minlength=levels)
    q = np.where(nonzero, mass[ids] / np.maximum(used[ids], 1.0), 0.0)
    p /= p.sum()
    qs = q.sum()
    if qs <= 0:
        return math.inf
    q /= qs
    m = p > 0
    q = np.where(q > 0, q, 1e-12)
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def kl_threshold(hist: np.ndarray, levels: int, max_clipped: float = 1.0, stride: int = 1) -> int:
    """Bin count i >= levels minimising KL; the threshold is i bin widths.

    Candidates clipping more than `max_clipped` of the mass are skipped.
    """
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]]) / max(hist.sum(), 1e-300)
    best_i, best = hist.size, math.inf
    for i in range(min(levels, hist.size), hist.size + 1, stride):
        if tail[i] > max_clipped:
            continue
        kl = _kl_divergence(hist, i, levels)
        if kl < best - 1e-12:
            best_i, best = i, kl
    return best_i


def kl_range(obs: HistogramObserver) -> tuple[float, float]:
    """Entropy calibration, with the care NUMERICS.md asks for.

    - exact zeros are left out (a ReLU's spike at 0 would drag the threshold down);
    - one-sided data gets all 256 levels over [0, t] (the asymmetric int8 grid),
      two-sided data 128 levels over |x| as in TensorRT;
    - KL ignores *how far* clipped values lie, so thresholds that clip more
      than KL_MAX_CLIPPED of the non-zero values are not candidates.
    """
    if obs.max <= obs.min:
        return obs.min, obs.max
    hist, width = abs_histogram(obs)
    if hist.sum() <= 0:
        return obs.min, obs.max
    one_sided = obs.min >= 0 or obs.max <= 0
    levels = 256 if one_sided else 128
    i = kl_threshold(hist, levels, KL_MAX_CLIPPED)
    t = max(i * width, min(abs(obs.min), abs(obs.max)) if one_sided else 0.0)
    return max(obs.min, -t), min(obs.max, t)


RULES = {"minmax": minmax_range, "percentile": percentile_range, "mse": mse_range, "kl": kl_range,
         "silu": consumer_mse_range}


def select_range(obs: HistogramObserver, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """Apply one rule; the result always lies inside the observed [min, max]."""
    if not obs.keeps_histogram and method != "minmax":
        raise ValueError(f"the {method} rule needs a histogram; this observer kept only extremes")
    if method == "percentile":
        lo, hi = percentile_range(obs, percentile)
    else:
        lo, hi = RULES[method](obs)
    return max(float(lo), obs.min), min(float(hi), obs.max)
