"""Division by a constant becomes multiplication by its reciprocal.

int8 runtimes have MUL but rarely an int8 DIV (TFLite Micro has none); by a constant the two
are the same function:

    y = x / c  =  x * (1 / c)      elementwise, c any constant broadcastable to x (no zeros)

The reciprocal is taken in float64 and stored as float32, so y changes by at most an ulp or
two against the float Div. A Div of two computed tensors, of integers (shape arithmetic left
after constant folding) or by a constant holding 0, Inf or NaN is left alone.

    Before: %y = Div(%x, c=[2.0])
    After:  %y = Mul(%x, [0.5])
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass


def reciprocal(node: Node) -> np.ndarray | None:
    """1 / divisor as float32 when `node` divides a float tensor by a usable constant."""
    x, c = node.input(0), node.input(1)
    if x is None or c is None or x.is_constant or not c.is_constant:
        return None
    if not (np.issubdtype(x.dtype, np.floating) and np.issubdtype(c.data.dtype, np.floating)):
        return None
    d = c.data.astype(np.float64)
    if not np.all(np.isfinite(d)) or np.any(d == 0):
        return None
    with np.errstate(over="ignore"):
        r = (1.0 / d).astype(np.float32)
    return r if np.all(np.isfinite(r)) else None


@register_pass("div_to_mul", "Div by a constant -> Mul by its reciprocal (no int8 DIV kernel)")
def div_to_mul(graph: Graph, ctx: PassContext) -> bool:
    done = []
    for node in list(graph.nodes):
        r = reciprocal(node) if node.op == "Div" else None
        if r is None:
            continue
        node.op = "Mul"
        node.set_input(1, graph.add_constant(f"{node.name}_reciprocal", r))
        done.append(node.name)
    if done:
        ctx.log.append(f"div_to_mul: {len(done)} Div by a constant -> Mul ({', '.join(done[:3])}"
                       f"{', ...' if len(done) > 3 else ''})")
    return bool(done)
