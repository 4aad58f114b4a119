"""Float reference kernels for shape, data-movement and indexing ops (Reshape, Transpose,
Concat, Split, Slice, Pad, Gather, Cast, ...), accepting both the attribute and the input form
of opset-dependent parameters."""
from __future__ import annotations

import math

import numpy as np

from qcompiler.interp.float_kernels.nn import attr, ints, opt, unsupported
from qcompiler.interp.float_kernels.registry import float_kernel


# ---- shape / tensor manipulation --------------------------------------------------
@float_kernel("Reshape")
def reshape(node, inputs):
    x = inputs[0]
    shape = ints(opt(inputs, 1) if opt(inputs, 1) is not None else attr(node, "shape"))
    if not int(attr(node, "allowzero", 0)):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape)]


@float_kernel("Flatten")
def flatten(node, inputs):
    x = inputs[0]
    axis = int(attr(node, "axis", 1))
    axis += x.ndim if axis < 0 else 0
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


@float_kernel("Transpose")
def transpose(node, inputs):
    perm = attr(node, "perm")
    return [np.ascontiguousarray(np.transpose(inputs[0], None if perm is None else ints(perm)))]


def _axes(node, inputs, i=1):
    v = opt(inputs, i)
    v = attr(node, "axes") if v is None else v
    return None if v is None else ints(v)


@float_kernel("Squeeze")
def squeeze(node, inputs):
    x, axes = inputs[0], _axes(node, inputs)
    if not axes:
        return [x.reshape([d for d in x.shape if d != 1])]
    return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]


@float_kernel("Unsqueeze")
def unsqueeze(node, inputs):
    x, axes = inputs[0], _axes(node, inputs)
    rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return [x.reshape(shape)]


@float_kernel("Concat")
def concat(node, inputs):
    return [np.concatenate([v for v in inputs if v is not None], axis=int(attr(node, "axis")))]


@float_kernel("Split")
def split(node, inputs):
    x = inputs[0]
    axis = int(attr(node, "axis", 0)) % x.ndim
    dim, k = x.shape[axis], len(node.outputs)
    sizes = opt(inputs, 1)
    sizes = attr(node, "split") if sizes is None else sizes
    if sizes is not None and np.asarray(sizes).size:
        sizes = ints(sizes)
    elif attr(node, "num_outputs") is not None:  # opset 18: last chunk may be smaller
        chunk = -(-dim // int(attr(node, "num_outputs")))
        sizes = [min(chunk, dim - i * chunk) for i in range(int(attr(node, "num_outputs")))]
    else:
        if dim % k:
            raise ValueError(f"Split (node {node.name}): axis size {dim} is not divisible by {k} outputs")
        sizes = [dim // k] * k
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@float_kernel("Slice")
def slice_(node, inputs):
    x = inputs[0]
    if len(inputs) == 1:  # opset < 10: attributes
        starts, ends = ints(attr(node, "starts")), ints(attr(node, "ends"))
        axes, steps = attr(node, "axes"), None
    else:
        starts, ends = ints(inputs[1]), ints(inputs[2])
        axes, steps = opt(inputs, 3), opt(inputs, 4)
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in ints(axes)]
    steps = [1] * len(starts) if steps is None else ints(steps)
    index = [slice(None)] * x.ndim
    for a, b, e, s in zip(axes, starts, ends, steps):
        d = x.shape[a]
        b, e = b + d if b < 0 else b, e + d if e < 0 else e
        if s > 0:
            b, e = min(max(b, 0), d), min(max(e, 0), d)
        else:
            b, e = min(max(b, -1), d - 1), min(max(e, -1), d - 1)
        index[a] = slice(b, None if e < 0 else e, s)
    return [np.ascontiguousarray(x[tuple(index)])]


@float_kernel("Pad")
def pad(node, inputs):
    x = inputs[0]
    if len(inputs) == 1:  # opset < 11: attributes
        pads, value, axes = ints(attr(node, "pads")), float(attr(node, "value", 0.0)), None
    else:
        pads = ints(inputs[1])
        value = opt(inputs, 2)
        value = 0 if value is None or np.asarray(value).size == 0 else np.asarray(value).reshape(-1)[0]
        axes = opt(inputs, 3)
    axes = list(range(x.ndim)) if axes is None else [a % x.ndim for a in ints(axes)]
    width = [[0, 0] for _ in range(x.ndim)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[i + len(axes)]]
    # negative pads crop first
    x = x[tuple(slice(max(0, -b), x.shape[a] - max(0, -e)) for a, (b, e) in enumerate(width))]
    width = [(max(0, b), max(0, e)) for b, e in width]
    mode = attr(node, "mode", "constant")
    if mode == "constant":
        return [np.pad(x, width, constant_values=np.asarray(value).astype(x.dtype))]
    if mode in ("reflect", "edge", "wrap"):
        return [np.pad(x, width, mode=mode)]
    unsupported(node, f"mode={mode!r}")


def _gather_args(node, inputs):
    """(data, indices with negative ones wrapped, axis) of Gather / GatherElements."""
    x, idx = inputs
    axis = int(attr(node, "axis", 0)) % x.ndim
    idx = np.asarray(idx, np.int64)
    return x, np.where(idx < 0, idx + x.shape[axis], idx), axis


@float_kernel("Gather")
def gather(node, inputs):
    x, idx, axis = _gather_args(node, inputs)
    return [np.take(x, idx, axis=axis)]


@float_kernel("GatherElements")
def gather_elements(node, inputs):
    x, idx, axis = _gather_args(node, inputs)
    return [np.take_along_axis(x, idx, axis=axis)]


@float_kernel("Expand")
def expand(node, inputs):
    x, shape = inputs[0], ints(inputs[1])
    return [np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(shape))))]


