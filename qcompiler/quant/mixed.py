"""`--activations auto`: which layers compute in int16 (and which fully connected layers keep
per-channel weights), to reach an output SQNR (`--min-sqnr`) within an arena (`--max-arena`)
with the smallest change from the all-int8 model.

The search, on `SEARCH_SAMPLES` calibration samples (output SQNR vs the float model, the
integer reference interpreter, which is bit-exact with TFLM; the samples run stacked through
the batch-safe kernels, and a candidate's leading int8 nodes whose parameters equal the
all-int8 model's are not recomputed; a candidate's SQNR is `robust_sqnr_db`, the lowest pooled
SQNR over reweightings of the samples that weigh none more than `WEIGHT_CAP` times its share,
compared with --min-sqnr + `MARGIN_DB`):

1. knobs: every node with an int16 kernel (a compute node: its followers -- pooling,
   reshapes, Concat -- go with it), and every FC layer the arena budget kept per tensor
   (per-channel weights cost TFLM 8 arena bytes per channel);
2. all-int8, then (with --min-sqnr) all knobs on: when that misses the target nothing else is
   searched (the search stops after two candidates: an unreachable target costs no more than
   a reachable one);
3. sensitivity: the SQNR gained by turning each knob alone on from all-int8 (no bias
   correction; only the nodes from the knob on are recomputed, on `SENSITIVITY_SAMPLES`
   samples); knobs whose own activation bytes already exceed `max_arena` are left out;
4. prefixes of the knobs in order of gain: at most `MAX_PROBES` of them, the first one
   interpolated from the sensitivities, then a bisection, for the shortest prefix reaching
   the target whose arena fits; each candidate built as the compiler builds it (bias
   correction included). Its arena: with --max-arena measured by the backend (`cost`: TFLM's
   recorded total plus the all-int8 model's margin to its exact minimum; "quick"), else
   `estimated_bytes` plus the all-int8 model's margin ("estimate"); the chosen point is
   measured exactly (under --max-arena by the search, else by emit: `settle_arena`).

Every candidate measured in steps 2 and 4 is a row of the Pareto table (SQNR measured, arena
"exact" / "quick" / "estimate") in report.json; the chosen one is the candidate with the
smallest arena (then the fewest knobs) that reaches the target within the arena, else the
best SQNR within the arena (`reached` False, with the reason). Its integer graph is handed
back, so the compiler does not build it again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from qcompiler.errors import CalibrationError
from qcompiler.ir import Graph
from qcompiler.quant.arena_estimate import activation_bytes, estimated_bytes
from qcompiler.quant.precision import FOLLOWERS, Precision, int16_capable
from qcompiler.quant.scorer import WEIGHT_CAP, Scorer, robust_sqnr_db  # noqa: F401  (mixed.* for callers)

# calibration samples the candidates are measured on: as many as SEARCH_VALUES activation
# values allow (the integer reference's cost), within [SEARCH_MIN_SAMPLES, SEARCH_MAX_SAMPLES]
# (VWW: 16, AD: all 128); sensitivities on at most SENSITIVITY_SAMPLES of them
SEARCH_VALUES = 5_000_000
SEARCH_MIN_SAMPLES = 8
SEARCH_MAX_SAMPLES = 128
SENSITIVITY_SAMPLES = 8
# the search aims this much above --min-sqnr: its samples are a few of the calibration set,
# the target is meant for the evaluation data (IC missed it by 0.01 dB without)
MARGIN_DB = 1.0
# prefixes the search measures between all-int8 and all-int16 (bisection alone takes
# log2(knobs): 5 on VWW, whose prefixes' SQNR is not even monotone): the interpolated one and
# the one it brackets; the search stays within 5x an int8 compile (bench/int16.md)
MAX_PROBES = 2
# relative arena difference below which the search's arena estimate does not rank two
# candidates reaching the target (it measures both exactly): its error reached 5 % (KWS)
ESTIMATE_SLACK = 0.10
FC_KNOB = "per-channel:"   # knob name prefix: per-channel weights for that Gemm


@dataclass(frozen=True)
class Config:
    """One point of the search: the int16 nodes and the FC layers with per-channel weights."""

    wide: frozenset = frozenset()
    fc: frozenset = frozenset()

    @staticmethod
    def of(knobs) -> "Config":
        knobs = list(knobs)
        return Config(frozenset(k for k in knobs if not k.startswith(FC_KNOB)),
                      frozenset(k[len(FC_KNOB):] for k in knobs if k.startswith(FC_KNOB)))

    @property
    def precision(self) -> Precision:
        return Precision(wide=self.wide)


@dataclass
class Point:
    config: Config
    sqnr_db: float
    arena_bytes: int | None
    knobs: int
    label: str = ""
    extra: dict = field(default_factory=dict)
    graph: Graph | None = None   # the integer graph measured (bias-corrected)


def knobs(graph: Graph, keep8: Callable | None, fc_candidates: list[str]) -> list[str]:
    """Node names that may compute in int16, then the FC per-channel knobs."""
    out = [n.name for n in graph.nodes
           if n.op not in FOLLOWERS and n.op != "Requantize" and int16_capable(n)
           and not (keep8 is not None and keep8(n))]
    return out + [FC_KNOB + name for name in fc_candidates]


def search(knob_names: list[str], build: Callable[[Config, bool], Graph], scorer: Scorer,
           arena: Callable[[Graph, bool], int | None], activation_bytes: Callable[[Graph], int],
           min_sqnr: float | None, max_arena: int | None) -> tuple[Config, dict, Graph]:
    """(chosen configuration, report.json entry, its integer graph as `build(config, True)`
    made it); see the module docstring.

    `build(config, corrected)` makes the integer graph (with bias correction when `corrected`);
    `arena(qgraph, exact)` measures it (exact: as emit does; else a quicker measure, offset by
    the all-int8 model's difference between the two)."""
    if min_sqnr is None and max_arena is None:
        raise CalibrationError("--activations auto needs a target: --min-sqnr DB and/or --max-arena BYTES")
    t0, c0 = time.perf_counter(), time.process_time()
    points: list[Point] = []
    goal = None if min_sqnr is None else min_sqnr + MARGIN_DB
    offsets = {"quick": 0, "estimate": 0}

    def size_of(q: Graph, how: str) -> int | None:
        """Arena bytes: "exact" (the backend, as emit measures), "quick" (TFLM's recorded
        total) or "estimate" (the planned activation bytes), the last two offset by the
        all-int8 model's difference to its exact measure."""
        if how == "estimate":
            return estimated_bytes(q) + offsets["estimate"]
        size = arena(q, how == "exact")
        return None if size is None else size + (offsets["quick"] if how == "quick" else 0)

    # with an arena bound, feasibility needs the backend's number; without, the estimate
    # places a candidate in the Pareto table and only the chosen one is measured
    how = "quick" if max_arena is not None else "estimate"

    def measure(config: Config, label: str, count: int, exact: bool = False) -> Point:
        q = build(config, True)
        p = Point(config, scorer.score(q, cached="int8"), size_of(q, "exact" if exact else how), count, label,
                  {"arena": "exact" if exact else how, "pooled": scorer.last["pooled"]}, q)
        points.append(p)
        return p

    def finish(chosen: Point, sens: list[dict], reached: bool, reason: str = ""):
        scorer.seconds["cpu"] = time.process_time() - c0
        return chosen.config, _summary(chosen, points, sens, min_sqnr, max_arena, reached, reason,
                                       time.perf_counter() - t0, scorer), chosen.graph

    q0 = build(Config(), True)
    base = Point(Config(), scorer.score(q0, remember="int8"), size_of(q0, "exact"), 0, "all int8",
                 {"arena": "exact", "pooled": scorer.last["pooled"]}, q0)
    points.append(base)
    if base.arena_bytes is not None:
        offsets["estimate"] = base.arena_bytes - estimated_bytes(q0)
        if how == "quick":
            quick = arena(q0, False)
            offsets["quick"] = 0 if quick is None else base.arena_bytes - quick

    def ok(p: Point) -> bool:
        return (goal is None or p.sqnr_db >= goal) and \
            (max_arena is None or p.arena_bytes is None or p.arena_bytes <= max_arena)

    def confirm(p: Point) -> Point:
        """Measure the arena exactly (the quick measure misses Prepare's temporary memory)."""
        if p.extra.get("arena") != "exact":
            p.arena_bytes, p.extra["arena"] = arena(p.graph, True), "exact"
        return p

    if ok(base):
        return finish(base, [], True)
    all16 = Config.of(knob_names)
    if goal is not None:
        # int16 everywhere (and every FC layer per channel) first: when that misses the target,
        # no prefix is searched (the search stops after two candidates)
        top = measure(all16, "all int16", len(knob_names))
        if top.sqnr_db < goal:
            feasible = [p for p in points if max_arena is None or p.arena_bytes is None
                        or confirm(p).arena_bytes <= max_arena]
            chosen = max(feasible, key=lambda p: p.sqnr_db) if feasible else base
            return finish(chosen, [], False,
                          f"target not reachable: all int16 reaches {top.sqnr_db:.2f} dB < {goal:g} dB "
                          f"(--min-sqnr + {MARGIN_DB:g}) on the search samples, so no prefix was searched; "
                          f"kept the best within the arena: {chosen.label}")
    # sensitivity: each knob alone, uncorrected, from the cached all-int8 run
    t_sens = time.process_time()
    q0u = build(Config(), False)
    s0 = scorer.score(q0u, SENSITIVITY_SAMPLES, remember="uncorrected", robust=False)
    act0 = activation_bytes(q0u)
    sens = []
    for k in knob_names:
        q = build(Config.of([k]), False)
        extra = activation_bytes(q) - act0
        gain = scorer.score(q, SENSITIVITY_SAMPLES, cached="uncorrected", robust=False) - s0
        sens.append({"knob": k, "gain_db": round(gain, 3), "activation_bytes_delta": int(extra)})
    sens.sort(key=lambda s: (-s["gain_db"], s["activation_bytes_delta"]))
    scorer.seconds["sensitivity_cpu"] = time.process_time() - t_sens
    usable = [s["knob"] for s in sens
              if max_arena is None or base.arena_bytes is None or base.arena_bytes + s["activation_bytes_delta"] <= max_arena]

    def prefix(k: int) -> Point:
        config = Config.of(usable[:k])
        for p in points:
            if p.config == config:
                return p
        return measure(config, f"prefix {k}: + {usable[k - 1]}" if k else "prefix 0", k)

    chosen = None
    if usable:
        full = prefix(len(usable))
        if min_sqnr is None:
            # arena only: the longest prefix that fits (binary search on the arena)
            lo, hi = 0, len(usable)
            if ok(full):
                chosen = full
            else:
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if ok(prefix(mid)):
                        lo = mid
                    else:
                        hi = mid
                chosen = prefix(lo) if lo else base
        elif full.sqnr_db >= goal:
            order = {s["knob"]: s["gain_db"] for s in sens}
            chosen = prefix(_shortest_prefix(len(usable), [order[k] for k in usable], s0, goal,
                                             lambda k: prefix(k).sqnr_db, MAX_PROBES))
    if not any(p.config == all16 for p in points):
        measure(all16, "all int16", len(knob_names))
    reason = ""
    if chosen is not None and max_arena is not None:
        confirm(chosen)
    # arena is not monotone in the prefix (borders vanish between int16 neighbours): the
    # smallest arena that reaches the target (under --max-arena confirmed by an exact measure;
    # else the estimate ranks and emit measures the chosen one: `settle_arena`)
    reaching = sorted([p for p in points if goal is not None and p.sqnr_db >= goal],
                      key=lambda p: (p.arena_bytes or 0, p.knobs))
    if max_arena is None and len(reaching) > 1 and \
            (reaching[1].arena_bytes or 0) <= (reaching[0].arena_bytes or 0) * (1 + ESTIMATE_SLACK):
        # the estimate cannot tell the two cheapest apart (KWS: all-int16 estimated 40,272 B,
        # measured 42,352; a 5-layer prefix estimated 41,072, measured 40,880): measure both
        for p in reaching[:2]:
            confirm(p)
        reaching.sort(key=lambda p: (p.arena_bytes or 0, p.knobs))
    for p in reaching:
        if ok(confirm(p) if max_arena is not None else p):
            if chosen is None or not ok(chosen) or (p.arena_bytes or 0) < (chosen.arena_bytes or 0):
                chosen = p
            break
    if chosen is None or not ok(chosen):
        feasible = [p for p in points if max_arena is None or p.arena_bytes is None
                    or confirm(p).arena_bytes <= max_arena]
        chosen = max(feasible, key=lambda p: p.sqnr_db) if feasible else base
        best = max(points, key=lambda p: p.sqnr_db)
        others = [p for p in points if p is not base and p.arena_bytes is not None]
        cheapest = min(others, key=lambda p: p.arena_bytes) if others else None
        reason = (f"no configuration found reaches {goal:g} dB (--min-sqnr + {MARGIN_DB:g})" if goal is not None else "")
        reason += (f" within {max_arena} arena bytes" if max_arena is not None else "")
        reason += (f"; best measured {best.sqnr_db:.2f} dB ({best.label}, arena {best.arena_bytes} B)")
        if max_arena is not None and cheapest is not None:
            reason += (f"; all-int8 {base.sqnr_db:.2f} dB needs {base.arena_bytes} B and the smallest change "
                       f"measured ({cheapest.label}) {cheapest.arena_bytes} B for {cheapest.sqnr_db:.2f} dB")
        reason += f"; kept the best within the arena: {chosen.label}"
    return finish(chosen, sens, ok(chosen), reason)


def _shortest_prefix(count: int, gains_db: list[float], base_db: float, goal: float,
                     sqnr: Callable[[int], float], max_probes: int) -> int:
    """The shortest prefix k in 1..count with sqnr(k) >= goal, given sqnr(count) >= goal and
    sqnr(0) < goal (assumed monotone, as a bisection does), in at most `max_probes` calls of
    `sqnr` on new prefixes (then the shortest prefix found reaching the goal). The first probe
    interpolates the measured noise of 0 and count along the knobs' predicted noise reductions
    (their sensitivity gains from `base_db`, taken as additive noise powers); when it reaches
    the goal the prefix one shorter is probed next, the rest is a bisection. A good prediction
    ends in two probes instead of log2(count)."""
    def noise(db: float) -> float:
        return 10.0 ** (-db / 10.0)
    drops = np.maximum([noise(base_db) - noise(base_db + g) for g in gains_db], 0.0)
    cum = np.concatenate([[0.0], np.cumsum(drops)])
    lo, hi, probes = 0, count, 0
    while hi - lo > 1 and probes < max_probes:
        mid = (lo + hi) // 2
        n_lo, n_hi, span = noise(sqnr(lo)), noise(sqnr(hi)), cum[hi] - cum[lo]
        if probes == 0 and span > 0 and n_lo > n_hi:
            need = (n_lo - noise(goal)) / (n_lo - n_hi) * span + cum[lo]
            mid = int(np.clip(np.searchsorted(cum, need, side="left"), lo + 1, hi - 1))
            if sqnr(mid) >= goal and mid > lo + 1:   # the one shorter decides whether mid is the answer
                probes += 1
                hi = mid
                mid = hi - 1
        probes += 1
        if sqnr(mid) >= goal:
            hi = mid
        else:
            lo = mid
    return hi


def _pareto(points: list[Point]) -> list[bool]:
    out = []
    for p in points:
        a = p.arena_bytes if p.arena_bytes is not None else 0
        dominated = any((q.sqnr_db >= p.sqnr_db and (q.arena_bytes or 0) <= a)
                        and (q.sqnr_db > p.sqnr_db or (q.arena_bytes or 0) < a) for q in points)
        out.append(not dominated)
    return out


def _summary(chosen: Point, points: list[Point], sens: list[dict], min_sqnr, max_arena, reached: bool,
             reason: str, seconds: float, scorer: Scorer) -> dict:
    table = []
    for p, front in zip(sorted(points, key=lambda p: (p.arena_bytes or 0, p.sqnr_db)),
                        _pareto(sorted(points, key=lambda p: (p.arena_bytes or 0, p.sqnr_db)))):
        table.append({"config": p.label, "int16_nodes": len(p.config.wide), "per_channel_fc": len(p.config.fc),
                      "sqnr_db": round(p.sqnr_db, 2), "pooled_sqnr_db": round(p.extra.get("pooled", p.sqnr_db), 2),
                      "arena_bytes": p.arena_bytes,
                      "arena": p.extra.get("arena", "estimate"), "pareto": front,
                      "chosen": p is chosen})
    gains = {s["knob"]: s for s in sens}
    return {"min_sqnr_db": min_sqnr, "search_goal_db": None if min_sqnr is None else min_sqnr + MARGIN_DB,
            "max_arena_bytes": max_arena, "reached": reached,
            **({"why_not": reason} if reason else {}),
            "search_sqnr_db": round(chosen.sqnr_db, 2),
            "search_pooled_sqnr_db": round(chosen.extra.get("pooled", chosen.sqnr_db), 2),
            "estimate": {"rule": f"lowest pooled output SQNR over every reweighting of the search samples that "
                                 f"weighs no sample more than {scorer.cap:g}x its share (~ the hardest "
                                 f"1/{scorer.cap:g} of them), compared with --min-sqnr + {MARGIN_DB:g} dB",
                         "weight_cap": scorer.cap, "margin_db": MARGIN_DB,
                         "samples": "calibration samples GPTQ did not fit the weights to"},
            "search_arena_bytes": chosen.arena_bytes,
            "int16_layers": [{"node": n, **({"gain_db": gains[n]["gain_db"]} if n in gains else {})}
                             for n in sorted(chosen.config.wide)],
            "per_channel_fc_layers": [{"node": n, **({"gain_db": gains[FC_KNOB + n]["gain_db"]}
                                                      if FC_KNOB + n in gains else {})}
                                      for n in sorted(chosen.config.fc)],
            "sensitivity": sens, "pareto": table,
            "search": {"samples": len(scorer.feeds), "sensitivity_samples": min(SENSITIVITY_SAMPLES, len(scorer.feeds)),
                       "evaluations": scorer.runs, "candidates": len(points), "seconds": round(seconds, 2),
                       **{f"{k}_seconds": round(v, 2) for k, v in scorer.seconds.items()}}}
