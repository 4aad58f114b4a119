"""Comparisons of runtime outputs with the oracle's, accumulated over samples.

Each comparator has `add(output, expected, got)`, `summary() -> dict` and `ok`:

    LsbDiff     integer outputs, bit-exact required (differences counted in LSB)
    FloatDiff   float outputs that must be bit-exact too (I/O converted inside the model)
    Fidelity    outputs against the float model: SQNR per output, top-1 agreement of
                classifier-like outputs (never a pass/fail criterion by itself)
"""
from __future__ import annotations

import math

import numpy as np


def sqnr_db(signal2: float, noise2: float) -> float | None:
    """10 log10(signal / noise) of two sums of squares; None when the noise is exactly 0."""
    if noise2 == 0:
        return None
    return 10 * math.log10(max(signal2, 1e-300) / noise2)


class LsbDiff:
    """Integer output differences over samples: exact equality required."""

    def __init__(self):
        self.max_lsb = 0
        self.mismatched = 0
        self.total = 0

    def add(self, output: str, expected: np.ndarray, got: np.ndarray) -> None:
        d = np.abs(np.asarray(expected).astype(np.int64) - np.asarray(got).astype(np.int64))
        self.max_lsb = max(self.max_lsb, int(d.max(initial=0)))
        self.mismatched += int(np.count_nonzero(d))
        self.total += d.size

    @property
    def ok(self) -> bool:
        return self.mismatched == 0

    def summary(self) -> dict:
        return {"max_abs_diff_lsb": self.max_lsb, "mismatched_elements": self.mismatched,
                "elements": self.total, "bit_exact": self.ok}


class FloatDiff:
    """Float output differences: exact equality required; `lsb` (one output step) for reading."""

    def __init__(self, lsb: dict[str, float]):
        self.lsb = lsb
        self.max_abs = 0.0
        self.max_lsb = 0
        self.mismatched = 0
        self.total = 0

    def add(self, output: str, expected: np.ndarray, got: np.ndarray) -> None:
        d = np.abs(np.asarray(expected, np.float64) - np.asarray(got, np.float64))
        self.max_abs = max(self.max_abs, float(d.max(initial=0.0)))
        self.max_lsb = max(self.max_lsb, int(np.round(d.max(initial=0.0) / self.lsb[output])))
        self.mismatched += int(np.count_nonzero(expected != got))
        self.total += d.size

    @property
    def ok(self) -> bool:
        return self.mismatched == 0

    def summary(self) -> dict:
        return {"max_abs_diff": self.max_abs, "max_abs_diff_lsb": self.max_lsb,
                "mismatched_elements": self.mismatched, "elements": self.total, "bit_exact": self.ok}


class Fidelity:
    """Runtime outputs (as floats) against the float model, per output."""

    def __init__(self):
        self.err2: dict[str, float] = {}
        self.ref2: dict[str, float] = {}
        self.max_abs: dict[str, float] = {}
        self.top1: dict[str, list[int]] = {}

    def add(self, output: str, reference: np.ndarray, got: np.ndarray) -> None:
        ref = np.asarray(reference, np.float64)
        got = np.asarray(got, np.float64).reshape(ref.shape)
        d = ref - got
        self.err2[output] = self.err2.get(output, 0.0) + float(np.sum(d * d))
        self.ref2[output] = self.ref2.get(output, 0.0) + float(np.sum(ref * ref))
        self.max_abs[output] = max(self.max_abs.get(output, 0.0), float(np.abs(d).max(initial=0.0)))
        if ref.ndim == 2 and ref.shape[1] > 1:  # [batch, classes]: count argmax agreement
            agree, n = self.top1.get(output, [0, 0])
            self.top1[output] = [agree + int(np.sum(ref.argmax(1) == got.argmax(1))), n + ref.shape[0]]

    @property
    def ok(self) -> bool:
        return True

    def summary(self) -> dict:
        out = {}
        for name in self.err2:
            s = {"sqnr_db": sqnr_db(self.ref2[name], self.err2[name]), "max_abs_diff": self.max_abs[name]}
            if name in self.top1:
                agree, n = self.top1[name]
                s["top1_agreement"] = agree / n if n else None
            out[name] = s
        return out
