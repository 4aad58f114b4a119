"""Channels that one int8 scale would drown: a Conv -> HardSwish -> depthwise Conv chain in two.

An int8 activation has one scale for all its channels. Between a Conv A and a depthwise Conv B
with a HardSwish h in between, a channel whose values stay far below the tensor's largest gets
only a few int8 steps, and B's kernel of that channel can multiply the rounding noise by a large
gain (BatchNorm folding gives near-dead channels kernels of norm 50-100: PP-PicoDet's first
depthwise layer turns two such channels into noise, and that noise reaches the detector's
scores; measured in bench/real_models.md). Activation equalization (qcompiler/quant/act_eq.py)
rescales such channels when A's activation commutes with a positive scale; HardSwish does not.

This pass gives those channels their own tensor instead. Per channel c of h (float values on the
calibration samples): its span s_c, the tensor's span S = max s_c, and the SQNR of B's output
channel c against the rounding noise of h's shared grid, var(B_c) / ((S / 255)^2 / 12 * |w_c|^2).
Channels below MIN_SQNR_DB whose span is at most S / MIN_GAIN form the narrow group G1 (the rest
G2); A, h and B are split along those channel groups (weights sliced, B's group count set to
the group size), a Concat joins B's two outputs, and the chain after B (elementwise ops, then a
Conv reading it) sees the channels in the new order G1 + G2: that Conv's input channels are
permuted to match. The float function is unchanged; each half gets its own calibrated range.

    Before: %a = Conv(%x, Wa, ba); %h = HardSwish(%a); %b = Conv[group=C](%h, Wb, bb)
            %y = HardSwish(%b); %z = Conv(%y, Wc, bc)
    After:  %a1 = Conv(%x, Wa[G1], ba[G1]); %h1 = HardSwish(%a1); %b1 = Conv[group=|G1|](%h1, Wb[G1], bb[G1])
            %a2 = ... G2 ...;  %b = Concat(%b1, %b2)
            %y = HardSwish(%b); %z = Conv(%y, Wc[:, G1 + G2], bc)

Needs calibration samples (ctx.options["calibration_feeds"], the driver's float runner in
ctx.options["float_runner"]); without them it changes nothing. Models without such a chain
(every MLPerf Tiny model: ReLU / ReLU6 or no HardSwish) are untouched.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.pass_manager import PassContext, register_pass
from qcompiler.ir.rewrite import replace_constant, sole_use

MIN_SQNR_DB = 20.0  # a channel of B's output below this against h's rounding noise is drowned
MIN_GAIN = 4.0      # ... and its own range must be this much narrower (12 dB finer steps)
ACTIVATIONS = {"HardSwish"}  # between A and B: does not commute with a per-channel scale
CHANNEL_WISE = {"HardSwish", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip"}  # between B and C


def _weights(node: Node) -> np.ndarray | None:
    w = node.input(1)
    if node.op != "Conv" or w is None or not w.is_constant:
        return None
    if node.input(2) is not None and not node.input(2).is_constant:
        return None
    return w.data


def _depthwise(node: Node, channels: int) -> bool:
    w = _weights(node)
    return w is not None and w.shape[0] == channels and w.shape[1] == 1 and int(node.attrs.get("group", 1)) == channels


def _permutable_reader(graph: Graph, b: Value) -> tuple[list[Node], Node] | None:
    """(channel-wise nodes after B, the regular Conv C reading them) when B's output reaches
    exactly one such Conv through single-reader channel-wise ops."""
    between, v = [], b
    while True:
        if v in graph.outputs or len(v.consumers) != 1:
            return None
        n = v.consumers[0]
        if n.op in CHANNEL_WISE and n.inputs[0] is v and all(u is v or u is None or u.is_constant and u.data.size == 1
                                                             for u in n.inputs):
            between.append(n)
            v = n.outputs[0]
            continue
        w = _weights(n)
        if w is None or n.inputs[0] is not v or int(n.attrs.get("group", 1)) != 1:
            return None
        return between, n


def candidate_chains(graph: Graph) -> list[tuple[Node, Node, Node, Node]]:
    """(A, h, B, C) chains this pass could split."""
    found = []
    for a in graph.nodes:
        wa = _weights(a)
        if wa is None or int(a.attrs.get("group", 1)) != 1 or len(a.outputs[0].consumers) != 1:
            continue
        h = a.outputs[0].consumers[0]
        if h.op not in ACTIVATIONS or not sole_use(graph, a.outputs[0], h) or len(h.outputs[0].consumers) != 1:
            continue
        b = h.outputs[0].consumers[0]
        if not sole_use(graph, h.outputs[0], b) or b.inputs[0] is not h.outputs[0] or not _depthwise(b, wa.shape[0]):
            continue
        reader = _permutable_reader(graph, b.outputs[0])
        if reader is not None:
            found.append((a, h, b, reader[1]))
    return found


def narrow_channels(h_lo: np.ndarray, h_hi: np.ndarray, b_var: np.ndarray, wb: np.ndarray) -> list[int]:
    """G1 per the module docstring, from h's per-channel extremes, the variance of B's output
    channels and B's weights; [] when no split pays."""
    span = np.maximum(h_hi, 0.0) - np.minimum(h_lo, 0.0)
    top = float(span.max(initial=0.0))
    if top <= 0.0:
        return []
    gain = np.sum(wb.astype(np.float64).reshape(wb.shape[0], -1) ** 2, axis=1)
    noise = (top / 255.0) ** 2 / 12.0 * gain
    drowned = b_var < noise * 10.0 ** (MIN_SQNR_DB / 10.0)
    narrow = drowned & (span * MIN_GAIN <= top)
    group = [int(c) for c in np.nonzero(narrow)[0]]
    return group if 0 < len(group) < len(span) else []


