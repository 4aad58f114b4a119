"""PAD / PADV2 parameters. The other data-movement ops (Reshape, Flatten, Squeeze, Unsqueeze,
Identity, Transpose, Concat, Slice, Split) copy raw int8 values and have no integer
parameters: their input and output parameters must agree (`require_same_quant`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Node
from qcompiler.numerics.qops.common import QopParams, attr_str, in_shape, int_list, operand


@dataclass(frozen=True, eq=False)
class PadParams(QopParams):
    """Constant Pad: PAD fills with the output zero point, PADV2 with any int8 `fill`."""

    fill: int
    before: tuple[int, ...]   # per axis; negative values crop (first, as ONNX does)
    after: tuple[int, ...]


def pad_params(node: Node, shape=None, values: list | None = None) -> PadParams:
    """`shape` / `values`: a kernel's runtime input shape and operands (default: the IR's)."""
    mode = attr_str(node, "mode", "constant")
    if mode != "constant":
        raise GraphError(f"node {node.name} (Pad): mode {mode!r} is not supported (constant only)")
    rank = len(in_shape(node, shape))
    pads = int_list(node, 1, "pads", values, "pads")
    axes = int_list(node, 3, None, values, "axes")
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    before, after = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        before[a], after[a] = pads[i], pads[i + len(axes)]
    q = node.outputs[0].quant or node.inputs[0].quant
    fill = int(q.zero_point[0]) if q is not None else 0
    value = operand(node, 2, values, "pad value")
    if value is not None and value.size:
        value = value.reshape(-1)[:1]
        if np.issubdtype(value.dtype, np.floating):  # a float pad value: quantize it
            value = q.quantize(value) if q is not None else value
        fill = int(value[0])   # TFLM PADV2 with an int8 constant at the output parameters
    return PadParams(fill, tuple(before), tuple(after))
