"""Lowerings of the compute ops: quantized IR node -> integer-only Relax ops.

Each function `fn(lw, node) -> [relax expr]` reproduces the integer reference
kernel of the same op (qcompiler/interp/int_kernels/*.py) with integer tensor ops:
int8 data, int16 zero-point-offset operands, int32 accumulation, int64
fixed-point requantization (intmath.RelaxEmitter), clamp, cast to int8.
Parameters (multipliers, shifts, tables) come from the same fixed_point
functions the reference calls, so both sides use identical constants.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from qcompiler.interp import int_kernels  # noqa: F401 - registers the reference kernels (tables below)
from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import BackendError
from qcompiler.interp.int_kernels.pool import _out_size  # the reference's pooled-size rule, shared
from qcompiler.interp.int_kernels.rsqrt import rsqrt_table
from qcompiler.interp.int_kernels.util import (multipliers_for_channels, out_range, qparams,
                                        require_same_quant, scale_zp)
from qcompiler.interp import INT_KERNELS

from qcompiler.backends.tvm.intmath import shape_of

R = relax.op


def _ints(node, name, default, n=2):
    v = node.attrs.get(name)
    return [int(t) for t in v] if v is not None else [default] * n


def _constant(node, index, what):
    v = node.input(index)
    if v is None:
        return None
    if not v.is_constant:
        raise BackendError(f"node {node.name} ({node.op}): the {what} (input #{index}, {v.name}) "
                           "must be a constant for the TVM backend")
    return np.asarray(v.data)


def _offset(lw, x, zero_point: int):
    """int8 -> int16 with the zero point subtracted (|x - zp| <= 255 fits exactly)."""
    em = lw.em
    return em.emit(R.subtract(em.cast(x, "int16"), em.const(zero_point, "int16")))


def _channel_params(real, channels, shape):
    """Per-channel (multiplier, shift) from fixed_point, shaped to broadcast on the channel axis."""
    mult, shift = multipliers_for_channels(real, channels)
    return mult.reshape(shape), shift.reshape(shape)


# ---- Conv / Gemm ------------------------------------------------------------------------

def _conv_geometry(node, rank):
    """(pads t,l,b,r; strides; dilations) in 2-D form; Conv1D is a height-1 Conv2D."""
    if rank == 3:
        p = _ints(node, "pads", 0, 2)
        return [0, p[0], 0, p[1]], [1] + _ints(node, "strides", 1, 1), [1] + _ints(node, "dilations", 1, 1)
    if rank != 4:
        raise BackendError(f"node {node.name} (Conv): only 1-D and 2-D convolutions, got rank {rank}")
    return _ints(node, "pads", 0, 4), _ints(node, "strides", 1), _ints(node, "dilations", 1)


def conv(lw, node):
    """CONV_2D / DEPTHWISE_CONV_2D: int32 sum of w * (x - in_zp), + bias, requantize."""
    em = lw.em
    x = lw.value(node.inputs[0])
    w, bias = _constant(node, 1, "weight"), _constant(node, 2, "bias")
    in_s, in_zp = scale_zp(node, 0)
    out_s, out_zp = scale_zp(node, 0, output=True)
    xshape = shape_of(x)
    pads, strides, dilations = _conv_geometry(node, len(xshape))
    if len(xshape) == 3:
        x = em.emit(R.reshape(x, (xshape[0], xshape[1], 1, xshape[2])))
        w = w[:, :, None, :]
    channels = w.shape[0]
    weight = em.array(w.astype(np.int8), f"{node.name}_weight")
    acc = em.emit(R.nn.conv2d(_offset(lw, x, in_zp), em.cast(weight, "int16"), strides=strides,
                              padding=pads, dilation=dilations,
                              groups=int(node.attrs.get("group", 1)), out_dtype="int32"),
                  f"{node.name}_acc")
    if bias is not None:
        acc = em.emit(R.add(acc, em.const(bias.reshape(1, -1, 1, 1), "int32", f"{node.name}_bias")))
    real = qm.conv_real_multipliers(in_s, qparams(node, 1).scale, out_s)
    mult, shift = _channel_params(real, channels, (1, -1, 1, 1))
    y = em.requantize(acc, mult, shift, out_zp, *out_range(node), name=node.name)
    if len(xshape) == 3:
        y = em.emit(R.reshape(y, tuple(shape_of(y)[:2]) + (shape_of(y)[3],)))
    return [y]


def gemm(lw, node):
    """FULLY_CONNECTED: x [N, K] times W [M, K]^T in int32, + bias, requantize."""
    em = lw.em
    if node.attrs.get("transA", 0) or float(node.attrs.get("alpha", 1.0)) != 1.0 \
            or float(node.attrs.get("beta", 1.0)) != 1.0:
        raise BackendError(f"node {node.name} (Gemm): needs transA=0, alpha=beta=1 "
                           "(normalize Gemm before quantizing)")
    x = lw.value(node.inputs[0])
    xshape = shape_of(x)
    w, bias = _constant(node, 1, "weight"), _constant(node, 2, "bias")
    trans_b = node.attrs.get("transB")
    if trans_b is None:  # the reference's guess for a missing attribute
        trans_b = 1 if w.shape[1] == xshape[-1] else 0
    wm = w if trans_b else w.T                          # [M, K]
    m, k = wm.shape
    if len(xshape) != 2:
        x = em.emit(R.reshape(x, (-1, k)))
    weight = em.array(np.ascontiguousarray(wm.T).astype(np.int8), f"{node.name}_weight_t")
    acc = em.emit(R.matmul(_offset(lw, x, scale_zp(node, 0)[1]), em.cast(weight, "int16"),
                           out_dtype="int32"), f"{node.name}_acc")
    if bias is not None:
        acc = em.emit(R.add(acc, em.const(bias.reshape(1, -1), "int32", f"{node.name}_bias")))
    in_s, _ = scale_zp(node, 0)
    out_s, out_zp = scale_zp(node, 0, output=True)
    wq = qparams(node, 1)
    if wq.scale.size == 1:  # TFLM's per-tensor FULLY_CONNECTED multiplier
        real = np.array([qm.fc_real_multiplier(in_s, wq.scale[0], out_s)])
    else:
        real = qm.conv_real_multipliers(in_s, wq.scale, out_s)
    mult, shift = _channel_params(real, m, (1, -1))
    y = em.requantize(acc, mult, shift, out_zp, *out_range(node), name=node.name)
    if len(xshape) != 2:
        y = em.emit(R.reshape(y, tuple(xshape[:-1]) + (m,)))
    return [y]


# ---- element-wise binary ----------------------------------------------------------------

def add_sub(lw, node):
    """ADD / SUB: both sides to a common 2^20-scaled int32 scale, add, rescale (TFLM)."""
    em = lw.em
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    (m1, e1), (m2, e2), (mo, eo) = qm.add_params(s1, s2, so)
    sides = []
    for i, (z, m, e) in enumerate(((z1, m1, e1), (z2, m2, e2))):
        xv = em.emit(R.subtract(em.i64(lw.value(node.inputs[i])), em.const(z)))
        xv = em.emit(R.left_shift(xv, em.const(20)))   # |x - zp| << 20 < 2^31: no wrap needed
        sides.append(em.mbqm_smaller_than_one(xv, m, e, name=f"{node.name}_in{i}"))
    combine = R.subtract if node.op == "Sub" else R.add
    raw = em.wrap32(em.emit(combine(*sides)))
    y = em.mbqm_smaller_than_one(raw, mo, eo, name=f"{node.name}_out")
    return [em.clamp_cast(em.emit(R.add(y, em.const(zo))), *out_range(node))]


def mul(lw, node):
    """MUL: MBQM((x1 - zp1) * (x2 - zp2)) + out_zp."""
    em = lw.em
    (s1, z1), (s2, z2) = scale_zp(node, 0), scale_zp(node, 1)
    so, zo = scale_zp(node, 0, output=True)
    m, e = qm.quantize_multiplier(float(s1) * float(s2) / float(so))
    a = em.emit(R.subtract(em.i64(lw.value(node.inputs[0])), em.const(z1)))
    b = em.emit(R.subtract(em.i64(lw.value(node.inputs[1])), em.const(z2)))
    y = em.mbqm(em.emit(R.multiply(a, b)), m, e, name=node.name)
    return [em.clamp_cast(em.emit(R.add(y, em.const(zo))), *out_range(node))]


# ---- pooling ------------------------------------------------------------------------------

def _pool_geometry(node, xshape):
    """Window, strides, dilations, pads and output size exactly as the reference pools them.

    The bottom / right pads are extended so that a no-ceil window op yields the
    reference's output size (which covers ceil_mode).
    """
    if len(xshape) != 4:
        raise BackendError(f"node {node.name} ({node.op}): only 2-D pooling, got rank {len(xshape)}")
    kh, kw = (int(k) for k in node.attrs["kernel_shape"])
    sh, sw = _ints(node, "strides", 1)
    dh, dw = _ints(node, "dilations", 1)
    pt, pl, pb, pr = _ints(node, "pads", 0, 4)
    ceil_mode = int(node.attrs.get("ceil_mode", 0))
    h, w = xshape[2:]
    ho, wo = _out_size(h, kh, sh, dh, pt, pb, ceil_mode), _out_size(w, kw, sw, dw, pl, pr, ceil_mode)
    hp = max(pt + h, (ho - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pl + w, (wo - 1) * sw + (kw - 1) * dw + 1)
    if (hp - (kh - 1) * dh - 1) // sh + 1 != ho or (wp - (kw - 1) * dw - 1) // sw + 1 != wo:
        raise BackendError(f"node {node.name} ({node.op}): cannot express the pooled size "
                           f"{ho}x{wo} as a padded window op")
    return dict(kernel=(kh, kw), strides=(sh, sw), dilation=(dh, dw),
                pads=(pt, pl, hp - pt - h, wp - pl - w), out=(ho, wo))


def max_pool(lw, node):
    """MAX_POOL_2D: TVM pads with the int8 minimum, as the reference's -128 fill."""
    em = lw.em
    require_same_quant(node)
    x = lw.value(node.inputs[0])
    g = _pool_geometry(node, shape_of(x))
    y = em.emit(R.nn.max_pool2d(x, g["kernel"], g["strides"], g["pads"], g["dilation"]))
    return [em.clamp_cast(y, *out_range(node))]


