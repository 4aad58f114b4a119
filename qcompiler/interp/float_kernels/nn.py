"""Float reference kernels for the windowed ops: Conv, ConvTranspose, pooling, normalisation.

Also the small attribute helpers shared with `float_kernels`. Convolutions run as
im2col + one BLAS matmul on a channels-last copy of the input (grouped convs as a
batched matmul, depthwise convs as a loop over the kernel taps), pooling as a
loop over the kernel taps of strided views: no Python loops over pixels.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from qcompiler.interp.float_kernels.registry import float_kernel


# ---- helpers shared by the kernel modules ------------------------------------
def attr(node, name, default=None):
    v = node.attrs.get(name)
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else v


def opt(inputs, i):
    """Optional input i, or None when absent (or an empty name in ONNX)."""
    return inputs[i] if i < len(inputs) and inputs[i] is not None else None


def f64(x):
    return np.asarray(x, np.float64)


def ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def opset(node) -> int | None:
    """Default-domain opset of the model the node came from (`node.meta["opset"]`), if known."""
    meta = getattr(node, "meta", None) or {}
    return meta.get("opset")


def unsupported(node, what: str):
    raise NotImplementedError(f"{node.op} (node {node.name}): {what} is not supported")


def _taps(kernel, dil, starts, counts, strides):
    """(tap index, tuple of strided slices) for every kernel position."""
    for k in np.ndindex(*kernel):
        yield k, tuple(slice(b + ki * d, b + ki * d + (n - 1) * s + 1, s)
                       for ki, d, b, n, s in zip(k, dil, starts, counts, strides))


class WindowGeometry:
    """Strides, dilations, effective kernel, begin/end pads and output size per spatial axis."""

    def __init__(self, node, spatial, kernel, ceil_mode=False):
        nd = len(spatial)
        self.strides = ints(attr(node, "strides", [1] * nd))
        self.dil = ints(attr(node, "dilations", [1] * nd))
        self.keff = [(k - 1) * d + 1 for k, d in zip(kernel, self.dil)]
        auto_pad = attr(node, "auto_pad", "NOTSET")
        pads = ints(attr(node, "pads", [0] * 2 * nd)) if auto_pad == "NOTSET" else [0] * 2 * nd
        self.begin, self.end, self.out = [], [], []
        for i, (n, s, ke) in enumerate(zip(spatial, self.strides, self.keff)):
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                o = -(-n // s)
                total = max(0, (o - 1) * s + ke - n)
                pb = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
                pe = total - pb
            elif auto_pad in ("NOTSET", "VALID"):
                pb, pe = pads[i], pads[i + nd]
                span = n + pb + pe - ke
                o = (-(-span // s) if ceil_mode else span // s) + 1
                if ceil_mode and (o - 1) * s >= n + pb:
                    o -= 1  # the last window would start in the end padding
            else:
                unsupported(node, f"auto_pad={auto_pad!r}")
            if o <= 0:
                raise ValueError(f"{node.op} (node {node.name}): kernel {kernel} does not fit "
                                 f"the padded input {list(spatial)}")
            self.begin.append(pb)
            self.end.append(pe)
            self.out.append(o)
        # padding beyond `end` that ceil_mode windows reach (never counted by pooling)
        self.extra = [max(0, (o - 1) * s + ke - (n + pb + pe)) for o, s, ke, n, pb, pe in
                      zip(self.out, self.strides, self.keff, spatial, self.begin, self.end)]


# ---- convolution -------------------------------------------------------------
DEPTHWISE_BLOCK = 1 << 16  # output values per step of the depthwise tap loop (cache-resident)


def _depthwise(x, w, b, geo, kernel, mg: int, dtype) -> np.ndarray:
    """Depthwise Conv (channel multiplier mg), NCHW: every output starts at +0.0 and adds each
    tap's product in kernel order, in `dtype` (two roundings per tap, no FMA). Runs one sample and
    a few channels at a time so the partial sums stay in the CPU cache."""
    n, c = x.shape[:2]
    m, nd, out = c * mg, x.ndim - 2, geo.out
    xp = np.pad(x.astype(dtype, copy=False), [(0, 0), (0, 0)] + list(zip(geo.begin, geo.end)))
    if mg > 1:
        xp = np.repeat(xp, mg, axis=1)  # output channel k reads input channel k // mg
    wk = w.reshape(m, -1).astype(dtype, copy=False)
    taps = [sl for _, sl in _taps(kernel, geo.dil, [0] * nd, out, geo.strides)]
    y = np.zeros((n, m, *out), dtype)
    step = max(1, DEPTHWISE_BLOCK // max(1, math.prod(out)))
    tmp = np.empty((min(step, m), *out), dtype)
    wshape = (-1,) + (1,) * nd
    for i in range(n):
        for c0 in range(0, m, step):
            yb, xb = y[i, c0:c0 + step], xp[i, c0:c0 + step]
            tb = tmp[:yb.shape[0]]
            for t, sl in enumerate(taps):
                np.multiply(xb[(slice(None),) + sl], wk[c0:c0 + step, t].reshape(wshape), out=tb)
                yb += tb
    if b is not None:
        y += b.astype(dtype, copy=False).reshape((1, m) + (1,) * nd)
    return y


@float_kernel("Conv")
def conv(node, inputs):
    x, w, b = inputs[0], inputs[1], opt(inputs, 2)
    nd = x.ndim - 2
    kernel = list(w.shape[2:])
    g = int(attr(node, "group", 1))
    n, c, m = x.shape[0], x.shape[1], w.shape[0]
    cg, mg = c // g, m // g
    if cg * g != c or mg * g != m or w.shape[1] != cg:
        raise ValueError(f"Conv (node {node.name}): weight {w.shape} does not fit input {x.shape} with group={g}")
    geo = WindowGeometry(node, x.shape[2:], kernel)
    dtype = np.result_type(x.dtype, w.dtype)
    if cg == 1 and g > 1:
        return [_depthwise(x, w, b, geo, kernel, mg, dtype)]
    xp = np.pad(np.moveaxis(x, 1, -1).astype(dtype, copy=False),  # channels-last [N, *sp, C]
                [(0, 0)] + list(zip(geo.begin, geo.end)) + [(0, 0)])
    out, kk = geo.out, math.prod(kernel)
    p = n * math.prod(out)
    sp_axes = tuple(range(1, nd + 1))
    win = sliding_window_view(xp, geo.keff, axis=sp_axes)  # [N, *sp', C, *keff]
    win = win[(slice(None),) + tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, geo.strides))
              + (slice(None),) + tuple(slice(None, None, d) for d in geo.dil)]  # [N, *out, C, *k]
    k_axes = tuple(range(nd + 2, 2 * nd + 2))
    if g == 1:
        cols = win.transpose((0,) + sp_axes + k_axes + (nd + 1,)).reshape(p, kk * c)
        wm = w.transpose(tuple(range(2, nd + 2)) + (1, 0)).reshape(kk * c, m)
        y = cols @ wm.astype(dtype, copy=False)
    else:
        win = win.reshape(n, *out, g, cg, *kernel)  # split C into (g, cg)
        perm = (nd + 1, 0) + sp_axes + tuple(a + 1 for a in k_axes) + (nd + 2,)
        cols = win.transpose(perm).reshape(g, p, kk * cg)
        wm = w.reshape(g, mg, cg, *kernel).transpose((0,) + tuple(range(3, nd + 3)) + (2, 1))
        y = np.matmul(cols, wm.reshape(g, kk * cg, mg).astype(dtype, copy=False))  # [g, P, mg]
        y = y.transpose(1, 0, 2).reshape(p, m)
    if b is not None:
        y += b.astype(dtype, copy=False)
    return [np.ascontiguousarray(np.moveaxis(y.reshape(n, *out, m), -1, 1))]


def _crop(y, begin, size):
    """y[:, b:b+s, ...] over axes 1..nd (channels-last), zero-filling outside the array."""
    lo = [max(0, -b) for b in begin]
    hi = [max(0, b + s - d) for b, s, d in zip(begin, size, y.shape[1:-1])]
    if any(lo) or any(hi):
        y = np.pad(y, [(0, 0)] + list(zip(lo, hi)) + [(0, 0)])
    return y[(slice(None),) + tuple(slice(b + l, b + l + s) for b, l, s in zip(begin, lo, size))]


@float_kernel("ConvTranspose")
def conv_transpose(node, inputs):
    x, w, b = inputs[0], inputs[1], opt(inputs, 2)
    nd = x.ndim - 2
    n, c = x.shape[:2]
    sp = x.shape[2:]
    g = int(attr(node, "group", 1))
    cg, mg = c // g, w.shape[1]
    m = mg * g
    kernel = list(w.shape[2:])
    strides = ints(attr(node, "strides", [1] * nd))
    dil = ints(attr(node, "dilations", [1] * nd))
    out_pad = ints(attr(node, "output_padding", [0] * nd))
    full = [(i - 1) * s + (k - 1) * d + 1 + op for i, s, k, d, op in zip(sp, strides, kernel, dil, out_pad)]
    auto_pad = attr(node, "auto_pad", "NOTSET")
    out_shape = attr(node, "output_shape")
    if out_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = ints(out_shape)[-nd:] if out_shape is not None else [i * s for i, s in zip(sp, strides)]
        total = [f - t for f, t in zip(full, target)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
        size = target
    elif auto_pad in ("NOTSET", "VALID"):
        pads = ints(attr(node, "pads", [0] * 2 * nd)) if auto_pad == "NOTSET" else [0] * 2 * nd
        begin = pads[:nd]
        size = [f - pb - pe for f, pb, pe in zip(full, pads[:nd], pads[nd:])]
    else:
        unsupported(node, f"auto_pad={auto_pad!r}")
    dtype = np.result_type(x.dtype, w.dtype)
    kk, p = math.prod(kernel), n * math.prod(sp)
    xm = np.moveaxis(x, 1, -1).reshape(p, c).astype(dtype, copy=False)
    if g == 1:
        cols = xm @ w.reshape(c, m * kk).astype(dtype, copy=False)
    else:
        cols = np.matmul(xm.reshape(p, g, cg).transpose(1, 0, 2),
                         w.reshape(g, cg, mg * kk).astype(dtype, copy=False))  # [g, P, mg*K]
        cols = cols.transpose(1, 0, 2)
    cols = cols.reshape(n, *sp, m, *kernel)
    y = np.zeros((n, *full, m), dtype)
    for k, sl in _taps(kernel, dil, [0] * nd, sp, strides):
        y[(slice(None),) + sl] += cols[(Ellipsis,) + k]
    y = _crop(y, begin, size)
    if b is not None:
        y = y + b.astype(dtype, copy=False)
    return [np.ascontiguousarray(np.moveaxis(y, -1, 1))]


# ---- pooling -----------------------------------------------------------------
def _window_counts(geo, spatial, include_pad):
    """Per-output count of window taps inside the counted region (separable over axes)."""
    counts = np.ones((), np.float64)
    for n, o, s, d, ke, pb, pe in zip(spatial, geo.out, geo.strides, geo.dil, geo.keff, geo.begin, geo.end):
        lo, hi = (0, n + pb + pe) if include_pad else (pb, pb + n)
        pos = np.arange(o)[:, None] * s + np.arange(0, ke, d)[None, :]
        cnt = ((pos >= lo) & (pos < hi)).sum(axis=1).astype(np.float64)
        counts = np.multiply.outer(counts, cnt)
    return counts


@float_kernel("MaxPool", "AveragePool", "LpPool")
def pool(node, inputs):
    x = inputs[0]
    nd = x.ndim - 2
    kernel = ints(attr(node, "kernel_shape"))
    if int(attr(node, "storage_order", 0)) not in (0, 1):
        unsupported(node, f"storage_order={attr(node, 'storage_order')}")
    geo = WindowGeometry(node, x.shape[2:], kernel, ceil_mode=bool(attr(node, "ceil_mode", 0)))
    if node.op == "MaxPool":
        fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        xf = x
    else:
        fill, xf = 0.0, x.astype(np.float64)
        if node.op == "LpPool":
            xf = np.abs(xf) ** float(attr(node, "p", 2))
    xp = np.pad(xf, [(0, 0), (0, 0)] + [(pb, pe + ex) for pb, pe, ex in zip(geo.begin, geo.end, geo.extra)],
                constant_values=fill)
    acc, arg = None, None
    want_idx = node.op == "MaxPool" and len(node.outputs) > 1
    for t, (_, sl) in enumerate(_taps(kernel, geo.dil, [0] * nd, geo.out, geo.strides)):
        v = xp[(slice(None), slice(None)) + sl]
        if acc is None:
            acc = v.copy()
            arg = np.zeros(acc.shape, np.int64) if want_idx else None
        elif node.op == "MaxPool":
            if want_idx:
                arg[v > acc] = t
            np.maximum(acc, v, out=acc)
        else:
            acc += v
    if node.op == "AveragePool":
        acc /= _window_counts(geo, x.shape[2:], bool(attr(node, "count_include_pad", 0)))
    elif node.op == "LpPool":
        acc **= 1.0 / float(attr(node, "p", 2))
    outs = [acc.astype(x.dtype, copy=False)]
    if want_idx:
        outs.append(_max_indices(node, x.shape, geo, kernel, arg))
    return outs


def _max_indices(node, shape, geo, kernel, arg):
    """Flat NCHW (storage_order 0) or per-channel column-major (1) index of each maximum."""
    sp = shape[2:]
    taps = np.array(list(np.ndindex(*kernel)), np.int64).reshape(-1, len(kernel))
    col_major = int(attr(node, "storage_order", 0)) == 1
    flat = np.arange(shape[0] * shape[1]).reshape(shape[0], shape[1], *([1] * len(sp))) * math.prod(sp)
    for i, (o, s, d, pb) in enumerate(zip(geo.out, geo.strides, geo.dil, geo.begin)):
        pos = np.arange(o).reshape([o] + [1] * (len(sp) - 1 - i)) * s + taps[arg, i] * d - pb
        flat = flat + pos * (math.prod(sp[:i]) if col_major else math.prod(sp[i + 1:]))
    return flat


@float_kernel("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(node, inputs):
    x = inputs[0]
    axes = tuple(range(2, x.ndim))
    if node.op == "GlobalMaxPool":
        return [x.max(axis=axes, keepdims=True)]
    if node.op == "GlobalLpPool":
        p = float(attr(node, "p", 2))
        y = (np.abs(x.astype(np.float64)) ** p).sum(axis=axes, keepdims=True) ** (1.0 / p)
        return [y.astype(x.dtype)]
    return [x.mean(axis=axes, keepdims=True, dtype=np.float64).astype(x.dtype)]


# ---- normalisation -----------------------------------------------------------
@float_kernel("BatchNormalization")
def batch_norm(node, inputs):
    """Inference form; training form (batch statistics, as onnxruntime) when training_mode=1 or,
    before opset 14, when the running-statistics outputs are requested."""
    x, scale, bias, mean, var = inputs[:5]
    if int(attr(node, "spatial", 1)) != 1:
        unsupported(node, f"spatial={attr(node, 'spatial')}")
    eps, extra = float(attr(node, "epsilon", 1e-5)), []
    if int(attr(node, "training_mode", 0)) or len(node.outputs) > 1:
        axes = (0,) + tuple(range(2, x.ndim))
        bm, bv = f64(x).mean(axis=axes), f64(x).var(axis=axes)
        mom = float(attr(node, "momentum", 0.9))
        extra = [f64(mean) * mom + bm * (1 - mom), f64(var) * mom + bv * (1 - mom), bm, 1 / np.sqrt(bv + eps)]
        extra = [e.astype(mean.dtype) for e in extra[:len(node.outputs) - 1]]
        mean, var = bm, bv
    a = f64(scale) / np.sqrt(f64(var) + eps)
    b = f64(bias) - f64(mean) * a
    shape = (-1,) + (1,) * (x.ndim - 2)
    return [(f64(x) * a.reshape(shape) + b.reshape(shape)).astype(x.dtype)] + extra


@float_kernel("InstanceNormalization")
def instance_norm(node, inputs):
    x, scale, bias = inputs
    axes = tuple(range(2, x.ndim))
    xf = f64(x)
    mu, var = xf.mean(axis=axes, keepdims=True), xf.var(axis=axes, keepdims=True)
    shape = (-1,) + (1,) * (x.ndim - 2)
    y = (xf - mu) / np.sqrt(var + float(attr(node, "epsilon", 1e-5)))
    return [(y * f64(scale).reshape(shape) + f64(bias).reshape(shape)).astype(x.dtype)]


@float_kernel("LayerNormalization")
def layer_norm(node, inputs):
    x, scale, bias = inputs[0], inputs[1], opt(inputs, 2)
    axis = int(attr(node, "axis", -1)) % x.ndim
    axes = tuple(range(axis, x.ndim))
    xf = f64(x)
    mu = xf.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((xf - mu) ** 2).mean(axis=axes, keepdims=True) + float(attr(node, "epsilon", 1e-5)))
    y = (xf - mu) * inv * f64(scale) + (0.0 if bias is None else f64(bias))
    return [y.astype(x.dtype), mu.astype(np.float32), inv.astype(np.float32)][:max(1, len(node.outputs))]


@float_kernel("LRN")
def lrn(node, inputs):
    x = inputs[0]
    size = int(attr(node, "size"))
    sq = np.pad(f64(x) ** 2, [(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
    cs = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, axis=1)], axis=1)
    window = cs[:, size:] - cs[:, :-size]
    alpha, beta = float(attr(node, "alpha", 1e-4)), float(attr(node, "beta", 0.75))
    return [(f64(x) / (float(attr(node, "bias", 1.0)) + alpha / size * window) ** beta).astype(x.dtype)]
