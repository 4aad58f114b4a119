"""ncnn's int8 scheme: symmetric scales as multipliers, as `ncnn2table` / `ncnn2int8` make them.

    q = clamp(round_half_away(x * scale), -127, 127)       (ncnn `float2int8`)
    weight scale = 127 / max|w| per output channel (Convolution, InnerProduct)
                   or per group (ConvolutionDepthWise)
    blob scale   = 127 / threshold, threshold = max(|min|, |max|) of the calibrated range

Every product and quotient is float32, as ncnn computes it. The emitter and the
simulator both take their int8 weights from here, so they agree by construction;
what the comparison with ncnn tests is the arithmetic around them.
"""
from __future__ import annotations

import numpy as np

from qcompiler.numerics.fixed_point import round_half_away

# int8_scale_term as `ncnn2int8` writes it; +100 when the output is requantized to int8
SCALE_TERM = {"Convolution": 2, "ConvolutionDepthWise": 1, "InnerProduct": 2}
REQUANT_OFFSET = 100
F32 = np.float32


def float2int8(x: np.ndarray) -> np.ndarray:
    """ncnn's `float2int8`: round half away from zero (C `round()`), clamp to [-127, 127]."""
    return np.clip(round_half_away(np.asarray(x)), -127, 127).astype(np.int8)


def blob_scale(value_range: tuple[float, float]) -> float:
    """127 / threshold for a calibrated (min, max); 1.0 for an all-zero blob (any scale is exact)."""
    threshold = F32(max(abs(value_range[0]), abs(value_range[1])))
    return float(F32(127) / threshold) if threshold > 0 else 1.0


def weight_scales(w: np.ndarray, groups: int) -> np.ndarray:
    """127 / max|w| over `groups` equal slices of the flattened weight; 0 for an all-zero slice."""
    absmax = np.abs(np.asarray(w, F32).reshape(groups, -1)).max(axis=1)
    with np.errstate(divide="ignore"):
        scales = np.where(absmax > 0, F32(127) / absmax, F32(0))
    return scales.astype(F32)


def quantize_weight(w: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """int8 weights in the weight's own layout; `scales` split its leading axis into equal slices."""
    w = np.asarray(w, F32)
    rows = w.reshape(scales.size, -1)
    return float2int8(rows * scales[:, None].astype(F32)).reshape(w.shape)


def dequant_multipliers(in_scale: float, w_scales: np.ndarray) -> np.ndarray:
    """ncnn's per-channel `1.f / (bottom_scale * weight_scale)`, 0 where the weight scale is 0."""
    prod = F32(in_scale) * np.asarray(w_scales, F32)
    with np.errstate(divide="ignore"):
        return np.where(prod != 0, F32(1) / prod, F32(0)).astype(F32)
