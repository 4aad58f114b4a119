"""Fold inference BatchNormalization into the preceding Conv / ConvTranspose / Gemm.

    y = gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta
      = conv(x, W * s) + (b - mean) * s + beta,   s = gamma / sqrt(var + eps)

The BN statistics are kept in the producer's `meta["bn"]` (analytic bias
correction and data-free ranges use them). A BN with nothing to fold into
becomes Mul + Add by per-channel constants, which every target can run.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import has_activation
from qcompiler.ir.pass_manager import PassContext, register_pass

from qcompiler.ir.rewrite import set_weight_and_bias


def _bn_params(bn: Node):
    consts = [bn.input(i) for i in range(1, 5)]
    if any(c is None or not c.is_constant for c in consts):
        return None
    gamma, beta, mean, var = (c.data.astype(np.float64) for c in consts)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    return gamma, beta, mean, var, eps


def _channel_axis_of_weight(producer: Node) -> int | None:
    if producer.op == "Conv":
        return 0
    if producer.op == "Gemm" and producer.attrs.get("transB", 0) == 1 and not producer.attrs.get("transA", 0):
        return 0
    if producer.op == "ConvTranspose" and producer.attrs.get("group", 1) == 1:
        return 1
    return None


def _fold_into(graph: Graph, producer: Node, bn: Node, params) -> None:
    gamma, beta, mean, var, eps = params
    scale = gamma / np.sqrt(var + eps)
    w = producer.input(1).data.astype(np.float64)
    axis = _channel_axis_of_weight(producer)
    shape = [1] * w.ndim
    shape[axis] = -1
    w = w * scale.reshape(shape)
    b0 = producer.input(2).data.astype(np.float64) if producer.input(2) is not None else 0.0
    b = (b0 - mean) * scale + beta
    set_weight_and_bias(graph, producer, w, b)
    producer.meta["bn"] = {"gamma": gamma, "beta": beta, "mean": mean, "var": var, "eps": eps}
    graph.bypass_node(bn)


def _to_scale_shift(graph: Graph, bn: Node, params) -> None:
    gamma, beta, mean, var, eps = params
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    x = bn.inputs[0]
    rank = len(x.shape)
    cshape = (-1,) + (1,) * (rank - 2)
    s = graph.add_constant(f"{bn.name}_scale", scale.astype(np.float32).reshape(cshape))
    t = graph.add_constant(f"{bn.name}_shift", shift.astype(np.float32).reshape(cshape))
    mul = graph.insert_before(bn, "Mul", [x, s], name=f"{bn.name}_mul")
    add = graph.insert_before(bn, "Add", [mul.outputs[0], t], name=f"{bn.name}_add")
    graph.replace_node(bn, add)  # the Add writes the BN's output (its unused extra outputs go)
    add.meta["bn"] = {"gamma": gamma, "beta": beta, "mean": mean, "var": var, "eps": eps}


@register_pass("fold_batchnorm", "fold BatchNormalization into Conv/ConvTranspose/Gemm, else Mul+Add")
def fold_batchnorm(graph: Graph, ctx: PassContext) -> bool:
    changed = False
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        if len(bn.outputs) > 1 and any(v.consumers for v in bn.outputs[1:]):
            continue  # training-mode outputs are used
        params = _bn_params(bn)
        if params is None:
            continue
        x = bn.inputs[0]
        p = x.producer
        foldable = (p is not None and _channel_axis_of_weight(p) is not None and p.input(1).is_constant
                    and len(x.consumers) == 1 and x not in graph.outputs
                    and not has_activation(p)
                    and (p.input(2) is None or p.input(2).is_constant))
        if foldable:
            _fold_into(graph, p, bn, params)
        elif x.shape is not None and len(x.shape) >= 2:
            _to_scale_shift(graph, bn, params)
        else:
            continue
        changed = True
    return changed
