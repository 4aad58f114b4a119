"""Softmax (int8 / int16) and Requantize as integer Relax ops (qcompiler/interp/int_kernels/softmax.py).

Parameters and tables: qcompiler.numerics.qops.softmax, as the reference reads them.

int8 input, int8 or int16 output (TFLM reference, gemmlowp path): exp of max - x = d in
0..255 from a 256-entry table built with fixed_point, the integer sum, GetReciprocal, a
rounding shift by bits_over_unit + 31 - output_bits. int16 input (SoftmaxInt16):

    diff = x - max(row);  scaled = MBQM(diff);  exp = lut(sat16(scaled + 32767))
    sum = sum(exp);  h = clz32(sum);  recip = lut(sat16(((sum << (h-1)) + 2^13 >> 14) - 98304))
    y = clamp((exp * recip + 2^(30-h)) >> (31-h), 0, 32767)

where lut(v) = T[256 + (v >> 7)] + (((T[.. + 1] - T[..]) * (v & 127) + 64) >> 7), with
the reference's own tables. Requantize is TFLM's integer QUANTIZE. Every step is an
int64 tensor op on int16 / int32 values; reductions keep dims, so no transposes.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from qcompiler.numerics import qops
from qcompiler.numerics.qops.softmax import (I16_MAX, I16_MIN, Softmax16Params, reduced_axes,
                                             refuse_unexpanded)

from qcompiler.backends.tvm.intmath import shape_of

R = relax.op


def softmax_int8(lw, node, p):
    """SOFTMAX int8 -> int8 (1/256, -128) or int16 (1/65536, -32768): table exp, integer sum,
    GetReciprocal (TFLM reference, gemmlowp path). The tables hold exp(-d) in Q0.31 and its
    2^-12 rounded share of the sum for every max - x = d in 0..255 (the reference's own terms);
    entries beyond the kernel's diff_min are 0: they add nothing to the sum and come out as the
    output minimum (SRDHM(recip, 0) = 0), the reference's masked value."""
    em = lw.em
    x = lw.value(node.inputs[0])
    axes = reduced_axes(node, len(shape_of(x)))
    xi = em.cast(x, "int32")
    diff = em.emit(R.subtract(em.emit(R.max(xi, axis=axes, keepdims=True)), xi))  # 0..255
    exp_table, sum_table = p.exp_table.astype(np.int64), p.sum_table.astype(np.int64)
    exp = em.emit(R.take(em.array(exp_table, f"{node.name}_exp_table"), diff, axis=0, mode="clip"))
    share = em.emit(R.take(em.array(sum_table, f"{node.name}_sum_table"), diff, axis=0, mode="clip"))
    total = em.wrap32(em.emit(R.sum(share, axis=axes, keepdims=True)))
    recip, bits = em.reciprocal(total, 12)
    exponent = em.emit(R.add(bits, em.const(31 - p.output_bits)))
    y = em.rdbpot(em.srdhm(recip, exp), exponent)
    lo, hi = -(1 << (p.output_bits - 1)), (1 << (p.output_bits - 1)) - 1
    return [em.plus_zp_clamp(y, lo, lo, hi, f"int{p.output_bits}")]  # zero point: the type's minimum


def requantize(lw, node):
    """TFLM QUANTIZE between integer types: MBQM(x - zp_in) + zp_out, clamped to the output type."""
    em = lw.em
    p = qops.requantize_params(node)
    x = em.minus_zp(lw.value(node.inputs[0]), p.input_zero_point)
    return [em.plus_zp_clamp(em.mbqm(x, p.multiplier, p.shift, name=node.name), p.output_zero_point,
                             p.qmin, p.qmax, node.outputs[0].quant.dtype.name)]


def _sat16(em, x):
    return em.emit(R.minimum(em.emit(R.maximum(x, em.const(I16_MIN))), em.const(I16_MAX)))


def _lut_lookup(em, v, table, name: str):
    """LUTLookup on int16 values held in int64: 9-bit index, 7-bit rounded interpolation."""
    lut = em.array(table.astype(np.int64), name)
    index = em.emit(R.add(em.emit(R.right_shift(v, em.const(7))), em.const(256)))
    offset = em.emit(R.bitwise_and(v, em.const(0x7F)))
    base = em.emit(R.take(lut, index, axis=0, mode="clip"))
    nxt = em.emit(R.take(lut, em.emit(R.add(index, em.const(1))), axis=0, mode="clip"))
    delta = em.emit(R.multiply(em.emit(R.subtract(nxt, base)), offset))
    delta = em.emit(R.right_shift(em.emit(R.add(delta, em.const(64))), em.const(7)))
    return em.cast(em.cast(em.emit(R.add(base, delta)), "int16"), "int64")  # static_cast<int16_t>


def softmax_int16(lw, node, p: Softmax16Params):
    """SOFTMAX int16 (reference SoftmaxInt16) over the node's reduced axes (kept as dims)."""
    em = lw.em
    x = em.i64(lw.value(node.inputs[0]))
    axes = reduced_axes(node, len(shape_of(x)))
    diff = em.emit(R.subtract(x, em.emit(R.max(x, axis=axes, keepdims=True))))
    scaled = em.mbqm(diff, p.input_multiplier, p.input_left_shift, name=f"{node.name}_in")
    exp = _lut_lookup(em, _sat16(em, em.emit(R.add(scaled, em.const(32767)))), p.exp_lut,
                      f"{node.name}_exp_lut")
    total = em.emit(R.sum(exp, axis=axes, keepdims=True))       # Q16.15, < 2^31
    headroom = em.clz32(total)                                    # headroom_plus_one
    shifted = em.emit(R.left_shift(total, em.emit(R.subtract(headroom, em.const(1)))))
    shifted = em.emit(R.right_shift(em.emit(R.add(shifted, em.const(1 << 13))), em.const(14)))
    sym = _sat16(em, em.emit(R.subtract(shifted, em.const((1 << 15) + (1 << 16)))))
    recip = _lut_lookup(em, sym, p.one_over_one_plus_x_lut, f"{node.name}_recip_lut")
    right_shift = em.emit(R.subtract(em.const(31), headroom))
    rounding = em.emit(R.left_shift(em.const(1), em.emit(R.subtract(right_shift, em.const(1)))))
    y = em.emit(R.add(em.emit(R.multiply(exp, recip)), rounding))
    y = em.emit(R.right_shift(y, right_shift))
    return [em.clamp_cast(y, 0, I16_MAX, "int16")]


def softmax(lw, node):
    """Softmax by input type (qops.softmax_params checks the types TFLM accepts)."""
    refuse_unexpanded(node)
    p = qops.softmax_params(node)
    if isinstance(p, Softmax16Params):
        return softmax_int16(lw, node, p)
    return softmax_int8(lw, node, p)


SOFTMAX_LOWERINGS = {"Requantize": requantize, "Softmax": softmax}
