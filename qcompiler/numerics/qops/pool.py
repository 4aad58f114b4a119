"""Pooling, MEAN and RESIZE parameters: window geometry, divisors, multipliers, index tables.

MAX_POOL_2D / AVERAGE_POOL_2D skip taps outside the image; the average divides the raw
sum by the count of in-image taps (`counts`), rounding half away from zero. Input and
output parameters must be equal. MEAN: QuantizeMultiplier(in_s / out_s) with 1/n folded
in (`mean_multiplier`). RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR: source rows / columns
per output position from TFLM's float32 index maths and 10-bit fixed-point weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Node
from qcompiler.numerics import fixed_point as qm
from qcompiler.numerics.qops.common import (QopParams, activation_clamp, attr_ints, attr_str, in_shape,
                                            int_list, require_same_quant, scale_zp)


def pooled_size(size: int, k: int, s: int, d: int, p0: int, p1: int, ceil_mode: int) -> int:
    """Output length of a pooling window along one axis (ONNX rule, ceil_mode included)."""
    span = size + p0 + p1 - ((k - 1) * d + 1)
    n = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n - 1) * s >= size + p0:  # last window may not start in the end pad
        n -= 1
    return n


@dataclass(frozen=True, eq=False)
class PoolParams(QopParams):
    """MaxPool / AveragePool over NCHW data; rows and columns are (h, w) pairs."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]   # top, left, bottom, right (ONNX)
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    padded_hw: tuple[int, int]        # the input with its pads, covering every window
    counts: np.ndarray                # int32 [out h, out w]: in-image taps per window
    act_min: int
    act_max: int


