"""Float reference kernels for Resize and Upsample (every ONNX coordinate and rounding mode),
with source coordinates computed in float32 as onnxruntime does."""
from __future__ import annotations

import math

import numpy as np

from qcompiler.interp.float_kernels.nn import attr, ints, opt, unsupported
from qcompiler.interp.float_kernels.registry import float_kernel
from qcompiler.numerics.fixed_point import round_half_away


# ---- Resize / Upsample ---------------------------------------------------------
def _source_coords(mode, y, scale, n_in, n_out, roi_start, roi_end):
    """Output index -> input coordinate in float32 arithmetic, as onnxruntime computes it."""
    f = np.float32
    y, scale = y.astype(f), f(scale)
    if mode == "half_pixel":
        return (y + f(0.5)) / scale - f(0.5)
    if mode == "half_pixel_symmetric":
        adjustment = f(n_out) / (scale * f(n_in))
        offset = f(n_in) / f(2) * (f(1) - adjustment)
        return offset + ((y + f(0.5)) / scale - f(0.5))
    if mode == "pytorch_half_pixel":
        return (y + f(0.5)) / scale - f(0.5) if n_out > 1 else np.zeros_like(y)
    if mode == "align_corners":
        return y * f(n_in - 1) / f(n_out - 1) if n_out > 1 else np.zeros_like(y)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + f(0.5)) / scale
    if mode == "tf_crop_and_resize":
        rs, re = f(roi_start), f(roi_end)
        if n_out > 1:
            return rs * f(n_in - 1) + y * (re - rs) * f(n_in - 1) / f(n_out - 1)
        return np.full_like(y, f(0.5) * (rs + re) * f(n_in - 1))
    raise NotImplementedError(f"coordinate_transformation_mode={mode!r} is not supported")


def _nearest(xo, mode, downsample):
    lo = np.floor(xo)
    frac = xo - lo  # exact in float32; negative coordinates are clamped to 0 anyway
    if mode in ("round_prefer_floor", "round_prefer_ceil"):
        return np.where(frac == 0.5, lo + (mode == "round_prefer_ceil"), lo + (frac > 0.5))
    if mode == "floor":
        return lo
    if mode == "ceil":
        return np.ceil(xo)
    if mode == "simple":  # opset < 11 (Upsample, Resize-10)
        return np.ceil(xo) if downsample else np.trunc(xo)
    raise NotImplementedError(f"nearest_mode={mode!r} is not supported")


def _interp_weights(xo, scale, mode, a, antialias):
    """Tap offsets relative to base = ceil(x) - 1 and their (unnormalised) weights."""
    base = np.ceil(xo.astype(np.float64)) - 1
    ratio = xo.astype(np.float64) - base  # in (0, 1]
    s = min(float(scale), 1.0) if antialias else 1.0
    support = 1.0 if mode == "linear" else 2.0
    start = int(math.floor(-support / s) + 1)
    offs = np.arange(start, 2 - start)
    dist = np.abs((offs[None, :] - ratio[:, None]) * s)
    if mode == "linear":
        w = np.clip(1 - dist, 0, None)
    else:
        w = np.where(dist <= 1, ((a + 2) * dist - (a + 3)) * dist * dist + 1,
                     np.where(dist < 2, ((a * dist - 5 * a) * dist + 8 * a) * dist - 4 * a, 0.0))
    return base.astype(np.int64)[:, None] + offs[None, :], w


@float_kernel("Resize", "Upsample")
def resize(node, inputs):
    x = inputs[0]
    r = x.ndim
    if node.op == "Upsample" or len(inputs) == 2:  # Upsample-7/9, Resize-10
        scales = opt(inputs, 1) if opt(inputs, 1) is not None else attr(node, "scales")
        roi = sizes = None
        ctm, nmode = "asymmetric", "simple"
    else:
        roi, scales, sizes = (opt(inputs, i) for i in (1, 2, 3))
        roi, scales, sizes = (v if v is not None and np.asarray(v).size else None for v in (roi, scales, sizes))
        ctm = attr(node, "coordinate_transformation_mode", "half_pixel")
        nmode = attr(node, "nearest_mode", "round_prefer_floor")
    mode = attr(node, "mode", "nearest")
    mode = "linear" if mode in ("bilinear", "trilinear") else mode
    if mode not in ("nearest", "linear", "cubic"):
        unsupported(node, f"mode={mode!r}")
    axes = [a % r for a in ints(attr(node, "axes", list(range(r))))]
    in_shape = [x.shape[a] for a in axes]
    if sizes is not None:
        sizes = ints(sizes)
        sc = [np.float32(o) / np.float32(i) for o, i in zip(sizes, in_shape)]
        policy = attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy in ("not_larger", "not_smaller"):
            s = min(sc) if policy == "not_larger" else max(sc)
            sc = [s] * len(axes)
            sizes = [int(round_half_away(float(s) * i)) for i in in_shape]
        elif policy != "stretch":
            unsupported(node, f"keep_aspect_ratio_policy={policy!r}")
    elif scales is not None:
        sc = [np.float32(v) for v in np.asarray(scales, np.float32).reshape(-1)]
        if len(sc) != len(axes):
            raise ValueError(f"{node.op} (node {node.name}): {len(sc)} scales for {len(axes)} axes")
        sizes = [int(np.floor(s * np.float32(i))) for s, i in zip(sc, in_shape)]
    else:
        raise ValueError(f"{node.op} (node {node.name}): neither scales nor sizes given")
    if roi is not None:
        roi = np.asarray(roi, np.float64).reshape(-1)
        roi = list(zip(roi[:len(roi) // 2], roi[len(roi) // 2:]))
        if len(roi) == r and len(axes) < r:
            roi = [roi[a] for a in axes]
    elif ctm == "tf_crop_and_resize":
        raise ValueError(f"Resize (node {node.name}): tf_crop_and_resize needs roi")
    antialias = bool(attr(node, "antialias", 0))
    exclude = bool(attr(node, "exclude_outside", 0))
    a = float(attr(node, "cubic_coeff_a", -0.75))
    y = x.astype(np.float64) if mode != "nearest" else x
    outside = np.zeros((), bool)
    for j, (ax, s, n_out) in enumerate(zip(axes, sc, sizes)):
        n_in = y.shape[ax]
        rs, re = roi[j] if roi is not None else (0.0, 1.0)
        if n_in == n_out and s == 1 and (ctm != "tf_crop_and_resize" or (rs, re) == (0.0, 1.0)):
            continue
        xo = _source_coords(ctm, np.arange(n_out), s, n_in, n_out, rs, re)
        if ctm == "tf_crop_and_resize":
            oshape = [1] * r
            oshape[ax] = n_out
            outside = outside | ((xo < 0) | (xo > n_in - 1)).reshape(oshape)
        if mode == "nearest":
            idx = np.clip(_nearest(xo, nmode, s < 1).astype(np.int64), 0, n_in - 1)
            y = np.take(y, idx, axis=ax)
            continue
        idx, w = _interp_weights(xo, s, mode, a, antialias and s < 1)
        if exclude:
            w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        if antialias and s < 1 or exclude:
            w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        g = np.take(y, np.clip(idx, 0, n_in - 1), axis=ax)  # [..., n_out, taps, ...]
        y = (g * w.reshape(w.shape + (1,) * (r - ax - 1))).sum(axis=ax + 1)
    if outside.any():
        y = np.where(outside, float(attr(node, "extrapolation_value", 0.0)), y)
    return [np.asarray(y).astype(x.dtype, copy=False)]
