"""Fuse Relu / Relu6 (Clip 0..6) / Clip(-1, 1) into the producing op.

The producer gets the clamp as its `clamp` attribute in float units (qcompiler/ir/activation.py);
the float interpreter clamps, integer kernels clamp through their activation range, so the
activation costs nothing on the target. Only the clamps every backend can fuse
(`activation.FUSIBLE`) are folded; other Clips stay nodes.

    Before: %a = Conv(%x, %w, %b); %y = Relu(%a)
    After:  %y = Conv(%x, %w, %b) clamp=[0.0, None]
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import FUSIBLE, RELU, has_activation, set_clamp
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


def fusible_clamp(node: Node) -> tuple[float, float] | None:
    """The clamp a standalone Relu / Clip node applies, if it is one that fuses."""
    if node.op == "Relu":
        return RELU
    if node.op == "Clip":
        bounds = _clip_bounds(node)
        return bounds if bounds in FUSIBLE else None
    return None


@register_pass("fuse_activation", "fuse Relu/Relu6/Clip(-1,1) into the producing Conv/Gemm/Add/...")
def fuse_activation(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for act in list(graph.nodes):
        clamp = fusible_clamp(act)
        if clamp is None:
            continue
        x = act.inputs[0]
        p = x.producer
        if (p is None or p.op not in FUSIBLE_PRODUCERS or len(x.consumers) != 1 or x in graph.outputs
                or has_activation(p)):
            continue
        set_clamp(p, *clamp)
        graph.bypass_node(act)
        changed = True
    return changed
