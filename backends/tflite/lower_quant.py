"""Requantize -> QUANTIZE: TFLM's integer-to-integer QUANTIZE (reference Requantize).

The quantizer emits Requantize around a Softmax over more than 511 classes, which it
routes through int16 (int16 -> int8 after it, int8 -> int16 before it on the widest
path; qcompiler/quant/wide_softmax.py), and at the borders of int16 layers in a mixed model
(qcompiler/quant/precision.py). It is elementwise: the output keeps the input's layout.

When the int16 copy's one reader is a Conv TFLite pads explicitly (ONNX pads SAME cannot
express), the int8 tensor is padded first and the padded tensor converted: the PAD of the
int16 copy would keep two int16 copies alive at once.
"""
from __future__ import annotations

from qcompiler.errors import BackendError
from qcompiler.ir import Node, Value

from qcompiler.backends.tflite.lower_conv import explicit_pad, explicit_pads
from qcompiler.backends.tflite.lower_core import NHWC, LoweringContext, lowering

INTEGER_TYPES = ("int8", "int16")


@lowering("Requantize")
def lower_requantize(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    for v in (x, y):
        if v.dtype.name not in INTEGER_TYPES or v.quant is None or v.quant.scale.size != 1:
            raise BackendError(f"node {node.name} (Requantize): {v.name} must be a per-tensor quantized "
                               f"int8 or int16 tensor for TFLite QUANTIZE; got {v.dtype.name} {v.quant!r}")
    reader = _padded_conv_reader(ctx, x, y)
    if reader is not None:
        _pad_then_widen(ctx, reader, x, y)
        return
    ctx.op("QUANTIZE", [ctx.get(x)], [ctx.define(y, ctx.perm(x))])


def _padded_conv_reader(ctx: LoweringContext, x: Value, y: Value) -> Node | None:
    """The one Conv reading the int16 copy `y` of int8 `x`, when it pads explicitly."""
    if (x.dtype.name, y.dtype.name) != ("int8", "int16") or ctx.is_output(y) or len(y.consumers) != 1:
        return None
    conv = y.consumers[0]
    if conv.op != "Conv" or conv.inputs[0] is not y or explicit_pads(conv) is None:
        return None
    return conv


def _pad_then_widen(ctx: LoweringContext, conv: Node, x: Value, y: Value) -> None:
    """PAD the int8 tensor (with its zero point, i.e. 0.0), then QUANTIZE the padded tensor to int16
    for `conv`: the int16 copy exists only padded. Padding after the conversion keeps two int16
    copies alive at once (ddddocr_det's stride-2 conv at 104x104: 2.08 + 2.10 MB); before it,
    an int8 and an int16 one (1.05 + 2.10 MB). Same values: the int16 zero point is 0."""
    begins, ends = explicit_pads(conv)
    padded8 = explicit_pad(ctx, conv, x, ctx.get(x, NHWC), x.shape[2:], begins, ends, None)
    padded16 = ctx.scratch(f"{conv.name}_padded_int16", ctx.tensors[padded8].shape, y)
    ctx.op("QUANTIZE", [padded8], [padded16])
    ctx.prepadded[id(y)] = padded16
