"""Canonical forms that later passes, the quantizer and every backend can rely on.

- `Sum(a, b, c)` -> `Add(Add(a, b), c)` (a one-input Sum becomes Identity);
- `auto_pad` SAME_UPPER / SAME_LOWER / VALID on Conv and pooling -> explicit `pads`
  computed from the static input shape (kernels and backends read only `pads`);
- `Upsample` (opset 7-9) and the two-input `Resize` (opset 10) -> the opset-13 `Resize` with
  their coordinate rule spelled out: asymmetric, nearest rounding toward zero (floor when
  enlarging, ceil when shrinking; an op that does both stays as it is), so every target
  reads one Resize form.

    Before: %y = Conv(%x[1x3x7x7], W[8x3x3x3]) auto_pad=SAME_UPPER strides=[2,2]
    After:  %y = Conv(%x, W) pads=[1,1,1,1] strides=[2,2]
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass

WINDOW_OPS = {"Conv", "MaxPool", "AveragePool", "LpPool"}


def _sum_to_adds(graph: Graph, node: Node) -> None:
    ins = [v for v in node.inputs if v is not None]
    if len(ins) == 1:
        graph.replace_node(node, graph.insert_before(node, "Identity", ins, name=node.name))
        return
    acc = ins[0]
    for k, v in enumerate(ins[1:], start=1):
        add = graph.insert_before(node, "Add", [acc, v], name=f"{node.name}_add{k}")
        acc = add.outputs[0]
    graph.replace_node(node, add)  # the last Add takes over the Sum's output


def _explicit_pads(node: Node) -> list[int] | None:
    mode = node.attrs.get("auto_pad", "NOTSET")
    x = node.inputs[0]
    if mode in ("NOTSET", "") or x is None or x.shape is None:
        return None
    spatial = x.shape[2:]
    if node.op == "Conv":
        kernel = node.inputs[1].shape[2:]
    else:
        kernel = node.attrs["kernel_shape"]
    strides = node.attrs.get("strides", [1] * len(spatial))
    dilations = node.attrs.get("dilations", [1] * len(spatial))
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        if mode == "VALID":
            begins.append(0)
            ends.append(0)
            continue
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def _resize13(graph: Graph, node: Node) -> bool:
    """Upsample / Resize-10 -> Resize(x, roi=None, scales) with explicit attributes."""
    scales = node.inputs[1] if len(node.inputs) > 1 else None
    if scales is None and "scales" in node.attrs:  # Upsample-7: an attribute
        scales = graph.add_constant(f"{node.name}_scales", np.asarray(node.attrs["scales"], np.float32))
    if scales is None or not scales.is_constant:
        return False
    s = np.asarray(scales.data, np.float32).reshape(-1)
    mode = node.attrs.get("mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    mode = "linear" if mode in ("bilinear", "trilinear") else mode
    if mode == "nearest" and np.any(s > 1) and np.any(s < 1):
        return False
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric",
             "nearest_mode": "ceil" if np.any(s < 1) else "floor"}
    graph.replace_node(node, graph.insert_before(node, "Resize", [node.inputs[0], None, scales],
                                                 attrs=attrs, name=node.name))
    return True


@register_pass("canonicalize", "Sum -> Add chain; auto_pad -> explicit pads; Upsample -> Resize")
def canonicalize(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node.op == "Upsample" or (node.op == "Resize" and len(node.inputs) == 2):
            changed |= _resize13(graph, node)
        elif node.op == "Sum":
            _sum_to_adds(graph, node)
            changed = True
        elif node.op in WINDOW_OPS:
            pads = _explicit_pads(node)
            if pads is not None:
                node.attrs["pads"] = pads
                node.attrs.pop("auto_pad")
                changed = True
    return changed