def pool_params(node: Node, shape=None) -> PoolParams:
    """`shape`: the input's NCHW shape (default: the IR's)."""
    require_same_quant(node)
    shape = in_shape(node, shape)
    if len(shape) != 4:
        raise GraphError(f"node {node.name} ({node.op}): only 2-D pooling, got rank {len(shape)}")
    kh, kw = (int(k) for k in node.attrs["kernel_shape"])
    sh, sw = attr_ints(node, "strides", 1)
    dh, dw = attr_ints(node, "dilations", 1)
    pt, pl, pb, pr = attr_ints(node, "pads", 0, 4)
    ceil_mode = int(node.attrs.get("ceil_mode", 0))
    h, w = shape[2:]
    ho, wo = pooled_size(h, kh, sh, dh, pt, pb, ceil_mode), pooled_size(w, kw, sw, dw, pl, pr, ceil_mode)
    hp = max(pt + h, (ho - 1) * sh + (kh - 1) * dh + 1)
    wp = max(pl + w, (wo - 1) * sw + (kw - 1) * dw + 1)
    valid = np.zeros((hp, wp), np.int32)
    valid[pt:pt + h, pl:pl + w] = 1
    counts = np.zeros((ho, wo), np.int32)
    for i in range(kh):
        for j in range(kw):
            counts += valid[i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
    if node.op == "AveragePool":
        if int(node.attrs.get("count_include_pad", 0)) and any((pt, pl, pb, pr)):
            raise GraphError(f"node {node.name} (AveragePool): count_include_pad=1 with padding is "
                             "not TFLM AVERAGE_POOL_2D (it divides by the in-image tap count)")
        if np.any(counts == 0):
            raise GraphError(f"node {node.name} (AveragePool): a window contains no input pixel "
                             "(TFLM fails here)")
    return PoolParams((kh, kw), (sh, sw), (dh, dw), (pt, pl, pb, pr), (h, w), (ho, wo), (hp, wp),
                      counts, *activation_clamp(node))


@dataclass(frozen=True, eq=False)
class GlobalPoolParams(QopParams):
    """GlobalAveragePool: AVERAGE_POOL_2D with one window over all spatial positions."""

    count: int
    act_min: int
    act_max: int


def global_pool_params(node: Node, shape=None) -> GlobalPoolParams:
    require_same_quant(node)
    shape = in_shape(node, shape)
    return GlobalPoolParams(int(np.prod(shape[2:])), *activation_clamp(node))


# ---- MEAN ------------------------------------------------------------------------------------

def mean_multiplier(multiplier: int, shift: int, num_elements: int) -> tuple[int, int]:
    """Fold the 1/n of MEAN into (multiplier, shift) as reference QuantizedMeanOrSum."""
    s = min(int(num_elements).bit_length() - 1, 32, 31 + shift)
    return int(qm.wrap_int32((int(multiplier) << s) // int(num_elements))), shift - s


@dataclass(frozen=True, eq=False)
class MeanParams(QopParams):
    """ReduceMean: y = MBQM(sum(x) - in_zp * count, multiplier, shift) + out_zp."""

    axes: tuple[int, ...]    # sorted, non-negative; () with `noop`
    keepdims: int
    noop: int                # empty axes with noop_with_empty_axes: the input unchanged
    count: int               # elements per output value
    input_zero_point: int
    output_zero_point: int
    multiplier: int          # 1/count folded in
    shift: int


def mean_axes(node: Node, rank: int, values: list | None = None) -> tuple[tuple[int, ...], int, int]:
    """(sorted reduced axes, keepdims, noop) of a ReduceMean over a rank-`rank` input: the
    geometry alone, which a float backend reads too (no quantization parameters needed)."""
    axes = int_list(node, 1, "axes", values, "axes")
    keep = int(bool(int(node.attrs.get("keepdims", 1))))
    noop = not axes and bool(int(node.attrs.get("noop_with_empty_axes", 0)))
    if noop:
        axes = []
    elif not axes:
        axes = list(range(rank))
    return tuple(sorted(a % rank for a in axes)), keep, int(noop)


def mean_params(node: Node, shape=None, values: list | None = None) -> MeanParams:
    """`shape` / `values`: a kernel's runtime input shape and operands (default: the IR's)."""
    shape = in_shape(node, shape)
    axes, keep, noop = mean_axes(node, len(shape), values)
    count = int(np.prod([shape[a] for a in axes]))
    si, zi = scale_zp(node, 0)
    so, zo = scale_zp(node, 0, output=True)
    m, e = mean_multiplier(*qm.quantize_multiplier(float(si) / float(so)), count)
    return MeanParams(axes, keep, noop, count, zi, zo, m, e)


# ---- RESIZE ------------------------------------------------------------------------------------

def resize_mode(node: Node, out_hw, in_hw) -> tuple[str, bool, bool]:
    """(mode, align_corners, half_pixel_centers) of the TFLM op equal to this ONNX Resize."""
    mode = attr_str(node, "mode", "nearest")
    ctm = attr_str(node, "coordinate_transformation_mode", "half_pixel")
    if mode == "linear":
        table = {"half_pixel": (False, True), "pytorch_half_pixel": (False, True),
                 "align_corners": (True, False), "asymmetric": (False, False)}
        if ctm in table and (ctm != "pytorch_half_pixel" or min(out_hw) > 1):
            return ("linear",) + table[ctm]
    elif mode == "nearest":
        nm = attr_str(node, "nearest_mode", "round_prefer_floor")
        integer_up = all(o % i == 0 for o, i in zip(out_hw, in_hw))
        if (ctm, nm) == ("asymmetric", "floor"):
            return "nearest", False, False
        if (ctm, nm) == ("align_corners", "round_prefer_ceil"):
            return "nearest", True, False
        if (ctm, nm) == ("tf_half_pixel_for_nn", "floor") or (
                ctm in ("half_pixel", "pytorch_half_pixel") and nm == "round_prefer_floor"
                and integer_up):
            return "nearest", False, True
        if ctm == "asymmetric" and nm == "round_prefer_floor" and all(
                o == 2 * i or o == i for o, i in zip(out_hw, in_hw)):
            return "nearest", False, False
    raise GraphError(f"node {node.name} (Resize): mode={mode} coordinate_transformation_mode={ctm} "
                     f"{tuple(in_hw)}->{tuple(out_hw)} has no TFLM RESIZE_* equivalent")


def _nearest_index(out_size: int, in_size: int, align: bool, hpc: bool) -> np.ndarray:
    f = np.float32
    if align and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    v = (np.arange(out_size, dtype=np.float32) + f(0.5 if hpc else 0.0)) * scale
    idx = qm.round_half_away(v) if align else np.floor(v)   # TfLiteRound / std::floor on floats
    idx = np.minimum(idx.astype(np.int64), in_size - 1)
    return np.maximum(idx, 0) if hpc else idx


def _bilinear_axis(out_size: int, in_size: int, align: bool, hpc: bool):
    scale = ((1 << 10) * in_size + out_size // 2) // out_size
    if align and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    v = np.arange(out_size, dtype=np.int64) * scale
    if hpc:
        v = v + scale // 2 - (1 << 9)
    trunc = lambda a: np.sign(a) * (np.abs(a) >> 10)  # noqa: E731 - C division by 1024
    lo = np.maximum(trunc(v), 0)
    hi = np.minimum(trunc(v + (1 << 10) - 1), in_size - 1)
    return lo, hi, v - (lo << 10)


@dataclass(frozen=True, eq=False)
class ResizeParams(QopParams):
    """Resize in H and W. Per output row y: source rows y_lo, y_hi and the weight of y_hi in
    1/1024 (bilinear); nearest takes row y_lo (y_hi = y_lo, y_frac = 0). Likewise columns."""

    mode: str                 # "nearest" or "linear"
    align_corners: int
    half_pixel_centers: int
    out_hw: tuple[int, int]
    y_lo: np.ndarray          # int32 [out h]
    y_hi: np.ndarray
    y_frac: np.ndarray
    x_lo: np.ndarray          # int32 [out w]
    x_hi: np.ndarray
    x_frac: np.ndarray


def resize_params(node: Node, shape=None, out_shape=None) -> ResizeParams:
    """`shape` / `out_shape`: NCHW input / output shapes (default: the IR's)."""
    require_same_quant(node)
    h, w = in_shape(node, shape)[2:]
    out = out_shape if out_shape is not None else node.outputs[0].shape
    if out is None:
        raise GraphError(f"node {node.name} (Resize): the output has no static shape")
    ho, wo = int(out[2]), int(out[3])
    mode, align, hpc = resize_mode(node, (ho, wo), (h, w))
    if mode == "nearest":
        iy, ix = _nearest_index(ho, h, align, hpc), _nearest_index(wo, w, align, hpc)
        rows, cols = (iy, iy, np.zeros_like(iy)), (ix, ix, np.zeros_like(ix))
    else:
        rows, cols = _bilinear_axis(ho, h, align, hpc), _bilinear_axis(wo, w, align, hpc)
    i32 = [np.asarray(a, np.int32) for a in (*rows, *cols)]
    return ResizeParams(mode, int(align), int(hpc), (ho, wo), *i32)
