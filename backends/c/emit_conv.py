"""Conv (2-D, 1-D, grouped, depthwise), ConvTranspose and Gemm (FULLY_CONNECTED) -> qcc_conv2d /
qcc_conv_transpose / qcc_fully_connected; on int16 activations (16x8) Conv and Gemm -> qcc_conv2d_s16
(a Gemm is a 1x1 convolution over its rows there), int64 biases, int64 accumulators.

Weights go to flash in the kernels' order: convolutions OHWI ([out c][kh][kw][in c / group],
the NHWC window of one output channel is contiguous per row), fully connected [out][in] with
the input columns permuted to the memory order of its input (a Flatten of an NHWC tensor
costs no copy: the weight columns follow the NHWC order instead). Multipliers, shifts, zero
points and the clamp come from qops.conv_params / qops.fc_params, once per channel.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.numerics import qops

from qcompiler.backends.c.layout import Layout
from qcompiler.backends.c.lower import emitter

MAX_TAPS = 64   # QCC_MAX_TAPS of qcc_kernels.h
MAX_SHIFT64 = 14   # the int64 requantization shifts right by 15 - shift >= 1


def _is16(v) -> bool:
    return np.dtype(v.dtype).itemsize == 2


def _conv16(ctx, node, p, w_ohwi: np.ndarray, src, dst, geometry: dict) -> None:
    """A 16x8 convolution call: int8 weights OHWI, the bias widened to int64, one multiplier
    and shift per output channel (a per-tensor fully connected layer's repeated)."""
    out_c = w_ohwi.shape[0]
    mult = np.broadcast_to(np.asarray(p.multiplier, np.int32), (out_c,))
    shift = np.broadcast_to(np.asarray(p.shift, np.int32), (out_c,))
    if p.accumulator_bits == 64 and int(shift.max()) > MAX_SHIFT64:
        raise BackendError(f"node {node.name} ({node.op}): a requantization shift of {int(shift.max())} (a "
                           f"multiplier of at least 2^{int(shift.max()) - 1}): the int64 requantization needs "
                           "15 - shift >= 1 (TFLM's rounding term would be 1 << -1); widen the output scale")
    b = node.input(2)
    if b is not None and not b.is_constant:
        raise BackendError(f"node {node.name} ({node.op}): the bias must be a constant")
    bias = "NULL" if b is None else ctx.const("b", np.asarray(b.data).reshape(out_c), np.int64)
    ctx.call("qcc_conv2d_s16", "qcc_conv16_params", dict(
        **geometry, acc64=int(p.accumulator_bits == 64), act_min=p.act_min, act_max=p.act_max,
        weights=ctx.const("w", w_ohwi, np.int8), bias=bias, mult=ctx.const("m", mult, np.int32),
        shift=ctx.const("s", shift, np.int32)), [src, dst])


def _bias(ctx, node, channels: int) -> str:
    b = node.input(2)
    if b is None:
        return "NULL"
    if not b.is_constant:
        raise BackendError(f"node {node.name} ({node.op}): the bias must be a constant")
    return ctx.const("b", np.asarray(b.data).reshape(channels), np.int32)


def _bias_eff(ctx, node, w: np.ndarray, zero_point: int) -> str:
    """bias - in_zp * sum(w) per output channel (axis 0 of w), wrapped to int32 like the kernels'
    accumulators: sum(w * (x - zp)) + bias == sum(w * x) + bias_eff."""
    b = node.input(2)
    bias = np.zeros(w.shape[0], np.int64) if b is None else np.asarray(b.data, np.int64).reshape(-1)
    eff = bias - int(zero_point) * w.reshape(w.shape[0], -1).astype(np.int64).sum(axis=1)
    return ctx.const("b", (eff + (1 << 31)) % (1 << 32) - (1 << 31), np.int32)


def _weights(node):
    w = node.input(1)
    if w is None or not w.is_constant:
        raise BackendError(f"node {node.name} ({node.op}): the weight must be a constant")
    return np.asarray(w.data)


@emitter("Conv")
def conv(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    p = qops.conv_params(node)
    w = _weights(node)
    x, extra = ctx.padded.get(x.name, (x, (0,) * (len(x.shape) - 2)))   # a fused Pad: more padding
    pad_top, pad_left = (p.pads[0], p.pads[1] + extra[0]) if len(extra) == 1 else \
        (p.pads[0] + extra[0], p.pads[1] + extra[1])
    if len(x.shape) == 3:            # Conv1D: a height-1 Conv2D on NWC data
        (n, c, width), h = x.shape, 1
        out_h, out_w, w = 1, y.shape[2], w[:, :, None, :]
    elif len(x.shape) == 4:
        n, c, h, width = x.shape
        out_h, out_w = y.shape[2:]
    else:
        raise BackendError(f"node {node.name} (Conv): only 1-D and 2-D convolutions, got rank {len(x.shape)}")
    o, cg, kh, kw = w.shape
    src = ctx.get(x, Layout.channels_last(x.shape))
    dst = ctx.define(y, Layout.channels_last(y.shape))
    if _is16(x):
        _conv16(ctx, node, p, w.transpose(0, 2, 3, 1), src, dst, dict(
            batch=n, in_h=h, in_w=width, in_c=c, out_h=out_h, out_w=out_w, out_c=o, k_h=kh, k_w=kw,
            stride_h=p.strides[0], stride_w=p.strides[1], dil_h=p.dilations[0], dil_w=p.dilations[1],
            pad_top=pad_top, pad_left=pad_left, groups=p.group))
        return
    depthwise = cg == 1 and p.group == c and p.group > 1 and kh * kw <= MAX_TAPS
    fields = dict(batch=n, in_h=h, in_w=width, in_c=c, out_h=out_h, out_w=out_w, out_c=o, k_h=kh, k_w=kw,
                  stride_h=p.strides[0], stride_w=p.strides[1], dil_h=p.dilations[0], dil_w=p.dilations[1],
                  pad_top=pad_top, pad_left=pad_left, groups=p.group,
                  in_zp=p.input_zero_point, out_zp=p.output_zero_point, act_min=p.act_min, act_max=p.act_max,
                  weights=ctx.const("w", w.transpose(0, 2, 3, 1), np.int8), bias=_bias(ctx, node, o),
                  bias_eff=_bias_eff(ctx, node, w, p.input_zero_point),
                  mult=ctx.const("m", p.multiplier, np.int32), shift=ctx.const("s", p.shift, np.int32))
    ctx.call("qcc_depthwise_conv2d" if depthwise else "qcc_conv2d", "qcc_conv_params", fields, [src, dst])


@emitter("ConvTranspose")
def conv_transpose(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    if len(x.shape) != 4:
        raise BackendError(f"node {node.name} (ConvTranspose): only 2-D, got rank {len(x.shape)}")
    p = qops.conv_transpose_params(node)
    w = _weights(node)                          # [in c, out c, kh, kw]
    n, c, h, width = x.shape
    _, o, kh, kw = w.shape
    src = ctx.get(x, Layout.channels_last(x.shape))
    dst = ctx.define(y, Layout.channels_last(y.shape))
    fields = dict(batch=n, in_h=h, in_w=width, in_c=c, out_h=y.shape[2], out_w=y.shape[3], out_c=o, k_h=kh, k_w=kw,
                  stride_h=p.strides[0], stride_w=p.strides[1], dil_h=1, dil_w=1, pad_top=p.pads[0],
                  pad_left=p.pads[1], groups=1, in_zp=p.input_zero_point, out_zp=p.output_zero_point,
                  act_min=p.act_min, act_max=p.act_max,
                  weights=ctx.const("w", w.transpose(1, 2, 3, 0), np.int8), bias=_bias(ctx, node, o),
                  bias_eff="NULL", mult=ctx.const("m", p.multiplier, np.int32), shift=ctx.const("s", p.shift, np.int32))
    ctx.call("qcc_conv_transpose", "qcc_conv_params", fields, [src, dst])


def _column_order(layout: Layout, k: int) -> np.ndarray | None:
    """The ONNX column of each memory column when every memory row holds one ONNX row of
    `k` elements in one fixed order; None otherwise."""
    order = layout.order()
    rows = order.reshape(-1, k)
    if not np.array_equal(rows // k, np.repeat(np.arange(rows.shape[0]), k).reshape(rows.shape)):
        return None
    cols = rows % k
    return cols[0] if np.all(cols == cols[0]) else None


@emitter("Gemm")
def gemm(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    p = qops.fc_params(node)
    w = _weights(node)
    w = w if p.trans_b else w.T                 # [out, in]
    m, k = w.shape
    src = ctx.get(x)
    cols = _column_order(src.layout, k)
    if cols is None:
        src = ctx.get(x, Layout.plain(x.shape))
        cols = np.arange(k)
    dst = ctx.define(y, Layout.plain(y.shape))
    rows = int(np.prod(x.shape)) // k
    if _is16(x):   # a 1x1 convolution over `rows` pixels of k channels
        _conv16(ctx, node, p, w[:, cols].reshape(m, 1, 1, k), src, dst, dict(
            batch=1, in_h=rows, in_w=1, in_c=k, out_h=rows, out_w=1, out_c=m, k_h=1, k_w=1, stride_h=1,
            stride_w=1, dil_h=1, dil_w=1, pad_top=0, pad_left=0, groups=1))
        return
    fields = dict(rows=rows, in_features=k, out_features=m,
                  out_zp=p.output_zero_point, act_min=p.act_min, act_max=p.act_max,
                  per_channel=int(p.multiplier.size > 1),
                  weights=ctx.const("w", w[:, cols], np.int8), bias_eff=_bias_eff(ctx, node, w, p.input_zero_point),
                  mult=ctx.const("m", p.multiplier, np.int32), shift=ctx.const("s", p.shift, np.int32))
    ctx.call("qcc_fully_connected", "qcc_fc_params", fields, [src, dst])
