"""Lowerings of the compute ops: quantized IR node -> integer-only Relax ops.

Each function `fn(lw, node) -> [relax expr]` reproduces the integer reference
kernel of the same op (qcompiler/interp/int_kernels/*.py) with integer tensor ops:
int8 data, int16 zero-point-offset operands, int32 accumulation, int64
fixed-point requantization (intmath.RelaxEmitter), clamp, cast to int8. 16x8 (int16 data,
zero point 0): CONV_2D / FULLY_CONNECTED accumulate in int64 with the int64 bias and requantize
with the int64 MultiplyByQuantizedMultiplier; element-wise ops clamp to the int16 range; the
table ops take a 65536-entry table.
Parameters (multipliers, shifts, clamps, geometry, tables) come from the same
`qcompiler.numerics.qops` records the reference reads, so both sides use identical constants.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from qcompiler.errors import BackendError
from qcompiler.interp import INT_KERNELS
from qcompiler.numerics import qops

from qcompiler.backends.tvm.intmath import dtype_of, shape_of

R = relax.op


def _constant(node, index, what):
    v = node.input(index)
    if v is None:
        return None
    if not v.is_constant:
        raise BackendError(f"node {node.name} ({node.op}): the {what} (input #{index}, {v.name}) "
                           "must be a constant for the TVM backend")
    return np.asarray(v.data)


def _offset(lw, x, zero_point: int):
    """int8 -> int16 with the zero point subtracted (|x - zp| <= 255 fits exactly); int16
    data (16x8) has zero point 0 and passes as it is."""
    em = lw.em
    if dtype_of(x) == "int16":
        if zero_point:
            raise BackendError(f"int16 operand with zero point {zero_point}: 16x8 activations are symmetric")
        return x
    return em.emit(R.subtract(em.cast(x, "int16"), em.const(zero_point, "int16")))


# ---- Conv / Gemm ------------------------------------------------------------------------

def _accumulate(lw, node, acc, bias, p, shape):
    """+ bias, requantize: int32 (double rounding) or, for 16x8 int64 accumulators, int64."""
    em = lw.em
    wide = p.accumulator_bits == 64
    if bias is not None:
        acc = em.emit(R.add(acc, em.const(bias.reshape(shape), "int64" if wide else "int32", f"{node.name}_bias")))
    m, e = p.multiplier.reshape(shape), p.shift.reshape(shape)
    if not wide:
        return em.requantize(acc, m, e, p.output_zero_point, p.act_min, p.act_max, name=node.name)
    return em.plus_zp_clamp(em.mbqm_int64(acc, m, e, name=node.name), p.output_zero_point, p.act_min, p.act_max)


def conv(lw, node):
    """CONV_2D / DEPTHWISE_CONV_2D: int32 (16x8: int64) sum of w * (x - in_zp), + bias, requantize."""
    em = lw.em
    x = lw.value(node.inputs[0])
    w, bias = _constant(node, 1, "weight"), _constant(node, 2, "bias")
    p = qops.conv_params(node)
    xshape = shape_of(x)
    if len(xshape) == 3:
        x = em.emit(R.reshape(x, (xshape[0], xshape[1], 1, xshape[2])))
        w = w[:, :, None, :]
    weight = em.array(w.astype(np.int8), f"{node.name}_weight")
    acc = em.emit(R.nn.conv2d(_offset(lw, x, p.input_zero_point), em.cast(weight, "int16"),
                              strides=list(p.strides), padding=list(p.pads), dilation=list(p.dilations),
                              groups=p.group, out_dtype="int64" if p.accumulator_bits == 64 else "int32"),
                  f"{node.name}_acc")
    y = _accumulate(lw, node, acc, bias, p, (1, -1, 1, 1))
    if len(xshape) == 3:
        y = em.emit(R.reshape(y, tuple(shape_of(y)[:2]) + (shape_of(y)[3],)))
    return [y]


def gemm(lw, node):
    """FULLY_CONNECTED: x [N, K] times W [M, K]^T in int32, + bias, requantize."""
    em = lw.em
    x = lw.value(node.inputs[0])
    xshape = shape_of(x)
    p = qops.fc_params(node, xshape[-1])
    w, bias = _constant(node, 1, "weight"), _constant(node, 2, "bias")
    wm = w if p.trans_b else w.T                        # [M, K]
    m, k = wm.shape
    if len(xshape) != 2:
        x = em.emit(R.reshape(x, (-1, k)))
    weight = em.array(np.ascontiguousarray(wm.T).astype(np.int8), f"{node.name}_weight_t")
    acc = em.emit(R.matmul(_offset(lw, x, p.input_zero_point), em.cast(weight, "int16"),
                           out_dtype="int64" if p.accumulator_bits == 64 else "int32"), f"{node.name}_acc")
    y = _accumulate(lw, node, acc, bias, p, (1, -1))
    if len(xshape) != 2:
        y = em.emit(R.reshape(y, tuple(xshape[:-1]) + (m,)))
    return [y]


def conv_transpose(lw, node):
    """TRANSPOSE_CONV: the full int32 scatter of w * (x - in_zp) (no padding), extended with
    zeros where the output reaches past it, cropped at the top / left pads, + bias."""
    em = lw.em
    x = lw.value(node.inputs[0])
    w, bias = _constant(node, 1, "weight"), _constant(node, 2, "bias")
    p = qops.conv_transpose_params(node)
    weight = em.array(w.astype(np.int8), f"{node.name}_weight")          # [Cin, Cout, kh, kw]
    acc = em.emit(R.nn.conv2d_transpose(_offset(lw, x, p.input_zero_point), em.cast(weight, "int16"),
                                        strides=list(p.strides), out_dtype="int32"),
                  f"{node.name}_acc")
    ho, wo = lw.out_shape(node)[2:]
    pt, pl = p.pads[:2]
    for axis, (start, size) in ((2, (pt, ho)), (3, (pl, wo))):
        full = shape_of(acc)[axis]
        if start + size > full:
            shape = list(shape_of(acc))
            shape[axis] = start + size - full
            acc = em.emit(R.concat([acc, R.zeros(shape, "int32")], axis=axis))
        if start or start + size < shape_of(acc)[axis]:
            acc = em.emit(R.strided_slice(acc, [axis], [start], [start + size], assume_inbound=True))
    if bias is not None:
        acc = em.emit(R.add(acc, em.const(bias.reshape(1, -1, 1, 1), "int32", f"{node.name}_bias")))
    y = em.requantize(acc, p.multiplier.reshape(1, -1, 1, 1), p.shift.reshape(1, -1, 1, 1),
                      p.output_zero_point, p.act_min, p.act_max, name=node.name)
    return [y]


# ---- element-wise binary ----------------------------------------------------------------

def add_sub(lw, node):
    """ADD / SUB: both sides to a common 2^20-scaled int32 scale, add, rescale (TFLM)."""
    em = lw.em
    p = qops.add_params(node)
    sides = []
    for i, (z, m, e) in enumerate(((p.input1_zero_point, p.input1_multiplier, p.input1_shift),
                                   (p.input2_zero_point, p.input2_multiplier, p.input2_shift))):
        # |x - zp| << 20 < 2^31: no wrap
        xv = em.emit(R.left_shift(em.minus_zp(lw.value(node.inputs[i]), z), em.const(p.left_shift)))
        sides.append(em.mbqm_smaller_than_one(xv, m, e, name=f"{node.name}_in{i}"))
    combine = R.subtract if node.op == "Sub" else R.add
    raw = em.wrap32(em.emit(combine(*sides)))
    y = em.mbqm_smaller_than_one(raw, p.output_multiplier, p.output_shift, name=f"{node.name}_out")
    return [em.plus_zp_clamp(y, p.output_zero_point, p.act_min, p.act_max)]


def mul(lw, node):
    """MUL: MBQM((x1 - zp1) * (x2 - zp2)) + out_zp."""
    em = lw.em
    p = qops.mul_params(node)
    a = em.minus_zp(lw.value(node.inputs[0]), p.input1_zero_point)
    b = em.minus_zp(lw.value(node.inputs[1]), p.input2_zero_point)
    y = em.mbqm(em.emit(R.multiply(a, b)), p.multiplier, p.shift, name=node.name)
    return [em.plus_zp_clamp(y, p.output_zero_point, p.act_min, p.act_max)]


def prelu(lw, node):
    """PRELU: x >= zp: MBQM(x - zp, M1, s1); else MBQM((x - zp) * (a - a_zp), M2, s2); + out_zp."""
    em = lw.em
    p = qops.prelu_params(node)
    xv = em.minus_zp(lw.value(node.inputs[0]), p.input_zero_point)
    av = em.minus_zp(lw.value(node.inputs[1]), p.alpha_zero_point)
    pos = em.mbqm(xv, p.identity_multiplier, p.identity_shift, name=f"{node.name}_pos")
    neg = em.mbqm(em.emit(R.multiply(xv, av)), p.alpha_multiplier, p.alpha_shift, name=f"{node.name}_neg")
    y = em.emit(R.where(em.emit(R.greater_equal(xv, em.const(0))), pos, neg))  # broadcast shape
    return [em.plus_zp_clamp(y, p.output_zero_point, -128, 127)]


# ---- pooling ------------------------------------------------------------------------------

def _pool_window(node, p):
    """The reference's windows as a padded window op: the bottom / right pads are extended
    to the padded size, so that a no-ceil window op yields the pooled size (ceil_mode too)."""
    (kh, kw), (sh, sw), (dh, dw) = p.kernel, p.strides, p.dilations
    (h, w), (ho, wo), (hp, wp) = p.in_hw, p.out_hw, p.padded_hw
    if (hp - (kh - 1) * dh - 1) // sh + 1 != ho or (wp - (kw - 1) * dw - 1) // sw + 1 != wo:
        raise BackendError(f"node {node.name} ({node.op}): cannot express the pooled size "
                           f"{ho}x{wo} as a padded window op")
    pt, pl = p.pads[:2]
    return (pt, pl, hp - pt - h, wp - pl - w)


def max_pool(lw, node):
    """MAX_POOL_2D: TVM pads with the int8 minimum, as the reference's -128 fill."""
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.pool_params(node, shape_of(x))
    y = em.emit(R.nn.max_pool2d(x, p.kernel, p.strides, _pool_window(node, p), p.dilations))
    return [em.clamp_cast(y, p.act_min, p.act_max)]


