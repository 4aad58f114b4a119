"""Horizontal merging: sibling Conv / Gemm nodes reading the same tensor become one node + Split.

Siblings must agree on everything but their output channel count (kernel,
strides, pads, dilations, group 1, fused activation). The merged node's
weights and biases are the siblings' concatenated along the output channels;
a Split restores the original tensors, so consumers are untouched.

    Before: %a = Conv(%x, Wa) ; %b = Conv(%x, Wb)            (inception branches)
    After:  %ab = Conv(%x, concat(Wa, Wb)); %a, %b = Split(%ab, [Ca, Cb])

Every candidate group passes through a veto (`ctx.options["merge_veto"]`, a
callable `(branches, ranges) -> reason | None`, default `quantization_veto`).
After merging, the branches share one int8 activation scale (TFLite's SPLIT
keeps its input's parameters), so the default veto refuses groups whose
calibrated output ranges differ by more than `max_range_ratio` (default 4x,
i.e. up to 12 dB of resolution lost on the narrow branch). Ranges come from
running the float graph on `ctx.options["calibration_feeds"]` when given (with
`ctx.options["float_runner"]`, if the driver provides one);
without data the veto cannot judge and lets the merge happen. Each merge and
each veto is logged in `ctx.log` with its reason.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import clamp_of
from qcompiler.ir.pass_manager import PassContext, register_pass

Veto = Callable[[list[Node], dict], "str | None"]
DEFAULT_MAX_RANGE_RATIO = 4.0


def _key(node: Node):
    """Attributes that must be equal for two siblings to merge (None = not mergeable)."""
    w = node.input(1)
    if w is None or not w.is_constant or (node.input(2) is not None and not node.input(2).is_constant):
        return None
    act = clamp_of(node)
    if node.op == "Conv" and node.attrs.get("group", 1) == 1:
        a = node.attrs
        return ("Conv", w.data.shape[1:], tuple(a.get("strides", ())), tuple(a.get("pads", ())),
                tuple(a.get("dilations", ())), a.get("auto_pad", "NOTSET"), act)
    if node.op == "Gemm" and node.attrs.get("transB", 0) == 1 and not node.attrs.get("transA", 0):
        return ("Gemm", w.data.shape[1:], act)
    return None


def quantization_veto(branches: list[Node], ranges: dict, max_ratio: float = DEFAULT_MAX_RANGE_RATIO):
    """Refuse when the branches' output ranges are too different to share one int8 scale."""
    spans = []
    for n in branches:
        r = ranges.get(n.outputs[0].name)
        if r is None:
            return None  # no data: nothing to judge
        spans.append(max(r[1], 0.0) - min(r[0], 0.0))
    lo, hi = min(spans), max(spans)
    if lo <= 0 or hi / lo > max_ratio:
        ratio = hi / lo if lo > 0 else float("inf")
        return (f"output ranges differ {ratio:.1f}x (limit {max_ratio:g}x): one shared int8 scale would "
                f"cost the narrowest branch {20 * np.log10(ratio) if np.isfinite(ratio) else 99:.1f} dB")
    return None


def _sibling_groups(graph: Graph) -> list[list[Node]]:
    groups = []
    for v in graph.values():
        by_key: dict = {}
        for n in dict.fromkeys(v.consumers):  # unique, in order
            if n.inputs[0] is v and all(o not in graph.outputs for o in n.outputs):
                k = _key(n)
                if k is not None:
                    by_key.setdefault(k, []).append(n)
        groups += [g for g in by_key.values() if len(g) > 1]
    return groups


def _observed_ranges(graph: Graph, groups, feeds, float_runner=None) -> dict:
    """Float min/max of the candidate branch outputs over the given samples.

    `float_runner(graph)` (the driver passes onnxruntime's, much faster on big models) makes
    an object whose `run(feed)` returns the float activations by name; default: the float
    interpreter."""
    wanted = [n.outputs[0].name for g in groups for n in g]
    if float_runner is None:
        from qcompiler.interp import FLOAT_KERNELS, Interpreter
        interp = Interpreter(graph, FLOAT_KERNELS)
        run = lambda feed: interp.run(feed, keep=wanted)  # noqa: E731
    else:
        run = float_runner(graph).run
    ranges: dict = {}
    for feed in feeds:
        acts = run(feed)
        for name in wanted:
            lo, hi = float(acts[name].min()), float(acts[name].max())
            plo, phi = ranges.get(name, (lo, hi))
            ranges[name] = (min(lo, plo), max(hi, phi))
    return ranges


_MISSING = object()


def _same(a, b) -> bool:
    """Equal meta values (numpy arrays compared element-wise, shapes included)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # e.g. containers holding arrays
        return False


def _merge(graph: Graph, branches: list[Node]) -> None:
    first = branches[0]
    x = first.inputs[0]
    weights = [n.input(1).data for n in branches]
    biases = [n.input(2).data if n.input(2) is not None else np.zeros(w.shape[0], np.float32)
              for n, w in zip(branches, weights)]
    sizes = [w.shape[0] for w in weights]
    w = graph.add_constant(f"{first.name}_merged_weight", np.concatenate(weights, axis=0))
    b = graph.add_constant(f"{first.name}_merged_bias", np.concatenate(biases).astype(np.float32))
    earliest = min(branches, key=graph.nodes.index)
    merged = graph.insert_before(earliest, first.op, [x, w, b], attrs=dict(first.attrs),
                                 name=f"{first.name}_merged")
    # what every branch's node meta says holds for the merged node (e.g. its part in an unrolled LSTM)
    merged.meta.update({k: val for k, val in first.meta.items()
                        if all(_same(n.meta.get(k, _MISSING), val) for n in branches)})
    # the branches go; their output tensors stay, to be written by the Split
    outs = [graph.erase_node(n, keep_outputs=True)[0] for n in branches]
    split = graph.add_constant(f"{first.name}_split_sizes", np.array(sizes, np.int64))
    graph.insert_after(merged, "Split", [merged.outputs[0], split], outs, attrs={"axis": 1},
                       name=f"{first.name}_split")


@register_pass("horizontal_merge", "merge sibling Conv/Gemm nodes on one input into one node + Split")
def horizontal_merge(graph: Graph, ctx: PassContext) -> bool:
    groups = _sibling_groups(graph)
    if not groups:
        return False
    veto: Veto = ctx.options.get("merge_veto") or quantization_veto
    feeds = ctx.options.get("calibration_feeds") or []
    ranges = _observed_ranges(graph, groups, feeds, ctx.options.get("float_runner")) if feeds else {}
    merged = 0
    for branches in groups:
        names = [n.name for n in branches]
        reason = veto(branches, ranges)
        if reason:
            ctx.log.append(f"horizontal_merge: kept {names} apart: {reason}")
            continue
        _merge(graph, branches)
        merged += 1
        ctx.log.append(f"horizontal_merge: merged {names}")
    graph.toposort()
    return merged > 0
