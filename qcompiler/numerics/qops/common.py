"""What every op's parameters are made of: the node's quantization parameters, constant
operands, the activation clamp, per-channel multipliers, and the record base class."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir.activation import clamp_of
from qcompiler.ir import Node, QuantParams
from qcompiler.numerics import fixed_point as qm


@dataclass(frozen=True, eq=False)
class QopParams:
    """Base of the per-op records: ints, tuples of ints, short strings and read-only numpy
    integer arrays, in declaration order (`items()`), which is the order an emitter prints."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.flags.writeable:
                v = v.copy()
                v.flags.writeable = False
                object.__setattr__(self, f.name, v)

    def items(self) -> list[tuple[str, object]]:
        """(field name, value) pairs in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def qparams(node: Node, index: int, output: bool = False) -> QuantParams:
    """QuantParams of input (or output) `index`, or a GraphError naming the node."""
    values = node.outputs if output else node.inputs
    v = values[index] if index < len(values) else None
    q = None if v is None else v.quant
    if q is None:
        kind = "output" if output else "input"
        raise GraphError(f"node {node.name} ({node.op}): {kind} #{index} has no quantization "
                         "parameters; the integer interpreter needs a quantized graph")
    return q


def scale_zp(node: Node, index: int, output: bool = False) -> tuple[np.float32, int]:
    """Per-tensor (scale, zero point) of an input or output."""
    q = qparams(node, index, output)
    if q.scale.size != 1:
        kind = "output" if output else "input"
        raise GraphError(f"node {node.name} ({node.op}): {kind} #{index} must be per-tensor "
                         f"quantized, got {q.scale.size} scales")
    return np.float32(q.scale[0]), int(q.zero_point[0])


def require_same_quant(node: Node, in_index: int = 0, out_index: int = 0) -> None:
    """TFLM copies raw values for this op: input and output parameters must agree."""
    qi, qo = qparams(node, in_index), qparams(node, out_index, output=True)
    if not (np.array_equal(qi.scale, qo.scale) and np.array_equal(qi.zero_point, qo.zero_point)):
        raise GraphError(f"node {node.name} ({node.op}): input #{in_index} {qi!r} and output "
                         f"{qo!r} must share quantization parameters (TFLM does not rescale "
                         "here); insert a requantize or fix the quantizer")


def operand(node: Node, index: int, values: list | None = None, what: str = "operand"):
    """The data of input `index` as a numpy array, None when absent.

    Kernels pass their runtime `values` (constants arrive there as their data); backends
    pass none and get the constant, or a GraphError if the input is computed at run time.
    """
    v = node.inputs[index] if index < len(node.inputs) else None
    if values is not None:
        if v is None or index >= len(values) or values[index] is None:
            return None
        return np.asarray(values[index])
    if v is None:
        return None
    if not v.is_constant:
        raise GraphError(f"node {node.name} ({node.op}): the {what} (input #{index}, {v.name}) "
                         "must be a constant")
    return np.asarray(v.data)


def int_list(node: Node, index: int, attr: str | None, values: list | None = None,
             what: str = "operand") -> list[int] | None:
    """Integers from a constant input (newer opsets) or an attribute (older ones)."""
    data = operand(node, index, values, what)
    if data is not None:
        return [int(a) for a in data.reshape(-1)]
    if attr is not None and attr in node.attrs:
        return [int(a) for a in np.atleast_1d(node.attrs[attr])]
    return None


def attr_ints(node: Node, name: str, default: int, n: int = 2) -> tuple[int, ...]:
    """An integer-list attribute, or `n` copies of `default`."""
    v = node.attrs.get(name)
    return tuple(int(t) for t in v) if v is not None else (default,) * n


def attr_str(node: Node, name: str, default: str | None = None) -> str | None:
    """A string attribute (ONNX may hand them over as bytes)."""
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def in_shape(node: Node, shape=None, index: int = 0) -> tuple[int, ...]:
    """`shape` if given (a kernel's runtime shape), else the IR's static shape of an input."""
    if shape is not None:
        return tuple(int(d) for d in shape)
    v = node.inputs[index]
    if v is None or v.shape is None:
        raise GraphError(f"node {node.name} ({node.op}): input #{index} has no static shape "
                         "(run shape inference / fix --input-shape)")
    return v.shape


# ---- the activation clamp (the one reader of the fused clamp among the parameters) --------

def activation_range(clamp: tuple[float, float] | None, scale, zero_point: int, qmin: int = -128,
                     qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for a fused clamp (lo, hi) in float units (+-inf or
    None: unbounded): [max(qmin, Quantize(lo)), min(qmax, Quantize(hi))]. TFLite's RELU,
    RELU6 and RELU_N1_TO_1 are the clamps (0, inf), (0, 6) and (-1, 1)."""
    lo, hi = qmin, qmax
    if clamp is not None:
        if clamp[0] is not None and math.isfinite(clamp[0]):
            lo = max(qmin, qm.quantize_scalar(clamp[0], scale, zero_point))
        if clamp[1] is not None and math.isfinite(clamp[1]):
            hi = min(qmax, qm.quantize_scalar(clamp[1], scale, zero_point))
    return lo, hi


def activation_clamp(node: Node) -> tuple[int, int]:
    """(act_min, act_max): output 0's type range narrowed by the node's fused clamp."""
    q = qparams(node, 0, output=True)
    return activation_range(clamp_of(node), q.scale[0], int(q.zero_point[0]), q.qmin, q.qmax)


# ---- per-channel multipliers ---------------------------------------------------------------

def channel_multipliers(real, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """QuantizeMultiplier of each real multiplier, broadcast to `channels` entries: read-only
    int32 (multipliers, shifts). Cached by value: a layer's numbers are the same every run."""
    real = np.ascontiguousarray(real, np.float64)
    return _channel_multipliers(real.tobytes(), real.shape, int(channels))


@functools.lru_cache(maxsize=4096)
def _channel_multipliers(real_bytes: bytes, shape: tuple, channels: int):
    real = np.frombuffer(real_bytes, np.float64).reshape(shape)
    m, s = qm.quantize_multipliers(np.broadcast_to(real, (channels,)))
    m.flags.writeable = s.flags.writeable = False
    return m, s
