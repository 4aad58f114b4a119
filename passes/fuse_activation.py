"""Fuse Relu / Relu6 (Clip 0..6) / Clip(-1, 1) into the producing op.

The producer gets `fused_activation` in TFLite's enum names (RELU, RELU6,
RELU_N1_TO_1); the float interpreter clamps, integer kernels clamp through their
activation range, so the activation costs nothing on the target.

    Before: %a = Conv(%x, %w, %b); %y = Relu(%a)
    After:  %y = Conv(%x, %w, %b) fused_activation=RELU
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass

FUSIBLE_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "Add", "Sub", "Mul"}


def _clip_bounds(node: Node) -> tuple[float, float] | None:
    lo = node.attrs.get("min", -np.inf)
    hi = node.attrs.get("max", np.inf)
    for i, default in ((1, None), (2, None)):
        v = node.input(i)
        if v is not None:
            if not v.is_constant:
                return None
            if i == 1:
                lo = float(v.data)
            else:
                hi = float(v.data)
    return float(lo), float(hi)


def activation_kind(node: Node) -> str | None:
    """TFLite fused-activation name for a standalone activation node, if it has one."""
    if node.op == "Relu":
        return "RELU"
    if node.op == "Clip":
        bounds = _clip_bounds(node)
        return {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, np.inf): "RELU"}.get(bounds)
    return None


@register_pass("fuse_activation", "fuse Relu/Relu6/Clip(-1,1) into the producing Conv/Gemm/Add/...")
def fuse_activation(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for act in list(graph.nodes):
        kind = activation_kind(act)
        if kind is None:
            continue
        x = act.inputs[0]
        p = x.producer
        if (p is None or p.op not in FUSIBLE_PRODUCERS or len(x.consumers) != 1 or x in graph.outputs
                or p.attrs.get("fused_activation", "NONE") != "NONE"):
            continue
        p.attrs["fused_activation"] = kind
        graph.bypass_node(act)
        changed = True
    return changed
