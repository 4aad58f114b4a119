"""Quantized IR (ONNX ops, NCHW) -> TflModel (TFLite builtins, NHWC).

Lowering is a table, `LOWERINGS: ONNX op -> fn(ctx, node)`, filled by the
sibling modules (lower_conv, lower_pool, lower_eltwise, lower_shape, lower_quant); the
layout machinery is in lower_core. This module picks the graph I/O layouts,
walks the graph and adds the I/O conversions of the `io` mode:

* ``io="int8"`` (default): int8 inputs and outputs, as quantized;
* ``io="float"``: float32 inputs and outputs, QUANTIZE / DEQUANTIZE inside the
  model (TFLM's QUANTIZE rounds x / scale in float32, half away from zero);
* ``input_dtype="uint8"`` (with int8 I/O): uint8 inputs with the same scale and
  the zero point + 128, converted by TFLM's exact uint8 -> int8 QUANTIZE
  (a XOR with 0x80) -- camera pixels go in unchanged.

Graph I/O layouts: rank-4 tensors are NHWC, except an input consumed only by
Transposes (or an output produced by one), which keeps the ONNX order: the
model then already works in that order. A rank-3 tensor feeding only 1-D
convolutions is NWC.
"""
from __future__ import annotations

from dataclasses import dataclass

from qcompiler.errors import BackendError, UnsupportedOpError, require_ops
from qcompiler.ir import Graph, Value
from qcompiler.interp import WHY_NO_INT_KERNEL
from qcompiler.ir.activation import clamp_of

from qcompiler.backends.tflite import lower_conv, lower_eltwise, lower_pool, lower_quant, lower_shape
from qcompiler.backends.tflite.flatbuffer import TflModel, TflTensor
from qcompiler.backends.tflite.lower_core import (FUSED_ACTIVATIONS, LOWERINGS, NWC, LoweringContext, by_range,
                                                  default_perm, identity, layout_name, permute, quant_kw, unfusable)

# importing these fills LOWERINGS (each registers its ops with @lowering)
LOWERING_MODULES = (lower_conv, lower_eltwise, lower_pool, lower_quant, lower_shape)
IO_MODES = ("int8", "float")
INPUT_DTYPES = ("int8", "uint8")


@dataclass
class Lowered:
    model: TflModel
    io_layouts: dict[str, str]  # ONNX I/O name -> "NHWC" / "NWC" / "same"


def check_supported(graph: Graph) -> None:
    """Raise one UnsupportedOpError listing every op (with its nodes) TFLite cannot take."""
    require_ops(graph.nodes, LOWERINGS, "the model (TFLite backend)", WHY_UNSUPPORTED)
    clamps = [unfusable(n) for n in graph.nodes if clamp_of(n) not in FUSED_ACTIVATIONS and not by_range(clamp_of(n))]
    if clamps:
        raise UnsupportedOpError(clamps, "the model (TFLite backend)")


# why TFLite refuses an op that another target lowers (the int8 reference's gaps, since every
# TFLite op here must be bit-exact with it); LRN only without the default decompose_lrn pass
WHY_UNSUPPORTED = {op: why for op, why in WHY_NO_INT_KERNEL.items() if op not in LOWERINGS}


def _io_perm(graph: Graph, v: Value, is_input: bool) -> tuple[int, ...]:
    rank = len(v.shape)
    if is_input:
        users = v.consumers
        if users and all(u.op == "Transpose" for u in users):
            return identity(rank)
        if rank == 3 and users and all(u.op == "Conv" and u.inputs[0] is v for u in users):
            return NWC
    else:
        p = v.producer
        if p is not None and p.op == "Transpose":
            return identity(rank)
        if rank == 3 and p is not None and p.op == "Conv":
            return NWC
    return default_perm(rank)


def _check_options(io: str, input_dtype: str) -> None:
    if io not in IO_MODES:
        raise BackendError(f"--io {io!r}: choose one of {', '.join(IO_MODES)}")
    if input_dtype not in INPUT_DTYPES:
        raise BackendError(f"--input-dtype {input_dtype!r}: choose one of {', '.join(INPUT_DTYPES)}")
    if io == "float" and input_dtype != "int8":
        raise BackendError("--input-dtype uint8 needs --io int8 (with --io float the input is float32)")


def _wrap_input(ctx: LoweringContext, v: Value, perm, io: str, input_dtype: str) -> int:
    """The model's input tensor for graph input v, converted into v's int8 tensor."""
    q = v.quant
    if q is None or q.scale.size != 1:
        raise BackendError(f"graph input {v.name} must be per-tensor quantized")
    inner = ctx.define(v, perm)
    if io == "int8" and input_dtype == "int8":
        return inner
    ctx.tensors[inner].name = f"{v.name}_int8"
    shape = permute(v.shape, perm)
    if io == "float":
        outer = ctx.add(TflTensor(v.name, shape, "float32"))
    else:  # uint8 with the same scale, zero point + 128: TFLM's exact XOR 0x80 path
        outer = ctx.add(TflTensor(v.name, shape, "uint8", scale=[float(q.scale[0])],
                                  zero_point=[int(q.zero_point[0]) + 128]))
    ctx.op("QUANTIZE", [outer], [inner])
    return outer


def _wrap_output(ctx: LoweringContext, v: Value, perm, io: str, taken: set[int]) -> int:
    """The model's output tensor for graph output v (a copy if it would be reused)."""
    if v.is_constant:
        raise BackendError(f"graph output {v.name} is a constant; TFLite outputs must be computed")
    idx = ctx.get(v, perm)
    if idx in taken:  # an input or an earlier output: outputs need their own tensor
        copy = ctx.add(TflTensor(v.name, permute(v.shape, perm), v.dtype.name, **quant_kw(v.quant)))
        ctx.reshape(idx, copy, permute(v.shape, perm))
        idx = copy
    taken.add(idx)
    ctx.tensors[idx].name = v.name  # (an aliased tensor may carry its producer's name)
    if io == "float":
        ctx.tensors[idx].name = f"{v.name}_int8"
        out = ctx.add(TflTensor(v.name, permute(v.shape, perm), "float32"))
        ctx.op("DEQUANTIZE", [idx], [out])
        return out
    return idx


def lower(graph: Graph, description: str = "qcc", io: str = "int8", input_dtype: str = "int8") -> Lowered:
    """Lower a quantized graph; one error lists every unsupported op."""
    _check_options(io, input_dtype)
    check_supported(graph)
    perms = {id(v): _io_perm(graph, v, True) for v in graph.inputs}
    perms.update({id(v): _io_perm(graph, v, False) for v in graph.outputs})
    ctx = LoweringContext(graph, perms)
    inputs = [_wrap_input(ctx, v, perms[id(v)], io, input_dtype) for v in graph.inputs]
    for node in graph.nodes:
        LOWERINGS[node.op](ctx, node)
    taken = {ctx.homes[id(v)][0] for v in graph.inputs}
    outputs = [_wrap_output(ctx, v, perms[id(v)], io, taken) for v in graph.outputs]
    layouts = {v.name: layout_name(len(v.shape), perms[id(v)]) for v in graph.inputs + graph.outputs}
    model = TflModel(ctx.tensors, ctx.ops, inputs, outputs, description=description)
    return Lowered(model, layouts)


def lower_graph(graph: Graph, description: str = "qcc", **io) -> TflModel:
    """The TflModel alone (see `lower` for the options)."""
    return lower(graph, description, **io).model
