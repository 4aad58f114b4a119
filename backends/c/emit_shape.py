"""Data movement: reshapes and Transpose as views, Concat / Pad / Slice / Split as strided
copies (qcc_copy, qcc_fill) of 1- or 2-byte elements, Resize (nearest / bilinear; int16: nearest) by
qops' index tables. A Pad with the
zero point feeding one Conv becomes that Conv's padding (no buffer, no copy).

Reshape, Flatten, Squeeze, Unsqueeze and Identity cost nothing: the output is the input's
memory under another shape. A Transpose of a value stored as a transpose of its own shape
composes the permutations and costs nothing either; a later kernel that needs another
order pays one copy (`Lowering.get`). A Slice or Split piece that is one contiguous run of
memory is a view at an offset.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.numerics import qops
from qcompiler.numerics.qops.common import int_list

from qcompiler.backends.c.layout import Layout, merge_dims
from qcompiler.backends.c.lower import VIEW_OPS, Placed, emitter


@emitter(*VIEW_OPS)
def reshape(ctx, node):
    if node.inputs[0].quant is not None and node.outputs[0].quant is not None:
        qops.require_same_quant(node)   # the values are copied as they are
    ctx.view(node.outputs[0], ctx.get(node.inputs[0]))


def _transposed_input(ctx, v) -> Placed:
    """`v` stored as a transpose of its own shape (a copy to ONNX order otherwise)."""
    src = ctx.get(v)
    return src if src.layout.is_transpose_of(v.shape) else ctx.get(v, Layout.plain(v.shape))


@emitter("Transpose")
def transpose(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    q = [int(a) % rank for a in node.attrs.get("perm", range(rank - 1, -1, -1))]
    src = _transposed_input(ctx, x)
    inv = [q.index(i) for i in range(rank)]          # y = x.transpose(q): x axis i is y axis inv[i]
    perm = tuple(inv[i] for i in src.layout.perm)
    ctx.view(y, Placed(src.buf, src.offset, Layout.transposed(y.shape, perm), src.dtype))


def _out_layout(src: Placed, shape) -> Layout:
    return Layout.transposed(shape, src.layout.perm)


@emitter("Concat")
def concat(ctx, node):
    y = node.outputs[0]
    axis = int(node.attrs["axis"]) % len(y.shape)
    first = _transposed_input(ctx, node.inputs[0])
    layout = _out_layout(first, y.shape)
    dst = ctx.define(y, layout)
    d_axis = layout.axis_strides()
    start = 0
    for v in node.inputs:
        src = ctx.get(v, Layout.transposed(v.shape, layout.perm))
        s_axis = src.layout.axis_strides()
        p = layout.perm
        ctx.strided_copy(src, dst, [v.shape[a] for a in p], [s_axis[a] for a in p], [d_axis[a] for a in p],
                         dst_offset=start * d_axis[axis])
        start += v.shape[axis]


def _fuses_into_conv(ctx, node, p) -> bool:
    """A Pad with the zero point whose one reader is a Conv, over the spatial axes only: the
    Conv's own padding (taps outside the image add nothing) computes the same, without the
    padded copy."""
    y = node.outputs[0]
    users = y.consumers
    spatial = len(y.shape) in (3, 4) and all(b == 0 and e == 0 for b, e in zip(p.before[:2], p.after[:2]))
    return (spatial and len(users) == 1 and users[0].op == "Conv" and users[0].inputs[0] is y
            and y.name not in ctx.outputs and y.quant is not None and p.fill == int(y.quant.zero_point[0])
            and all(b >= 0 for b in p.before) and all(e >= 0 for e in p.after))


@emitter("Pad")
def pad(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    p = qops.pad_params(node)
    if _fuses_into_conv(ctx, node, p):
        ctx.padded[y.name] = (x, tuple(p.before[2:]))
        return
    src = _transposed_input(ctx, x)
    layout = _out_layout(src, y.shape)
    dst = ctx.define(y, layout)
    s_axis, d_axis = src.layout.axis_strides(), layout.axis_strides()
    crop = [max(-b, 0) for b in p.before]
    dims = [d - c - max(-e, 0) for d, c, e in zip(x.shape, crop, p.after)]
    ctx.call("qcc_fill", "qcc_fill_params", dict(count=layout.size, elem_bytes=dst.dtype.itemsize, value=p.fill),
             [dst])
    if all(d > 0 for d in dims):
        perm = layout.perm
        ctx.strided_copy(src, dst, [dims[a] for a in perm], [s_axis[a] for a in perm], [d_axis[a] for a in perm],
                         src_offset=sum(c * s for c, s in zip(crop, s_axis)),
                         dst_offset=sum(max(b, 0) * s for b, s in zip(p.before, d_axis)))


def _piece(ctx, src: Placed, y, starts, steps) -> None:
    """y = src[starts :: steps] with y's shape: a view when contiguous, else a copy."""
    s_axis = src.layout.axis_strides()
    perm = src.layout.perm
    offset = sum(int(b) * s for b, s in zip(starts, s_axis))
    dims, strides = merge_dims([y.shape[a] for a in perm], [s_axis[a] * int(steps[a]) for a in perm])
    if len(dims) == 1 and strides[0] == 1:
        ctx.view(y, Placed(src.buf, src.offset + offset * src.dtype.itemsize,
                           Layout.transposed(y.shape, perm), src.dtype))
        return
    dst = ctx.define(y, Layout.transposed(y.shape, perm))
    d_axis = dst.layout.axis_strides()
    ctx.strided_copy(src, dst, [y.shape[a] for a in perm], [s_axis[a] * int(steps[a]) for a in perm],
                     [d_axis[a] for a in perm], src_offset=offset)


