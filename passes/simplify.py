"""Exact algebraic clean-ups of data-movement ops.

- Transpose pairs: Transpose(Transpose(x, p1), p2) -> Transpose(x, p1∘p2), or x when
  the composition is the identity.
- a Transpose that only moves axes of size 1 (the other axes keep their order) is a Reshape:
  the bytes do not move, e.g. [seq, 2, 1, H] -> perm [0, 2, 1, 3] -> [seq, 1, 2, H].
- Reshape chains: Reshape/Flatten/Squeeze/Unsqueeze of a single-use Reshape-like
  node collapse into one Reshape to the final static shape; a reshape to the
  input's own shape disappears.

    Before: %a = Transpose(%x) perm=[0,2,3,1]; %y = Transpose(%a) perm=[0,3,1,2]
    After:  %y = %x
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass

RESHAPE_LIKE = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def _perm(node: Node) -> list[int]:
    x = node.inputs[0]
    return list(node.attrs.get("perm", list(reversed(range(len(x.shape))))))


def _static(node: Node) -> bool:
    return all(v.shape is not None for v in (node.inputs[0], node.outputs[0]))


def _merge_transposes(graph: Graph, node: Node) -> bool:
    src = node.inputs[0]
    first = src.producer
    if first is None or first.op != "Transpose" or len(src.consumers) != 1 or src in graph.outputs:
        return False
    p1, p2 = _perm(first), _perm(node)
    combined = [p1[i] for i in p2]
    node.set_input(0, first.inputs[0])
    node.attrs["perm"] = combined
    graph.erase_node(first)
    if combined == sorted(combined):
        _drop(graph, node)
    return True


def _drop(graph: Graph, node: Node) -> None:
    """Remove a node that does nothing to its first input."""
    out, src = node.outputs[0], node.inputs[0]
    if out in graph.outputs and (src in graph.inputs or src in graph.outputs or src.producer is None):
        return  # keep a node between a graph input and a graph output
    graph.bypass_node(node)


def _as_reshape(graph: Graph, node: Node, src) -> None:
    """Turn a reshape-like node into Reshape(src, static target shape)."""
    target = np.array(node.outputs[0].shape, np.int64)
    shape = graph.add_constant(f"{node.name}_shape", target)
    node.op, node.attrs = "Reshape", {}
    node.set_inputs([src, shape])


def _merge_reshapes(graph: Graph, node: Node) -> bool:
    if not _static(node):
        return False
    src = node.inputs[0]
    if tuple(src.shape) == tuple(node.outputs[0].shape):
        before = len(graph.nodes)
        _drop(graph, node)
        return len(graph.nodes) != before
    first = src.producer
    if first is None or first.op not in RESHAPE_LIKE or len(src.consumers) != 1 or src in graph.outputs \
            or not _static(first):
        return False
    _as_reshape(graph, node, first.inputs[0])
    graph.erase_node(first)
    return True


def _moves_bytes(node: Node) -> bool:
    """Whether a static Transpose changes the order of its elements in memory."""
    shape = node.inputs[0].shape
    kept = [a for a in _perm(node) if shape[a] != 1]
    return kept != sorted(kept)


@register_pass("simplify", "cancel Transpose pairs, collapse Reshape chains, drop no-op reshapes")
def simplify(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node not in graph.nodes:
            continue
        if node.op == "Transpose" and _static(node) and not _moves_bytes(node):
            _as_reshape(graph, node, node.inputs[0])
            changed = True
        if node.op == "Transpose":
            changed |= _merge_transposes(graph, node)
        elif node.op in RESHAPE_LIKE:
            changed |= _merge_reshapes(graph, node)
    return changed
