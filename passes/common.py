"""Small helpers shared by the passes that rewrite Conv / Gemm parameters."""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node


def set_weight_and_bias(graph: Graph, node: Node, weight: np.ndarray, bias: np.ndarray | None) -> None:
    """Give a Conv/Gemm-like node new constant weight (input 1) and bias (input 2) as float32."""
    node.set_input(1, graph.add_constant(f"{node.name}_weight", np.ascontiguousarray(weight, np.float32)))
    if bias is None:
        return
    b = graph.add_constant(f"{node.name}_bias", np.ascontiguousarray(bias, np.float32))
    if len(node.inputs) > 2:
        node.set_input(2, b)
    else:
        node.append_input(b)
