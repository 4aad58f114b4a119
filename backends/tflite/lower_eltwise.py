"""Elementwise ops, activations and Softmax -> TFLite.

Elementwise ops work in whatever layout their inputs already have; constants
are broadcast (leading 1s, as ONNX broadcasts from the right) and stored in
that layout. Clip maps to RELU / RELU6 where the integer reference computes
exactly those, else to MINIMUM + MAXIMUM against int8 bounds quantized as the
reference does: TFLM has no int8 RELU_N1_TO_1 kernel.
"""
from __future__ import annotations

import numpy as np

from qcompiler.ir import Node
from qcompiler.numerics.qops import clip_params
from qcompiler.numerics.qops.softmax import reduced_axes, refuse_unexpanded

from qcompiler.backends.tflite.lower_core import LoweringContext, fused, lowering, nonunit_order, permute

BINARY = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL"}
UNARY = {"Relu": "RELU", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "HardSwish": "HARD_SWISH", "Rsqrt": "RSQRT"}


@lowering(*BINARY)
def lower_binary(ctx: LoweringContext, node: Node):
    y = node.outputs[0]
    rank = len(y.shape)
    perm = ctx.common_perm(node, rank)
    a, b = (ctx.operand(v, rank, perm) for v in node.inputs[:2])
    ctx.op(BINARY[node.op], [a, b], [ctx.define(y, perm)], fused_activation_function=fused(node))


@lowering("PRelu")
def lower_prelu(ctx: LoweringContext, node: Node):
    x, slope = node.inputs[:2]
    perm = ctx.perm(x)
    alpha = ctx.operand(slope, len(x.shape), perm)
    ctx.op("PRELU", [ctx.get(x), alpha], [ctx.define(node.outputs[0], perm)])


@lowering(*UNARY, "LeakyRelu")
def lower_unary(ctx: LoweringContext, node: Node):
    x = node.inputs[0]
    options = {"alpha": float(node.attrs.get("alpha", 0.01))} if node.op == "LeakyRelu" else {}
    opcode = UNARY.get(node.op, "LEAKY_RELU")
    ctx.op(opcode, [ctx.get(x)], [ctx.define(node.outputs[0], ctx.perm(x))], **options)


@lowering("Identity")
def lower_identity(ctx: LoweringContext, node: Node):
    x = node.inputs[0]
    ctx.alias(node.outputs[0], ctx.get(x), ctx.perm(x))


# ---- Clip ------------------------------------------------------------------------------

@lowering("Clip")
def lower_clip(ctx: LoweringContext, node: Node):
    """The integer reference's Clip (qops.clip_params): RELU, RELU6, or MINIMUM / MAXIMUM
    against its raw int8 bounds."""
    x, y = node.inputs[0], node.outputs[0]
    p = clip_params(node)
    perm = ctx.perm(x)
    if p.relu:
        ctx.op("RELU", [ctx.get(x)], [ctx.define(y, perm)])  # may rescale, like the reference
        return
    if p.low == 0.0 and p.high == 6.0:
        ctx.op("RELU6", [ctx.get(x)], [ctx.define(y, perm)])
        return
    steps = [(op, b) for op, b, idle in (("MINIMUM", p.act_max, 127), ("MAXIMUM", p.act_min, -128))
             if b != idle]
    src = ctx.get(x)
    if not steps:
        ctx.alias(y, src, perm)
        return
    for k, (opcode, bound) in enumerate(steps):
        last = k == len(steps) - 1
        dst = ctx.define(y, perm) if last else ctx.scratch(f"{y.name}_min", permute(y.shape, perm), y)
        const = ctx.const(f"{node.name}_{opcode.lower()}", np.array([bound], np.int8), x.quant)
        ctx.op(opcode, [src, const], [dst])
        src = dst


# ---- Softmax -------------------------------------------------------------------------------

@lowering("Softmax")
def lower_softmax(ctx: LoweringContext, node: Node):
    """SOFTMAX normalizes over the innermost TFLite axis: store the reduced axes last
    (a TRANSPOSE only if they are not already), merging several into one by RESHAPE.
    int16 input or output (the quantizer's paths for > 511 classes) lowers the same way."""
    x, y = node.inputs[0], node.outputs[0]
    refuse_unexpanded(node)
    reduced = reduced_axes(node, len(x.shape))   # the integer reference's rows
    moving = [a for a in reduced if x.shape[a] != 1]
    perm = ctx.perm(x)
    if len(moving) <= 1:  # one real axis: make it the innermost one (free if only size-1 axes move)
        axis = moving[0] if moving else reduced[-1]
        if perm[-1] != axis:
            perm = tuple(a for a in perm if a != axis) + (axis,)
        ctx.op("SOFTMAX", [ctx.get(x, perm)], [ctx.define(y, perm)], beta=1.0)
        return
    # several axes (opset < 13): softmax over the rows of a 2-D view with them innermost;
    # their order inside a row does not matter (max and sum are order-free)
    order = nonunit_order(x.shape, perm)
    if set(order[len(order) - len(moving):]) != set(moving):
        perm = tuple(a for a in perm if a not in reduced) + tuple(reduced)
    inner = int(np.prod([x.shape[a] for a in moving]))
    flat = (x.size // inner, inner)
    a, b = ctx.scratch(f"{x.name}_2d", flat, x), ctx.scratch(f"{y.name}_2d", flat, y)
    ctx.reshape(ctx.get(x, perm), a, flat)
    ctx.op("SOFTMAX", [a], [b], beta=1.0)
    ctx.reshape(b, ctx.define(y, perm), permute(y.shape, perm))
