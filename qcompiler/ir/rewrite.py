"""Small helpers shared by the passes: new Conv / Gemm parameters, matching constant operands."""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node, Value


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


def replace_constant(graph: Graph, node: Node, index: int, data: np.ndarray, tag: str) -> None:
    """New float32 values for `node`'s constant input `index` (appended when absent).

    Rewritten in place when nothing else reads the constant (its name, which ends up in the
    .tflite, stays as it was), else a fresh constant `<node>_<tag>` (the old one may be shared).
    """
    data = np.ascontiguousarray(data, np.float32)
    old = node.input(index) if index < len(node.inputs) else None
    if old is not None and old.is_constant and len(old.consumers) == 1 and old.data.shape == data.shape:
        old.data = data
        return
    c = graph.add_constant(f"{node.name}_{tag}", data)
    if index < len(node.inputs):
        node.set_input(index, c)
    else:
        node.append_input(c)


def constant_operand(node: Node) -> tuple[Value, Value] | None:
    """(activation input, constant input) of a binary node whose other input is computed."""
    a, b = node.input(0), node.input(1)
    if a is None or b is None or a.is_constant == b.is_constant:
        return None
    return (b, a) if a.is_constant else (a, b)


def scalar_of(v: Value | None) -> float | None:
    """The one value of a single-element float constant (any rank), else None."""
    if v is None or not v.is_constant or v.data.size != 1 or not np.issubdtype(v.data.dtype, np.floating):
        return None
    return float(v.data.reshape(()))


def sole_use(graph: Graph, v: Value, user: Node) -> bool:
    """`v` is read once, by `user`, and is no graph output: a rewrite may drop it."""
    return len(v.consumers) == 1 and v.consumers[0] is user and not any(o is v for o in graph.outputs)
