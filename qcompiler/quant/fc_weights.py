"""Which FULLY_CONNECTED (Gemm) weights get per-channel scales.

Per-channel FC weights keep more accuracy where the rows of a weight matrix differ
in range (a folded BatchNorm makes them differ by up to 200x: MLPerf AD), but
some runtimes keep per-channel parameters in RAM next to the activations (the scheme's
`per_channel_param_bytes`: TFLite Micro stores a 32-bit multiplier and a 32-bit shift
per output channel in its arena), and the scales make the model file larger.

"auto" therefore picks per channel only for layers where it raises the weight
SQNR by at least FC_PER_CHANNEL_GAIN_DB and, with a RAM budget (schemes whose
per-channel parameters take RAM), only while the parameters of the chosen layers
(largest gain first) fit in the budget: a model whose activations need 768 bytes (AD)
should not spend 13 KB on multipliers.

The budget grows with what a layer gains: the scheme's share of the activation peak for
every bit (BIT_DB, 6.02 dB) of weight SQNR per channel adds, at least one share. A layer
gaining 3-6 dB (MLPerf AD's bottleneck: +0.18 dB at the output for +64 arena bytes,
8 % of its 768-byte peak) gets the plain share; one whose rows differ so much that one
scale leaves the typical row a few of the 255 levels is not slightly worse per tensor but
starved: the CRNN's 8210-class CTC classifier (the blank row reaches 5.09, the median row
0.18: 4.5 levels) reads 13.7 dB per tensor and 40.8 dB per channel, +27 dB = 4.5 bits, so
it may take 22 % of the peak; its 65,680 multiplier bytes (16 % of the 399 KB peak) bought
+3.1 dB at the model output (bench/crnn_lstm.md). The budget is checked against everything
chosen so far, largest gain first, so the total stays within the largest gain's allowance.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.memory import activation_buffers, lower_bound
from qcompiler.numerics.fixed_point import symmetric_weight_scales
from qcompiler.quant.scheme import QuantScheme

BIT_DB = 20 * np.log10(2)  # 6.02 dB: one bit of weight SQNR
FC_PER_CHANNEL_GAIN_DB = 3.0  # measured gains: MLPerf AD layers 4.8-14 dB, KWS/IC/VWW heads 0-2.9 dB
# The scheme's share (TFLite int8: 5 %): MLPerf AD's activations peak at 768 bytes; at 10 %
# its 8-channel bottleneck layer would go per channel for +64 arena bytes and +0.18 dB output
# SQNR (measured), i.e. more arena than the official int8 file for a gain nobody would notice.


def weight_sqnr_db(w: np.ndarray, axis: int | None) -> float:
    """SQNR of w against its symmetric int8 quantization (per tensor when axis is None)."""
    scales = symmetric_weight_scales(w, axis).astype(np.float64)
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    s = scales.reshape(shape)
    err = w.astype(np.float64) - np.clip(np.round(w / s), -127, 127) * s
    return float(10 * np.log10(max(float(np.sum(np.square(w, dtype=np.float64))), 1e-30)
                               / max(float(np.sum(err * err)), 1e-30)))


def activation_peak_bytes(graph: Graph) -> int:
    """Largest number of int8 activation bytes alive at once (no plan can use less)."""
    return lower_bound(activation_buffers(graph, element_bytes=1))


def _fc_layers(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if n.op == "Gemm" and n.input(1) is not None and n.input(1).is_constant]


def _gains(layers: list[Node]) -> dict[str, float]:
    """Weight SQNR gained by per-channel over per-tensor scales, per layer (dB)."""
    return {n.name: weight_sqnr_db(n.input(1).data, 0) - weight_sqnr_db(n.input(1).data, None) for n in layers}


def _multiplier_bytes(node: Node, bytes_per_channel: int) -> int:
    return bytes_per_channel * int(node.input(1).data.shape[0])


def _auto_choice(graph: Graph, scheme: QuantScheme) -> tuple[set[str], list[Node], dict[str, float]]:
    """"auto": (chosen layer names, layers worth it but left out for the budget, gains)."""
    layers = _fc_layers(graph)
    gains = _gains(layers)
    arena_budget = ram_budget(graph, scheme)
    chosen, over_budget, spent = set(), [], 0
    for n in sorted(layers, key=lambda n: -gains[n.name]):
        cost = _multiplier_bytes(n, scheme.per_channel_param_bytes)
        if gains[n.name] < FC_PER_CHANNEL_GAIN_DB:
            break
        if arena_budget is not None and spent + cost > arena_budget * max(1.0, gains[n.name] / BIT_DB):
            over_budget.append(n)
            continue
        chosen.add(n.name)
        spent += cost
    return chosen, [n for n in layers if n in over_budget], gains


def per_channel_fc_layers(graph: Graph, mode: bool | str, scheme: QuantScheme) -> set[str]:
    """Names of the Gemm nodes whose weights are quantized per output channel.

    mode True / False: all / none; "auto": see the module docstring; a set: those names.
    """
    if isinstance(mode, (set, frozenset)):
        return set(mode)
    if mode != "auto":
        return {n.name for n in _fc_layers(graph)} if mode else set()
    return _auto_choice(graph, scheme)[0]


def kept_per_tensor_for_arena(graph: Graph, scheme: QuantScheme) -> dict | None:
    """What "auto" gave up to stay within `arena_budget`: the layers that would gain
    >= FC_PER_CHANNEL_GAIN_DB per channel but stay per tensor, their weight-SQNR gains and
    the arena bytes `--per-channel-fc` would add for them (None when nothing was given up)."""
    _, left_out, gains = _auto_choice(graph, scheme)
    if not left_out:
        return None
    kept = [gains[n.name] for n in left_out]
    return {"layers": [n.name for n in left_out],
            "weight_sqnr_gain_db": [round(min(kept), 2), round(max(kept), 2)],
            "arena_bytes": sum(_multiplier_bytes(n, scheme.per_channel_param_bytes) for n in left_out)}


def ram_budget(graph: Graph, scheme: QuantScheme) -> int | None:
    """Bytes of per-channel parameters the scheme allows in RAM (its share of the activation
    peak), or None when its per-channel parameters take no RAM."""
    if not scheme.per_channel_param_bytes or scheme.per_channel_param_share is None:
        return None
    return int(scheme.per_channel_param_share * activation_peak_bytes(graph))
