"""Data movement -> TFLite: reshapes, Transpose, Concat, Pad, Slice, Split.

These ops copy raw int8 values (the quantizer gives inputs and outputs one
parameter set), so they never requantize. They are where layouts matter
most:

* a reshape keeps the input's layout when its byte order allows (merging or
  splitting axes that are stored adjacent and in ONNX order), so a NHWC
  tensor flattened from [N, C, 1, 1] or split into channel groups needs no
  TRANSPOSE; a flatten feeding only FULLY_CONNECTED layers permutes their
  weight columns instead;
* a Transpose is free: its output simply takes the permuted layout of the
  same tensor (a later consumer transposes only if it needs another order);
* axis attributes (Concat, Split, Slice, Pad) are remapped through the layout.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.ir import Node, Value
from qcompiler.numerics.qops import pad_params

from qcompiler.backends.tflite.lower_conv import strided_slice
from qcompiler.backends.tflite.lower_core import (LoweringContext, identity, lowering, permute, reshape_perm, same_order)
from qcompiler.backends.tflite.lower_pool import const_list


def _emit_reshape(ctx: LoweringContext, src: int, y: Value, perm) -> None:
    shape = permute(y.shape, perm)
    if ctx.tensors[src].shape == shape and not ctx.is_output(y):
        ctx.alias(y, src, perm)  # same bytes, same shape: nothing to do
    else:
        ctx.reshape(src, ctx.define(y, perm), shape)


def _feeds_only_fc(ctx: LoweringContext, y: Value) -> bool:
    return (len(y.shape) == 2 and bool(y.consumers) and not ctx.is_output(y)
            and all(c.op == "Gemm" and c.inputs[0] is y and y not in c.inputs[1:] for c in y.consumers))


def _flatten_for_fc(ctx: LoweringContext, x: Value, y: Value) -> bool:
    """Flatten [N, ...] -> [N, K] in the stored order; the Gemms permute their columns."""
    px = ctx.perm(x)
    if not (_feeds_only_fc(ctx, y) and len(x.shape) >= 3 and px[0] == 0 and y.shape[0] == x.shape[0]):
        return False
    k = int(np.prod(x.shape[1:]))
    columns = np.arange(k).reshape(x.shape[1:]).transpose([p - 1 for p in px[1:]]).reshape(-1)
    ctx.reshape(ctx.get(x), ctx.define(y, (0, 1)), y.shape)
    ctx.fc_columns[id(y)] = columns
    return True


@lowering("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def lower_reshape(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    px, want = ctx.perm(x), ctx.preferred(y)
    py = reshape_perm(x.shape, px, y.shape, prefer=want)
    if py is not None and (not ctx.is_output(y) or same_order(y.shape, py, want)):
        _emit_reshape(ctx, ctx.get(x), y, py)
        return
    if py is None and _flatten_for_fc(ctx, x, y):
        return
    # reorder the input so that the reshape lands in the wanted layout (one TRANSPOSE)
    need = reshape_perm(y.shape, want, x.shape, prefer=px)
    if need is None:
        want, need = identity(len(y.shape)), identity(len(x.shape))
    _emit_reshape(ctx, ctx.get(x, need), y, want)


@lowering("Transpose")
def lower_transpose(ctx: LoweringContext, node: Node):
    """No op: y = x.transpose(P) is stored in x's tensor under layout P^-1 o layout(x)."""
    x, y = node.inputs[0], node.outputs[0]
    perm = [int(p) for p in node.attrs.get("perm", range(len(x.shape))[::-1])]
    ctx.alias(y, ctx.get(x), tuple(perm.index(a) for a in ctx.perm(x)))


CONCAT_MAX_INPUTS = 10  # TFLM's concatenation kernel (kMaxInputNum) refuses more


def _concat(ctx: LoweringContext, name: str, ins: list[int], out: int, axis: int, like: Value) -> None:
    """CONCATENATION of any number of inputs: partial concatenations of at most 10 inputs
    first (a copy with shared parameters, so the result is the same bytes)."""
    while len(ins) > CONCAT_MAX_INPUTS:
        parts = []
        for k in range(0, len(ins), CONCAT_MAX_INPUTS):
            chunk = ins[k:k + CONCAT_MAX_INPUTS]
            if len(chunk) == 1:
                parts.append(chunk[0])
                continue
            shape = list(ctx.tensors[chunk[0]].shape)
            shape[axis] = sum(ctx.tensors[i].shape[axis] for i in chunk)
            part = ctx.scratch(f"{name}_part{len(parts)}", shape, like)
            ctx.op("CONCATENATION", chunk, [part], axis=axis)
            parts.append(part)
        ins = parts
    ctx.op("CONCATENATION", ins, [out], axis=axis)


