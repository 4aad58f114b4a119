"""ONNX Resize -> ncnn Interp, accepted only where both pick the same source pixels.

ONNX Resize has many coordinate modes; ncnn's Interp has three formulas
(`src/layer/interp.cpp`): nearest `min(int(x * (in/out)), in-1)`, bilinear with
half-pixel centres or with aligned corners. Rather than a table of which ONNX
attribute combinations agree, the check is numerical: the float reference
kernel resizes a ramp (value = source index) along each axis, and the result
must equal the source position ncnn's formula picks (for linear interpolation
the interpolated ramp value *is* that position, so this is exact).
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
RESIZE_TYPE = {"nearest": 1, "linear": 2, "bilinear": 2}


def _nearest(n_in: int, n_out: int, align: int) -> np.ndarray:
    ws = F32(n_in) / F32(n_out)  # `w / (float)outw`
    return np.minimum((np.arange(n_out, dtype=F32) * ws).astype(np.int64), n_in - 1).astype(np.float64)


def _linear(n_in: int, n_out: int, align: int) -> np.ndarray:
    """Source position sx + fx of ncnn's `linear_coeffs` (double scale, float fx, edge clamps)."""
    dx = np.arange(n_out, dtype=np.float64)
    if align:
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        fx = (dx * scale).astype(F32)
    else:
        fx = ((dx + 0.5) * (n_in / n_out) - 0.5).astype(F32)
    sx = np.floor(fx)
    fx = (fx - sx.astype(F32)).astype(np.float64)
    low, high = sx < 0, sx >= n_in - 1
    sx, fx = np.where(low, 0, sx), np.where(low, 0.0, fx)
    sx, fx = np.where(high, n_in - 2, sx), np.where(high, 1.0, fx)
    return sx + fx


FORMULAS = {1: _nearest, 2: _linear}


def _onnx_positions(node, inputs, shape, axis) -> np.ndarray:
    """Where the ONNX Resize reads from along `axis`: resize a ramp of source indices."""
    from qcompiler.interp import FLOAT_KERNELS
    ramp = np.arange(shape[axis], dtype=np.float32).reshape([-1 if a == axis else 1 for a in range(4)])
    x = np.ascontiguousarray(np.broadcast_to(ramp, shape))
    y = FLOAT_KERNELS[node.op](node, [x] + inputs)[0]
    index = [0, 0, 0, 0]
    index[axis] = slice(None)
    return np.asarray(y[tuple(index)], np.float64)


def interp_params(node) -> dict:
    """Interp params for a Resize node, or Unsupported (from .lower) saying why not."""
    from qcompiler.backends.ncnn.lower import Unsupported
    x, out = node.input(0), node.outputs[0]
    if x.shape is None or len(x.shape) != 4 or out.shape is None or out.shape[:2] != x.shape[:2]:
        raise Unsupported("only spatial resizing of an NCHW tensor")
    mode = node.attrs.get("mode", "nearest")
    if mode not in RESIZE_TYPE:
        raise Unsupported(f"mode {mode!r}")
    inputs = []
    for v in node.inputs[1:]:
        if v is not None and not v.is_constant:
            raise Unsupported("scales / sizes must be constants")
        inputs.append(None if v is None else v.data)
    rtype = RESIZE_TYPE[mode]
    if rtype == 2 and min(x.shape[2:]) < 2:
        raise Unsupported("linear resizing of a 1-pixel axis (ncnn reads outside the image)")
    onnx = [_onnx_positions(node, inputs, x.shape, axis) for axis in (2, 3)]
    for align in ((0,) if rtype == 1 else (0, 1)):
        ncnn = [FORMULAS[rtype](n_in, n_out, align) for n_in, n_out in zip(x.shape[2:], out.shape[2:])]
        if all(a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-5) for a, b in zip(onnx, ncnn)):
            return {0: rtype, 3: int(out.shape[2]), 4: int(out.shape[3]), 6: align}
    raise Unsupported("its coordinate mapping differs from ncnn Interp's (nearest: floor of x*in/out; "
                      "linear: half_pixel or align_corners)")