def _valid_counts(g, h, w):
    """In-image taps per output position (the reference's window masks, summed)."""
    (kh, kw), (sh, sw), (dh, dw) = g["kernel"], g["strides"], g["dilation"]
    pt, pl, pb, pr = g["pads"]
    ho, wo = g["out"]
    valid = np.zeros((pt + h + pb, pl + w + pr), np.int64)
    valid[pt:pt + h, pl:pl + w] = 1
    count = np.zeros((ho, wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            count += valid[i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
    return count


def average_pool(lw, node):
    """AVERAGE_POOL_2D: int32 window sums (a depthwise conv with unit weights), rounded mean."""
    em = lw.em
    require_same_quant(node)
    x = lw.value(node.inputs[0])
    n, c, h, w = shape_of(x)
    g = _pool_geometry(node, (n, c, h, w))
    if int(node.attrs.get("count_include_pad", 0)) and any(_ints(node, "pads", 0, 4)):
        raise BackendError(f"node {node.name} (AveragePool): count_include_pad=1 with padding is "
                           "not TFLM AVERAGE_POOL_2D")
    count = _valid_counts(g, h, w)
    if np.any(count == 0):
        raise BackendError(f"node {node.name} (AveragePool): a window contains no input pixel")
    ones = R.ones((c, 1) + g["kernel"], "int16")
    total = em.emit(R.nn.conv2d(em.cast(x, "int16"), ones, strides=g["strides"], padding=g["pads"],
                                dilation=g["dilation"], groups=c, out_dtype="int32"),
                    f"{node.name}_sum")
    mean = em.rounded_mean(em.i64(total), count.reshape(1, 1, *count.shape), name=f"{node.name}_count")
    return [em.clamp_cast(mean, *out_range(node))]


def global_average_pool(lw, node):
    em = lw.em
    require_same_quant(node)
    x = lw.value(node.inputs[0])
    shape = shape_of(x)
    axes = list(range(2, len(shape)))
    total = em.emit(R.sum(em.cast(x, "int32"), axis=axes, keepdims=True), f"{node.name}_sum")
    mean = em.rounded_mean(em.i64(total), int(np.prod([shape[a] for a in axes])))
    return [em.clamp_cast(mean, *out_range(node))]


def reduce_mean(lw, node):
    """MEAN: sum of raw values minus zp * n, MBQM with 1/n folded into the multiplier."""
    em = lw.em
    x = lw.value(node.inputs[0])
    rank = len(shape_of(x))
    axes = _constant(node, 1, "axes") if node.input(1) is not None else node.attrs.get("axes")
    if axes is None or not len(np.atleast_1d(axes)):
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(rank))
    axes = sorted(int(a) % rank for a in np.atleast_1d(axes))
    count = int(np.prod([shape_of(x)[a] for a in axes]))
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    m, e = qm.mean_multiplier(*qm.quantize_multiplier(float(si) / float(so)), count)
    total = em.emit(R.sum(em.i64(x), axis=axes, keepdims=bool(int(node.attrs.get("keepdims", 1)))))
    shifted = em.wrap32(em.emit(R.subtract(total, em.const(zi * count))))
    y = em.emit(R.add(em.mbqm(shifted, m, e, name=node.name), em.const(zo)))
    return [em.clamp_cast(y, -128, 127)]


# ---- table-driven element-wise ops (Softmax: lower_softmax.py) ------------------------------

def unary_table(lw, node):
    """Element-wise int8 -> int8 op as a 256-entry table built by the reference kernel itself.

    Valid for ops whose output element depends only on the same input element
    (Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish), so it is exact by construction.
    """
    em = lw.em
    args = [np.arange(-128, 128, dtype=np.int8)]
    for i in range(1, len(node.inputs)):
        args.append(_constant(node, i, "bound"))
    table = np.asarray(INT_KERNELS[node.op](node, args)[0]).astype(np.int8).reshape(256)
    index = em.emit(R.add(em.cast(lw.value(node.inputs[0]), "int32"), em.const(128, "int32")))
    return [em.emit(R.take(em.array(table, f"{node.name}_table"), index, axis=0, mode="clip"))]


def rsqrt(lw, node):
    """Rsqrt by the reference's own 256-entry table (interp.int_kernels.rsqrt.rsqrt_table)."""
    em = lw.em
    index = em.emit(R.add(em.cast(lw.value(node.inputs[0]), "int32"), em.const(128, "int32")))
    return [em.emit(R.take(em.array(rsqrt_table(node), f"{node.name}_table"), index, axis=0, mode="clip"))]


COMPUTE_LOWERINGS = {
    "Conv": conv, "Gemm": gemm, "Add": add_sub, "Sub": add_sub, "Mul": mul,
    "MaxPool": max_pool, "AveragePool": average_pool, "GlobalAveragePool": global_average_pool,
    "ReduceMean": reduce_mean,
    "Rsqrt": rsqrt,
    **{op: unary_table for op in ("Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu", "HardSwish")},
}
