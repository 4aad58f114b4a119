"""PAD / PADV2, STRIDED_SLICE and SPLIT parameters. The data-movement ops copy raw int8
values (Pad fills with an int8 value too), so input and output parameters must agree
(`require_same_quant`); Reshape, Flatten, Squeeze, Unsqueeze, Identity, Transpose and Concat
have no numbers beyond the IR's shapes and attributes."""
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


@dataclass(frozen=True, eq=False)
class SliceParams(QopParams):
    """Slice (STRIDED_SLICE): per axis, the first index taken, the step and the count taken
    (numpy / ONNX clamping of starts and ends already applied; untouched axes: 0, 1, full)."""

    begin: tuple[int, ...]
    step: tuple[int, ...]
    count: tuple[int, ...]


def slice_params(node: Node, shape=None, values: list | None = None) -> SliceParams:
    """`shape` / `values`: a kernel's runtime input shape and operands (default: the IR's)."""
    shape = in_shape(node, shape)
    rank = len(shape)
    starts = int_list(node, 1, "starts", values, "starts")
    ends = int_list(node, 2, "ends", values, "ends")
    axes = int_list(node, 3, "axes", values, "axes") or list(range(len(starts)))
    steps = int_list(node, 4, None, values, "steps") or [1] * len(starts)
    begin, step, count = [0] * rank, [1] * rank, list(shape)
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise GraphError(f"node {node.name} (Slice): step 0 on axis {a}")
        picked = range(*slice(s, e, st).indices(shape[a % rank]))
        begin[a % rank], step[a % rank], count[a % rank] = picked.start, st, len(picked)
    return SliceParams(tuple(begin), tuple(step), tuple(count))


@dataclass(frozen=True, eq=False)
class SplitParams(QopParams):
    """Split (SPLIT / SPLIT_V): the axis and each output's length along it."""

    axis: int
    sizes: tuple[int, ...]


def split_params(node: Node, shape=None, values: list | None = None) -> SplitParams:
    """Given sizes, or equal parts with the last one smaller (ONNX's rule)."""
    shape = in_shape(node, shape)
    axis = int(node.attrs.get("axis", 0)) % len(shape)
    sizes = int_list(node, 1, "split", values, "split")
    n, dim = len(node.outputs), shape[axis]
    if not sizes:
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if sum(sizes) != dim or len(sizes) != n:
        raise GraphError(f"node {node.name} (Split): sizes {sizes} do not split {dim} into {n} outputs")
    return SplitParams(axis, tuple(int(s) for s in sizes))
