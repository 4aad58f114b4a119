"""Integer Conv (incl. grouped / depthwise), Gemm and ConvTranspose, TFLM-exact.

TFLM CONV_2D / DEPTHWISE_CONV_2D (reference/integer_ops/conv.h, depthwise_conv.h):
    acc[c] = sum over in-image taps of w * (x - in_zp)  (+ bias[c]),  int32
    y = clamp(MultiplyByQuantizedMultiplier(acc, M[c], shift[c]) + out_zp, act range)
with M[c], shift[c] = QuantizeMultiplier(double(in_s) * double(w_s[c]) / double(out_s)).
Taps outside the image are skipped, which equals padding (x - in_zp) with zeros.

The sums are formed in floating point (BLAS): in float32 when the sum of |terms| is
below 2^24, else float64 (below 2^53); every partial sum is then an exact integer.
The result is wrapped to int32 like the C++ accumulator.
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.interp.int_kernels.util import (as_int, channel_shape, multipliers_for_channels, out_range,
                               qparams, scale_zp)


def _pair(node, name, default, n=2):
    v = node.attrs.get(name)
    return [int(t) for t in v] if v is not None else [default] * n


def _finish(node, acc, bias, real_multipliers):
    """Add bias, wrap to int32, requantize per output channel (axis 1) and clamp."""
    channels = acc.shape[1]
    if bias is not None:
        acc = acc + as_int(bias).reshape(channel_shape(acc.ndim))
    acc = qm.wrap_int32(acc)
    mult, shift = multipliers_for_channels(real_multipliers, channels)
    _, out_zp = scale_zp(node, 0, output=True)
    lo, hi = out_range(node)
    shape = channel_shape(acc.ndim)
    return qm.requantize(acc, mult.reshape(shape), shift.reshape(shape), out_zp, lo, hi)


def _conv2d_acc(xs, w, strides, pads, dilations, group):
    """int64 accumulators of a grouped 2-D convolution of offset input `xs` (NCHW)."""
    n, c, h, wd = xs.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    sh, sw = strides
    dh, dw = dilations
    ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise GraphError(f"Conv: empty output ({ho}x{wo}) for input {h}x{wd}")
    if c != cg * group or o % group:
        raise GraphError(f"Conv: input channels {c}, weight {w.shape} and group {group} disagree")
    # float arithmetic on integers is exact while every partial sum stays below 2^24 (float32)
    # or 2^53 (float64); bound them by the sum of |terms| to take the faster float32 when safe
    terms = cg * kh * kw if not (cg == 1 and group == c) else kh * kw
    bound = terms * float(np.max(np.abs(xs), initial=0)) * float(np.max(np.abs(w), initial=0))
    ftype = np.float32 if bound < 2 ** 24 else np.float64
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), ftype)
    xp[:, :, pt:pt + h, pl:pl + wd] = xs

    def tap(i, j):
        y0, x0 = i * dh, j * dw
        return xp[:, :, y0:y0 + sh * (ho - 1) + 1:sh, x0:x0 + sw * (wo - 1) + 1:sw]

    wf = w.astype(ftype)
    if cg == 1 and group == c:  # depthwise: output channel k reads input channel k // m
        src = np.arange(o) // (o // c) if o != c else slice(None)  # fancy indexing copies: only if needed
        acc = np.zeros((n, o, ho, wo), ftype)
        for i in range(kh):
            for j in range(kw):
                acc += tap(i, j)[:, src] * wf[:, 0, i, j].reshape(1, o, 1, 1)
        return acc.astype(np.int64)
    if kh == kw == 1 and sh == sw == 1:
        cols = tap(0, 0).reshape(n, group, cg, ho * wo)
    else:
        cols = np.empty((n, c, kh, kw, ho, wo), ftype)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = tap(i, j)
        cols = cols.reshape(n, group, cg * kh * kw, ho * wo)
    acc = np.matmul(wf.reshape(1, group, o // group, cg * kh * kw), cols)
    return acc.reshape(n, o, ho, wo).astype(np.int64)


@int_kernel("Conv")
def conv(node, inputs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    in_s, in_zp = scale_zp(node, 0)
    out_s, _ = scale_zp(node, 0, output=True)
    wq = qparams(node, 1)
    one_d = x.ndim == 3
    if one_d:  # Conv1D as a 2-D conv of height 1
        x, w = x[:, :, None, :], w[:, :, None, :]
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (Conv): only 1-D and 2-D convolutions, got rank {x.ndim}")
    if one_d:
        p = _pair(node, "pads", 0, 2)
        pads = [0, p[0], 0, p[1]]
        strides, dil = [1] + _pair(node, "strides", 1, 1), [1] + _pair(node, "dilations", 1, 1)
    else:
        pads = _pair(node, "pads", 0, 4)
        strides, dil = _pair(node, "strides", 1), _pair(node, "dilations", 1)
    group = int(node.attrs.get("group", 1))
    acc = _conv2d_acc(as_int(x) - in_zp, as_int(w), strides, pads, dil, group)
    y = _finish(node, acc, bias, qm.conv_real_multipliers(in_s, wq.scale, out_s))
    return [y[:, :, 0, :] if one_d else y]


@int_kernel("Gemm")
def gemm(node, inputs):
    """FULLY_CONNECTED: x [N, K], W [M, K] (transB=1 form; transB=0 accepted), bias [M]."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if node.attrs.get("transA", 0) or float(node.attrs.get("alpha", 1.0)) != 1.0 \
            or float(node.attrs.get("beta", 1.0)) != 1.0:
        raise GraphError(f"node {node.name} (Gemm): the integer Gemm needs transA=0, "
                         "alpha=beta=1 (normalize Gemm before quantizing)")
    trans_b = node.attrs.get("transB")
    if trans_b is None:
        trans_b = 1 if w.shape[1] == x.shape[-1] else 0
    wm = as_int(w) if trans_b else as_int(w).T
    in_s, in_zp = scale_zp(node, 0)
    out_s, _ = scale_zp(node, 0, output=True)
    wq = qparams(node, 1)
    xs = (as_int(x).reshape(-1, wm.shape[1]) - in_zp).astype(np.float64)
    acc = (xs @ wm.T.astype(np.float64)).astype(np.int64)
    if wq.scale.size == 1:  # TFLM per-tensor path: float product first
        real = np.array([qm.fc_real_multiplier(in_s, wq.scale[0], out_s)])
    else:
        real = qm.conv_real_multipliers(in_s, wq.scale, out_s)
    y = _finish(node, acc, bias, real)
    return [y.reshape(x.shape[:-1] + (wm.shape[0],))]


