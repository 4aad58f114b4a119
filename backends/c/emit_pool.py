"""Pooling, ReduceMean and Softmax -> qcc_max_pool / qcc_avg_pool / qcc_mean / qcc_softmax_* (int16
data: the *_s16 kernels, the same parameters).

Pooling runs on NHWC data; GlobalAveragePool is an average pool with one window. The
average divides by the in-image tap count (qops.pool_params' `counts`: one number when every
window has the same count, else a flash table). ReduceMean and Softmax work in whatever
layout their input has when the reduced elements are contiguous in memory (NHWC channels,
the last axis of plain data), else after one copy.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.numerics import qops
from qcompiler.numerics.qops.softmax import reduced_axes, refuse_unexpanded

from qcompiler.backends.c.layout import Layout
from qcompiler.backends.c.lower import emitter


def _pool_fields(ctx, x, y, p):
    n, c = x.shape[:2]
    return dict(batch=n, channels=c, in_h=p.in_hw[0], in_w=p.in_hw[1], out_h=p.out_hw[0], out_w=p.out_hw[1],
                k_h=p.kernel[0], k_w=p.kernel[1], stride_h=p.strides[0], stride_w=p.strides[1],
                dil_h=p.dilations[0], dil_w=p.dilations[1], pad_top=p.pads[0], pad_left=p.pads[1],
                act_min=p.act_min, act_max=p.act_max)


def _pool(ctx, node, fields: dict, fn: str):
    x, y = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4:
        raise BackendError(f"node {node.name} ({node.op}): only 2-D pooling, got rank {len(x.shape)}")
    src = ctx.get(x, Layout.channels_last(x.shape))
    dst = ctx.define(y, Layout.channels_last(y.shape))
    ctx.call(fn + _suffix(y), "qcc_pool_params", fields, [src, dst])


def _suffix(v) -> str:
    return "_s16" if np.dtype(v.dtype).itemsize == 2 else ""


@emitter("MaxPool")
def max_pool(ctx, node):
    p = qops.pool_params(node)
    _pool(ctx, node, {**_pool_fields(ctx, node.inputs[0], node.outputs[0], p), "count": 0, "counts": "NULL"},
          "qcc_max_pool")


@emitter("AveragePool")
def average_pool(ctx, node):
    p = qops.pool_params(node)
    counts = np.asarray(p.counts).reshape(-1)
    same = bool(np.all(counts == counts[0]))
    fields = {**_pool_fields(ctx, node.inputs[0], node.outputs[0], p), "count": int(counts[0]) if same else 0,
              "counts": "NULL" if same else ctx.const("n", counts, np.int32)}
    _pool(ctx, node, fields, "qcc_avg_pool")


def _global_fields(node) -> dict:
    x = node.inputs[0]
    p = qops.global_pool_params(node)
    if len(x.shape) != 4:
        raise BackendError(f"node {node.name} ({node.op}): only NCHW inputs, got rank {len(x.shape)}")
    n, c, h, w = x.shape
    return dict(batch=n, channels=c, in_h=h, in_w=w, out_h=1, out_w=1, k_h=h, k_w=w, stride_h=1, stride_w=1,
                dil_h=1, dil_w=1, pad_top=0, pad_left=0, act_min=p.act_min, act_max=p.act_max,
                count=p.count, counts="NULL")


@emitter("GlobalAveragePool")
def global_average_pool(ctx, node):
    _pool(ctx, node, _global_fields(node), "qcc_avg_pool")


@emitter("GlobalMaxPool")
def global_max_pool(ctx, node):
    _pool(ctx, node, {**_global_fields(node), "count": 0}, "qcc_max_pool")


# ---- reductions over some axes: (outer, count, inner) in memory ------------------------------

def _blocks(layout: Layout, shape, axes) -> tuple[int, int, int] | None:
    """(outer, count, inner) when `layout` stores `shape` so that the `axes` form one
    contiguous block of memory axes (size-1 axes ignored); None otherwise."""
    if not layout.is_transpose_of(shape):
        return None
    mem = [a for a in layout.perm if shape[a] != 1]
    red = [i for i, a in enumerate(mem) if a in axes]
    if red and red != list(range(red[0], red[0] + len(red))):
        return None
    start = red[0] if red else len(mem)
    dims = [shape[a] for a in mem]
    outer, inner = int(np.prod(dims[:start])), int(np.prod(dims[start + len(red):]))
    return outer, int(np.prod([shape[a] for a in axes])), inner


def _reduction_input(ctx, x, axes, innermost: bool):
    """x placed so that the reduced axes are one memory block (innermost if asked)."""
    src = ctx.get(x)
    b = _blocks(src.layout, x.shape, axes)
    if b is None or (innermost and b[2] != 1):
        kept = [a for a in range(len(x.shape)) if a not in axes]
        src = ctx.get(x, Layout.transposed(x.shape, kept + list(axes)))
        b = _blocks(src.layout, x.shape, axes)
    return src, b


@emitter("ReduceMean")
def reduce_mean(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    p = qops.mean_params(node)
    if p.noop:
        ctx.view(y, ctx.get(x))
        return
    src, (outer, count, inner) = _reduction_input(ctx, x, p.axes, innermost=False)
    perm = src.layout.perm
    if p.keepdims:
        out_perm = perm
    else:
        kept = [a for a in range(len(x.shape)) if a not in p.axes]
        out_perm = tuple(kept.index(a) for a in perm if a in kept)
    dst = ctx.define(y, Layout.transposed(y.shape, out_perm))
    ctx.call("qcc_mean" + _suffix(y), "qcc_mean_params",
             dict(outer=outer, count=count, inner=inner, in_zp=p.input_zero_point, out_zp=p.output_zero_point,
                  mult=p.multiplier, shift=p.shift), [src, dst])


@emitter("Softmax")
def softmax(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    refuse_unexpanded(node)
    p = qops.softmax_params(node)
    axes = reduced_axes(node, len(x.shape))
    src, (outer, n, _) = _reduction_input(ctx, x, axes, innermost=True)
    in16, out16 = np.dtype(x.dtype).itemsize == 2, np.dtype(y.dtype).itemsize == 2
    dst = ctx.define(y, src.layout, inplace=src)
    if in16:
        fields = dict(rows=outer, n=n, mult=p.input_multiplier, shift=p.input_left_shift,
                      exp_lut=ctx.const("lut", p.exp_lut, np.int16),
                      recip_lut=ctx.const("lut", p.one_over_one_plus_x_lut, np.int16))
        ctx.call("qcc_softmax_s16", "qcc_softmax16_params", fields, [src, dst])
        return
    fields = dict(rows=outer, n=n, exp_table=ctx.const("e", p.exp_table, np.int32),
                  sum_table=ctx.const("e", p.sum_table, np.int32))
    ctx.call("qcc_softmax_s8_s16" if out16 else "qcc_softmax_s8", "qcc_softmax_params", fields, [src, dst])
