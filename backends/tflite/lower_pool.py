"""Pooling, ReduceMean and Resize -> TFLite.

TFLite pools with SAME or VALID padding only and, like the integer reference,
ignores taps outside the image (max over in-image taps, average divided by
their count). A pooling window is therefore fully described by the in-image
rows/columns it covers, and an ONNX pool whose pads are neither SAME nor VALID
can still be exact: MaxPool pads explicitly with -128 / -32768 (PADV2), AveragePool
finds a TFLite pooling (possibly at stride 1) whose windows include ONNX's and
keeps those with a STRIDED_SLICE.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError, GraphError
from qcompiler.ir import Node
from qcompiler.numerics.qops import resize_mode

from qcompiler.backends.tflite.lower_conv import explicit_pad, onnx_pads, strided_slice, tfl_window, window_ends
from qcompiler.backends.tflite.lower_core import NHWC, LoweringContext, fused, lowering


def _clipped(size: int, starts, k: int) -> list[tuple[int, int]]:
    return [(max(a, 0), min(a + k - 1, size - 1)) for a in starts]


def _axis_plan(size, k, s, begin, out, padding, allow_slice):
    """(tfl stride, first kept output, step, tfl outputs) for one axis, or None."""
    want = _clipped(size, [i * s - begin for i in range(out)], k)
    strides = (s, 1) if allow_slice and s > 1 else (s,)
    for ts in strides:
        n, top = tfl_window(size, k, ts, 1, padding)
        have = _clipped(size, [j * ts - top for j in range(n)], k)
        step = s // ts
        for first in range(n if allow_slice else 1):
            last = first + (out - 1) * step
            if last < n and all(have[first + i * step] == want[i] for i in range(out)) and \
                    (allow_slice or n == out):
                return ts, first, step, n
    return None


def pool_plan(sizes, kernel, strides, begins, outs, allow_slice: bool):
    """(padding, per-axis plans) of a TFLite pooling with the ONNX windows, or None."""
    for padding in ("VALID", "SAME"):
        plans = [_axis_plan(*a, padding, allow_slice) for a in zip(sizes, kernel, strides, begins, outs)]
        if all(p is not None for p in plans):
            return padding, plans
    return None


def _pool_attrs(node: Node):
    x = node.inputs[0]
    kernel = [int(k) for k in node.attrs["kernel_shape"]]
    strides = [int(s) for s in node.attrs.get("strides", [1, 1])]
    if len(x.shape) != 4 or len(kernel) != 2:
        raise BackendError(f"node {node.name}: only 2-D pooling lowers to TFLite")
    if any(int(d) != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise BackendError(f"node {node.name}: TFLite pooling has no dilation")
    return kernel, strides, onnx_pads(node, 2)[:2]


def _emit_pool(ctx, node, src, out, padding, kernel, tfl_strides):
    opcode = "MAX_POOL_2D" if node.op == "MaxPool" else "AVERAGE_POOL_2D"
    ctx.op(opcode, [src], [out], padding=padding, stride_h=tfl_strides[0], stride_w=tfl_strides[1],
           filter_height=kernel[0], filter_width=kernel[1], fused_activation_function=fused(node))


@lowering("MaxPool", "AveragePool")
def lower_pool(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    kernel, strides, begins = _pool_attrs(node)
    if node.op == "AveragePool" and int(node.attrs.get("count_include_pad", 0)) and \
            any(onnx_pads(node, 2)):
        raise BackendError(f"node {node.name}: AveragePool count_include_pad=1 with padding is not "
                           "TFLite AVERAGE_POOL_2D (it divides by the in-image tap count)")
    sizes, outs = x.shape[2:], y.shape[2:]
    src = ctx.get(x, NHWC)
    plan = pool_plan(sizes, kernel, strides, begins, outs, allow_slice=False)
    if plan is not None:
        _emit_pool(ctx, node, src, ctx.define(y, NHWC), plan[0], kernel, strides)
        return
    if node.op == "MaxPool":  # -128 never wins a max: equal to skipping the padded taps
        ends = window_ends(sizes, kernel, strides, [1, 1], begins, outs)
        src = explicit_pad(ctx, node, x, src, sizes, begins, ends, int(np.iinfo(x.dtype).min))
        _emit_pool(ctx, node, src, ctx.define(y, NHWC), "VALID", kernel, strides)
        return
    plan = pool_plan(sizes, kernel, strides, begins, outs, allow_slice=True)
    if plan is None:
        raise BackendError(f"node {node.name}: AveragePool pads {onnx_pads(node, 2)} (stride {strides}) "
                           "give border windows no TFLite AVERAGE_POOL_2D computes")
    padding, ((sh, bh, mh, nh), (sw, bw, mw, nw)) = plan
    full = ctx.scratch(f"{y.name}_pooled", (y.shape[0], nh, nw, y.shape[1]), y)
    _emit_pool(ctx, node, src, full, padding, kernel, (sh, sw))
    end = [y.shape[0], bh + (outs[0] - 1) * mh + 1, bw + (outs[1] - 1) * mw + 1, y.shape[1]]
    strided_slice(ctx, node.name, full, ctx.define(y, NHWC), [0, bh, bw, 0], end, [1, mh, mw, 1])


@lowering("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: LoweringContext, node: Node):
    """One window over the whole image. AVERAGE_POOL_2D rounds like the reference (MEAN
    would requantize differently); MAX_POOL_2D is the reference's GlobalMaxPool."""
    x, y = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4:
        raise BackendError(f"node {node.name}: only 2-D {node.op} lowers to TFLite")
    opcode = "MAX_POOL_2D" if node.op == "GlobalMaxPool" else "AVERAGE_POOL_2D"
    ctx.op(opcode, [ctx.get(x, NHWC)], [ctx.define(y, NHWC)], padding="VALID", stride_h=1, stride_w=1,
           filter_height=x.shape[2], filter_width=x.shape[3], fused_activation_function=fused(node))


