"""Data movement with numbers, as integer Relax ops: Pad, Slice, Split and Resize.

Pad, Slice and Split copy raw int8 values (input and output parameters agree, as the
reference requires); Resize picks source rows / columns from index tables and, for
bilinear, weighs four raw values with 10-bit fixed-point weights in int64 and rounds
half away from zero by a shift of 20 (the reference's TFLM arithmetic). Every number
comes from `qcompiler.numerics.qops` (pad_params, slice_params, split_params,
resize_params). Pads are concatenated int8 blocks, not `nn.pad`, whose fill value is a
float attribute.
"""
from __future__ import annotations

import numpy as np
from tvm import relax

from qcompiler.numerics import qops
from qcompiler.numerics.qops import require_same_quant

from qcompiler.backends.tvm.intmath import dtype_of, shape_of

R = relax.op


def _slice_axis(em, x, axis: int, begin: int, step: int, count: int):
    """`count` elements from `begin` by `step` along `axis` (a take for negative steps)."""
    if begin == 0 and step == 1 and count == shape_of(x)[axis]:
        return x
    if step > 0:
        return em.emit(R.strided_slice(x, [axis], [begin], [begin + step * count], [step],
                                       assume_inbound=True))
    index = np.arange(begin, begin + step * count, step, dtype=np.int64)
    return em.emit(R.take(x, em.array(index, "slice_index"), axis=axis, mode="clip"))


def pad(lw, node):
    """PAD / PADV2: crop the negative pads first, then int8 blocks of the fill value."""
    require_same_quant(node)
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.pad_params(node, shape_of(x))
    for a, (b, e) in enumerate(zip(p.before, p.after)):
        lo, hi = max(-b, 0), shape_of(x)[a] - max(-e, 0)
        x = _slice_axis(em, x, a, lo, 1, hi - lo)
        parts = []
        for width in (max(b, 0), max(e, 0)):
            shape = list(shape_of(x))
            shape[a] = width
            parts.append(R.full(shape, relax.const(p.fill, dtype_of(x)), dtype_of(x)) if width else None)
        if parts[0] is not None or parts[1] is not None:
            x = em.emit(R.concat([v for v in (parts[0], x, parts[1]) if v is not None], axis=a))
    return [x]


def slice_(lw, node):
    require_same_quant(node)
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.slice_params(node, shape_of(x))
    for a, (b, st, c) in enumerate(zip(p.begin, p.step, p.count)):
        x = _slice_axis(em, x, a, b, st, c)
    return [x]


def split(lw, node):
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.split_params(node, shape_of(x))
    outs, start = [], 0
    for i, size in enumerate(p.sizes):
        require_same_quant(node, 0, i)
        outs.append(_slice_axis(em, x, p.axis, start, 1, size) if len(p.sizes) > 1
                    else em.emit(R.reshape(x, shape_of(x))))
        start += size
    return outs


def resize(lw, node):
    """RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR on NCHW int8 (H and W resized)."""
    em = lw.em
    x = lw.value(node.inputs[0])
    p = qops.resize_params(node, shape_of(x), lw.out_shape(node))

    def rows_cols(v, rows, cols):
        rows = em.array(np.asarray(rows, np.int64), f"{node.name}_rows")
        v = em.emit(R.take(v, rows, axis=2, mode="clip"))
        cols = em.array(np.asarray(cols, np.int64), f"{node.name}_cols")
        return em.emit(R.take(v, cols, axis=3, mode="clip"))

    if p.mode == "nearest":
        return [rows_cols(x, p.y_lo, p.x_lo)]
    one = 1 << 10
    xi = em.i64(x)
    dy = p.y_frac.astype(np.int64).reshape(-1, 1)
    dx = p.x_frac.astype(np.int64).reshape(1, -1)
    terms = [(p.y_lo, p.x_lo, (one - dy) * (one - dx)), (p.y_hi, p.x_lo, dy * (one - dx)),
             (p.y_lo, p.x_hi, (one - dy) * dx), (p.y_hi, p.x_hi, dy * dx)]
    acc = None
    for k, (rows, cols, weight) in enumerate(terms):
        term = em.emit(R.multiply(rows_cols(xi, rows, cols),
                                  em.const(weight.reshape(1, 1, *weight.shape), name=f"{node.name}_w{k}")))
        acc = term if acc is None else em.emit(R.add(acc, term))
    half = 1 << 19
    nudged = em.emit(R.add(acc, em.emit(R.where(em.emit(R.greater(acc, em.const(0))),
                                                em.const(half), em.const(-half)))))
    mag = em.emit(R.right_shift(em.emit(R.abs(nudged)), em.const(20)))
    y = em.emit(R.where(em.emit(R.less(nudged, em.const(0))), em.emit(R.negative(mag)), mag))
    return [em.cast(y, "int8")]


MOVEMENT_LOWERINGS = {"Pad": pad, "Slice": slice_, "Split": split, "Resize": resize}