def average_pool(lw, node):
    """AVERAGE_POOL_2D: int32 window sums (a depthwise conv with unit weights), rounded mean."""
    em = lw.em
    x = lw.value(node.inputs[0])
    c = shape_of(x)[1]
    p = qops.pool_params(node, shape_of(x))
    ones = R.ones((c, 1) + p.kernel, "int16")
    total = em.emit(R.nn.conv2d(em.cast(x, "int16"), ones, strides=p.strides,
                                padding=_pool_window(node, p), dilation=p.dilations, groups=c,
                                out_dtype="int32"),
                    f"{node.name}_sum")
    mean = em.rounded_mean(em.i64(total), p.counts.reshape(1, 1, *p.counts.shape),
                           name=f"{node.name}_count")
    return [em.clamp_cast(mean, p.act_min, p.act_max)]


def global_average_pool(lw, node):
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.global_pool_params(node, shape_of(x))
    axes = list(range(2, len(shape_of(x))))
    total = em.emit(R.sum(em.cast(x, "int32"), axis=axes, keepdims=True), f"{node.name}_sum")
    mean = em.rounded_mean(em.i64(total), p.count)
    return [em.clamp_cast(mean, p.act_min, p.act_max)]


def global_max_pool(lw, node):
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.global_pool_params(node, shape_of(x))
    y = em.emit(R.max(x, axis=list(range(2, len(shape_of(x)))), keepdims=True))
    return [em.clamp_cast(y, p.act_min, p.act_max)]


