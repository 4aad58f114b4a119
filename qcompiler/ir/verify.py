"""`Graph.verify()`: the IR's invariants, checked in time linear in the graph's size.

1. links: every input's consumer list names the node exactly as often as the node reads it,
   every output names the node as its producer, every listed consumer is in the graph;
2. order: each input is a constant, a graph input, or produced by an earlier node;
3. names: value names are unique;
4. types: every output whose shape is declared has the dtype and shape that shape inference
   (`qcompiler/ir/shapes.py`) computes from the node's inputs; a quantized output's dtype is
   its QuantParams' dtype. Outputs with no declared shape (fresh, untyped values) are skipped.

Every check uses dicts and sets keyed by object id: no `list.count` or `in list` in a loop.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from qcompiler.errors import GraphError


def _fmt(dtype, shape) -> str:
    d = "?" if dtype is None else np.dtype(dtype).name
    return f"{d}[{'x'.join(map(str, shape)) if shape else 'scalar'}]"


def verify_graph(graph) -> None:
    from qcompiler.ir.shapes import infer_node

    position = {}
    for i, n in enumerate(graph.nodes):
        if id(n) in position:
            raise GraphError(f"node {n.name} ({n.op}) appears twice in graph.nodes")
        position[id(n)] = i
    graph_inputs = {id(v) for v in graph.inputs}
    values = graph.values()
    # uses[(value, node)]: how often the node reads the value / how often the value lists the node
    reads = Counter((id(v), id(n)) for n in graph.nodes for v in n.inputs if v is not None)
    listed = Counter((id(v), id(c)) for v in values for c in v.consumers)
    for n in graph.nodes:
        for i, v in enumerate(n.inputs):
            if v is None:
                continue
            if listed[id(v), id(n)] != reads[id(v), id(n)]:
                raise GraphError(f"node {n.name} ({n.op}): consumer list of input {v.name} is out of sync")
            p = v.producer
            if p is None:
                if not v.is_constant and id(v) not in graph_inputs:
                    raise GraphError(f"node {n.name} ({n.op}): input #{i} {v.name} has no producer, "
                                     "is not a constant and not a graph input")
            elif id(p) not in position:
                raise GraphError(f"node {n.name} ({n.op}): input {v.name} comes from node {p.name} "
                                 "which is not in the graph")
            elif position[id(p)] >= position[id(n)]:
                raise GraphError(f"node {n.name} ({n.op}) comes before the producer {p.name} of its "
                                 f"input {v.name} (call toposort())")
        for v in n.outputs:
            if v.producer is not n:
                raise GraphError(f"node {n.name} ({n.op}): output {v.name} names another producer")
            if v.is_constant:
                raise GraphError(f"node {n.name} ({n.op}): output {v.name} carries constant data")
    names: dict[str, object] = {}
    for v in values:
        for c in v.consumers:
            if id(c) not in position:
                raise GraphError(f"value {v.name} lists consumer {c.name} which is not in the graph")
            if listed[id(v), id(c)] != reads[id(v), id(c)]:
                raise GraphError(f"node {c.name} ({c.op}): consumer list of input {v.name} is out of sync")
        if names.setdefault(v.name, v) is not v:
            raise GraphError(f"duplicate value name {v.name!r}")
    for v in graph.outputs:
        if v.producer is None and id(v) not in graph_inputs and not v.is_constant:
            raise GraphError(f"graph output {v.name} is produced by no node")
    for n in graph.nodes:
        check_types(n, infer_node(n))


def check_types(node, inferred) -> None:
    """Declared dtype/shape of each typed output against the inferred ones."""
    for v, t in zip(node.outputs, inferred):
        if t is None or v.shape is None:
            continue
        want = v.quant.dtype if v.quant is not None else t.dtype
        if (t.shape is None or tuple(t.shape) == v.shape) and (want is None or np.dtype(want) == v.dtype):
            continue
        source = " (its QuantParams' dtype)" if v.quant is not None and np.dtype(want) != v.dtype else ""
        raise GraphError(f"node {node.name} ({node.op}): output {v.name} is declared "
                         f"{_fmt(v.dtype, v.shape)} but the op computes "
                         f"{_fmt(want, t.shape if t.shape is not None else v.shape)}{source}")
