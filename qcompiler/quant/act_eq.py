"""Activation equalization: let every channel of a conv output use the whole int8 range.

An int8 activation tensor has one scale, set by its largest channel; a channel whose
values stay 10x smaller gets 10x coarser steps relative to its signal. Between a Conv A
and a depthwise Conv B that reads A's output directly, multiplying A's output channel i
(weights and bias) by t_i > 0 and B's channel i weights by 1 / t_i leaves the float function
unchanged (A's fused ReLU commutes with a positive scale) and, because both layers'
weights are quantized per output channel, leaves their integer weights the same: the
only effect is that channel i now spans t_i times more int8 steps.

t_i = (largest calibration value over all channels) / (channel i's largest |value|),
capped at MAX_GAIN and left at 1 for dead channels. The tensor's range afterwards is
[min_i t_i lo_i, max_i t_i hi_i] from the same per-channel extremes (no second pass over
the data: the histogram of the scaled tensor is not known, so this tensor's range is the
min-max one).

Only for per-channel conv weights (not with --per-tensor, where scaling rows would change
A's integer weights) and only where A's output has no other reader. With B a regular conv,
scaling its input channels trades weight precision for activation precision: measured
worse on KWS, IC and digits_dwsep, so not done.

Measured on the evaluation sets (output SQNR dB / top-1 agreement %, off -> on; bench/results.md):
MLPerf KWS 19.82 / 93.4 -> 20.90 / 94.8, KWS SavedModel 20.44 / 97.0 -> 22.26 / 97.4, VWW
33.97 / 98.0 -> 36.09 / 99.67 (its per-layer SQNR +1 to +11 dB on every conv output),
digits_dwsep 39.45 -> 43.28; models without conv -> depthwise pairs (IC, AD, digits_cnn/resnet)
are unchanged.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import commutes_with_positive_scale
from qcompiler.ir.rewrite import replace_constant
from qcompiler.passes.equalize import _kind, find_pairs

MAX_GAIN = 16.0  # largest per-channel scale: 4 more bits for a channel 16x below the largest
DEAD_FRACTION = 1e-3  # channels whose extreme is below this fraction of the tensor's are left alone


def equalizable_pairs(graph: Graph) -> list[tuple[Node, Node]]:
    """(A, B): Conv (regular or depthwise) with RELU or no activation, read only by a depthwise B."""
    pairs, _ = find_pairs(graph)
    return [(a, b) for a, b, between in pairs
            if not between and _kind(a) in ("conv", "dw") and _kind(b) == "dw"
            and commutes_with_positive_scale(a)
            and a.outputs[0] not in graph.outputs and len(a.outputs[0].consumers) == 1]


class ChannelExtremes:
    """Per-channel min / max of some tensors over a float pass (a calibration watch:
    `watch(name, samples stacked on axis 0)`)."""

    def __init__(self, names):
        self.lo: dict[str, np.ndarray] = {}
        self.hi: dict[str, np.ndarray] = {}
        self.names = set(names)

    def watch(self, name: str, x: np.ndarray) -> None:
        flat = x.reshape(x.shape[0], x.shape[1], -1)  # no copy (moveaxis + reshape would copy)
        lo, hi = flat.min(axis=2).min(axis=0), flat.max(axis=2).max(axis=0)
        if name in self.hi:
            np.minimum(self.lo[name], lo, out=self.lo[name])
            np.maximum(self.hi[name], hi, out=self.hi[name])
        else:
            self.lo[name], self.hi[name] = lo.astype(np.float64), hi.astype(np.float64)


def channel_gains(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """t_i: channel i's scale so its extreme matches the largest channel's (capped, dead ones 1)."""
    extreme = np.maximum(np.abs(lo), np.abs(hi))
    top = float(extreme.max(initial=0.0))
    alive = extreme > DEAD_FRACTION * top
    return np.where(alive, np.clip(top / np.where(alive, extreme, 1.0), 1.0, MAX_GAIN), 1.0)


def equalize_activations(graph: Graph, extremes: ChannelExtremes) -> dict[str, tuple[np.ndarray, tuple]]:
    """Rescale every pair; returns {A's output tensor: (t, its new (lo, hi) range)}."""
    done = {}
    for a, b in equalizable_pairs(graph):
        name = a.outputs[0].name
        if name not in extremes.hi:
            continue
        t = channel_gains(extremes.lo[name], extremes.hi[name])
        wa = a.input(1).data.astype(np.float64)
        replace_constant(graph, a, 1, wa * t.reshape((-1,) + (1,) * (wa.ndim - 1)), "weight")
        if a.input(2) is not None:
            replace_constant(graph, a, 2, a.input(2).data.astype(np.float64) * t, "bias")
        if "bn" in a.meta:  # the pre-activation statistics scale with the channel
            a.meta["bn"] = {**a.meta["bn"], "gamma": np.asarray(a.meta["bn"]["gamma"]) * t,
                            "beta": np.asarray(a.meta["bn"]["beta"]) * t}
        wb = b.input(1).data.astype(np.float64)
        replace_constant(graph, b, 1, wb / t.reshape((-1,) + (1,) * (wb.ndim - 1)), "weight")
        lo, hi = extremes.lo[name] * t, extremes.hi[name] * t
        done[name] = (t, (float(min(lo.min(), 0.0)), float(hi.max())))
    return done
