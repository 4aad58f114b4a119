"""Helpers shared by the integer kernels: quantization parameters, activation ranges."""
from __future__ import annotations

import functools

import numpy as np

from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import GraphError
from qcompiler.ir import Node, QuantParams
from qcompiler.ir.activation import clamp_of


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


def out_range(node: Node) -> tuple[int, int]:
    """Integer range of output 0: the full range, narrowed to the node's fused clamp."""
    q = qparams(node, 0, output=True)
    return qm.activation_range(clamp_of(node), q.scale[0], int(q.zero_point[0]), q.qmin, q.qmax)


def require_same_quant(node: Node, in_index: int = 0, out_index: int = 0) -> None:
    """TFLM copies raw values for this op: input and output parameters must agree."""
    qi, qo = qparams(node, in_index), qparams(node, out_index, output=True)
    if not (np.array_equal(qi.scale, qo.scale) and np.array_equal(qi.zero_point, qo.zero_point)):
        raise GraphError(f"node {node.name} ({node.op}): input #{in_index} {qi!r} and output "
                         f"{qo!r} must share quantization parameters (TFLM does not rescale "
                         "here); insert a requantize or fix the quantizer")


def attr_str(node: Node, name: str, default: str | None = None) -> str | None:
    """A string attribute (ONNX may hand them over as bytes)."""
    v = node.attrs.get(name, default)
    return v.decode() if isinstance(v, bytes) else v


def as_int(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def to_int8(y, lo: int = -128, hi: int = 127) -> np.ndarray:
    return np.clip(y, lo, hi).astype(np.int8)


def const_ints(node: Node, index: int, inputs: list, attr: str | None = None):
    """An integer list from a constant input (opset >= 13 style) or an attribute."""
    if index < len(inputs) and inputs[index] is not None:
        return [int(v) for v in np.asarray(inputs[index]).reshape(-1)]
    if attr is not None and attr in node.attrs:
        v = node.attrs[attr]
        return [int(x) for x in np.atleast_1d(v)]
    return None


def multipliers_for_channels(real: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """fixed_point.quantize_multipliers, broadcast to `channels` entries (int64 arrays, read-only)."""
    real = np.ascontiguousarray(real, np.float64)
    return _multipliers(real.tobytes(), real.shape, channels)


@functools.lru_cache(maxsize=4096)
def _multipliers(real_bytes: bytes, shape: tuple, channels: int) -> tuple[np.ndarray, np.ndarray]:
    # cached: a layer's multipliers are the same on every run of the interpreter
    real = np.frombuffer(real_bytes, np.float64).reshape(shape)
    m, s = qm.quantize_multipliers(np.broadcast_to(real, (channels,)))
    m, s = m.astype(np.int64), s.astype(np.int64)
    m.flags.writeable = s.flags.writeable = False
    return m, s


def channel_shape(rank: int, axis: int = 1) -> tuple[int, ...]:
    shape = [1] * rank
    shape[axis] = -1
    return tuple(shape)
