"""Constant folding: evaluate nodes whose inputs are all constants.

Also folds `Shape` of a statically shaped tensor, so Shape -> Gather -> Concat
chains feeding Reshape collapse to a constant shape.

    Before: %s = Shape(%x[1x8x4x4]); %t = Gather(%s, 0); %r = Reshape(%x, Concat(%t, -1))
    After:  %r = Reshape(%x, const [1, -1])
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp import FLOAT_KERNELS
from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass

# ops whose result is not a pure function of their inputs
NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}


def _shape_of(node: Node) -> np.ndarray | None:
    x = node.inputs[0]
    if x is None or x.shape is None:
        return None
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", None)
    return np.array(x.shape[start:end], dtype=np.int64)


@register_pass("fold_constants", "evaluate constant subgraphs and Shape of static tensors")
def fold_constants(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node.op in NOT_FOLDABLE or node.op not in FLOAT_KERNELS:
            continue
        if node.op == "Shape":
            arrays = [_shape_of(node)] if _shape_of(node) is not None else None
        elif all(v is None or v.is_constant for v in node.inputs) and node.inputs:
            arrays = FLOAT_KERNELS[node.op](node, [None if v is None else v.data for v in node.inputs])
        else:
            arrays = None
        if arrays is None or any(v in graph.outputs for v in node.outputs):
            continue
        graph.replace_with_constants(node, arrays)
        changed = True
    return changed
