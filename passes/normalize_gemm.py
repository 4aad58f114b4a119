"""Bring matrix products into one canonical form: Gemm(x, W[M,K], b[M]) with transB=1.

alpha is folded into W, beta into the bias, transB=0 weights are transposed,
and MatMul of a 2-D activation by a constant 2-D matrix becomes Gemm. This is
the FULLY_CONNECTED form every backend and the quantizer expect.

    Before: %y = Gemm(%x, const W[K,M], const C[M]) alpha=0.5
    After:  %y = Gemm(%x, const (0.5*W).T [M,K], const C[M]) transB=1
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph
from qcompiler.ir.activation import ATTR as CLAMP
from qcompiler.ir.pass_manager import PassContext, register_pass

from qcompiler.ir.rewrite import set_weight_and_bias


def _canonical(graph: Graph, node, w: np.ndarray, bias: np.ndarray | None) -> None:
    set_weight_and_bias(graph, node, w, bias)
    node.attrs = {"transB": 1, **({CLAMP: node.attrs[CLAMP]} if CLAMP in node.attrs else {})}


@register_pass("normalize_gemm", "canonical Gemm(x, W[M,K], b) form; MatMul by constant -> Gemm")
def normalize_gemm(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for node in list(graph.nodes):
        x, w = node.input(0), node.input(1)
        if node.op == "MatMul":
            if x is None or w is None or not w.is_constant or w.data.ndim != 2 or x.shape is None \
                    or len(x.shape) != 2:
                continue
            node.op = "Gemm"
            node.attrs = {}
            _canonical(graph, node, w.data.T, None)
            changed = True
            continue
        if node.op != "Gemm" or w is None or not w.is_constant:
            continue
        a = node.attrs
        if a.get("transA", 0) or x is None or x.shape is None or len(x.shape) != 2:
            continue
        c = node.input(2)
        if c is not None and not c.is_constant:
            continue
        if a.get("transB", 0) == 1 and a.get("alpha", 1.0) == 1.0 and a.get("beta", 1.0) == 1.0 and \
                (c is None or c.data.ndim == 1):
            continue  # already canonical
        weight = w.data if a.get("transB", 0) else w.data.T
        weight = weight * np.float32(a.get("alpha", 1.0))
        m = weight.shape[0]
        bias = None
        if c is not None:
            cb = np.broadcast_to(c.data, (x.shape[0], m))
            if not np.all(cb == cb[:1]):
                continue  # a per-row C is not a bias
            bias = cb[0] * np.float32(a.get("beta", 1.0))
        _canonical(graph, node, weight, bias)
        changed = True
    return changed
