"""Quantized IR -> a Relax IRModule of integer tensor ops, lowered by op table.

`lower_graph(graph)` builds one Relax function `main(inputs..., params...)`:
the graph inputs (int8, NCHW as in the IR) come first, then every compile-time
array (weights, biases, per-channel multipliers and shifts, lookup tables) as a
named parameter. `bind_params` turns the parameters into embedded constants
for the build; the unbound form is what `<name>.py` shows.

    lowered = lower_graph(comp.quant_graph)
    mod = bind_params(lowered)          # main(inputs...) with constants
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from qcompiler.errors import BackendError, require_ops
from qcompiler.interp import WHY_NO_INT_KERNEL
from qcompiler.numerics.qops import require_same_quant
from qcompiler.ir import Graph, Node, Value

from qcompiler.backends.tvm.intmath import RelaxEmitter, dtype_of, shape_of
from qcompiler.backends.tvm.lower_movement import MOVEMENT_LOWERINGS
from qcompiler.backends.tvm.lower_ops import COMPUTE_LOWERINGS
from qcompiler.backends.tvm.lower_softmax import SOFTMAX_LOWERINGS

R = relax.op


# ---- data movement: raw int8 values copied, so parameters must agree (as the reference) ------

def reshape_like_output(lw, node):
    """Reshape / Flatten / Squeeze / Unsqueeze / Identity: the output's static shape."""
    require_same_quant(node)
    return [lw.em.emit(R.reshape(lw.value(node.inputs[0]), lw.out_shape(node)))]


def transpose(lw, node):
    require_same_quant(node)
    x = lw.value(node.inputs[0])
    perm = node.attrs.get("perm")
    perm = list(reversed(range(len(shape_of(x))))) if perm is None else [int(p) for p in perm]
    return [lw.em.emit(R.permute_dims(x, perm))]


def concat(lw, node):
    for i in range(len(node.inputs)):
        require_same_quant(node, i)
    return [lw.em.emit(R.concat([lw.value(v) for v in node.inputs], axis=int(node.attrs["axis"])))]


SHAPE_LOWERINGS = {
    **{op: reshape_like_output for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")},
    "Transpose": transpose, "Concat": concat,
}

# op name -> fn(Lowering, Node) -> [relax expr per output]
LOWERINGS = {**COMPUTE_LOWERINGS, **SHAPE_LOWERINGS, **MOVEMENT_LOWERINGS, **SOFTMAX_LOWERINGS}
SUPPORTED_OPS = tuple(sorted(LOWERINGS))


# ---- driver ---------------------------------------------------------------------------------

@dataclass
class Lowered:
    """A lowered graph: the unbound module, its parameter arrays and what it was made of."""

    mod: tvm.IRModule
    params: dict[str, np.ndarray]
    input_vars: list[str]
    ops: Counter = field(default_factory=Counter)


class Lowering:
    """Per-graph lowering state: the emitter and the Relax expression of each IR value."""

    def __init__(self, em: RelaxEmitter, graph: Graph):
        self.em = em
        self.graph = graph
        self.env: dict[int, relax.Expr] = {}

    def value(self, v: Value) -> relax.Expr:
        """The Relax expression of an IR value; constants become named parameters."""
        if id(v) not in self.env:
            if not v.is_constant:
                raise BackendError(f"value {v.name} is used before it is computed")
            self.env[id(v)] = self.em.array(np.asarray(v.data), v.name)
        return self.env[id(v)]

    def out_shape(self, node: Node, index: int = 0) -> tuple[int, ...]:
        shape = node.outputs[index].shape
        if shape is None:
            raise BackendError(f"node {node.name} ({node.op}): output {node.outputs[index].name} "
                               "has no static shape (run shape inference / fix --input-shape)")
        return shape

    def bind(self, node: Node, outs: list) -> None:
        """Record a node's lowered outputs after checking them against the IR's types."""
        for v, expr in zip(node.outputs, outs, strict=True):
            if v.shape is not None and shape_of(expr) != tuple(v.shape):
                raise BackendError(f"node {node.name} ({node.op}): lowered to shape {shape_of(expr)}, "
                                   f"the IR says {v.shape}")
            if dtype_of(expr) != np.dtype(v.dtype).name:
                raise BackendError(f"node {node.name} ({node.op}): lowered to {dtype_of(expr)}, "
                                   f"the IR says {np.dtype(v.dtype).name}")
            self.env[id(v)] = expr


# why TVM refuses an op another target lowers: it is bit-exact with the integer reference,
# so the reference's gaps are its gaps, in the quantizer's words (`qcc inspect` lists each
# once); LRN only without the default decompose_lrn pass
WHY_UNSUPPORTED = {op: why for op, why in WHY_NO_INT_KERNEL.items() if op not in LOWERINGS}


def check_supported(graph: Graph) -> None:
    """Raise UnsupportedOpError listing every op without a lowering (all at once)."""
    require_ops(graph.nodes, LOWERINGS, f"graph {graph.name} for target tvm "
                f"(supported: {', '.join(SUPPORTED_OPS)})", WHY_UNSUPPORTED)


def lower_graph(graph: Graph) -> Lowered:
    """Build `main(inputs..., params...)` from a quantized graph (static shapes, int8 / int16 NCHW)."""
    check_supported(graph)
    bb = relax.BlockBuilder()
    em = RelaxEmitter(bb)
    inputs = []
    for v in graph.inputs:
        if v.shape is None:
            raise BackendError(f"graph input {v.name} has no static shape; pass --input-shape")
        inputs.append(relax.Var(em.unique(v.name), relax.TensorType(v.shape, np.dtype(v.dtype).name)))
    lw = Lowering(em, graph)
    for v, var in zip(graph.inputs, inputs):
        lw.env[id(v)] = var
    with bb.function("main"):
        with bb.dataflow():
            for node in graph.nodes:
                em.out_dtype = np.dtype(node.outputs[0].dtype).name
                lw.bind(node, LOWERINGS[node.op](lw, node))
            results = [lw.value(v) for v in graph.outputs]
            out = bb.emit_output(results[0] if len(results) == 1 else relax.Tuple(results))
        bb.emit_func_output(out, params=inputs + em.param_vars)
    mod = relax.transform.Normalize()(bb.get())
    return Lowered(mod, em.params, [v.name for v in inputs], Counter(n.op for n in graph.nodes))


def bind_params(lowered: Lowered) -> tvm.IRModule:
    """`main(inputs...)` with every parameter array embedded as a constant."""
    return relax.transform.BindParams("main", lowered.params)(lowered.mod)
