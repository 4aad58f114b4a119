"""Float reference kernels: numpy, one per ONNX op (opsets 9..21), checked against onnxruntime.

Opset-dependent parameters are accepted in both forms (attribute in old opsets,
input in new ones). The only semantics that cannot be told from a node itself
(Softmax/LogSoftmax/Hardmax axis handling before opset 13, the Dropout mask
value and type before opset 12) follow `node.meta["opset"]`, defaulting to the newest form.
Windowed ops live in `float_kernels_nn`, Resize in `float_kernels_resize`, shape and
indexing ops in `float_kernels_shape`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from qcompiler.interp.float_kernels.nn import attr, f64 as _f64, ints, opset, opt, unsupported
from qcompiler.interp.float_kernels.registry import float_kernel


def _erf(x):
    try:
        from scipy.special import erf
        return erf(_f64(x))
    except ImportError:  # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
        z = np.abs(_f64(x))
        t = 1.0 / (1.0 + 0.3275911 * z)
        poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        return np.sign(x) * (1.0 - poly * np.exp(-z * z))


# ---- elementwise -----------------------------------------------------------
_UNARY = {
    "Relu": lambda n, x: np.maximum(x, 0),
    "Sigmoid": lambda n, x: np.exp(-np.logaddexp(0.0, -_f64(x))),
    "Tanh": lambda n, x: np.tanh(x),
    "Sqrt": lambda n, x: np.sqrt(x),
    "Exp": lambda n, x: np.exp(_f64(x)),
    "Log": lambda n, x: np.log(x),
    "Neg": lambda n, x: -x,
    "Abs": lambda n, x: np.abs(x),
    "Sign": lambda n, x: np.sign(x),
    "Floor": lambda n, x: np.floor(x),
    "Ceil": lambda n, x: np.ceil(x),
    "Round": lambda n, x: np.round(x),
    "Reciprocal": lambda n, x: 1 / _f64(x),
    "Rsqrt": lambda n, x: 1 / np.sqrt(_f64(x)),  # not ONNX: qcc op from passes/decompose_lrn.py
    "Sin": lambda n, x: np.sin(x),
    "Cos": lambda n, x: np.cos(x),
    "Erf": lambda n, x: _erf(x),
    "Softplus": lambda n, x: np.logaddexp(0.0, _f64(x)),
    "Softsign": lambda n, x: x / (1 + np.abs(x)),
    "LeakyRelu": lambda n, x: np.where(x < 0, x * _f64(attr(n, "alpha", 0.01)), x),
    "Elu": lambda n, x: np.where(x < 0, _f64(attr(n, "alpha", 1.0)) * np.expm1(_f64(x)), x),
    "Selu": lambda n, x: _f64(attr(n, "gamma", 1.0507009873554805)) * np.where(
        x <= 0, _f64(attr(n, "alpha", 1.6732632423543772)) * np.expm1(_f64(x)), x),
    "Celu": lambda n, x: np.maximum(0, x) + np.minimum(
        0, attr(n, "alpha", 1.0) * np.expm1(_f64(x) / attr(n, "alpha", 1.0))),
    "ThresholdedRelu": lambda n, x: np.where(x > attr(n, "alpha", 1.0), x, 0),
    "HardSigmoid": lambda n, x: np.clip(_f64(attr(n, "alpha", 0.2)) * x + attr(n, "beta", 0.5), 0, 1),
    "HardSwish": lambda n, x: x * np.clip(_f64(x) / 6 + 0.5, 0, 1),
    "Mish": lambda n, x: x * np.tanh(np.logaddexp(0.0, _f64(x))),
    "Gelu": lambda n, x: 0.5 * _f64(x) * (
        1 + (np.tanh(math.sqrt(2 / math.pi) * (_f64(x) + 0.044715 * _f64(x) ** 3))
             if attr(n, "approximate", "none") == "tanh" else _erf(_f64(x) / math.sqrt(2)))),
    "Not": lambda n, x: np.logical_not(x),
    "IsNaN": lambda n, x: np.isnan(x),
}


# Unary ops on float32 whose float64 temporaries are worth keeping in the CPU cache: applied block
# by block (BLOCK values) they give the same bits, each element's arithmetic being exactly rounded
# IEEE operations (no transcendental function whose vector and scalar code could differ)
BLOCKED = {"HardSigmoid", "HardSwish", "LeakyRelu"}
BLOCK = 1 << 14


def _blocks(fn, node, x: np.ndarray) -> np.ndarray:
    flat = x.reshape(-1)
    out = np.empty(flat.shape, x.dtype)
    for i in range(0, flat.size, BLOCK):
        out[i:i + BLOCK] = fn(node, flat[i:i + BLOCK])
    return out.reshape(x.shape)


def _unary(node, inputs):
    x = inputs[0]
    if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.size > BLOCK:
        if node.op == "Sigmoid":
            return [sigmoid_float32(x)]
        if node.op in BLOCKED:
            return [_blocks(_UNARY[node.op], node, x)]
    y = np.asarray(_UNARY[node.op](node, x))
    return [y if y.dtype == bool else y.astype(x.dtype, copy=False)]


# float64 bits below float32's 24-bit significand; a value whose low bits are within TIE_MARGIN
# of half of that rounds to float32 near a tie
_LOW_BITS, _HALF, _TIE_MARGIN = np.int64((1 << 29) - 1), np.int64(1 << 28), np.int64(1 << 13)
_SMALLEST_NORMAL32 = np.float64(2.0 ** -126)


def sigmoid_float32(x: np.ndarray) -> np.ndarray:
    """_UNARY["Sigmoid"] of a float32 array, bit for bit, ~4x faster.

    1 / (1 + exp(-x)) in float64 (vectorized exp) differs from exp(-logaddexp(0, -x)) (scalar libm
    calls) by less than 1e-13 relative: both round to the same float32 unless the value lies within
    2**13 float64 steps (2e-12 relative) of a float32 rounding tie. Those few, and float32
    subnormal results, zeros and NaNs, are recomputed with the reference formula.
    """
    ref = _UNARY["Sigmoid"]
    flat = x.reshape(-1)
    out = np.empty(flat.shape, np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, flat.size, BLOCK):
            xs = flat[i:i + BLOCK]
            y = np.negative(xs, dtype=np.float64)
            np.exp(y, out=y)
            y += 1.0
            np.reciprocal(y, out=y)
            near_tie = np.abs((y.view(np.int64) & _LOW_BITS) - _HALF) < _TIE_MARGIN
            redo = near_tie | ~(y >= _SMALLEST_NORMAL32)
            part = out[i:i + xs.size]
            part[...] = y
            if redo.any():
                part[redo] = ref(None, xs[redo])
    return out.reshape(x.shape)


float_kernel(*_UNARY)(_unary)


def _div(a, b):
    if np.result_type(a, b).kind in "iu":  # C-style truncation toward zero
        q = np.floor_divide(a, b)
        return q + ((q < 0) & (q * b != a))
    return np.divide(a, b)


_BINARY = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": _div,
    "Equal": np.equal, "Greater": np.greater, "Less": np.less, "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
}


@float_kernel(*_BINARY)
def binary(node, inputs):
    return [np.asarray(_BINARY[node.op](inputs[0], inputs[1]))]


@float_kernel("Pow")
def pow_(node, inputs):
    x, e = inputs
    return [np.power(_f64(x), _f64(e)).astype(x.dtype)]


@float_kernel("Mod")
def mod(node, inputs):
    a, b = inputs
    if int(attr(node, "fmod", 0)) or a.dtype.kind == "f":
        return [np.fmod(a, b)]
    return [np.mod(a, b)]


@float_kernel("Sum", "Max", "Min", "Mean")
def variadic(node, inputs):
    fn = {"Sum": np.add, "Mean": np.add, "Max": np.maximum, "Min": np.minimum}[node.op]
    acc = functools.reduce(fn, inputs)
    return [(acc / len(inputs)).astype(inputs[0].dtype) if node.op == "Mean" else acc]


@float_kernel("PRelu")
def prelu(node, inputs):
    x, slope = inputs
    return [np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)]


@float_kernel("Clip")
def clip(node, inputs):
    x = inputs[0]
    lo, hi = opt(inputs, 1), opt(inputs, 2)
    lo = attr(node, "min") if lo is None else lo
    hi = attr(node, "max") if hi is None else hi
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo).astype(x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi).astype(x.dtype))
    return [np.array(y, x.dtype)]


@float_kernel("Where")
def where(node, inputs):
    return [np.where(inputs[0], inputs[1], inputs[2])]


# ---- softmax family ----------------------------------------------------------
@float_kernel("Softmax", "LogSoftmax", "Hardmax")
def softmax(node, inputs):
    x = inputs[0]
    legacy = (opset(node) or 13) < 13
    axis = int(attr(node, "axis", 1 if legacy else -1)) % max(x.ndim, 1)
    xf = _f64(x).reshape(math.prod(x.shape[:axis]), -1) if legacy else _f64(x)
    ax = 1 if legacy else axis
    if node.op == "Hardmax":
        y = np.zeros_like(xf)
        np.put_along_axis(y, np.argmax(xf, axis=ax, keepdims=True), 1.0, axis=ax)
    else:
        z = xf - xf.max(axis=ax, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=ax, keepdims=True))
        y = z - lse if node.op == "LogSoftmax" else np.exp(z - lse)
    return [y.reshape(x.shape).astype(x.dtype)]


# ---- matmul ------------------------------------------------------------------------
@float_kernel("MatMul")
def matmul(node, inputs):
    return [np.matmul(inputs[0], inputs[1])]


@float_kernel("Gemm")
def gemm(node, inputs):
    a, b, c = inputs[0], inputs[1], opt(inputs, 2)
    a = a.T if int(attr(node, "transA", 0)) else a
    b = b.T if int(attr(node, "transB", 0)) else b
    y = a @ b
    alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    if alpha != 1.0:
        y = y * np.asarray(alpha, y.dtype)
    if c is not None and beta != 0.0:
        y = y + (c if beta == 1.0 else c * np.asarray(beta, c.dtype))
    return [y.astype(inputs[0].dtype, copy=False)]


@float_kernel("Dropout")
def dropout(node, inputs):
    x = inputs[0]
    ratio = opt(inputs, 1)
    ratio = float(attr(node, "ratio", 0.5) if ratio is None else ratio)
    training = opt(inputs, 2)
    if training is not None and bool(training) and ratio > 0:
        unsupported(node, "training_mode=True (random dropout)")
    outs = [x]
    if len(node.outputs) > 1:  # as onnxruntime: all-true from opset 12, all-zero before (typed T before 10)
        version = opset(node) or 13
        outs.append(np.full(x.shape, version >= 12, bool if version >= 10 else x.dtype))
    return outs


@float_kernel("Identity")
def identity(node, inputs):
    return [inputs[0]]


# ---- reductions ---------------------------------------------------------------
_REDUCE = {
    "ReduceMean": lambda x, a, k: np.mean(_f64(x), axis=a, keepdims=k),
    "ReduceSum": lambda x, a, k: np.sum(x.astype(np.float64) if x.dtype.kind == "f" else x, axis=a, keepdims=k),
    "ReduceMax": lambda x, a, k: np.max(x, axis=a, keepdims=k),
    "ReduceMin": lambda x, a, k: np.min(x, axis=a, keepdims=k),
    "ReduceProd": lambda x, a, k: np.prod(x, axis=a, keepdims=k),
    "ReduceL1": lambda x, a, k: np.sum(np.abs(_f64(x)), axis=a, keepdims=k),
    "ReduceL2": lambda x, a, k: np.sqrt(np.sum(_f64(x) ** 2, axis=a, keepdims=k)),
    "ReduceSumSquare": lambda x, a, k: np.sum(_f64(x) ** 2, axis=a, keepdims=k),
    "ReduceLogSum": lambda x, a, k: np.log(np.sum(_f64(x), axis=a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: _logsumexp(_f64(x), a, k),
}


def _logsumexp(x, axes, keep):
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    y = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return y if keep else np.squeeze(y, axis=axes)


@float_kernel(*_REDUCE)
def reduce(node, inputs):
    x = inputs[0]
    axes = opt(inputs, 1)
    axes = attr(node, "axes") if axes is None else axes
    keep = bool(int(attr(node, "keepdims", 1)))
    if axes is None or np.asarray(axes).size == 0:
        if int(attr(node, "noop_with_empty_axes", 0)):
            return [x]
        axes = None
    else:
        axes = tuple(sorted(a % x.ndim for a in ints(axes)))
    return [np.asarray(_REDUCE[node.op](x, axes, keep)).astype(x.dtype)]


@float_kernel("ArgMax", "ArgMin")
def argmax(node, inputs):
    x = inputs[0]
    axis = int(attr(node, "axis", 0)) % x.ndim
    fn = np.argmax if node.op == "ArgMax" else np.argmin
    if int(attr(node, "select_last_index", 0)):
        y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
    else:
        y = fn(x, axis=axis)
    y = np.asarray(y, np.int64)
    return [np.expand_dims(y, axis) if int(attr(node, "keepdims", 1)) else y]
