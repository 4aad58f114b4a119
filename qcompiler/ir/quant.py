"""Typed quantization parameters carried by IR values."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError


# values per block of QuantParams.fake_quantize: its float64 temporaries stay in the CPU cache
FAKE_QUANT_BLOCK = 1 << 15


@dataclass(eq=False)
class QuantParams:
    """Affine quantization: real = (q - zero_point) * scale.

    `axis` is None for per-tensor parameters, else the channel axis of the
    (NCHW / ONNX-layout) tensor along which `scale` and `zero_point` vary.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None
    dtype: np.dtype = np.dtype(np.int8)

    def __post_init__(self):
        self.scale = np.atleast_1d(np.asarray(self.scale, dtype=np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, dtype=np.int64)).astype(np.int32)
        self.dtype = np.dtype(self.dtype)
        if self.scale.shape != self.zero_point.shape:
            raise GraphError(f"quantization scale {self.scale.shape} and zero point "
                             f"{self.zero_point.shape} differ in shape")
        if self.axis is None and self.scale.size != 1:
            raise GraphError("per-tensor quantization needs exactly one scale")

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    def broadcast_shape(self, rank: int) -> tuple[int, ...]:
        """Shape that broadcasts scale/zero_point against a tensor of `rank`."""
        if self.axis is None:
            return (1,) * rank
        shape = [1] * rank
        shape[self.axis] = self.scale.size
        return tuple(shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float -> integer with round-half-to-even, as TFLite's QUANTIZE does for floats."""
        s = self.scale.astype(np.float64).reshape(self.broadcast_shape(x.ndim))
        z = self.zero_point.reshape(self.broadcast_shape(x.ndim))
        q = np.round(np.asarray(x, np.float64) / s) + z
        return np.clip(q, self.qmin, self.qmax).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        s = self.scale.reshape(self.broadcast_shape(q.ndim))
        z = self.zero_point.reshape(self.broadcast_shape(q.ndim))
        return ((q.astype(np.int64) - z) * s.astype(np.float64)).astype(np.float32)

    def fake_quantize(self, x: np.ndarray) -> np.ndarray:
        """dequantize(quantize(x)) with the same float64 arithmetic (no integer round trip; the
        integers are exact in float64 either way). Per-tensor parameters go block by block
        (FAKE_QUANT_BLOCK values, cache-resident), the same operations on the same values."""
        if self.axis is None and np.size(x) > FAKE_QUANT_BLOCK:
            return self._fake_quantize_blocks(np.asarray(x))
        s = self.scale.astype(np.float64).reshape(self.broadcast_shape(x.ndim))
        z = self.zero_point.astype(np.float64).reshape(self.broadcast_shape(x.ndim))
        t = np.array(x, np.float64)
        t /= s
        np.round(t, out=t)
        t += z
        np.clip(t, self.qmin, self.qmax, out=t)
        t -= z
        t *= s
        return t.astype(np.float32)

    def _fake_quantize_blocks(self, x: np.ndarray) -> np.ndarray:
        s, z = np.float64(self.scale[0]), np.float64(self.zero_point[0])
        lo, hi = np.float64(self.qmin), np.float64(self.qmax)
        flat = x.reshape(-1)
        out = np.empty(flat.shape, np.float32)
        buf = np.empty(FAKE_QUANT_BLOCK, np.float64)
        for i in range(0, flat.size, FAKE_QUANT_BLOCK):
            t = buf[:min(FAKE_QUANT_BLOCK, flat.size - i)]
            np.divide(flat[i:i + t.size], s, out=t, dtype=np.float64)
            np.rint(t, out=t)
            t += z
            np.maximum(t, lo, out=t)  # np.clip's result, NaN included
            np.minimum(t, hi, out=t)
            t -= z
            t *= s
            out[i:i + t.size] = t
        return out.reshape(x.shape)

    def same_as(self, other: "QuantParams | None") -> bool:
        return (other is not None and self.axis == other.axis and self.dtype == other.dtype
                and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def __repr__(self):
        if self.scale.size == 1:
            return f"{self.dtype.name}(s={float(self.scale[0]):.6g}, zp={int(self.zero_point[0])})"
        return f"{self.dtype.name}(axis={self.axis}, {self.scale.size} scales)"
