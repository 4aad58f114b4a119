"""Integer Conv (incl. grouped / depthwise), Gemm and ConvTranspose, TFLM-exact.

TFLM CONV_2D / DEPTHWISE_CONV_2D (reference/integer_ops/conv.h, depthwise_conv.h):
    acc[c] = sum over in-image taps of w * (x - in_zp)  (+ bias[c]),  int32
    y = clamp(MultiplyByQuantizedMultiplier(acc, M[c], shift[c]) + out_zp, act range)
with M[c], shift[c] = QuantizeMultiplier(double(in_s) * double(w_s[c]) / double(out_s))
(qops.conv_params, with the clamp and the geometry).
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
from qcompiler.interp.int_kernels.util import as_int, channel_shape
from qcompiler.numerics.qops import conv_params, conv_transpose_params, fc_params


def _finish(acc, bias, p):
    """Add bias, wrap to int32, requantize per output channel (axis 1) and clamp."""
    if bias is not None:
        acc = acc + as_int(bias).reshape(channel_shape(acc.ndim))
    acc = qm.wrap_int32(acc)
    shape = channel_shape(acc.ndim)
    return qm.requantize(acc, p.multiplier.reshape(shape), p.shift.reshape(shape),
                         p.output_zero_point, p.act_min, p.act_max)


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
    p = conv_params(node)
    one_d = x.ndim == 3
    if one_d:  # Conv1D as a 2-D conv of height 1
        x, w = x[:, :, None, :], w[:, :, None, :]
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (Conv): only 1-D and 2-D convolutions, got rank {x.ndim}")
    acc = _conv2d_acc(as_int(x) - p.input_zero_point, as_int(w), p.strides, p.pads, p.dilations, p.group)
    y = _finish(acc, bias, p)
    return [y[:, :, 0, :] if one_d else y]


@int_kernel("Gemm")
def gemm(node, inputs):
    """FULLY_CONNECTED: x [N, K], W [M, K] (transB=1 form; transB=0 accepted), bias [M]."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    p = fc_params(node, x.shape[-1])
    wm = as_int(w) if p.trans_b else as_int(w).T
    xs = (as_int(x).reshape(-1, wm.shape[1]) - p.input_zero_point).astype(np.float64)
    acc = (xs @ wm.T.astype(np.float64)).astype(np.int64)
    y = _finish(acc, bias, p)
    return [y.reshape(x.shape[:-1] + (wm.shape[0],))]


@int_kernel("ConvTranspose")
def conv_transpose(node, inputs):
    """TRANSPOSE_CONV: scatter w * (x - in_zp) into the output, crop by the top/left pads."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    if x.ndim != 4:
        raise GraphError(f"node {node.name} (ConvTranspose): only 2-D, got rank {x.ndim}")
    p = conv_transpose_params(node)
    n, cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    sh, sw = p.strides
    pt, pl, pb, pr = p.pads
    oph, opw = p.output_padding
    out_shape = node.attrs.get("output_shape")
    if out_shape is not None:
        ho, wo = int(out_shape[-2]), int(out_shape[-1])
    else:
        ho = sh * (h - 1) + oph + kh - pt - pb
        wo = sw * (wd - 1) + opw + kw - pl - pr
    if node.outputs[0].shape is not None:
        ho, wo = node.outputs[0].shape[-2:]
    xs = (as_int(x) - p.input_zero_point).astype(np.float64)
    wf = as_int(w).astype(np.float64)
    full = np.zeros((n, cout, max(sh * (h - 1) + kh, pt + ho), max(sw * (wd - 1) + kw, pl + wo)))
    for i in range(kh):
        for j in range(kw):
            contrib = np.einsum("ncyx,co->noyx", xs, wf[:, :, i, j])
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw] += contrib
    acc = full[:, :, pt:pt + ho, pl:pl + wo].astype(np.int64)
    return [_finish(acc, bias, p)]