@emitter("Slice")
def slice_(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    starts, ends = int_list(node, 1, "starts"), int_list(node, 2, "ends")
    axes = int_list(node, 3, "axes") or list(range(len(starts)))
    steps = int_list(node, 4, None) or [1] * len(starts)
    begin, step = [0] * rank, [1] * rank
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= rank
        begin[a], _, step[a] = slice(s, e, st).indices(x.shape[a])
    _piece(ctx, _transposed_input(ctx, x), y, begin, step)


@emitter("Split")
def split(ctx, node):
    x = node.inputs[0]
    axis = int(node.attrs.get("axis", 0)) % len(x.shape)
    src = _transposed_input(ctx, x)
    start = 0
    for y in node.outputs:
        begin = [0] * len(x.shape)
        begin[axis] = start
        _piece(ctx, src, y, begin, [1] * len(x.shape))
        start += y.shape[axis]
    if start != x.shape[axis]:
        raise BackendError(f"node {node.name} (Split): outputs cover {start} of {x.shape[axis]}")


@emitter("Resize")
def resize(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4 or tuple(x.shape[:2]) != tuple(y.shape[:2]):
        raise BackendError(f"node {node.name} (Resize): only H and W of 4-D NCHW inputs")
    p = qops.resize_params(node)
    src = ctx.get(x, Layout.channels_last(x.shape))
    dst = ctx.define(y, Layout.channels_last(y.shape))
    tables = {k: ctx.const("r", getattr(p, k), np.int32) for k in ("y_lo", "y_hi", "y_frac", "x_lo", "x_hi", "x_frac")}
    n, c, h, w = x.shape
    fn = "qcc_resize"
    if np.dtype(x.dtype).itemsize == 2:
        if p.mode != "nearest":
            raise BackendError(f"node {node.name} (Resize): int16 data resizes by nearest neighbour only "
                               "(TFLM has no int16 RESIZE_BILINEAR)")
        fn = "qcc_resize_nearest_s16"
    ctx.call(fn, "qcc_resize_params",
             dict(batch=n, channels=c, in_h=h, in_w=w, out_h=y.shape[2], out_w=y.shape[3],
                  bilinear=int(p.mode == "linear"), **tables), [src, dst])
