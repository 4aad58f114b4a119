"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization") and high-bias absorption.

For a pair A -> [ReLU] -> B, scaling output channel i of A by 1/s_i and input
channel i of B by s_i leaves the float function unchanged (ReLU commutes with a
positive scale) while it moves weight range between the layers. With
r1_i = max|W_A[i]| and r2_i = max|W_B[:, i]|, s_i = sqrt(r1_i / r2_i) makes both
ranges sqrt(r1_i * r2_i): per-tensor weight quantization then wastes far fewer
levels on channels with a small range (the classic depthwise-separable problem).

Pairs: A and B are Conv (regular or depthwise with multiplier 1) or Gemm,
linked by one tensor with a single consumer, optionally through max / average
pooling (they commute with a positive per-channel scale) and a Flatten or
Reshape that keeps one feature per channel (1x1 spatial). A may carry a fused
relu or none. Pairs through other clamps (relu6, clip(-1, 1)) are SKIPPED: the
clamp at 6 does not commute with a scale (relu6(x/s) != relu6(x)/s unless s = 1)
and moving it to 6/s would give a clamp no int8 target fuses. Chains (conv -> dw -> pw) are
handled by sweeping all pairs until the scales converge.

High-bias absorption (data-free, from the BN statistics `fold_batchnorm` keeps
in meta["bn"]): when A's pre-activation channel i has mean beta_i and std
gamma_i, c_i = max(0, beta_i - 3 gamma_i) is moved from A's bias into B's
(b_B += W_B c). This is exact wherever A's pre-activation stays >= c (so with
BN statistics, for all but ~0.1 % of a Gaussian's values); it is applied only
when B is directly fed by A and has no padding (padding would see the shift).
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.activation import commutes_with_positive_scale, describe
from qcompiler.ir.pass_manager import PassContext, register_pass

from qcompiler.ir.rewrite import replace_constant

SCALE_COMMUTING = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"}
FLATTENING = {"Flatten", "Reshape"}
ABSORB_SIGMAS = 3.0
MAX_SWEEPS = 100
TOLERANCE = 1e-4  # stop when every |log s| of a sweep falls below this
DEAD_FRACTION = 1e-3  # channels with a weight range below this fraction of the layer's are left alone
MAX_SCALE = 1e3  # per sweep


def _kind(node: Node) -> str | None:
    """"conv", "dw" (depthwise, multiplier 1) or "fc" for equalizable layers, else None."""
    w = node.input(1)
    if w is None or not w.is_constant or (node.input(2) is not None and not node.input(2).is_constant):
        return None
    if node.op == "Gemm" and node.attrs.get("transB", 0) == 1 and not node.attrs.get("transA", 0) \
            and node.attrs.get("alpha", 1.0) == 1.0 and node.attrs.get("beta", 1.0) == 1.0:
        return "fc"
    if node.op != "Conv" or w.data.ndim < 3:
        return None
    group = int(node.attrs.get("group", 1))
    if group == 1:
        return "conv"
    if w.data.shape[1] == 1 and group == w.data.shape[0]:
        return "dw"
    return None


def _single_use(graph: Graph, v: Value) -> Node | None:
    if v in graph.outputs or len(v.consumers) != 1:
        return None
    return v.consumers[0]


def _follow(graph: Graph, a: Node) -> tuple[Node, list[Node]] | None:
    """The layer B that A's output reaches through scale-commuting ops, and those ops."""
    v, between = a.outputs[0], []
    while True:
        n = _single_use(graph, v)
        if n is None or n.inputs[0] is not v:
            return None
        if n.op in SCALE_COMMUTING and len(n.outputs) == 1:
            between.append(n)
        elif n.op in FLATTENING and v.shape is not None and all(d == 1 for d in v.shape[2:]):
            between.append(n)
        else:
            return (n, between) if _kind(n) is not None else None
        v = n.outputs[0]


def find_pairs(graph: Graph) -> tuple[list[tuple[Node, Node, list[Node]]], list[str]]:
    """Equalizable (A, B, ops between) pairs, and the names of pairs skipped for a clamp."""
    pairs, skipped = [], []
    for a in graph.nodes:
        if _kind(a) is None:
            continue
        found = _follow(graph, a)
        if found is None:
            continue
        b, between = found
        channels = a.input(1).data.shape[0]
        if _in_channels(b) != channels:
            continue
        if not commutes_with_positive_scale(a):
            skipped.append(f"{a.name} -> {b.name} ({describe(a)})")
            continue
        pairs.append((a, b, between))
    return pairs, skipped


def _in_channels(b: Node) -> int:
    w = b.input(1).data
    return w.shape[0] if _kind(b) == "dw" else w.shape[1]


