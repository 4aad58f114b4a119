"""The --activations auto search's cost bounds: an unreachable target stops after all-int8 and
all-int16; the prefix search probes at most MAX_PROBES prefixes and finds the shortest one on
monotone SQNRs; the batched, cached scorer equals a plain sample-by-sample run."""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.quant import mixed
from tests.test_mixed_precision import _model


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(1).uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32)


def test_unreachable_target_costs_two_candidates(tmp_path, data):
    res = compile_model(_model(tmp_path / "m.onnx"), tmp_path / "o",
                        CompileOptions(calib=data, activations="auto", min_sqnr=200.0))
    a = res.report["calibration"]["activations"]
    assert not a["reached"] and "not reachable" in a["why_not"]
    assert a["search"]["candidates"] == 2 and a["search"]["evaluations"] == 2
    assert {r["config"] for r in a["pareto"]} == {"all int8", "all int16"}
    assert a["sensitivity"] == []


@pytest.mark.parametrize("seed", range(40))
def test_shortest_prefix_is_bounded_and_exact_when_monotone(seed):
    rng = np.random.default_rng(seed)
    count = int(rng.integers(2, 40))
    gains = list(rng.uniform(0, 3, count))
    steps = np.sort(rng.uniform(0, 1, count))[::-1] if seed % 2 else rng.uniform(0, 1, count)
    curve = np.concatenate([[30.0], 30.0 + np.cumsum(steps) * 10 / max(np.sum(steps), 1e-9)])
    goal = float(rng.uniform(curve[0] + 1e-6, curve[-1]))
    probed = set()

    def sqnr(k):
        if k not in (0, count):
            probed.add(k)
        return float(curve[k])
    best = min(k for k in range(1, count + 1) if curve[k] >= goal)   # brute force
    for budget in (2, 4, 64):
        probed.clear()
        k = mixed._shortest_prefix(count, gains, 30.0, goal, sqnr, budget)
        assert len(probed) <= budget and curve[k] >= goal
        if budget == 64:
            assert k == best


def test_scorer_batched_and_cached_equal_plain_runs(tmp_path, data):
    from qcompiler.quant.precision import Precision
    from qcompiler.quant.quantize import quantize_graph
    from qcompiler.quant.calibration import FloatRunner
    res = compile_model(_model(tmp_path / "m.onnx"), tmp_path / "o", CompileOptions(calib=data))
    g, q8 = res.float_graph, res.quant_graph
    ranges = {v.name: (float(v.quant.dequantize(np.array([-128]))[0]), float(v.quant.dequantize(np.array([127]))[0]))
              for v in q8.values() if not v.is_constant and v.quant is not None}
    ranges = {k: v for k, v in ranges.items() if k in {x.name for x in g.values()}}
    q16 = quantize_graph(g, ranges, precision=Precision(wide=frozenset({"ConvC", "Softmax"})))
    feeds = [{"x": data[i:i + 1]} for i in range(6)]
    runner = FloatRunner(g)
    refs = [{"y": runner.run(f)["y"]} for f in feeds]
    plain = mixed.Scorer(refs, feeds)
    plain.batched = False
    fast = mixed.Scorer(refs, feeds)
    s8 = fast.score(q8, remember="int8")
    assert s8 == plain.score(q8)
    assert fast.score(q16, cached="int8") == plain.score(q16)
    assert fast.batched   # the stacked run matched on these graphs
    before = fast.nodes_run
    fast.score(q8, cached="int8")
    assert fast.nodes_run == before   # nothing to recompute
    for q in (q8, q16):   # every tensor, stacked vs one sample at a time
        want = fast._run(q, len(feeds), None, 0, False)
        got = fast._run(q, len(feeds), None, 0, True)
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def test_cheapest_reaching_candidate_is_measured_not_estimated(tmp_path):
    """MLPerf KWS, --min-sqnr 23.08 (ORT best + 3): the arena estimate ranked all-int16
    (estimated 40,272 B, measured 42,352) below a 5-layer prefix (41,072 / 40,880); when the two
    cheapest reaching candidates are within ESTIMATE_SLACK, both are measured exactly and the
    smaller arena wins."""
    from conftest import require_shared
    from bench.common import MLPERF, SHARED, mlperf_data
    require_shared()
    calib = tmp_path / "c.npy"
    np.save(calib, mlperf_data("kws", "calib"))
    res = compile_model(SHARED / MLPERF["kws"][0], tmp_path / "o",
                        CompileOptions(calib=str(calib), activations="auto", min_sqnr=23.08))
    a = res.report["calibration"]["activations"]
    goal = 23.08 + mixed.MARGIN_DB
    reaching = [r for r in a["pareto"] if r["sqnr_db"] >= goal]
    chosen = next(r for r in reaching if r["chosen"])
    exact = [r for r in reaching if r["arena"] == "exact"]
    assert len(exact) >= 2 and chosen in exact
    assert chosen["arena_bytes"] == min(r["arena_bytes"] for r in exact) == res.report["arena"]["arena_bytes"]
    all16 = next(r for r in a["pareto"] if r["config"] == "all int16")
    assert chosen["arena_bytes"] < all16["arena_bytes"], (chosen, all16)
