"""The --activations auto search's SQNR estimate stays conservative: it is the lowest pooled
SQNR over every reweighting of the search samples that weighs no sample more than WEIGHT_CAP
times its share (mixed.robust_sqnr_db), never the plain pooled SQNR, and the search compares
that estimate (not the pooled one) with --min-sqnr + MARGIN_DB."""
from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.quant import mixed
from tests.test_mixed_precision import _model


def _pooled(s, n):
    return float(10 * np.log10(s.sum() / n.sum()))


@pytest.mark.parametrize("seed", range(30))
def test_robust_is_the_worst_capped_reweighting(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(4, 11))
    s = rng.lognormal(0, 1, count)
    n = s * 10 ** (-rng.uniform(1, 5, count))   # per-sample SQNR 10..50 dB
    assert mixed.robust_sqnr_db(s, n, 1.0) == pytest.approx(_pooled(s, n))
    for cap in (2.0, 3.0, float(count)):
        got = mixed.robust_sqnr_db(s, n, cap)
        size = int(np.ceil(count / cap))
        # a uniform mix over any subset of >= count / cap samples is an allowed reweighting
        subsets = [_pooled(s[list(c)], n[list(c)]) for k in range(size, count + 1)
                   for c in combinations(range(count), k)]
        assert got <= min(subsets) + 1e-9
        if count % cap == 0:   # then the worst allowed mix is such a subset: the bound is exact
            assert got == pytest.approx(min(subsets), abs=1e-9)
        assert got <= _pooled(s, n) + 1e-9
    # the worst sample alone (cap = count) is the lowest per-sample SQNR
    assert mixed.robust_sqnr_db(s, n, float(count)) == pytest.approx(float(np.min(10 * np.log10(s / n))))


def test_default_estimate_is_capped_not_pooled():
    assert mixed.WEIGHT_CAP >= 2.0 and mixed.MARGIN_DB >= 1.0
    s = np.ones(8)
    n = np.array([1e-5] * 6 + [1e-2, 1e-2])   # two hard samples
    assert mixed.robust_sqnr_db(s, n) < _pooled(s, n) - 2.5   # the hard quarter weighs double


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32)


def test_search_compares_the_capped_estimate(tmp_path, data):
    """A target that all-int8's pooled SQNR reaches but its capped estimate does not: the
    search must not stop at all-int8, and report.json names the estimate it used."""
    model = _model(tmp_path / "m.onnx")
    probe = compile_model(model, tmp_path / "p", CompileOptions(calib=data, activations="auto", min_sqnr=0.0))
    a = probe.report["calibration"]["activations"]
    row = next(r for r in a["pareto"] if r["config"] == "all int8")
    assert row["sqnr_db"] < row["pooled_sqnr_db"] - 0.5, row
    assert a["estimate"]["weight_cap"] == mixed.WEIGHT_CAP and a["estimate"]["margin_db"] == mixed.MARGIN_DB
    target = (row["sqnr_db"] + row["pooled_sqnr_db"]) / 2 - mixed.MARGIN_DB
    res = compile_model(model, tmp_path / "o", CompileOptions(calib=data, activations="auto", min_sqnr=target))
    b = res.report["calibration"]["activations"]
    chosen = next(r for r in b["pareto"] if r["chosen"])
    assert chosen["config"] != "all int8"
    assert all(r["sqnr_db"] <= r["pooled_sqnr_db"] + 1e-9 for r in b["pareto"])
    if b["reached"]:
        assert b["search_sqnr_db"] >= target + mixed.MARGIN_DB - 0.01
