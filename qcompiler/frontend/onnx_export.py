"""IR -> ONNX (float graphs): a valid model that onnxruntime can run.

qcc-specific attributes and ops are expanded back into standard ONNX: a fused
`clamp` becomes a separate Relu / Clip node after its producer, an `Rsqrt` node
Sqrt + Reciprocal.
Used for dumping the IR after a pass and for running calibration in
onnxruntime.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcompiler.errors import GraphError
from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import ATTR as CLAMP, RELU, clamp_of

EXPORT_OPSET = 13


def _attr_value(v):
    if isinstance(v, np.ndarray):
        return numpy_helper.from_array(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def _value_info(v):
    elem = helper.np_dtype_to_tensor_dtype(v.dtype)
    return helper.make_tensor_value_info(v.name, elem, list(v.shape) if v.shape is not None else None)


def _rsqrt_protos(n: Node, ins: list, outs: list) -> list[onnx.NodeProto]:
    mid = f"{outs[0]}__sqrt"
    return [helper.make_node("Sqrt", ins, [mid], name=f"{n.name}__sqrt"),
            helper.make_node("Reciprocal", [mid], outs, name=n.name)]


def _hard_swish_protos(n: Node, ins: list, outs: list) -> list[onnx.NodeProto]:
    mid = f"{outs[0]}__hard_sigmoid"
    return [helper.make_node("HardSigmoid", ins, [mid], name=f"{n.name}__hard_sigmoid", alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", [ins[0], mid], outs, name=n.name)]


# qcc ops that ONNX lacks (from passes such as decompose_lrn) -> the ONNX nodes computing them
QCC_OPS = {"Rsqrt": _rsqrt_protos}
# ops newer than the model's opset (passes such as fuse_hard_swish make them) -> (the opset that
# has them, the same function in older ops): without this the export fails and calibration
# falls back to the (much slower) numpy interpreter
NEWER_OPS = {"HardSwish": (14, _hard_swish_protos)}


def _node_protos(graph: Graph, n: Node, initializers: list, opset: int) -> list[onnx.NodeProto]:
    attrs = {k: _attr_value(v) for k, v in n.attrs.items() if k != CLAMP}
    ins = [v.name if v is not None else "" for v in n.inputs]
    outs = [v.name for v in n.outputs]
    if n.op in QCC_OPS:
        return QCC_OPS[n.op](n, ins, outs)
    if n.op == "Split" and opset < 13 and len(ins) > 1 and n.input(1) is not None and n.input(1).is_constant:
        # the IR keeps opset-13 Split (sizes as an input, e.g. from horizontal_merge)
        attrs["split"] = [int(d) for d in np.asarray(n.input(1).data).reshape(-1)]
        ins = ins[:1]

    def op_protos(outputs: list) -> list[onnx.NodeProto]:
        if n.op in NEWER_OPS and opset < NEWER_OPS[n.op][0]:
            return NEWER_OPS[n.op][1](n, ins, outputs)
        return [helper.make_node(n.op, ins, outputs, name=n.name, **attrs)]
    clamp = clamp_of(n)
    if clamp is None:
        return op_protos(outs)
    kind = "relu" if clamp == RELU else "clip"
    pre = f"{outs[0]}__pre_{kind}"
    nodes = op_protos([pre] + outs[1:])
    if kind == "relu":
        nodes.append(helper.make_node("Relu", [pre], [outs[0]], name=f"{n.name}__relu"))
        return nodes
    bounds = {k: b for k, b in zip(("min", "max"), clamp) if np.isfinite(b)}
    if opset < 11:  # Clip bounds were attributes before opset 11
        nodes.append(helper.make_node("Clip", [pre], [outs[0]], name=f"{n.name}__clip", **bounds))
        return nodes
    names = [f"{n.name}__clip_{k}" if k in bounds else "" for k in ("min", "max")]
    initializers += [numpy_helper.from_array(np.array(bounds[k], np.float32), f"{n.name}__clip_{k}")
                     for k in ("min", "max") if k in bounds]
    nodes.append(helper.make_node("Clip", [pre] + names, [outs[0]], name=f"{n.name}__clip"))
    return nodes


def graph_to_onnx(graph: Graph, opset: int | None = None) -> onnx.ModelProto:
    """Export a float graph; the model passes onnx.checker."""
    if graph.meta.get("quantized"):
        raise GraphError("graph_to_onnx exports float graphs; quantized graphs go to a backend")
    opset = opset or max(int(graph.meta.get("opset", EXPORT_OPSET)), 7)
    initializers = [numpy_helper.from_array(np.asarray(v.data), v.name) for v in graph.constants()]
    nodes = []
    for n in graph.nodes:
        nodes += _node_protos(graph, n, initializers, opset)
    inner = [v for n in graph.nodes for v in n.outputs if v not in graph.outputs and v.shape is not None]
    g = helper.make_graph(nodes, graph.name, [_value_info(v) for v in graph.inputs],
                          [_value_info(v) for v in graph.outputs], initializers,
                          value_info=[_value_info(v) for v in inner])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="qcc")
    model.ir_version = min(model.ir_version, 8)  # loadable by older onnxruntime builds
    onnx.checker.check_model(model)
    return model
