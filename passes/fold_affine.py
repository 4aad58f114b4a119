"""Fold Mul / Add by constants into a neighbouring Conv or Gemm where it is exact.

After the producer (single use, no fused activation), per output channel:
    Mul:  conv(x, W) + b -> times c    =  conv(x, W*c) + b*c
    Add:  conv(x, W) + b -> plus t     =  conv(x, W) + (b + t)
Before a Conv/Gemm (the product's only use), per input channel:
    Mul:  W[:, ci] *= s[ci]            exact even with zero padding (0 * s = 0)
    Add:  b += sum(W[:, ci] * t[ci])   only without padding (padded taps would not see t)

    Before: %c = Conv(%x, W, b); %y = Mul(%c, const[C,1,1])
    After:  %y = Conv(%x, W', b')
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.activation import has_activation
from qcompiler.ir.pass_manager import PassContext, register_pass

from qcompiler.ir.rewrite import set_weight_and_bias


def _const_operand(node: Node) -> tuple[Value, Value] | None:
    """(activation input, constant input) of a binary node, if exactly one input is constant."""
    a, b = node.inputs[:2]
    if a is None or b is None or a.is_constant == b.is_constant:
        return None
    return (b, a) if a.is_constant else (a, b)


def _per_channel(c: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """A constant that broadcasts as a per-channel (axis 1) vector, as length-C float64, else None."""
    if c.size == 1:
        return np.full(channels, float(c.reshape(())), np.float64)
    shape = (1,) * (rank - c.ndim) + c.shape
    if len(shape) != rank or shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
        return None
    return c.reshape(channels).astype(np.float64)


def _weight_out_axis(node: Node) -> int | None:
    if node.op == "Conv":
        return 0
    if node.op == "Gemm" and node.attrs.get("transB", 0) == 1 and not node.attrs.get("transA", 0):
        return 0
    return None


def _params(node: Node):
    w = node.input(1).data.astype(np.float64)
    b = node.input(2).data.astype(np.float64) if node.input(2) is not None else np.zeros(w.shape[0])
    return w, b


def _fold_after(graph: Graph, op: Node) -> bool:
    pair = _const_operand(op)
    if pair is None or (op.op == "Sub" and not op.inputs[1].is_constant):
        return False
    x, c = pair
    p = x.producer
    if p is None or _weight_out_axis(p) is None or not p.input(1).is_constant or len(x.consumers) != 1 \
            or x in graph.outputs or has_activation(p) \
            or (p.input(2) is not None and not p.input(2).is_constant):
        return False
    w, b = _params(p)
    vec = _per_channel(c.data, len(x.shape), w.shape[0])
    if vec is None or np.broadcast_shapes(x.shape, c.data.shape) != x.shape:
        return False
    if op.op == "Mul":
        w = w * vec.reshape((-1,) + (1,) * (w.ndim - 1))
        b = b * vec
    else:
        b = b + (vec if op.op == "Add" else -vec)
    set_weight_and_bias(graph, p, w, b)
    graph.bypass_node(op, input_index=op.inputs.index(x))
    return True


def _fold_before(graph: Graph, op: Node) -> bool:
    pair = _const_operand(op)
    if pair is None or op.op not in ("Mul", "Add"):
        return False
    x, c = pair
    y = op.outputs[0]
    users = y.consumers
    if len(users) != 1 or y in graph.outputs or x.shape is None or y.shape != x.shape:
        return False
    conv = users[0]
    if conv.op != "Conv" or conv.inputs[0] is not y or conv.attrs.get("group", 1) != 1 \
            or not conv.input(1).is_constant or (conv.input(2) is not None and not conv.input(2).is_constant):
        return False
    w, b = _params(conv)
    vec = _per_channel(c.data, len(x.shape), w.shape[1])
    if vec is None:
        return False
    shape = (1, -1) + (1,) * (w.ndim - 2)
    if op.op == "Mul":
        w = w * vec.reshape(shape)
    else:
        if any(conv.attrs.get("pads", [])) or conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return False
        b = b + (w * vec.reshape(shape)).sum(axis=tuple(range(1, w.ndim)))
    set_weight_and_bias(graph, conv, w, b)
    conv.set_input(0, x)
    graph.erase_node(op)
    return True


@register_pass("fold_affine", "fold Mul/Add by constants into a neighbouring Conv/Gemm where exact")
def fold_affine(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node not in graph.nodes or node.op not in ("Mul", "Add", "Sub") or has_activation(node):
            continue  # a fused clamp after the Mul/Add would be lost
        changed |= _fold_after(graph, node) or _fold_before(graph, node)
    return changed
