"""bench/real_models.py's tables from a cache (no corpus needed): ORT best is the better method per
output, a loss is marked, resampled subsets give mean, spread and wins."""
from __future__ import annotations

from bench import real_models as rm


def _entry(sqnr, **extra):
    return {"sqnr": sqnr, "task": {"f1": 0.9, "mean_iou": 0.8, "ref_boxes": 10, "test_boxes": 9},
            "eval_samples": 5, "calib_samples": 8, **extra}


def test_tables_from_cache():
    key = "nudenet_320n"
    cache = {rm.entry_key(key, "qcc default", "full"): _entry({"out": 20.0, "out scores": 5.0}, seconds=10.0,
                                                                cpu_seconds=12.0, arena_bytes=2048, flash_bytes=4096),
             rm.entry_key(key, "ORT MinMax", "full"): _entry({"out": 18.0, "out scores": 6.0}, seconds=5.0,
                                                               cpu_seconds=8.0),
             rm.entry_key(key, "ORT Percentile", "full"): _entry({"out": 19.0, "out scores": 4.0})}
    for k, (q, b) in enumerate([(10.0, 9.0), (10.0, 11.0), (12.0, 9.0), (11.0, 9.0)]):
        cache[rm.entry_key(key, "qcc default", f"r{k}")] = _entry({"out": q})
        cache[rm.entry_key(key, "ORT MinMax", f"r{k}")] = _entry({"out": b})
    md = rm.markdown(cache, [key])
    assert "| nudenet_320n | out | 20.00 | 18.00 | 19.00 | 19.00 | — | 1.00 |" in md
    assert "| nudenet_320n | out scores | 5.00 | 6.00 | 4.00 | 6.00 | — | -1.00 **(loses)** |" in md
    # arena, flash KiB, wall (CPU) seconds, ratios
    assert "| nudenet_320n | 8 | 2 | 4 | — | 10 (12) | 5 (8) | — | — | 2.00 (1.50) |" in md
    assert "| nudenet_320n | out | 10.75 ± 2.00 | 9.50 ± 2.00 | +1.00 -1.00 +3.00 +2.00 | 3/4 |" in md


def test_subsets_are_seeded_halves():
    a, b = rm.subset_indices(64, "r0"), rm.subset_indices(64, "r1")
    assert len(a) == 32 and len(set(a)) == 32 and list(a) != list(b)
    assert list(rm.subset_indices(64, "r0")) == list(a) and list(rm.subset_indices(5, "full")) == [0, 1, 2, 3, 4]