@int_kernel("ConvTranspose")
def conv_transpose(node, inputs):
    """TRANSPOSE_CONV: scatter w * (x - in_zp) into the output, crop by the top/left pads."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (ConvTranspose): only 2-D, got rank {x.ndim}")
    if int(node.attrs.get("group", 1)) != 1 or any(d != 1 for d in _pair(node, "dilations", 1)):
        raise GraphError(f"node {node.name} (ConvTranspose): TFLM TRANSPOSE_CONV supports "
                         "group=1 and dilation 1 only")
    in_s, in_zp = scale_zp(node, 0)
    out_s, _ = scale_zp(node, 0, output=True)
    wq = qparams(node, 1)
    n, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    sh, sw = _pair(node, "strides", 1)
    pt, pl, pb, pr = _pair(node, "pads", 0, 4)
    oph, opw = _pair(node, "output_padding", 0)
    out_shape = node.attrs.get("output_shape")
    if out_shape is not None:
        ho, wo = int(out_shape[-2]), int(out_shape[-1])
    else:
        ho = sh * (h - 1) + oph + kh - pt - pb
        wo = sw * (wd - 1) + opw + kw - pl - pr
    if node.outputs[0].shape is not None:
        ho, wo = node.outputs[0].shape[-2:]
    xs = (as_int(x) - in_zp).astype(np.float64)
    wf = as_int(w).astype(np.float64)
    full = np.zeros((n, cout, max(sh * (h - 1) + kh, pt + ho), max(sw * (wd - 1) + kw, pl + wo)))
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("ncyx,co->noyx", xs, wf[:, :, i, j])
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw] += contrib
    acc = full[:, :, pt:pt + ho, pl:pl + wo].astype(np.int64)
    if wq.scale.size not in (1, cout):
        raise GraphError(f"node {node.name} (ConvTranspose): weight scales must be per-tensor or "
                         f"per output channel (axis 1, {cout}), got {wq.scale.size}")
    return [_finish(node, acc, bias, qm.conv_real_multipliers(in_s, wq.scale, out_s))]