def reduce_mean(lw, node):
    """MEAN: sum of raw values minus zp * n, MBQM with 1/n folded into the multiplier."""
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.mean_params(node, shape_of(x))
    if p.noop:
        return [x]
    total = em.emit(R.sum(em.i64(x), axis=list(p.axes), keepdims=bool(p.keepdims)))
    shifted = em.wrap32(em.emit(R.subtract(total, em.const(p.input_zero_point * p.count))))
    info = np.iinfo(em.out_dtype)
    return [em.plus_zp_clamp(em.mbqm(shifted, p.multiplier, p.shift, name=node.name), p.output_zero_point,
                             int(info.min), int(info.max))]


# ---- table-driven element-wise ops (Softmax: lower_softmax.py) ------------------------------

def unary_table(lw, node):
    """Element-wise int8 -> int8 op as a 256-entry table built by the reference kernel itself
    (int16 -> int16: a 65536-entry one).

    Valid for ops whose output element depends only on the same input element
    (Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish), so it is exact by construction.
    """
    em = lw.em
    x = lw.value(node.inputs[0])
    info = np.iinfo(dtype_of(x))
    args = [np.arange(info.min, info.max + 1, dtype=info.dtype)]
    for i in range(1, len(node.inputs)):
        args.append(_constant(node, i, "bound"))
    table = np.asarray(INT_KERNELS[node.op](node, args)[0]).astype(em.out_dtype).reshape(-1)
    index = em.emit(R.add(em.cast(x, "int32"), em.const(-int(info.min), "int32")))
    return [em.emit(R.take(em.array(table, f"{node.name}_table"), index, axis=0, mode="clip"))]


def rsqrt(lw, node):
    """Rsqrt by the reference's own 256-entry table (qops.rsqrt_params)."""
    em = lw.em
    table = np.array(qops.rsqrt_params(node).table)
    index = em.emit(R.add(em.cast(lw.value(node.inputs[0]), "int32"), em.const(128, "int32")))
    return [em.emit(R.take(em.array(table, f"{node.name}_table"), index, axis=0, mode="clip"))]


COMPUTE_LOWERINGS = {
    "Conv": conv, "Gemm": gemm, "ConvTranspose": conv_transpose,
    "Add": add_sub, "Sub": add_sub, "Mul": mul, "PRelu": prelu,
    "MaxPool": max_pool, "AveragePool": average_pool, "GlobalAveragePool": global_average_pool,
    "GlobalMaxPool": global_max_pool,
    "ReduceMean": reduce_mean,
    "Rsqrt": rsqrt,
    **{op: unary_table for op in ("Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu", "HardSwish")},
}
