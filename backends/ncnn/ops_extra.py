"""More ONNX op -> ncnn layer converters: PReLU, Reduction (mean), LRN, Crop (+ a strided
1x1 Pooling) for Slice, Slice for Split, Noop (Identity), UnaryOp rsqrt, and Pow by products
where ncnn's pow is wrong. Registered in `ops.CONVERTERS`.

Param ids follow each layer's `load_param` in ncnn's `src/layer/*.cpp`:
PReLU 0=num_slope (+ slopes in .bin, one per outermost blob axis element, or one);
Reduction 0=operation (3 = mean) 1=reduce_all 3=axes 4=keepdims 5=1 (axes without the
batch axis); LRN 0=region (0 = across channels) 1=local_size 2=alpha 3=beta 4=bias;
Crop 9=starts 10=ends 11=axes (numpy style, blob axes); Slice 0=slices 1=axis.
Slice and Split take their numbers from `qops.slice_params` / `split_params`, as the
integer reference and the TVM lowering do.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.interp.float_kernels.nn import attr
from qcompiler.numerics import qops

from qcompiler.backends.ncnn.lower import Blob, Lowering, Unsupported, ncnn_dims, shape_params
from qcompiler.backends.ncnn.model import Weight
from qcompiler.backends.ncnn.ops import _const, _emit, converter

F32 = np.float32


@converter("PRelu")
def prelu(lw: Lowering, node):
    """ncnn's PReLU scales by one slope per element of the blob's outermost axis (channels)."""
    x = node.input(0)
    slope = _const(node, 1, "the slope")
    src = lw.bottom(x)
    full = np.broadcast_to(np.asarray(slope, F32), x.shape)
    if tuple(full.shape) != tuple(node.outputs[0].shape):
        raise Unsupported("a slope that broadcasts the input to a larger shape")
    outer = 1 if src.batch_dropped else 0
    rows = (full[0] if src.batch_dropped else full).reshape(x.shape[outer], -1)
    if np.any(rows != rows[:, :1]):
        raise Unsupported("ncnn's PReLU has one slope per channel (outermost blob axis); this "
                          "slope varies along the other axes")
    slopes = rows[:, 0]
    if np.all(slopes == slopes[0]):
        slopes = slopes[:1]
    _emit(lw, node, "PReLU", [src], {0: int(slopes.size)}, [Weight(slopes.astype(F32))])


def _blob_axes(node, src, axes) -> list[int]:
    rank = len(node.input(0).shape)
    return sorted({src.axis(a, rank) for a in axes})


@converter("ReduceMean")
def reduce_mean(lw: Lowering, node):
    x, out = node.input(0), node.outputs[0]
    src = lw.bottom(x)
    try:
        axes, keepdims, noop = qops.mean_axes(node, len(x.shape))
    except GraphError as e:  # computed axes
        raise Unsupported(str(e)) from None
    if noop:
        _emit(lw, node, "Noop", [src])
        return
    axes = _blob_axes(node, src, axes)
    kept = [d for a, d in enumerate(src.dims) if a not in axes]
    if not keepdims and not kept:
        raise Unsupported("reducing every axis of an ncnn blob without keepdims (no 0-d blobs)")
    want = ncnn_dims(out.shape)[0]
    got = tuple(1 if a in axes else d for a, d in enumerate(src.dims)) if keepdims else tuple(kept)
    if got != tuple(want):
        raise Unsupported(f"ncnn's Reduction output dims {list(got)} differ from {list(want)}")
    _emit(lw, node, "Reduction", [src], {0: 3, 1: 0, 2: 1.0, 3: axes, 4: keepdims, 5: 1})


@converter("LRN")
def lrn(lw: Lowering, node):
    """ncnn LRN across channels: x * (bias + alpha / size * window sum of x^2)^-beta."""
    x = node.input(0)
    src = lw.bottom(x)
    size = int(attr(node, "size"))
    if len(x.shape) != 4 or len(src.dims) != 3:
        raise Unsupported("only an NCHW input with batch 1 (an ncnn c, h, w blob)")
    if size % 2 == 0:
        raise Unsupported(f"even size {size}: ncnn's LRN window is centred (size // 2 on both "
                          "sides), ONNX's takes one channel fewer below")
    _emit(lw, node, "LRN", [src], {0: 0, 1: size, 2: float(attr(node, "alpha", 1e-4)),
                                   3: float(attr(node, "beta", 0.75)), 4: float(attr(node, "bias", 1.0))})


@converter("Slice")
def slice_(lw: Lowering, node):
    """Crop (numpy-style starts / ends / axes); a positive step on h / w of a c, h, w blob is a
    1x1 max Pooling of that stride after the crop (exact: each window is one value)."""
    x, out = node.input(0), node.outputs[0]
    src = lw.bottom(x)
    try:
        p = qops.slice_params(node, x.shape)
    except GraphError as e:  # a computed operand
        raise Unsupported(str(e)) from None
    rank = len(x.shape)
    moved = [a for a in range(rank) if (p.begin[a], p.step[a], p.count[a]) != (0, 1, x.shape[a])]
    if any(p.count[a] == 0 for a in moved):
        raise Unsupported("an empty slice")
    if not moved:
        _emit(lw, node, "Noop", [src])
        return
    strided = {src.axis(a, rank): p.step[a] for a in moved if p.step[a] != 1}
    if any(s < 0 for s in strided.values()):
        raise Unsupported("a negative step: ncnn's Crop has no step parameter")
    if strided and (len(src.dims) != 3 or 0 in strided):
        raise Unsupported("a step on an axis other than h / w of a c, h, w blob: ncnn's Crop has no "
                          "step parameter (steps go through a strided 1x1 Pooling)")
    ends = [p.begin[a] + p.step[a] * (p.count[a] - 1) + 1 for a in moved]
    crop = {9: [p.begin[a] for a in moved], 10: ends, 11: [src.axis(a, rank) for a in moved]}
    if not strided:
        cropped = src.dims
        for a in moved:
            cropped = _with_dim(cropped, src.axis(a, rank), p.count[a])
        if tuple(ncnn_dims(out.shape)[0]) == cropped:
            _emit(lw, node, "Crop", [src], crop)
            return
        piece = lw.new_blob(f"{out.name}_crop", cropped, src.batch_dropped)
        lw.add("Crop", node, [src], [piece], crop, name=f"{node.name}_crop")
        _reshape_to(lw, node, piece, lw.top(out))
        return
    off = rank - len(src.dims)
    dims = tuple(p.step[a] * (p.count[a] - 1) + 1 for a in range(off, rank))
    cropped = lw.new_blob(f"{out.name}_crop", dims, src.batch_dropped)
    lw.add("Crop", node, [src], [cropped], crop, name=f"{node.name}_crop")
    _emit(lw, node, "Pooling", [cropped], {0: 0, 1: 1, 11: 1, 2: strided.get(2, 1), 12: strided.get(1, 1),
                                           5: 1})


@converter("Split")
def split(lw: Lowering, node):
    x = node.input(0)
    src = lw.bottom(x)
    try:
        p = qops.split_params(node, x.shape)
    except GraphError as e:  # a computed operand
        raise Unsupported(str(e)) from None
    axis = src.axis(p.axis, len(x.shape))
    pieces = [_with_dim(src.dims, axis, size) for size in p.sizes]
    tops = [lw.top(v) for v in node.outputs]
    slices = [top if top.dims == dims else lw.new_blob(f"{top.name}_slice", dims, src.batch_dropped)
              for top, dims in zip(tops, pieces)]
    lw.add("Slice", node, [src], slices, {0: list(p.sizes), 1: axis})
    for piece, top in zip(slices, tops):
        _reshape_to(lw, node, piece, top)


def _with_dim(dims: tuple[int, ...], axis: int, size: int) -> tuple[int, ...]:
    return tuple(size if a == axis else d for a, d in enumerate(dims))


def _reshape_to(lw: Lowering, node, blob: Blob, top: Blob) -> None:
    """ncnn keeps a sliced-off leading 1 (a [6, 8] blob cut in rows gives [1, 8] blobs) where the
    IR shape [1, 8] means a batch-1 [8]: reshape so that every blob has the dims its IR value
    implies (an InnerProduct or a Slice on a [1, 8] blob works along other axes than on [8])."""
    if blob is not top:
        lw.add("Reshape", node, [blob], [top], shape_params(top.dims), name=f"{node.name}_{top.name}_dims")


@converter("Identity")
def identity(lw: Lowering, node):
    _emit(lw, node, "Noop", [lw.bottom(node.input(0))])


@converter("Rsqrt")
def rsqrt(lw: Lowering, node):
    _emit(lw, node, "UnaryOp", [lw.bottom(node.input(0))], {0: 6})


@converter("Pow")
def pow_(lw: Lowering, node):
    """ncnn's BinaryOp pow (x86) computes exp(b * log(a)): a negative base gives 2.4e38 even for
    an integer exponent (measured). x^2 is UnaryOp square and x^3 square times x; any other
    integer exponent is refused; a non-integer one keeps BinaryOp pow (ONNX's own result for a
    negative base is NaN there). Replaces ops.binary's Pow."""
    from qcompiler.backends.ncnn.ops import binary
    e = node.input(1)
    k = float(np.asarray(e.data).reshape(-1)[0]) if e is not None and e.is_constant and e.data.size == 1 else None
    if k is None or k != int(k):
        binary(lw, node)
        return
    if k == 2:
        _emit(lw, node, "UnaryOp", [lw.bottom(node.input(0))], {0: 4})
        return
    if k == 3:
        src = lw.bottom(node.input(0))
        dims, dropped = ncnn_dims(node.outputs[0].shape)
        sq = lw.new_blob(f"{node.outputs[0].name}_square", dims, dropped)
        lw.add("UnaryOp", node, [src], [sq], {0: 4}, name=f"{node.name}_square")
        _emit(lw, node, "BinaryOp", [sq, src], {0: 2})
        return
    raise Unsupported(f"integer exponent {k:g}: ncnn's pow takes the log of the base, so negative "
                      "bases come out wrong (exponents 2 and 3 are lowered as products)")
