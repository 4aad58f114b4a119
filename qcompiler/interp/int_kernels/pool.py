"""Integer pooling, ReduceMean and Resize, TFLM-exact.

MAX_POOL_2D: max over in-image taps (start -128), clamp to the activation range.
AVERAGE_POOL_2D: raw int8 sum over in-image taps / their count, rounded half away
from zero ((sum +- count/2) / count, C division), clamp. Input and output
parameters must be equal (TFLM checks). GlobalAveragePool = full-window average.
MEAN: sum raw values, subtract zp * n, multiplier QuantizeMultiplier(in_s / out_s)
with 1/n folded in (fixed_point.mean_multiplier), requantize, + out zp.
RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR: TFLM's float32 index maths and 10-bit
fixed-point bilinear weights on raw values.
"""
from __future__ import annotations

import math

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import (as_int, attr_str, const_ints, out_range, require_same_quant,
                               scale_zp, to_int8)


def _out_size(size, k, s, d, p0, p1, ceil_mode):
    span = size + p0 + p1 - ((k - 1) * d + 1)
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p0:  # last window may not start in the end pad
        n -= 1
    return n


def _taps(node, x, fill):
    """Windows of an NCHW tensor: list of [N, C, Ho, Wo] tap views and a validity mask list."""
    if x.ndim != 4:
        raise GraphError(f"node {node.name} ({node.op}): only 2-D pooling, got rank {x.ndim}")
    kh, kw = (int(k) for k in node.attrs["kernel_shape"])
    sh, sw = (int(s) for s in node.attrs.get("strides", [1, 1]))
    dh, dw = (int(d) for d in node.attrs.get("dilations", [1, 1]))
    pt, pl, pb, pr = (int(p) for p in node.attrs.get("pads", [0, 0, 0, 0]))
    ceil_mode = int(node.attrs.get("ceil_mode", 0))
    n, c, h, w = x.shape
    ho = _out_size(h, kh, sh, dh, pt, pb, ceil_mode)
    wo = _out_size(w, kw, sw, dw, pl, pr, ceil_mode)
    hp = max(pt + h, (ho - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pl + w, (wo - 1) * sw + (kw - 1) * dw + 1)
    xp = np.full((n, c, hp, wp), fill, np.int64)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    valid = np.zeros((hp, wp), np.int64)
    valid[pt:pt + h, pl:pl + w] = 1
    taps, masks = [], []
    for i in range(kh):
        for j in range(kw):
            ys = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
            xs = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            taps.append(xp[:, :, ys, xs])
            masks.append(valid[ys, xs])
    return taps, masks, (pt, pl, pb, pr)


def _rounded_mean(total, count):
    """(sum + count/2) / count for sum > 0 else (sum - count/2) / count, C division."""
    if np.any(count == 0):
        raise GraphError("AveragePool: a window contains no input pixel (TFLM fails here)")
    return np.sign(total) * ((np.abs(total) + count // 2) // count)


@int_kernel("MaxPool")
def max_pool(node, inputs):
    require_same_quant(node)
    taps, _, _ = _taps(node, as_int(inputs[0]), -128)
    return [to_int8(np.maximum.reduce(taps), *out_range(node))]


@int_kernel("AveragePool")
def average_pool(node, inputs):
    require_same_quant(node)
    taps, masks, pads = _taps(node, as_int(inputs[0]), 0)
    if int(node.attrs.get("count_include_pad", 0)) and any(pads):
        raise GraphError(f"node {node.name} (AveragePool): count_include_pad=1 with padding is "
                         "not TFLM AVERAGE_POOL_2D (it divides by the in-image tap count)")
    total = np.add.reduce(taps)
    count = np.add.reduce(masks)
    return [to_int8(_rounded_mean(total, count), *out_range(node))]


@int_kernel("GlobalAveragePool")
def global_average_pool(node, inputs):
    require_same_quant(node)
    x = as_int(inputs[0])
    axes = tuple(range(2, x.ndim))
    count = int(np.prod([x.shape[a] for a in axes]))
    total = x.sum(axis=axes, keepdims=True)
    return [to_int8(_rounded_mean(total, np.int64(count)), *out_range(node))]


@int_kernel("ReduceMean")
def reduce_mean(node, inputs):
    x = as_int(inputs[0])
    axes = const_ints(node, 1, inputs, "axes")
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return [inputs[0]]
        axes = list(range(x.ndim))
    axes = tuple(sorted(a % x.ndim for a in axes))
    keep = bool(int(node.attrs.get("keepdims", 1)))
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    count = int(np.prod([x.shape[a] for a in axes]))
    m, e = qm.quantize_multiplier(float(si) / float(so))
    m, e = qm.mean_multiplier(m, e, count)
    shifted = qm.wrap_int32(x.sum(axis=axes, keepdims=keep) - zi * count)
    return [to_int8(qm.multiply_by_quantized_multiplier(shifted, m, e) + zo)]


# ---- Resize ---------------------------------------------------------------------

def _resize_mode(node, out_hw, in_hw):
    """(mode, align_corners, half_pixel_centers) of the TFLM op equal to this ONNX Resize."""
    mode = attr_str(node, "mode", "nearest")
    ctm = attr_str(node, "coordinate_transformation_mode", "half_pixel")
    if mode == "linear":
        table = {"half_pixel": (False, True), "pytorch_half_pixel": (False, True),
                 "align_corners": (True, False), "asymmetric": (False, False)}
        if ctm in table and (ctm != "pytorch_half_pixel" or min(out_hw) > 1):
            return ("linear",) + table[ctm]
    elif mode == "nearest":
        nm = attr_str(node, "nearest_mode", "round_prefer_floor")
        integer_up = all(o % i == 0 for o, i in zip(out_hw, in_hw))
        if (ctm, nm) == ("asymmetric", "floor"):
            return "nearest", False, False
        if (ctm, nm) == ("align_corners", "round_prefer_ceil"):
            return "nearest", True, False
        if (ctm, nm) == ("tf_half_pixel_for_nn", "floor") or (
                ctm in ("half_pixel", "pytorch_half_pixel") and nm == "round_prefer_floor"
                and integer_up):
            return "nearest", False, True
        if ctm == "asymmetric" and nm == "round_prefer_floor" and all(
                o == 2 * i or o == i for o, i in zip(out_hw, in_hw)):
            return "nearest", False, False
    raise GraphError(f"node {node.name} (Resize): mode={mode} coordinate_transformation_mode={ctm} "
                     f"{in_hw}->{out_hw} has no TFLM RESIZE_* equivalent")


def _nearest_index(out_size, in_size, align, hpc):
    f = np.float32
    if align and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    v = (np.arange(out_size, dtype=np.float32) + f(0.5 if hpc else 0.0)) * scale
    idx = (np.sign(v) * np.floor(np.abs(v) + f(0.5))) if align else np.floor(v)
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if hpc else idx


def _bilinear_axis(out_size, in_size, align, hpc):
    scale = ((1 << 10) * in_size + out_size // 2) // out_size
    if align and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    v = np.arange(out_size, dtype=np.int64) * scale
    if hpc:
        v = v + scale // 2 - (1 << 9)
    trunc = lambda a: np.sign(a) * (np.abs(a) >> 10)  # noqa: E731 - C division by 1024
    lo = np.maximum(trunc(v), 0)
    hi = np.minimum(trunc(v + (1 << 10) - 1), in_size - 1)
    return lo, hi, v - (lo << 10)


@int_kernel("Resize")
def resize(node, inputs):
    require_same_quant(node)
    x = as_int(inputs[0])
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (Resize): only 4-D NCHW inputs")
    n, c, h, w = x.shape
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
    ho, wo = int(out_shape[2]), int(out_shape[3])
    mode, align, hpc = _resize_mode(node, (ho, wo), (h, w))
    if mode == "nearest":
        iy = _nearest_index(ho, h, align, hpc)
        ix = _nearest_index(wo, w, align, hpc)
        return [x[:, :, iy][:, :, :, ix].astype(np.int8)]
    y0, y1, dy = _bilinear_axis(ho, h, align, hpc)
    x0, x1, dx = _bilinear_axis(wo, w, align, hpc)
    dy, dx = dy.reshape(-1, 1), dx.reshape(1, -1)
    one = 1 << 10
    r0, r1 = x[:, :, y0], x[:, :, y1]
    acc = (r0[:, :, :, x0] * (one - dy) * (one - dx) + r1[:, :, :, x0] * dy * (one - dx)
           + r0[:, :, :, x1] * (one - dy) * dx + r1[:, :, :, x1] * dy * dx)
    acc = acc + np.where(acc > 0, 1 << 19, -(1 << 19))
    return [(np.sign(acc) * (np.abs(acc) >> 20)).astype(np.int8)]
