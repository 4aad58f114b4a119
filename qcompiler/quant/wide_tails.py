"""Heavy-tailed tensors compute in int16 in models that already hold 16x8 layers.

An int8 range is a compromise when a tensor's rare extremes reach far beyond its bulk: the
percentile range keeps the bulk's resolution and clips the extremes, min-max keeps the
extremes and coarsens the bulk. Detectors need both: the rare strong responses are the
objects, the bulk is every background anchor. ddddocr's YOLOX detector (bench/corpus_diagnosis.md)
clipped its strongest object responses over three layers (hidden values 16.6 / 11.8 / 8.3 cut
to 8.4 / 4.8 / 4.0, an objectness logit 2.40 -> -2.04) and lost boxes that onnxruntime's
min-max model found, while min-max everywhere cost it 7 dB of SQNR. int16 serves both: the
min-max range on 65,536 steps is finer than the percentile range on 256.

The rule, for int8 models that already compute some layers in int16 (a widened output,
quant/wide_outputs.py; a recurrent cell): the target's 16x8 kernels are in the model anyway,
so

    a compute node whose output's calibrated min-max span is at least TAIL_RATIO times the
    span chosen for int8 (the int8 grid keeps its tail only by giving up a bit of its bulk)
    computes in int16, and so do all its readers (so that no int8 copy clips the tail again;
    their own outputs go back to int8 at their readers), when every reader has an int16
    kernel; tensors by decreasing ratio, each only if the planned activation arena
    (`precision.planned_arena`, the QUANTIZE copies at the borders included) does not grow;
    then the target's own activation plan of the integer graph (`Backend.activation_arena`,
    computed, never measured, so the choice does not depend on installed runtimes; its
    lowering adds copies the IR does not show, e.g. TFLite's explicit PAD) is checked, and the
    largest tensors are given back to int8 until it grows by at most ARENA_SLACK (`fit_arena`).

Measured (bench/corpus_diagnosis.md): ddddocr_det 21.45 -> 23.32 dB, F1 0.975 -> 0.985, arena
+1.1 %. Empirical bias correction helps the int8 model more than the mixed one (without it the
tails win on every model measured), so on the CRNN and nudenet's scores the rule costs a few
tenths of a dB; not yet understood.

The int16 tensors take the int16 scheme's ranges (min-max). Models without int16 layers
(MLPerf Tiny, classifiers) are untouched; `--int8-outputs` turns the widened outputs, and so
this rule, off.
"""
from __future__ import annotations

import math
from dataclasses import replace

from qcompiler.ir import Graph
from qcompiler.quant.precision import FOLLOWERS, Precision, int16_capable, planned_arena, resolve

# one bit: min-max on the int8 grid would double the step of the tensor's bulk
TAIL_RATIO = 2.0
# how much the target's planned activations may grow: the few copies at the borders
# (ddddocr_det: its 39 tails plan +30 KB of 3.12 MB, +1 %, for +1.9 dB and F1 0.975 -> 0.985;
# bench/corpus_diagnosis.md)
ARENA_SLACK, ARENA_SLACK_BYTES = 1 / 50, 1024


def heavy_tail_nodes(graph: Graph, ranges: dict, wide_ranges: dict, precision: Precision,
                     keep8=None) -> list[dict]:
    """The heavy-tailed tensors `precision.wide` may grow by, as report entries {"node",
    "tensor", "ratio", "readers", "elements"} (their nodes: `region_of`), per the module
    docstring; `keep8(node)` True: the node must stay int8 (precision.clamp_keeps_int8). A
    candidate that would change a graph input's width is skipped: the rule does not change the
    model's interface."""
    wide = precision.wide
    if not wide:
        return []

    def can16(n) -> bool:
        return n.op not in FOLLOWERS and int16_capable(n) and not (keep8 is not None and keep8(n))

    outputs = {id(v) for v in graph.outputs}
    found = []
    for n in graph.nodes:
        if not can16(n) or len(n.outputs) != 1:
            continue
        v = n.outputs[0]
        if id(v) in outputs or not v.consumers or v.name not in ranges or v.name not in wide_ranges:
            continue
        lo, hi = ranges[v.name]
        wlo, whi = wide_ranges[v.name]
        if hi <= lo or (whi - wlo) < TAIL_RATIO * (hi - lo):
            continue
        readers = list(dict.fromkeys(c.name for c in v.consumers))
        if all(can16(c) for c in v.consumers):
            found.append({"node": n.name, "tensor": v.name, "ratio": float((whi - wlo) / (hi - lo)),
                          "readers": readers, "elements": int(math.prod(v.shape))})
    found.sort(key=lambda e: (-e["ratio"], e["node"]))

    def input_widths(names: frozenset) -> list[int]:
        values = resolve(graph, replace(precision, wide=names), keep8)[1]
        return [values[v.name] for v in graph.inputs]

    region, arena, interface, taken = set(wide), planned_arena(graph, wide), input_widths(wide), []
    for entry in found:
        trial = frozenset(region | {entry["node"], *entry["readers"]})
        if trial == region or input_widths(trial) != interface or planned_arena(graph, trial) > arena:
            continue
        region = set(trial)
        taken.append(entry)
    return taken


def region_of(tails: list[dict]) -> frozenset:
    """The nodes the report entries widen: each tensor's producer and readers."""
    return frozenset(x for e in tails for x in (e["node"], *e["readers"]))


def fit_arena(wide: frozenset, tails: list[dict], arena_of, tries: int = 6) -> list[dict]:
    """The entries of `tails` kept so that `arena_of(nodes in int16)` (the target's planned
    activation arena of the integer graph) stays within `arena_of(wide)` plus the slack
    (ARENA_SLACK): while it grows more, the entries with the largest tensors go back to int8
    (all of that size at once: a resolution level); none after `tries`."""
    if not tails:
        return []
    base = arena_of(wide)
    limit = base + max(base * ARENA_SLACK, ARENA_SLACK_BYTES)
    kept = list(tails)
    for _ in range(tries):
        if not kept:
            break
        if arena_of(wide | region_of(kept)) <= limit:
            return kept
        largest = max(e["elements"] for e in kept)
        kept = [e for e in kept if e["elements"] < largest]
    return []