class _Params:
    """float64 working copies of the weights / biases / BN statistics being rescaled.

    Sweeps update these; the graph gets new float32 constants once at the end.
    """

    def __init__(self, pairs):
        self.w, self.b, self.bn, self.kind = {}, {}, {}, {}
        for a, b, _ in pairs:
            for n in (a, b):
                if n not in self.w:
                    self.w[n] = n.input(1).data.astype(np.float64)
                    bias = n.input(2)
                    self.b[n] = bias.data.astype(np.float64) if bias is not None else None
                    self.kind[n] = _kind(n)
                    if "bn" in n.meta:
                        self.bn[n] = {k: (np.asarray(v, np.float64) if k in ("gamma", "beta") else v)
                                      for k, v in n.meta["bn"].items()}
        self.changed: set = set()

    def bias(self, n: Node) -> np.ndarray:
        return self.b[n] if self.b[n] is not None else np.zeros(self.w[n].shape[0])

    def out_range(self, a: Node) -> np.ndarray:
        w = self.w[a]
        return np.max(np.abs(w.reshape(w.shape[0], -1)), axis=1)

    def in_range(self, b: Node) -> np.ndarray:
        w = self.w[b]
        if self.kind[b] != "dw":
            w = np.moveaxis(w, 1, 0)
        return np.max(np.abs(w.reshape(w.shape[0], -1)), axis=1)

    def scale(self, a: Node, b: Node, s: np.ndarray) -> None:
        """A's output channel i divided by s_i, B's input channel i multiplied by s_i."""
        self.w[a] = self.w[a] / s.reshape((-1,) + (1,) * (self.w[a].ndim - 1))
        self.b[a] = self.bias(a) / s
        if a in self.bn:  # the pre-activation statistics scale with the channel
            self.bn[a]["gamma"] = self.bn[a]["gamma"] / s
            self.bn[a]["beta"] = self.bn[a]["beta"] / s
        shape = [1] * self.w[b].ndim
        shape[0 if self.kind[b] == "dw" else 1] = -1
        self.w[b] = self.w[b] * s.reshape(shape)
        self.changed.update((a, b))

    def absorb(self, a: Node, b: Node) -> bool:
        """Move c = max(0, beta - 3 gamma) of A's pre-activation into B's bias."""
        if a not in self.bn or any(p != 0 for p in b.attrs.get("pads", ())) or b.inputs[0] is not a.outputs[0]:
            return False
        c = np.maximum(0.0, self.bn[a]["beta"] - ABSORB_SIGMAS * np.abs(self.bn[a]["gamma"]))
        if not np.any(c > 0):
            return False
        wb = self.w[b]
        if self.kind[b] == "dw":
            shift = wb.reshape(wb.shape[0], -1).sum(axis=1) * c
        else:
            shift = wb.reshape(wb.shape[0], wb.shape[1], -1).sum(axis=2) @ c
        self.b[a] = self.bias(a) - c
        self.b[b] = self.bias(b) + shift
        self.bn[a]["beta"] = self.bn[a]["beta"] - c
        self.changed.update((a, b))
        return True

    def write(self, graph: Graph) -> None:
        for n in [n for n in graph.nodes if n in self.changed]:  # graph order: stable names
            replace_constant(graph, n, 1, self.w[n], "weight")
            if self.b[n] is not None:
                replace_constant(graph, n, 2, self.b[n], "bias")
            if n in self.bn:
                n.meta["bn"] = self.bn[n]


def equalization_scales(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """s_i = sqrt(r1_i / r2_i), limited to [1/MAX_SCALE, MAX_SCALE].

    Dead channels (range below DEAD_FRACTION of the layer's largest) stay as
    they are: equalizing a channel whose weights are ~0 would divide its bias
    by a tiny s and blow up the activation range (measured: VWW has such
    channels; unguarded CLE dropped its output SQNR to 6 dB).
    """
    ok = (r1 > DEAD_FRACTION * np.max(r1, initial=0.0)) & (r2 > DEAD_FRACTION * np.max(r2, initial=0.0))
    s = np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0))
    return np.where(ok, np.clip(s, 1.0 / MAX_SCALE, MAX_SCALE), 1.0)


def equalize(graph: Graph, absorb: bool = True) -> dict:
    """Equalize every pair to convergence, then absorb high biases; returns a summary."""
    pairs, skipped = find_pairs(graph)
    params = _Params(pairs)
    sweeps = 0
    for sweeps in range(1, MAX_SWEEPS + 1):
        worst = 0.0
        for a, b, _ in pairs:
            s = equalization_scales(params.out_range(a), params.in_range(b))
            worst = max(worst, float(np.max(np.abs(np.log(s)))))
            params.scale(a, b, s)
        if worst < TOLERANCE:
            break
    absorbed = [f"{a.name} -> {b.name}" for a, b, _ in pairs if absorb and params.absorb(a, b)]
    params.write(graph)
    return {"pairs": [f"{a.name} -> {b.name}" for a, b, _ in pairs], "sweeps": sweeps if pairs else 0,
            "skipped_clamped": skipped, "bias_absorbed": absorbed}


@register_pass("equalize", "cross-layer equalization of Conv/Gemm pairs (+ high-bias absorption from BN stats)")
def equalize_pass(graph: Graph, ctx: PassContext) -> bool:
    summary = equalize(graph)
    ctx.log.append(f"equalize: {len(summary['pairs'])} pairs, {summary['sweeps']} sweeps, "
                   f"skipped {summary['skipped_clamped']}, absorbed {len(summary['bias_absorbed'])}")
    return bool(summary["pairs"])