@float_kernel("Tile")
def tile(node, inputs):
    return [np.tile(inputs[0], ints(inputs[1]))]


@float_kernel("Range")
def range_(node, inputs):
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs)
    n = max(int(math.ceil((float(limit) - float(start)) / float(delta))), 0)
    return [(start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)]


@float_kernel("Shape")
def shape(node, inputs):
    dims = np.array(inputs[0].shape, np.int64)
    return [dims[int(attr(node, "start", 0)):attr(node, "end", None)]]


@float_kernel("Size")
def size(node, inputs):
    return [np.array(inputs[0].size, np.int64)]


def _onnx_dtype(node, code: int):
    from onnx import TensorProto, helper
    if code in (TensorProto.STRING, TensorProto.BFLOAT16) or code > TensorProto.COMPLEX128:
        unsupported(node, f"to={TensorProto.DataType.Name(code)}")
    return np.dtype(helper.tensor_dtype_to_np_dtype(code))


@float_kernel("Cast", "CastLike")
def cast(node, inputs):
    to = inputs[1].dtype if node.op == "CastLike" else _onnx_dtype(node, int(attr(node, "to")))
    return [np.asarray(inputs[0]).astype(to)]


@float_kernel("ConstantOfShape")
def constant_of_shape(node, inputs):
    value = attr(node, "value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return [np.full(ints(inputs[0]), value.reshape(-1)[0], dtype=value.dtype)]


@float_kernel("Constant")
def constant(node, inputs):
    kinds = {"value": None, "value_float": np.float32, "value_floats": np.float32,
             "value_int": np.int64, "value_ints": np.int64, "value_string": object, "value_strings": object}
    for key, dtype in kinds.items():
        if key in node.attrs:
            return [np.asarray(node.attrs[key], dtype)]
    unsupported(node, f"attribute {sorted(node.attrs)} (sparse_value)")


@float_kernel("DepthToSpace", "SpaceToDepth")
def depth_space(node, inputs):
    x = inputs[0]
    n, c, h, w = x.shape
    b = int(attr(node, "blocksize"))
    if node.op == "SpaceToDepth":
        y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
        return [y.reshape(n, c * b * b, h // b, w // b)]
    if attr(node, "mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [y.reshape(n, c // (b * b), h * b, w * b)]
