"""Quantized IR (ONNX ops, NCHW) -> TflModel (TFLite builtins, NHWC).

Layout: every rank-4 activation becomes NHWC; weights are permuted to TFLite's
layouts (conv OHWI, depthwise 1HWO); axis attributes are remapped. A Flatten of
an NHWC tensor feeding only FULLY_CONNECTED layers is lowered without a
TRANSPOSE by permuting those layers' weight columns into HWC order.

Lowering is a table: ONNX op -> function(ctx, node). Integer values are never
changed here: every op computes what the integer reference computes in NCHW.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError, UnsupportedOpError
from qcompiler.ir import Graph, Node, Value

from .flatbuffer import TflModel, TflOperator, TflTensor

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)
AXIS_NCHW_TO_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}
LOWERINGS = {}


def lowering(*ops):
    def deco(fn):
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return deco


def _is_nhwc(v: Value) -> bool:
    return not v.is_constant and v.shape is not None and len(v.shape) == 4


def _tfl_shape(v: Value) -> tuple[int, ...]:
    return tuple(v.shape[i] for i in NCHW_TO_NHWC) if _is_nhwc(v) else tuple(v.shape)


def _quant_kw(q) -> dict:
    if q is None:
        return {}
    return {"scale": [float(s) for s in q.scale], "zero_point": [int(z) for z in q.zero_point]}


class LoweringContext:
    """Accumulates TFLite tensors and operators while walking the graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.tensors: list[TflTensor] = []
        self.ops: list[TflOperator] = []
        self.index: dict[int, int] = {}
        self.flatten_chw: dict[int, tuple[int, int, int]] = {}  # value -> (C,H,W) flattened in HWC order

    def tensor(self, v: Value) -> int:
        """Index of the TFLite tensor for an activation (created on first use)."""
        if id(v) not in self.index:
            if v.is_constant:
                raise BackendError(f"constant {v.name} needs an explicit layout (internal)")
            self.index[id(v)] = self.add(TflTensor(v.name, _tfl_shape(v), v.dtype.name, **_quant_kw(v.quant)))
        return self.index[id(v)]

    def add(self, t: TflTensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, q=None, qdim: int = 0) -> int:
        return self.add(TflTensor(name, data.shape, np.dtype(data.dtype).name, data=data,
                                  quantized_dimension=qdim, **_quant_kw(q)))

    def scratch(self, name: str, shape, like: Value) -> int:
        return self.add(TflTensor(name, tuple(shape), like.dtype.name, **_quant_kw(like.quant)))

    def op(self, opcode: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append(TflOperator(opcode, inputs, outputs, options))

    def operand(self, v: Value, out_rank: int) -> int:
        """A (possibly constant) elementwise operand, broadcast-compatible in the TFLite layout."""
        if not v.is_constant:
            return self.tensor(v)
        data = v.data
        if out_rank == 4:
            data = data.reshape((1,) * (4 - data.ndim) + data.shape).transpose(NCHW_TO_NHWC)
        return self.const(v.name, np.ascontiguousarray(data), v.quant)


# ---- padding ---------------------------------------------------------------

def _same_pads(in_size, k, stride, dilation):
    eff = (k - 1) * dilation + 1
    out = -(-in_size // stride)
    total = max((out - 1) * stride + eff - in_size, 0)
    return total // 2, total - total // 2, out


def _padding(node: Node, x: Value, kernel, strides, dilations, out_hw):
    """'SAME' / 'VALID' if the ONNX pads are one of those, else None (explicit pads)."""
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    if not any(pads):
        return "VALID"
    same = [_same_pads(x.shape[2 + i], kernel[i], strides[i], dilations[i]) for i in range(2)]
    if pads == [same[0][0], same[1][0], same[0][1], same[1][1]] and tuple(out_hw) == (same[0][2], same[1][2]):
        return "SAME"
    return None


def _explicit_pad(ctx: LoweringContext, node: Node, x: Value, pad_value: int | None) -> int:
    """PAD (zero point) or PADV2 (given value) before a VALID window op; returns the padded tensor."""
    t, l, b, r = node.attrs["pads"]
    shape = (x.shape[0], x.shape[2] + t + b, x.shape[3] + l + r, x.shape[1])
    out = ctx.scratch(f"{node.name}_padded", shape, x)
    paddings = ctx.const(f"{node.name}_paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32))
    if pad_value is None:
        ctx.op("PAD", [ctx.tensor(x), paddings], [out])
    else:
        value = ctx.const(f"{node.name}_pad_value", np.array([pad_value], np.int8), x.quant)
        ctx.op("PADV2", [ctx.tensor(x), paddings, value], [out])
    return out


def _window_geometry(node: Node, x: Value, kernel):
    strides = list(node.attrs.get("strides", [1, 1]))
    dilations = list(node.attrs.get("dilations", [1, 1]))
    out_hw = node.outputs[0].shape[2:]
    return strides, dilations, _padding(node, x, kernel, strides, dilations, out_hw)


# ---- op lowerings ----------------------------------------------------------

@lowering("Conv")
def _conv(ctx: LoweringContext, node: Node):
    x, w, b = node.input(0), node.input(1), node.input(2)
    y = node.outputs[0]
    if len(w.shape) != 4:
        raise BackendError(f"node {node.name}: only 2-D convolutions are supported by the TFLite backend")
    cout, cin_g, kh, kw = w.shape
    group = node.attrs.get("group", 1)
    strides, dilations, padding = _window_geometry(node, x, (kh, kw))
    src = ctx.tensor(x)
    if padding is None:
        src, padding = _explicit_pad(ctx, node, x, None), "VALID"
    opts = dict(padding=padding, stride_h=strides[0], stride_w=strides[1], dilation_h_factor=dilations[0],
                dilation_w_factor=dilations[1], fused_activation_function=node.attrs.get("fused_activation", "NONE"))
    if group == 1:
        wt = ctx.const(w.name, np.ascontiguousarray(w.data.transpose(0, 2, 3, 1)), w.quant, 0)
        opcode = "CONV_2D"
    elif group == x.shape[1] and cin_g == 1:
        wt = ctx.const(w.name, np.ascontiguousarray(w.data.transpose(1, 2, 3, 0)), w.quant, 3)
        opcode = "DEPTHWISE_CONV_2D"
        opts["depth_multiplier"] = cout // group
    else:
        raise BackendError(f"node {node.name}: grouped convolution (group={group}) is not supported "
                           "by the TFLite backend yet")
    inputs = [src, wt, ctx.const(b.name, b.data, b.quant, 0) if b is not None else -1]
    ctx.op(opcode, inputs, [ctx.tensor(y)], **opts)


@lowering("Gemm")
def _gemm(ctx: LoweringContext, node: Node):
    x, w, b = node.input(0), node.input(1), node.input(2)
    if node.attrs.get("transB", 0) != 1 or node.attrs.get("transA", 0):
        raise BackendError(f"node {node.name}: Gemm is not in canonical form (run normalize_gemm)")
    weight = w.data
    if id(x) in ctx.flatten_chw:  # columns in CHW order, data arrives in HWC order
        c, h, wd = ctx.flatten_chw[id(x)]
        weight = weight.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(weight.shape[0], -1)
    qdim = 0
    inputs = [ctx.tensor(x), ctx.const(w.name, np.ascontiguousarray(weight), w.quant, qdim),
              ctx.const(b.name, b.data, b.quant, 0) if b is not None else -1]
    ctx.op("FULLY_CONNECTED", inputs, [ctx.tensor(node.outputs[0])],
           fused_activation_function=node.attrs.get("fused_activation", "NONE"))


@lowering("Add", "Sub", "Mul")
def _binary(ctx: LoweringContext, node: Node):
    y = node.outputs[0]
    rank = len(y.shape)
    a, b = (ctx.operand(v, rank) for v in node.inputs[:2])
    opcode = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}[node.op]
    ctx.op(opcode, [a, b], [ctx.tensor(y)], fused_activation_function=node.attrs.get("fused_activation", "NONE"))


@lowering("MaxPool", "AveragePool", "GlobalAveragePool")
def _pool(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    if node.op == "GlobalAveragePool":
        kernel, strides, padding = x.shape[2:], [1, 1], "VALID"
    else:
        kernel = node.attrs["kernel_shape"]
        strides, dilations, padding = _window_geometry(node, x, kernel)
        if any(d != 1 for d in dilations):
            raise BackendError(f"node {node.name}: dilated pooling is not supported by TFLite")
    src = ctx.tensor(x)
    if padding is None:
        if node.op == "MaxPool":
            src = _explicit_pad(ctx, node, x, -128)
        elif node.attrs.get("count_include_pad", 0):
            src = _explicit_pad(ctx, node, x, None)
        else:
            raise BackendError(f"node {node.name}: AveragePool with asymmetric pads {node.attrs['pads']} "
                               "excluding padding from the count has no TFLite equivalent")
        padding = "VALID"
    opcode = "MAX_POOL_2D" if node.op == "MaxPool" else "AVERAGE_POOL_2D"
    ctx.op(opcode, [src], [ctx.tensor(y)], padding=padding, stride_h=strides[0], stride_w=strides[1],
           filter_height=kernel[0], filter_width=kernel[1])


@lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def _reshape(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    src = ctx.tensor(x)
    spatial_one = _is_nhwc(x) and x.shape[2] * x.shape[3] == 1
    if _is_nhwc(x) and not spatial_one:
        feeds_fc_only = (len(y.shape) == 2 and y.shape[1] == int(np.prod(x.shape[1:])) and y.consumers
                         and all(c.op == "Gemm" and c.inputs[0] is y for c in y.consumers)
                         and y not in ctx.graph.outputs)
        if feeds_fc_only:
            ctx.flatten_chw[id(y)] = tuple(x.shape[1:])
        else:
            nchw = ctx.scratch(f"{node.name}_nchw", x.shape, x)
            ctx.op("TRANSPOSE", [src, ctx.const(f"{node.name}_perm", np.array(NHWC_TO_NCHW, np.int32))], [nchw])
            src = nchw
    target = y.shape
    if _is_nhwc(y):
        dst = ctx.scratch(f"{node.name}_nchw_out", y.shape, y)
    else:
        dst = ctx.tensor(y)
    shape_t = ctx.const(f"{node.name}_shape", np.array(target, np.int32))
    ctx.op("RESHAPE", [src, shape_t], [dst], new_shape=list(target))
    if _is_nhwc(y):
        perm = ctx.const(f"{node.name}_perm_out", np.array(NCHW_TO_NHWC, np.int32))
        ctx.op("TRANSPOSE", [dst, perm], [ctx.tensor(y)])


@lowering("Softmax")
def _softmax(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    axis = node.attrs.get("axis", -1 if ctx.graph.meta.get("opset", 13) >= 13 else 1) % rank
    last = AXIS_NCHW_TO_NHWC[axis] == 3 if rank == 4 else axis == rank - 1
    coerced_2d = ctx.graph.meta.get("opset", 13) < 13 and all(d == 1 for d in x.shape[axis + 1:])
    if not (last or coerced_2d):
        raise BackendError(f"node {node.name}: Softmax over axis {axis} of a rank-{rank} tensor; TFLite "
                           "only normalizes over the innermost axis")
    ctx.op("SOFTMAX", [ctx.tensor(x)], [ctx.tensor(y)], beta=1.0)


@lowering("Relu", "Clip", "Sigmoid", "Tanh")
def _unary(ctx: LoweringContext, node: Node):
    from qcompiler.passes.fuse_activation import activation_kind
    opcode = {"Sigmoid": "LOGISTIC", "Tanh": "TANH"}.get(node.op) or activation_kind(node)
    if opcode not in ("RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH"):
        raise BackendError(f"node {node.name}: Clip bounds other than (0,6), (-1,1), (0,inf) are not "
                           "supported by the TFLite backend")
    ctx.op(opcode, [ctx.tensor(node.inputs[0])], [ctx.tensor(node.outputs[0])])


@lowering("Concat")
def _concat(ctx: LoweringContext, node: Node):
    y = node.outputs[0]
    axis = node.attrs["axis"] % len(y.shape)
    if len(y.shape) == 4:
        axis = AXIS_NCHW_TO_NHWC[axis]
    ins = [ctx.operand(v, len(y.shape)) for v in node.inputs]
    ctx.op("CONCATENATION", ins, [ctx.tensor(y)], axis=axis)


def lower_graph(graph: Graph, description: str = "qcc") -> TflModel:
    """Lower a quantized graph to a TflModel; one error lists every unsupported op."""
    missing = {}
    for n in graph.nodes:
        if n.op not in LOWERINGS:
            missing.setdefault(n.op, []).append(n.name)
    if missing:
        raise UnsupportedOpError([f"{op} (nodes: {', '.join(v[:3])})" for op, v in sorted(missing.items())],
                                 where="the model (TFLite backend)")
    ctx = LoweringContext(graph)
    inputs = [ctx.tensor(v) for v in graph.inputs]
    for node in graph.nodes:
        LOWERINGS[node.op](ctx, node)
    outputs = [ctx.tensor(v) for v in graph.outputs]
    return TflModel(ctx.tensors, ctx.ops, inputs, outputs, description=description)
