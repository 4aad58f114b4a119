"""HardSigmoid becomes an affine map and the clamp [0, 1].

    HardSigmoid(x; alpha, beta) = clamp(alpha * x + beta, 0, 1)

int8 runtimes have no HardSigmoid kernel (TFLite has none), but every op can end in a clamp:
the fused clamp `attrs["clamp"] = [0, 1]` (qcompiler/ir/activation.py), which a scheme whose
runtime has no such fused activation realizes by the output's int8 range (the quantizer gives
that tensor exactly [0, 1], see qcompiler/quant/scheme.py). Two forms:

* x = Conv / Gemm(input, W, b) read only by the HardSigmoid (a squeeze-excite gate): the
  affine map folds into the weights, per output channel,

      alpha * (W * input + b) + beta = (alpha * W) * input + (alpha * b + beta)

      Before: %x = Conv(%s, W, b); %y = HardSigmoid(%x) alpha=1/6 beta=1/2
      After:  %y = Conv(%s, W/6, b/6 + 1/2) clamp=[0, 1]

* anything else: an explicit Mul and Add, the Add (or the Mul, when beta = 0) with the clamp;
  alpha = 1 needs no Mul.

      Before: %y = HardSigmoid(%x) alpha=0.2 beta=0.5
      After:  %m = Mul(%x, 0.2); %y = Add(%m, 0.5) clamp=[0, 1]

Run fuse_hard_swish first: x * HardSigmoid(x; 1/6, 1/2) is a HardSwish.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import has_activation, set_clamp
from qcompiler.ir.pass_manager import PassContext, register_pass
from qcompiler.ir.rewrite import set_weight_and_bias, sole_use


def _params(node: Node) -> tuple[float, float]:
    return float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))


def _foldable(graph: Graph, h: Node) -> Node | None:
    """The Conv / Gemm producing h's input when the affine map may go into its weights."""
    x = h.inputs[0]
    p = x.producer
    if p is None or not sole_use(graph, x, h) or has_activation(p):
        return None
    if p.op == "Gemm":
        if int(p.attrs.get("transB", 0)) != 1 or int(p.attrs.get("transA", 0)) != 0 \
                or float(p.attrs.get("alpha", 1.0)) != 1.0 or float(p.attrs.get("beta", 1.0)) != 1.0:
            return None
    elif p.op != "Conv":
        return None
    w, b = p.input(1), p.input(2)
    if w is None or not w.is_constant or (b is not None and not b.is_constant):
        return None
    return p


def _fold(graph: Graph, h: Node, p: Node) -> None:
    alpha, beta = _params(h)
    w = p.input(1).data.astype(np.float64)
    b = p.input(2).data.astype(np.float64) if p.input(2) is not None else np.zeros(w.shape[0])
    set_weight_and_bias(graph, p, alpha * w, alpha * b + beta)
    set_clamp(p, 0.0, 1.0)
    graph.bypass_node(h)


def _explicit(graph: Graph, h: Node) -> None:
    alpha, beta = _params(h)
    v = h.inputs[0]
    last = None
    if alpha != 1.0:
        last = graph.insert_before(h, "Mul", [v, graph.add_constant(f"{h.name}_alpha", np.float32(alpha))],
                                   name=f"{h.name}_mul")
        v = last.outputs[0]
    if beta != 0.0 or last is None:
        last = graph.insert_before(h, "Add", [v, graph.add_constant(f"{h.name}_beta", np.float32(beta))],
                                   name=f"{h.name}_add")
    set_clamp(last, 0.0, 1.0)
    graph.replace_node(h, last)


@register_pass("lower_hard_sigmoid", "HardSigmoid -> affine folded into its Conv/Gemm (else Mul+Add) + clamp [0, 1]")
def lower_hard_sigmoid(graph: Graph, ctx: PassContext) -> bool:
    folded = explicit = 0
    for h in [n for n in graph.nodes if n.op == "HardSigmoid"]:
        p = _foldable(graph, h)
        if p is not None:
            _fold(graph, h, p)
            folded += 1
        else:
            _explicit(graph, h)
            explicit += 1
    if folded or explicit:
        ctx.log.append(f"lower_hard_sigmoid: {folded} folded into their Conv/Gemm, {explicit} as Mul/Add, "
                       "each with the clamp [0, 1]")
    return bool(folded or explicit)
