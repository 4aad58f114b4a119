"""Requantize -> QUANTIZE: TFLM's integer-to-integer QUANTIZE (reference Requantize).

The quantizer emits Requantize around a Softmax over more than 511 classes, which it
routes through int16 (int16 -> int8 after it, int8 -> int16 before it on the widest
path; qcompiler/quant/wide_softmax.py). It is elementwise: the output keeps the input's layout.
"""
from __future__ import annotations

from qcompiler.errors import BackendError
from qcompiler.ir import Node

from qcompiler.backends.tflite.lower_core import LoweringContext, lowering

INTEGER_TYPES = ("int8", "int16")


@lowering("Requantize")
def lower_requantize(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    for v in (x, y):
        if v.dtype.name not in INTEGER_TYPES or v.quant is None or v.quant.scale.size != 1:
            raise BackendError(f"node {node.name} (Requantize): {v.name} must be a per-tensor quantized "
                               f"int8 or int16 tensor for TFLite QUANTIZE; got {v.dtype.name} {v.quant!r}")
    ctx.op("QUANTIZE", [ctx.get(x)], [ctx.define(y, ctx.perm(x))])
