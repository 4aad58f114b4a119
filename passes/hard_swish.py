"""Hard-swish written out of elementary ops becomes one HardSwish node.

    hardswish(x) = x * relu6(x + 3) / 6 = x * clip(x / 6 + 1/2, 0, 1) = x * HardSigmoid(x; 1/6, 1/2)

Exporters spell it in several ways (MobileNetV3, PP-LCNet, PicoDet); each becomes HardSwish,
which int8 runtimes have as one kernel (TFLite's HARD_SWISH) instead of an Add, a Clip and two
Muls each requantizing through int8:

    Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)       the / 6 (or a Mul by 1/6) after the product
    Mul(x, Div(Clip(Add(x, 3), 0, 6), 6))       ... or before it, on the gate
    Mul(x, HardSigmoid(x, alpha=1/6, beta=1/2))

in any operand order of the Adds and Muls, with the Clip as a node or already fused into the
Add (`clamp` [0, 6]). The tensors between x and y must have no other reader and the constants
must be 3 and 6 (or 1/6) up to float32 rounding.

    Before: %a = Add(%x, 3); %c = Clip(%a, 0, 6); %m = Mul(%x, %c); %y = Div(%m, 6)
    After:  %y = HardSwish(%x)

`decompose_hard_swish` goes the other way for int16 activations (TFLite Micro has no int16
HARD_SWISH kernel, but int16 ADD and MUL).
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.activation import clamp_of, has_activation, set_clamp
from qcompiler.ir.pass_manager import PassContext, register_pass
from qcompiler.ir.rewrite import constant_operand, scalar_of, sole_use
from qcompiler.passes.fuse_activation import fusible_clamp

RTOL = 1e-5
RELU6 = (0.0, 6.0)


def _near(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= RTOL * abs(want)


def _sixth(node: Node | None) -> Value | None:
    """The operand `node` divides by 6 (Div by 6 or Mul by 1/6), else None."""
    if node is None or has_activation(node):
        return None
    if node.op == "Div" and not node.inputs[0].is_constant and _near(scalar_of(node.input(1)), 6.0):
        return node.inputs[0]
    pair = constant_operand(node) if node.op == "Mul" else None
    return pair[0] if pair is not None and _near(scalar_of(pair[1]), 1.0 / 6.0) else None


def _plus_three(node: Node | None) -> Value | None:
    """x of `node` = Add(x, 3) (either order), else None."""
    pair = constant_operand(node) if node is not None and node.op == "Add" else None
    return pair[0] if pair is not None and _near(scalar_of(pair[1]), 3.0) else None


def _relu6_gate(graph: Graph, g: Value) -> tuple[Value, list[Node]] | None:
    """(x, nodes) when g = relu6(x + 3): Clip(Add(x, 3), 0, 6), or Add(x, 3) with a fused [0, 6]."""
    p = g.producer
    if p is None:
        return None
    if p.op == "Add" and clamp_of(p) == RELU6:
        x = _plus_three(p)
        return (x, [p]) if x is not None else None
    if p.op != "Clip" or fusible_clamp(p) != RELU6:
        return None
    a = p.inputs[0]
    add = a.producer
    if add is None or has_activation(add) or not sole_use(graph, a, p):
        return None
    x = _plus_three(add)
    return (x, [p, add]) if x is not None else None


def _hard_sigmoid_gate(g: Value) -> tuple[Value, list[Node]] | None:
    p = g.producer
    if p is None or p.op != "HardSigmoid":
        return None
    alpha, beta = float(p.attrs.get("alpha", 0.2)), float(p.attrs.get("beta", 0.5))
    return (p.inputs[0], [p]) if _near(alpha, 1.0 / 6.0) and _near(beta, 0.5) else None


def _orders(node: Node):
    a, b = node.input(0), node.input(1)
    return ((a, b), (b, a)) if a is not None and b is not None else ()


def match(graph: Graph, y: Node) -> tuple[Value, list[Node]] | None:
    """(x, the nodes to remove after y) when y's output is hardswish(x)."""
    m = _sixth(y)
    if m is not None and m.producer is not None and m.producer.op == "Mul" \
            and not has_activation(m.producer) and sole_use(graph, m, y):
        for x, g in _orders(m.producer):       # (x * relu6(x + 3)) / 6
            gate = _relu6_gate(graph, g) if sole_use(graph, g, m.producer) else None
            if gate is not None and gate[0] is x:
                return x, [m.producer, *gate[1]]
    if y.op != "Mul" or has_activation(y):
        return None
    for x, g in _orders(y):
        if not sole_use(graph, g, y):
            continue
        gate = _hard_sigmoid_gate(g)            # x * HardSigmoid(x; 1/6, 1/2)
        if gate is not None and gate[0] is x:
            return gate
        c = _sixth(g.producer)                 # x * (relu6(x + 3) / 6)
        gate = _relu6_gate(graph, c) if c is not None and sole_use(graph, c, g.producer) else None
        if gate is not None and gate[0] is x:
            return x, [g.producer, *gate[1]]
    return None


