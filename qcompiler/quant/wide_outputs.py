"""Graph outputs that join values of very different ranges get an int16 head (TFLite 16x8).

A detection head writes box coordinates (pixels, 0..320) and class scores (a Sigmoid, 0..1)
into one output tensor through a Concat. The Concat's inputs and output share one scale (the
runtime's CONCATENATION copies raw values), so with int8 the scores keep 1 of the 256 steps
(YOLOv8n: 0.1 dB SQNR on the scores). No int8 scale serves both; int16 gives the scores
~100 of 65536 steps and the output keeps its name, shape and layout.

The rule, per parameter-sharing group (values that must carry one scale: the members of a
Concat / Split / Reshape / Transpose chain, `quantize._groups`), for the group holding a
graph output:

    the group is *mixed* when a member's needed range (its calibrated range with the graph's
    constraints, `range_rules.constrained_range`) spans less than 1 / MIXED_RATIO of the
    group's span: on the shared int8 grid it keeps fewer than 256 / MIXED_RATIO steps, i.e.
    it loses more than log2(MIXED_RATIO) bits to the other members;

a mixed output group becomes int16, and so do the nodes that produce its members (the last
compute before the shared scale: a Sigmoid, the Mul scaling boxes by the stride, a Conv
whose output a Split hands to the head), so that their own int8 rounding does not stay the
error of the slice (`precision.resolve` inserts QUANTIZE int8 -> int16 at their inputs).
Producers without an int16 kernel stay int8 and are converted after them.

Nothing else changes width: a group that is not a graph output's, or whose members share
ranges, stays int8 (a classifier's logits, MLPerf Tiny). Only for schemes with an int16
companion (`Backend.int16_scheme`); `--int8-outputs` keeps every output int8.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.quant.precision import FOLLOWERS, int16_capable
from qcompiler.quant.range_rules import constrained_range, saturation_bounds

# a member spanning less than 1/4 of its group's span keeps fewer than 64 of the 256 int8
# steps: more than 2 bits (12 dB) lost to sharing the scale
MIXED_RATIO = 4.0


def _needed(v, ranges, outputs, bounds) -> tuple[float, float] | None:
    if v.name not in ranges:
        return None
    return constrained_range(v, *ranges[v.name], graph_output=v in outputs, bound=bounds.get(id(v)))


def mixed_groups(graph: Graph, ranges: dict[str, tuple[float, float]]) -> list[dict]:
    """The graph-output groups the rule widens: [{"output", "span", "narrowest", "members",
    "producers"}], see the module docstring."""
    from qcompiler.quant.quantize import _activation_values, _groups
    uf = _groups(graph)
    members: dict[int, list] = {}
    for v in _activation_values(graph):
        members.setdefault(uf.find(id(v)), []).append(v)
    outputs, inputs = set(graph.outputs), set(graph.inputs)
    bounds = saturation_bounds(graph, ranges)
    found, seen = [], set()
    for out in graph.outputs:
        root = uf.find(id(out))
        group = members.get(root, [])
        if root in seen or not any(m.producer is not None and m.producer.op == "Concat" for m in group) \
                or any(m in inputs for m in group):
            continue
        seen.add(root)
        needed = {m.name: r for m in group if (r := _needed(m, ranges, outputs, bounds)) is not None}
        if not needed:
            continue
        lo, hi = min(r[0] for r in needed.values()), max(r[1] for r in needed.values())
        widths = {k: r[1] - r[0] for k, r in needed.items() if r[1] > r[0]}
        if not widths or hi - lo <= 0:
            continue
        narrow = min(widths, key=widths.get)
        if widths[narrow] * MIXED_RATIO > hi - lo:
            continue
        producers = [m.producer for m in group if m.producer is not None and m.producer.op not in FOLLOWERS]
        found.append({"output": out.name, "span": (float(lo), float(hi)), "narrowest": narrow,
                      "narrowest_range": tuple(float(x) for x in needed[narrow]),
                      "bits_lost": float(np.log2((hi - lo) / widths[narrow])),
                      "producers": list(dict.fromkeys(p.name for p in producers)),
                      "int16": [p.name for p in dict.fromkeys(producers) if int16_capable(p)]})
    return found


def wide_output_nodes(graph: Graph, ranges: dict[str, tuple[float, float]]) -> tuple[frozenset, list[dict]]:
    """(names of the nodes to compute in int16, the groups as report entries)."""
    groups = mixed_groups(graph, ranges)
    return frozenset(n for g in groups for n in g["int16"]), groups


def output_widths(qgraph: Graph) -> dict[str, str]:
    """{graph output name: integer dtype name}."""
    return {v.name: v.quant.dtype.name for v in qgraph.outputs if v.quant is not None}


def summary(qgraph: Graph, groups: list[dict], reason: str | None = None) -> dict:
    """report.json's calibration "outputs": the width of every graph output and why."""
    entry = {"dtypes": output_widths(qgraph), "rule": f"a graph output whose Concat joins a member spanning "
             f"< 1/{MIXED_RATIO:g} of the group's range gets int16 (TFLite 16x8) with its producers",
             "widened": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in groups]}
    if reason:
        entry["kept_int8"] = reason
    return entry


def announce(entry: dict) -> str | None:
    """The compile-time note for widened (or kept) outputs, None when nothing was mixed."""
    if not entry.get("widened"):
        return None
    parts = []
    for g in entry["widened"]:
        lo, hi = g["span"]
        nlo, nhi = g["narrowest_range"]
        parts.append(f"{g['output']} joins [{lo:.3g}, {hi:.3g}] with {g['narrowest']} in [{nlo:.3g}, {nhi:.3g}] "
                     f"({g['bits_lost']:.1f} bits lost on one int8 scale)")
    if entry.get("kept_int8"):
        return f"output(s) kept int8: {entry['kept_int8']}; " + "; ".join(parts)
    dtypes = entry["dtypes"]
    wide = [g["output"] for g in entry["widened"] if dtypes.get(g["output"]) == "int16"]
    return (f"output(s) {', '.join(wide)} are int16 (TFLite 16x8, zero point 0): " + "; ".join(parts)
            + ". --int8-outputs keeps them int8")


