"""CONV_2D / DEPTHWISE_CONV_2D / TRANSPOSE_CONV (ONNX Conv, ConvTranspose) and FULLY_CONNECTED
(Gemm): zero points, per-channel requantization multipliers, activation clamp, geometry.

    y[c] = clamp(MultiplyByQuantizedMultiplier(acc[c], multiplier[c], shift[c]) + out_zp,
                 act_min, act_max)
    multiplier[c] * 2^(shift[c] - 31) = double(in_s) * double(w_s[c]) / double(out_s)

as PopulateConvolutionQuantizationParams computes them (per-tensor weights give every
channel the same pair). Per-tensor FULLY_CONNECTED has one pair (GetQuantizedConvolutionMultipler).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Node
from qcompiler.numerics.fixed_point import f32
from qcompiler.numerics.qops.common import (QopParams, activation_clamp, attr_ints, channel_multipliers,
                                            qparams, scale_zp)


def conv_real_multipliers(input_scale, weight_scales, output_scale) -> np.ndarray:
    """CONV_2D / DEPTHWISE_CONV_2D / per-channel FC: double(in) * double(w[c]) / double(out)."""
    w = f32(weight_scales).astype(np.float64)
    return float(f32(input_scale)) * w / float(f32(output_scale))


def fc_real_multiplier(input_scale, weight_scale, output_scale,
                       float32_product: bool = False) -> float:
    """Per-tensor FULLY_CONNECTED multiplier (GetQuantizedConvolutionMultipler).

    The source reads `double(float(in * w)) / double(out)`, but the tflite-micro
    build we verify against (the pip wheel) evaluates the product in double, i.e.
    exactly like conv_real_multipliers; tests/test_int_kernels_tflm.py shows it on
    inputs where the two differ. `float32_product=True` gives the source's form.
    """
    if float32_product:
        prod = np.float32(f32(input_scale) * f32(weight_scale))
        return float(prod) / float(f32(output_scale))
    return float(f32(input_scale)) * float(f32(weight_scale)) / float(f32(output_scale))


@dataclass(frozen=True, eq=False)
class ConvParams(QopParams):
    """Conv (grouped / depthwise, Conv1D as a height-1 Conv2D) and ConvTranspose."""

    input_zero_point: int
    output_zero_point: int
    multiplier: np.ndarray          # int32 [output channels]
    shift: np.ndarray               # int32 [output channels], > 0 is a left shift
    act_min: int
    act_max: int
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    group: int
    output_padding: tuple[int, int] = (0, 0)  # ConvTranspose only


def _requant(node: Node, channels: int):
    in_s, in_zp = scale_zp(node, 0)
    out_s, out_zp = scale_zp(node, 0, output=True)
    real = conv_real_multipliers(in_s, qparams(node, 1).scale, out_s)
    mult, shift = channel_multipliers(real, channels)
    return dict(input_zero_point=in_zp, output_zero_point=out_zp, multiplier=mult, shift=shift)


def _weight_dim(node: Node, axis: int) -> int:
    w = node.inputs[1]
    if w is not None and w.shape is not None and len(w.shape) > axis:
        return int(w.shape[axis])
    return qparams(node, 1).scale.size


def conv_params(node: Node) -> ConvParams:
    """Conv: the weight's rank tells 1-D ([O, I/g, k]) from 2-D ([O, I/g, kh, kw])."""
    w = node.inputs[1]
    rank = len(w.shape) if w is not None and w.shape is not None else 4
    if rank == 3:
        p0, p1 = attr_ints(node, "pads", 0, 2)
        pads = (0, p0, 0, p1)
        strides = (1, *attr_ints(node, "strides", 1, 1))
        dilations = (1, *attr_ints(node, "dilations", 1, 1))
    elif rank == 4:
        pads = attr_ints(node, "pads", 0, 4)
        strides, dilations = attr_ints(node, "strides", 1), attr_ints(node, "dilations", 1)
    else:
        raise GraphError(f"node {node.name} (Conv): only 1-D and 2-D convolutions, got rank {rank}")
    lo, hi = activation_clamp(node)
    return ConvParams(**_requant(node, _weight_dim(node, 0)), act_min=lo, act_max=hi,
                      strides=strides, dilations=dilations, pads=pads,
                      group=int(node.attrs.get("group", 1)))


def conv_transpose_params(node: Node) -> ConvParams:
    """ConvTranspose (TRANSPOSE_CONV): weight [Cin, Cout, kh, kw], group 1, dilation 1."""
    if int(node.attrs.get("group", 1)) != 1 or any(d != 1 for d in attr_ints(node, "dilations", 1)):
        raise GraphError(f"node {node.name} (ConvTranspose): TFLM TRANSPOSE_CONV supports "
                         "group=1 and dilation 1 only")
    channels = _weight_dim(node, 1)
    wq = qparams(node, 1)
    if wq.scale.size not in (1, channels):
        raise GraphError(f"node {node.name} (ConvTranspose): weight scales must be per-tensor or "
                         f"per output channel (axis 1, {channels}), got {wq.scale.size}")
    lo, hi = activation_clamp(node)
    return ConvParams(**_requant(node, channels), act_min=lo, act_max=hi,
                      strides=attr_ints(node, "strides", 1), dilations=(1, 1),
                      pads=attr_ints(node, "pads", 0, 4), group=1,
                      output_padding=attr_ints(node, "output_padding", 0))


@dataclass(frozen=True, eq=False)
class FullyConnectedParams(QopParams):
    """Gemm as FULLY_CONNECTED: one (multiplier, shift) per tensor or per output channel."""

    input_zero_point: int
    output_zero_point: int
    multiplier: np.ndarray   # int32 [1] (per-tensor weights) or [output channels]
    shift: np.ndarray        # int32, same length
    act_min: int
    act_max: int
    trans_b: int             # 1: weight [M, K] (TFLite's layout); 0: [K, M]


def fc_params(node: Node, in_features: int | None = None) -> FullyConnectedParams:
    """Gemm with transA=0, alpha=beta=1. A missing transB is guessed from the weight shape
    against the input's last dimension (`in_features`, else the IR's input shape)."""
    if node.attrs.get("transA", 0) or float(node.attrs.get("alpha", 1.0)) != 1.0 \
            or float(node.attrs.get("beta", 1.0)) != 1.0:
        raise GraphError(f"node {node.name} (Gemm): the integer Gemm needs transA=0, "
                         "alpha=beta=1 (normalize Gemm before quantizing)")
    trans_b = node.attrs.get("transB")
    if trans_b is None:
        x, w = node.inputs[0], node.inputs[1]
        k = in_features if in_features is not None else (x.shape[-1] if x.shape else None)
        trans_b = 1 if w.shape is not None and w.shape[1] == k else 0
    in_s, in_zp = scale_zp(node, 0)
    out_s, out_zp = scale_zp(node, 0, output=True)
    wq = qparams(node, 1)
    if wq.scale.size == 1:  # TFLM per-tensor path: GetQuantizedConvolutionMultipler
        real = np.array([fc_real_multiplier(in_s, wq.scale[0], out_s)])
    else:
        real = conv_real_multipliers(in_s, wq.scale, out_s)
    mult, shift = channel_multipliers(real, real.size)
    lo, hi = activation_clamp(node)
    return FullyConnectedParams(in_zp, out_zp, mult, shift, lo, hi, int(trans_b))