def _channel_stats(graph: Graph, chains, feeds, float_runner) -> dict[str, tuple[np.ndarray, ...]]:
    """Per chain (by A's name): h's per-channel min and max, B's per-channel output variance."""
    if float_runner is None:
        from qcompiler.interp import FLOAT_KERNELS, Interpreter
        interp = Interpreter(graph, FLOAT_KERNELS)
        wanted = [v.outputs[0].name for _, h, b, _ in chains for v in (h, b)]
        run = lambda feed: interp.run(feed, keep=wanted)  # noqa: E731
    else:
        run = float_runner(graph).run
    acc: dict[str, list] = {}
    for feed in feeds:
        acts = run(feed)
        for a, h, b, _ in chains:
            hv = acts[h.outputs[0].name]
            bv = acts[b.outputs[0].name].astype(np.float64)
            hv = hv.reshape(hv.shape[0], hv.shape[1], -1)
            bv = bv.reshape(bv.shape[0], bv.shape[1], -1)
            lo, hi = hv.min(axis=(0, 2)).astype(np.float64), hv.max(axis=(0, 2)).astype(np.float64)
            s = acc.setdefault(a.name, [lo, hi, np.zeros(lo.size), np.zeros(lo.size), 0])
            s[0], s[1] = np.minimum(s[0], lo), np.maximum(s[1], hi)
            s[2] += bv.sum(axis=(0, 2))
            s[3] += (bv * bv).sum(axis=(0, 2))
            s[4] += bv.shape[0] * bv.shape[2]
    out = {}
    for name, (lo, hi, s1, s2, n) in acc.items():
        mean = s1 / max(n, 1)
        out[name] = (lo, hi, np.maximum(s2 / max(n, 1) - mean * mean, 0.0))
    return out


def _operands(graph: Graph, node: Node, x: Value, rows: list[int], k: int) -> list[Value]:
    """[x, the weight rows `rows`, the bias entries `rows` (if any)] for part k of `node`."""
    out = [x]
    for i, tag in ((1, "weight"), (2, "bias")):
        v = node.input(i)
        if v is not None:
            out.append(graph.add_constant(f"{node.name}_{tag}{k}", np.ascontiguousarray(v.data[rows])))
    return out


def _slice_meta(meta: dict, rows: list[int], channels: int) -> dict:
    """Node meta with per-channel arrays (BatchNorm statistics) restricted to `rows`."""
    out = {}
    for k, val in meta.items():
        if isinstance(val, dict):
            out[k] = {kk: (np.asarray(vv)[rows] if np.ndim(vv) == 1 and np.size(vv) == channels else vv)
                      for kk, vv in val.items()}
        else:
            out[k] = val
    return out


def split_chain(graph: Graph, a: Node, h: Node, b: Node, c: Node, group: list[int]) -> None:
    """Rewrite one chain with narrow channels `group` (module docstring)."""
    channels = a.input(1).data.shape[0]
    narrow = set(group)
    rest = [i for i in range(channels) if i not in narrow]
    order = group + rest
    ends = []
    for k, rows in enumerate((group, rest)):
        ak = graph.insert_before(a, "Conv", _operands(graph, a, a.inputs[0], rows, k),
                                 attrs=dict(a.attrs), name=f"{a.name}_part{k}")
        ak.meta.update(_slice_meta(a.meta, rows, channels))
        hk = graph.insert_before(a, h.op, [ak.outputs[0]], attrs=dict(h.attrs), name=f"{h.name}_part{k}")
        bk = graph.insert_before(a, "Conv", _operands(graph, b, hk.outputs[0], rows, k),
                                 attrs={**b.attrs, "group": len(rows)}, name=f"{b.name}_part{k}")
        bk.meta.update(_slice_meta(b.meta, rows, channels))
        ends.append(bk.outputs[0])
    joined = graph.erase_node(b, keep_outputs=True)
    graph.erase_node(h)
    graph.erase_node(a)
    graph.insert_after(ends[-1].producer, "Concat", ends, joined, attrs={"axis": 1}, name=f"{b.name}_join")
    replace_constant(graph, c, 1, c.input(1).data[:, order], "weight")


@register_pass("split_channel_ranges",
               "split Conv->HardSwish->depthwise chains whose narrow channels one int8 scale would drown")
def split_channel_ranges(graph: Graph, ctx: PassContext) -> bool:
    chains = candidate_chains(graph)
    feeds = ctx.options.get("calibration_feeds") or []
    if not chains or not feeds:
        return False
    stats = _channel_stats(graph, chains, feeds, ctx.options.get("float_runner"))
    done = 0
    for a, h, b, c in chains:
        lo, hi, var = stats[a.name]
        group = narrow_channels(lo, hi, var, b.input(1).data)
        if not group:
            continue
        split_chain(graph, a, h, b, c, group)
        done += 1
        ctx.log.append(f"split_channel_ranges: {a.name} -> {b.name}: channels {group} of {lo.size} "
                       "get their own int8 range")
    if done:
        graph.toposort()
    return done > 0
