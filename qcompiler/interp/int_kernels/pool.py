"""Integer pooling, ReduceMean and Resize, TFLM-exact; int8 or int16 (the same formulas with the
int16 range; TFLM has no int16 RESIZE_BILINEAR, so bilinear stays int8).

MAX_POOL_2D: max over in-image taps (start -128), clamp to the activation range.
AVERAGE_POOL_2D: raw int8 sum over in-image taps / their count, rounded half away
from zero ((sum +- count/2) / count, C division), clamp. Input and output
parameters must be equal (TFLM checks). GlobalAveragePool / GlobalMaxPool = one full window.
MEAN: sum raw values, subtract zp * n, multiplier QuantizeMultiplier(in_s / out_s)
with 1/n folded in (qops.mean_multiplier), requantize, + out zp.
RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR: TFLM's float32 index maths and 10-bit
fixed-point bilinear weights on raw values.
Window geometry, divisors, multipliers and index tables: qcompiler.numerics.qops.pool.
"""
from __future__ import annotations

import math

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import as_int, to_output
from qcompiler.numerics.qops import global_pool_params, mean_params, pool_params, resize_params


def _taps(x, p, fill):
    """The windows of an NCHW tensor: a list of [N, C, Ho, Wo] tap views (padding = `fill`)."""
    (kh, kw), (sh, sw), (dh, dw) = p.kernel, p.strides, p.dilations
    pt, pl = p.pads[:2]
    (h, w), (ho, wo), (hp, wp) = p.in_hw, p.out_hw, p.padded_hw
    xp = np.full(x.shape[:2] + (hp, wp), fill, np.int64)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    return [xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw)]


def _rounded_mean(total, count):
    """(sum + count/2) / count for sum > 0 else (sum - count/2) / count, C division."""
    return np.sign(total) * ((np.abs(total) + count // 2) // count)


@int_kernel("MaxPool")
def max_pool(node, inputs):
    x = as_int(inputs[0])
    p = pool_params(node, x.shape)
    fill = int(np.iinfo(np.asarray(inputs[0]).dtype).min)   # -128 / -32768 never win a max
    return [to_output(node, np.maximum.reduce(_taps(x, p, fill)), p.act_min, p.act_max)]


@int_kernel("AveragePool")
def average_pool(node, inputs):
    x = as_int(inputs[0])
    p = pool_params(node, x.shape)
    total = np.add.reduce(_taps(x, p, 0))
    return [to_output(node, _rounded_mean(total, p.counts.astype(np.int64)), p.act_min, p.act_max)]


@int_kernel("GlobalAveragePool")
def global_average_pool(node, inputs):
    x = as_int(inputs[0])
    p = global_pool_params(node, x.shape)
    total = x.sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return [to_output(node, _rounded_mean(total, np.int64(p.count)), p.act_min, p.act_max)]


@int_kernel("GlobalMaxPool")
def global_max_pool(node, inputs):
    """MAX_POOL_2D with one window over the whole image (as the TFLite lowering emits it)."""
    x = as_int(inputs[0])
    p = global_pool_params(node, x.shape)
    return [to_output(node, x.max(axis=tuple(range(2, x.ndim)), keepdims=True), p.act_min, p.act_max)]


@int_kernel("ReduceMean")
def reduce_mean(node, inputs):
    x = as_int(inputs[0])
    p = mean_params(node, x.shape, inputs)
    if p.noop:
        return [inputs[0]]
    shifted = qm.wrap_int32(x.sum(axis=p.axes, keepdims=bool(p.keepdims)) - p.input_zero_point * p.count)
    y = qm.multiply_by_quantized_multiplier(shifted, p.multiplier, p.shift) + p.output_zero_point
    return [to_output(node, y)]


@int_kernel("Resize")
def resize(node, inputs):
    x = as_int(inputs[0])
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (Resize): only 4-D NCHW inputs")
    n, c = x.shape[:2]
    out_shape = node.outputs[0].shape
    if out_shape is None:
        sizes = inputs[3] if len(inputs) > 3 and inputs[3] is not None else None
        if sizes is not None:
            out_shape = tuple(int(s) for s in sizes)
        else:
            scales = np.asarray(inputs[2], np.float32)
            out_shape = tuple(int(math.floor(d * float(s))) for d, s in zip(x.shape, scales))
    if tuple(out_shape[:2]) != (n, c):
        raise GraphError(f"node {node.name} (Resize): only H and W may be resized")
    p = resize_params(node, x.shape, out_shape)
    if p.mode == "nearest":
        return [x[:, :, p.y_lo][:, :, :, p.x_lo].astype(np.asarray(inputs[0]).dtype)]
    y0, y1, dy = p.y_lo, p.y_hi, p.y_frac.astype(np.int64).reshape(-1, 1)
    x0, x1, dx = p.x_lo, p.x_hi, p.x_frac.astype(np.int64).reshape(1, -1)
    one = 1 << 10
    r0, r1 = x[:, :, y0], x[:, :, y1]
    acc = (r0[:, :, :, x0] * (one - dy) * (one - dx) + r1[:, :, :, x0] * dy * (one - dx)
           + r0[:, :, :, x1] * (one - dy) * dx + r1[:, :, :, x1] * dy * dx)
    acc = acc + np.where(acc > 0, 1 << 19, -(1 << 19))
    return [(np.sign(acc) * (np.abs(acc) >> 20)).astype(np.int8)]