@lowering("Concat")
def lower_concat(ctx: LoweringContext, node: Node):
    y = node.outputs[0]
    rank = len(y.shape)
    perm = ctx.common_perm(node, rank)
    ins = [ctx.operand(v, rank, perm) for v in node.inputs]
    axis = perm.index(int(node.attrs["axis"]) % rank)
    _concat(ctx, node.name, ins, ctx.define(y, perm), axis, y)


# ---- Pad -------------------------------------------------------------------------------

@lowering("Pad")
def lower_pad(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    p = pad_params(node)     # the integer reference's pads and fill value
    rank = len(x.shape)
    begin, end = p.before, p.after
    perm = ctx.perm(x)
    src = ctx.get(x)
    if any(d < 0 for d in begin + end):  # negative pads crop (first, as the reference does)
        lo = [max(-begin[a], 0) for a in perm]
        hi = [x.shape[a] - max(-end[a], 0) for a in perm]
        cropped = ctx.scratch(f"{node.name}_cropped", [h - l for l, h in zip(lo, hi)], x)
        strided_slice(ctx, f"{node.name}_crop", src, cropped, lo, hi, [1] * rank)
        src = cropped
    paddings = ctx.int32(f"{node.name}_paddings", [[max(begin[a], 0), max(end[a], 0)] for a in perm])
    out = ctx.define(y, perm)
    if p.fill == int(y.quant.zero_point[0]):
        ctx.op("PAD", [src, paddings], [out])
    else:
        value = ctx.const(f"{node.name}_value", np.array([p.fill], y.dtype), y.quant)
        ctx.op("PADV2", [src, paddings, value], [out])


# ---- Slice / Split ---------------------------------------------------------------------

@lowering("Slice")
def lower_slice(ctx: LoweringContext, node: Node):
    """STRIDED_SLICE over the selected indices (exact ends, so no clamping rules differ)."""
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    starts, ends = const_list(node, 1, "starts"), const_list(node, 2, "ends")
    axes = const_list(node, 3, "axes") or list(range(len(starts)))
    steps = const_list(node, 4, None) or [1] * len(starts)
    begin, end, stride = [0] * rank, list(x.shape), [1] * rank
    end_mask_axes = set()
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= rank
        picked = range(*slice(s, e, st).indices(x.shape[a]))
        if len(picked) == 0:
            raise BackendError(f"node {node.name}: Slice selects nothing on axis {a}")
        begin[a], stride[a] = picked[0], st
        end[a] = picked[-1] + (1 if st > 0 else -1)
        if end[a] < 0:  # a negative stride down to index 0: TFLite would read -1 as "last"
            end_mask_axes.add(a)
            end[a] = 0
    perm = ctx.perm(x)
    mask = sum(1 << i for i, a in enumerate(perm) if a in end_mask_axes)
    strided_slice(ctx, node.name, ctx.get(x), ctx.define(y, perm), permute(begin, perm),
                  permute(end, perm), permute(stride, perm), end_mask=mask)


def split_sizes(node: Node, dim: int) -> list[int]:
    sizes = const_list(node, 1, "split")
    if not sizes:  # equal parts, the last one smaller (as the reference splits)
        n = len(node.outputs)
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    if sum(sizes) != dim:
        raise BackendError(f"node {node.name}: Split sizes {sizes} do not sum to {dim}")
    return sizes


@lowering("Split")
def lower_split(ctx: LoweringContext, node: Node):
    x = node.inputs[0]
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", 0)) % rank
    sizes = split_sizes(node, x.shape[axis])
    perm = ctx.perm(x)
    tfl_axis = ctx.int32(f"{node.name}_axis", perm.index(axis))
    outs = [ctx.define(v, perm) for v in node.outputs]
    n = len(outs)
    if len(set(sizes)) == 1:
        ctx.op("SPLIT", [tfl_axis, ctx.get(x)], outs, num_splits=n)
    else:
        ctx.op("SPLIT_V", [ctx.get(x), ctx.int32(f"{node.name}_sizes", sizes), tfl_axis], outs,
               num_splits=n)
