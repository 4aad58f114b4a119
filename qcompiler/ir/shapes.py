"""Per-op dtype and shape inference: a table op -> rule, mirroring the float kernels.

`infer_node(node)` gives one `Type(dtype, shape)` per output (None where unknown: a missing
input shape, a shape-defining input that is not a constant, an op without a rule). It reads
only the node's input values' shapes and dtypes and the data of constant inputs, so it is cheap
enough for `Graph.verify()` to check every node after every pass. Rules follow the float
reference kernels (qcompiler/interp/float_kernels/) exactly — tests/test_shapes.py checks each
against the kernel's output on every kernel test case. In a quantized graph an output's dtype
is its QuantParams' dtype; `verify` applies that, the rules give the float dtype.

    Conv(x: float32[1x3x8x8], w: float32[4x3x3x3]) strides=[2,2] -> float32[1x4x3x3]

A rule raises GraphError when the inputs contradict each other (a Conv weight whose input
channels do not match the input), naming the node.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from qcompiler.errors import GraphError


class Type(NamedTuple):
    dtype: np.dtype | None
    shape: tuple[int, ...] | None


class _Unknown(Exception):
    """An input shape or a shape-defining constant is not known: the outputs are unknown."""


RULES: dict[str, Callable] = {}
BOOL, INT64, F32 = np.dtype(bool), np.dtype(np.int64), np.dtype(np.float32)


def rule(*ops: str):
    def deco(fn):
        for op in ops:
            RULES[op] = fn
        return fn
    return deco


def infer_node(node) -> list[Type | None]:
    """Inferred Type of each output of `node` (None where it cannot be known)."""
    unknown = [None] * len(node.outputs)
    fn = RULES.get(node.op)
    if fn is None:
        return unknown
    try:
        out = fn(node)
    except _Unknown:
        return unknown
    except GraphError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError) as e:
        raise GraphError(f"node {node.name} ({node.op}): inputs {_in_types(node)} do not fit the op "
                         f"({type(e).__name__}: {e})") from None
    out = list(out) if isinstance(out, list) else [out]
    return (out + unknown)[:len(node.outputs)]


def _in_types(node) -> str:
    return "[" + ", ".join("_" if v is None else repr(v) for v in node.inputs) + "]"


# ---- reading a node -------------------------------------------------------------
def _value(node, i):
    return node.input(i)


def _shape(node, i=0) -> tuple[int, ...]:
    v = _value(node, i)
    if v is None or v.shape is None:
        raise _Unknown
    return v.shape


def _dtype(node, i=0) -> np.dtype:
    v = _value(node, i)
    if v is None:
        raise _Unknown
    return v.dtype


def _const(node, i):
    """Data of constant input i; None when absent or empty; _Unknown when not a constant."""
    v = _value(node, i)
    if v is None:
        return None
    if not v.is_constant:
        raise _Unknown
    return v.data if v.data.size else None


def _attr(node, name, default=None):
    v = node.attrs.get(name)
    if v is None:
        return default
    return v.decode() if isinstance(v, bytes) else v


def _ints(x) -> list[int]:
    return [int(v) for v in np.asarray(x).reshape(-1)]


def _axis(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise ValueError(f"axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


def _opset(node) -> int:
    return (getattr(node, "meta", None) or {}).get("opset") or 13


def _broadcast(*shapes) -> tuple[int, ...]:
    if all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])
    return tuple(np.broadcast_shapes(*shapes))


def _same(node, dtype=None) -> Type:
    return Type(dtype or _dtype(node), _shape(node))


# ---- element-wise ----------------------------------------------------------------
UNARY = ("Relu", "Sigmoid", "Tanh", "Sqrt", "Exp", "Log", "Neg", "Abs", "Sign", "Floor", "Ceil", "Round",
         "Reciprocal", "Rsqrt", "Sin", "Cos", "Erf", "Softplus", "Softsign", "LeakyRelu", "Elu", "Selu",
         "Celu", "ThresholdedRelu", "HardSigmoid", "HardSwish", "Mish", "Gelu", "Clip", "Identity",
         "Softmax", "LogSoftmax", "Hardmax", "LRN", "InstanceNormalization")
rule(*UNARY)(_same)
rule("Not", "IsNaN")(lambda n: _same(n, BOOL))


@rule("Requantize")  # qcc's int8 <-> int16 rescale: the dtype comes from the output's QuantParams
def _requantize(node):
    return Type(None, _shape(node))


@rule("Add", "Sub", "Mul", "Div", "Mod", "Pow", "PRelu", "Sum", "Max", "Min", "Mean")
def _broadcasting(node):
    return Type(_dtype(node), _broadcast(*(_shape(node, i) for i, v in enumerate(node.inputs) if v is not None)))


@rule("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or", "Xor")
def _compare(node):
    return Type(BOOL, _broadcast(_shape(node, 0), _shape(node, 1)))


@rule("Where")
def _where(node):
    return Type(_dtype(node, 1), _broadcast(_shape(node, 0), _shape(node, 1), _shape(node, 2)))


@rule("Cast", "CastLike")
def _cast(node):
    if node.op == "CastLike":
        return Type(_dtype(node, 1), _shape(node))
    from onnx import helper
    return Type(np.dtype(helper.tensor_dtype_to_np_dtype(int(_attr(node, "to")))), _shape(node))


@rule("Dropout")
def _dropout(node):
    mask = BOOL if _opset(node) >= 10 else _dtype(node)
    return [_same(node), Type(mask, _shape(node))]


# ---- matmul, normalisation, reductions ---------------------------------------------
@rule("MatMul")
def _matmul(node):
    a, b = _shape(node, 0), _shape(node, 1)
    a2, b2 = ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)
    if a2[-1] != b2[-2]:
        raise ValueError(f"inner dimensions {a2[-1]} and {b2[-2]} differ")
    out = _broadcast(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    out = out[:-2] + out[-2:-1] * (len(a) > 1) + out[-1:] * (len(b) > 1)
    return Type(_dtype(node), out)


@rule("Gemm")
def _gemm(node):
    a, b = _shape(node, 0), _shape(node, 1)
    a = a[::-1] if int(_attr(node, "transA", 0)) else a
    b = b[::-1] if int(_attr(node, "transB", 0)) else b
    if len(a) != 2 or len(b) != 2 or a[1] != b[0]:
        raise ValueError(f"Gemm of {a} and {b}")
    return Type(_dtype(node), (a[0], b[1]))


@rule("BatchNormalization")
def _batch_norm(node):
    channels = (_shape(node)[1],)
    return [_same(node)] + [Type(_dtype(node, 3), channels)] * 4


@rule("LayerNormalization")
def _layer_norm(node):
    x = _shape(node)
    axis = _axis(int(_attr(node, "axis", -1)), len(x))
    stats = Type(F32, x[:axis] + (1,) * (len(x) - axis))
    return [_same(node), stats, stats]


REDUCE = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")


@rule(*REDUCE)
def _reduce(node):
    x = _shape(node)
    axes = _const(node, 1)
    axes = _attr(node, "axes") if axes is None and _value(node, 1) is None else axes
    keep = bool(int(_attr(node, "keepdims", 1)))
    if axes is None or np.asarray(axes).size == 0:
        if int(_attr(node, "noop_with_empty_axes", 0)):
            return _same(node)
        axes = range(len(x))
    axes = {_axis(a, len(x)) for a in _ints(list(axes))}
    if keep:
        return Type(_dtype(node), tuple(1 if i in axes else d for i, d in enumerate(x)))
    return Type(_dtype(node), tuple(d for i, d in enumerate(x) if i not in axes))


@rule("ArgMax", "ArgMin")
def _argmax(node):
    x = _shape(node)
    axis = _axis(int(_attr(node, "axis", 0)), len(x))
    keep = int(_attr(node, "keepdims", 1))
    return Type(INT64, x[:axis] + ((1,) if keep else ()) + x[axis + 1:])


# ---- shape and data movement -------------------------------------------------------
@rule("Reshape")
def _reshape(node):
    x = _shape(node)
    shape = _const(node, 1)
    shape = _ints(_attr(node, "shape") if shape is None else shape)
    if not int(_attr(node, "allowzero", 0)):
        shape = [x[i] if d == 0 else d for i, d in enumerate(shape)]
    total, known = math.prod(x), math.prod(d for d in shape if d != -1)
    if shape.count(-1) == 1:
        shape[shape.index(-1)] = total // known if known else 0
    if math.prod(shape) != total or any(d < 0 for d in shape):
        raise ValueError(f"cannot reshape {x} to {shape}")
    return Type(_dtype(node), tuple(shape))


@rule("Flatten")
def _flatten(node):
    x = _shape(node)
    axis = int(_attr(node, "axis", 1))
    axis += len(x) if axis < 0 else 0
    return Type(_dtype(node), (math.prod(x[:axis]), math.prod(x[axis:])))


@rule("Transpose")
def _transpose(node):
    x = _shape(node)
    perm = _ints(_attr(node, "perm", list(reversed(range(len(x))))))
    if sorted(perm) != list(range(len(x))):
        raise ValueError(f"perm {perm} for rank {len(x)}")
    return Type(_dtype(node), tuple(x[p] for p in perm))


def _axes_of(node):
    axes = _const(node, 1)
    return _attr(node, "axes") if axes is None and _value(node, 1) is None else axes


@rule("Squeeze")
def _squeeze(node):
    x, axes = _shape(node), _axes_of(node)
    if axes is None or not len(_ints(axes)):
        return Type(_dtype(node), tuple(d for d in x if d != 1))
    axes = {_axis(a, len(x)) for a in _ints(axes)}
    if any(x[a] != 1 for a in axes):
        raise ValueError(f"cannot squeeze axes {sorted(axes)} of {x}")
    return Type(_dtype(node), tuple(d for i, d in enumerate(x) if i not in axes))


@rule("Unsqueeze")
def _unsqueeze(node):
    x, axes = list(_shape(node)), _ints(_axes_of(node))
    rank = len(x) + len(axes)
    for a in sorted(_axis(a, rank) for a in axes):
        x.insert(a, 1)
    return Type(_dtype(node), tuple(x))


@rule("Concat")
def _concat(node):
    shapes = [_shape(node, i) for i, v in enumerate(node.inputs) if v is not None]
    axis = _axis(int(_attr(node, "axis")), len(shapes[0]))
    if any(len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]
           for s in shapes):
        raise ValueError(f"cannot concatenate {shapes} on axis {axis}")
    return Type(_dtype(node), shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:])


@rule("Split")
def _split(node):
    x = _shape(node)
    axis = _axis(int(_attr(node, "axis", 0)), len(x))
    dim, k = x[axis], len(node.outputs)
    sizes = _const(node, 1)
    sizes = _attr(node, "split") if sizes is None and _value(node, 1) is None else sizes
    if sizes is not None and np.asarray(sizes).size:
        sizes = _ints(sizes)
    elif _attr(node, "num_outputs") is not None:
        chunk = -(-dim // int(_attr(node, "num_outputs")))
        sizes = [min(chunk, dim - i * chunk) for i in range(int(_attr(node, "num_outputs")))]
    elif dim % k:
        raise ValueError(f"axis size {dim} is not divisible by {k} outputs")
    else:
        sizes = [dim // k] * k
    if sum(sizes) != dim or len(sizes) != k:
        raise ValueError(f"split sizes {sizes} for axis size {dim} and {k} outputs")
    return [Type(_dtype(node), x[:axis] + (s,) + x[axis + 1:]) for s in sizes]


@rule("Slice")
def _slice(node):
    x = list(_shape(node))
    if len(node.inputs) == 1:
        starts, ends, axes, steps = _ints(_attr(node, "starts")), _ints(_attr(node, "ends")), _attr(node, "axes"), None
    else:
        starts, ends = _ints(_const(node, 1)), _ints(_const(node, 2))
        axes, steps = _const(node, 3), _const(node, 4)
    axes = list(range(len(starts))) if axes is None else [_axis(a, len(x)) for a in _ints(axes)]
    steps = [1] * len(starts) if steps is None else _ints(steps)
    for a, b, e, s in zip(axes, starts, ends, steps):
        d = x[a]
        b, e = b + d if b < 0 else b, e + d if e < 0 else e
        b, e = (min(max(b, 0), d), min(max(e, 0), d)) if s > 0 else (min(max(b, -1), d - 1), min(max(e, -1), d - 1))
        x[a] = len(range(d)[slice(b, None if e < 0 else e, s)])
    return Type(_dtype(node), tuple(x))


@rule("Pad")
def _pad(node):
    x = _shape(node)
    if len(node.inputs) == 1:
        pads, axes = _ints(_attr(node, "pads")), None
    else:
        pads, axes = _ints(_const(node, 1)), _const(node, 3)
    axes = list(range(len(x))) if axes is None else [_axis(a, len(x)) for a in _ints(axes)]
    out = list(x)
    for i, a in enumerate(axes):
        out[a] += pads[i] + pads[i + len(axes)]
    return Type(_dtype(node), tuple(out))


@rule("Gather", "GatherElements")
def _gather(node):
    x, idx = _shape(node), _shape(node, 1)
    if node.op == "GatherElements":
        return Type(_dtype(node), idx)
    axis = _axis(int(_attr(node, "axis", 0)), len(x))
    return Type(_dtype(node), x[:axis] + idx + x[axis + 1:])


@rule("Expand")
def _expand(node):
    return Type(_dtype(node), _broadcast(_shape(node), tuple(_ints(_const(node, 1)))))


@rule("Tile")
def _tile(node):
    x, reps = _shape(node), _ints(_const(node, 1))
    rank = max(len(x), len(reps))  # as np.tile: the shorter one gets leading ones
    x, reps = (1,) * (rank - len(x)) + x, [1] * (rank - len(reps)) + reps
    return Type(_dtype(node), tuple(d * r for d, r in zip(x, reps)))


@rule("Range")
def _range(node):
    start, limit, delta = (float(np.asarray(_const(node, i)).reshape(())) for i in range(3))
    return Type(_dtype(node), (max(int(math.ceil((limit - start) / delta)), 0),))


@rule("Shape")
def _shape_op(node):
    rank = len(_shape(node))
    return Type(INT64, (len(range(rank)[int(_attr(node, "start", 0)):_attr(node, "end", None)]),))


@rule("Size")
def _size(node):
    return Type(INT64, ())


@rule("ConstantOfShape")
def _constant_of_shape(node):
    value = _attr(node, "value")
    return Type(F32 if value is None else np.asarray(value).dtype, tuple(_ints(_const(node, 0))))


@rule("Constant")
def _constant(node):
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in node.attrs:
            arr = np.asarray(node.attrs[key], dtype)
            return Type(arr.dtype, arr.shape)
    raise _Unknown


@rule("DepthToSpace", "SpaceToDepth")
def _depth_space(node):
    n, c, h, w = _shape(node)
    b = int(_attr(node, "blocksize"))
    if node.op == "SpaceToDepth":
        return Type(_dtype(node), (n, c * b * b, h // b, w // b))
    return Type(_dtype(node), (n, c // (b * b), h * b, w * b))


from qcompiler.ir import shapes_nn  # noqa: E402,F401  (windowed ops and Resize register their rules)