@register_pass("fuse_hard_swish", "x*relu6(x+3)/6 and x*HardSigmoid(x) written out -> HardSwish")
def fuse_hard_swish(graph: Graph, ctx: PassContext) -> bool:
    gone: set[int] = set()
    count = 0
    for y in list(graph.nodes):
        if id(y) in gone or y.op not in ("Mul", "Div"):
            continue
        found = match(graph, y)
        if found is None:
            continue
        x, inner = found
        graph.replace_node(y, graph.insert_before(y, "HardSwish", [x], name=f"{y.name}_hard_swish"))
        for n in inner:                         # consumers first: each is unused once the last went
            graph.erase_node(n)
        gone.update(id(n) for n in inner)
        count += 1
    if count:
        ctx.log.append(f"fuse_hard_swish: {count} hard-swish pattern(s) -> HardSwish")
    return bool(count)


# ---- the other direction: HardSwish written out of ops with int16 kernels ----------------------

def _constant(graph: Graph, name: str, value: float, like: Value) -> Value:
    return graph.add_constant(name, np.array(value, dtype=like.dtype))


@register_pass("decompose_hard_swish",
               "HardSwish -> Mul(x, Add(x, 3) relu6) and a Mul by 1/6 (int16: TFLM has no int16 HARD_SWISH)")
def decompose_hard_swish(graph: Graph, ctx: PassContext) -> bool:
    """HardSwish(x) = x * relu6(x + 3) / 6 out of ops TFLite Micro has int16 kernels for (ADD
    with a fused RELU6, MUL); the driver runs it under `--activations int16`, where the int8
    HARD_SWISH kernel would keep the node int8 between two QUANTIZE ops. Run before
    fold_affine, which folds the Mul by 1/6 into the next Conv / Gemm when that is the
    product's only reader (the product then carries 6 * hardswish(x), same relative precision).

        Before: %y = HardSwish(%x)
        After:  %g = Add(%x, 3) clamp=[0, 6]; %m = Mul(%x, %g); %y = Mul(%m, 1/6)
    """
    count = 0
    for h in [n for n in graph.nodes if n.op == "HardSwish"]:
        x = h.inputs[0]
        add = graph.insert_before(h, "Add", [x, _constant(graph, f"{h.name}_three", 3.0, x)],
                                  name=f"{h.name}_gate")
        set_clamp(add, *RELU6)
        mul = graph.insert_before(h, "Mul", [x, add.outputs[0]], name=f"{h.name}_product")
        sixth = graph.insert_before(h, "Mul", [mul.outputs[0], _constant(graph, f"{h.name}_sixth", 1.0 / 6.0, x)],
                                    name=f"{h.name}_sixth")
        graph.replace_node(h, sixth)
        count += 1
    if count:
        ctx.log.append(f"decompose_hard_swish: {count} HardSwish -> Add (relu6) / Mul / Mul by 1/6")
    return bool(count)