def const_list(node: Node, index: int, attr: str | None):
    """Integers from a constant input (newer opsets) or an attribute (older ones)."""
    v = node.input(index)
    if v is not None:
        if not v.is_constant:
            raise BackendError(f"node {node.name} ({node.op}): input #{index} must be a constant")
        return [int(a) for a in np.asarray(v.data).reshape(-1)]
    if attr is not None and attr in node.attrs:
        return [int(a) for a in np.atleast_1d(node.attrs[attr])]
    return None


@lowering("ReduceMean")
def lower_reduce_mean(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    axes = const_list(node, 1, "axes")
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            ctx.alias(y, ctx.get(x), ctx.perm(x))
            return
        axes = list(range(rank))
    axes = sorted({a % rank for a in axes})
    keep = bool(int(node.attrs.get("keepdims", 1)))
    perm = ctx.perm(x)
    if keep:
        out_perm = perm
    else:  # drop the reduced axes and renumber the rest
        out_perm = tuple(a - sum(r < a for r in axes) for a in perm if a not in axes)
    tfl_axes = sorted(perm.index(a) for a in axes)
    ctx.op("MEAN", [ctx.get(x), ctx.int32(f"{node.name}_axes", tfl_axes)], [ctx.define(y, out_perm)],
           keep_dims=keep)


@lowering("Resize")
def lower_resize(ctx: LoweringContext, node: Node):
    x, y = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4 or tuple(y.shape[:2]) != tuple(x.shape[:2]):
        raise BackendError(f"node {node.name}: Resize lowers to TFLite for 4-D inputs resized in H, W")
    try:
        mode, align, half_pixel = resize_mode(node, tuple(y.shape[2:]), tuple(x.shape[2:]))
    except GraphError as e:
        raise BackendError(str(e)) from None
    opcode = "RESIZE_NEAREST_NEIGHBOR" if mode == "nearest" else "RESIZE_BILINEAR"
    size = ctx.int32(f"{node.name}_size", list(y.shape[2:]))
    ctx.op(opcode, [ctx.get(x, NHWC), size], [ctx.define(y, NHWC)], align_corners=align,
           half_pixel_centers=half_pixel)
