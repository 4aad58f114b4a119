"""The "ncnn scheme": the float graph run with ncnn's int8 arithmetic in its int8 layers.

For a Conv / Gemm node that the backend made an int8 layer (`plan[node name]`),
this mirrors `Convolution::forward_int8` / `ConvolutionDepthWise::forward_int8` /
`InnerProduct::forward_int8` (ncnn `src/layer/*.cpp`):

    xq  = clamp(round_half_away(float32(x * in_scale)), -127, 127)      int8
    acc = sum(xq * wq)                                                  int32 (zero padding)
    y   = float32(acc) * (1.f / (in_scale * w_scale[oc]))  [+ bias]     float32
    y   = activation(y)                                                 float32

A requantized output (int8_scale_term > 100) is `float2int8(y * out_scale)` and the
next int8 layer's own input quantization is the very same operation, so the
simulator keeps y in float and lets the consumer quantize it. Every other node
runs the float reference kernel (ncnn's fp32 layers differ only by float
rounding).

`fma` names the layer types whose `acc * scale + bias` rounds once, as ncnn's x86
Convolution does (its Dequantize / Requantize kernels use `_mm*_fmadd_ps`); the
reference C++ code and the x86 depthwise / InnerProduct kernels multiply, then
add. The x86 depthwise pack-8 path also takes its multiplier from `_mm_rcp_ps`,
a CPU-specific approximation: pass the values measured in ncnn as `multipliers`.
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp import FLOAT_KERNELS, Interpreter
from qcompiler.ir.activation import clamp_of
from qcompiler.ir import Graph

from qcompiler.backends.ncnn import quant

F32 = np.float32
X86_FMA_LAYERS = ("Convolution",)


def _activate(node, y: np.ndarray) -> np.ndarray:
    clamp = clamp_of(node)
    if clamp is None:
        return y
    lo, hi = clamp
    return np.clip(y, F32(lo), F32(hi)).astype(y.dtype)


def _float_with_activation(fn):
    """A float kernel plus the fused activation (the Interpreter only adds it for FLOAT_KERNELS)."""
    def kernel(node, inputs):
        outs = fn(node, inputs)
        return [_activate(node, outs[0])] + list(outs[1:])
    return kernel


class NcnnScheme:
    """Runs a float graph with ncnn int8 arithmetic in the layers named by `plan`.

    `plan`: {node name: {"type": ncnn layer type, "input_scale": float, "weight_scales":
    [per ncnn scale]}}; depthwise / grouped layers carry one weight scale per group.
    """

    def __init__(self, graph: Graph, plan: dict, fma: tuple[str, ...] = X86_FMA_LAYERS,
                 multipliers: dict | None = None):
        self.plan = plan
        self.fma = fma
        self.multipliers = multipliers or {}  # {node name: per-group multipliers} measured in ncnn
        self._weights: dict[str, np.ndarray] = {}
        kernels = {op: _float_with_activation(fn) for op, fn in FLOAT_KERNELS.items()}
        kernels["Conv"] = self._conv
        kernels["Gemm"] = self._gemm
        self.interp = Interpreter(graph, kernels)

    def run(self, feeds: dict) -> dict:
        """Graph outputs for one feed of float inputs."""
        return self.interp.run(feeds)

    # ---- int8 layers -----------------------------------------------------
    def _quantized(self, node, x, w):
        info = self.plan[node.name]
        s_in = F32(info["input_scale"])
        w_scales = np.asarray(info["weight_scales"], F32)
        xq = quant.float2int8(np.asarray(x, F32) * s_in)
        if node.name not in self._weights:
            self._weights[node.name] = quant.quantize_weight(w, w_scales)
        mult = self.multipliers.get(node.name)
        if mult is None:
            mult = quant.dequant_multipliers(float(s_in), w_scales)
        per_group = w.shape[0] // w_scales.size  # a group's scale serves all its output channels
        return xq, self._weights[node.name], np.repeat(np.asarray(mult, F32), per_group)

    def _dequantize(self, node, acc: np.ndarray, mult: np.ndarray, bias, axis: int) -> np.ndarray:
        shape = [1] * acc.ndim
        shape[axis] = -1
        accf = acc.astype(F32)  # int32 -> float, as `sum * scale_in` converts it
        mult = mult.reshape(shape)
        if bias is None:
            y = accf * mult
        elif self.plan[node.name].get("type") in self.fma:
            y = (accf.astype(np.float64) * mult + np.asarray(bias, np.float64).reshape(shape)).astype(F32)
        else:
            y = accf * mult + np.asarray(bias, F32).reshape(shape)
        return _activate(node, y.astype(F32))

    def _conv(self, node, inputs):
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        if node.name not in self.plan:
            return _float_with_activation(FLOAT_KERNELS["Conv"])(node, inputs)
        xq, wq, mult = self._quantized(node, x, w)
        # integer products summed in floats (BLAS): exact while every partial sum stays below
        # 2**24 (float32) or 2**53 (float64); |sum| <= taps * 127 * 127
        taps = int(np.prod(wq.shape[1:]))
        ftype = np.float32 if taps * 127 * 127 < 2 ** 24 else np.float64
        acc = FLOAT_KERNELS["Conv"](node, [xq.astype(ftype), wq.astype(ftype)])[0]
        return [self._dequantize(node, acc.astype(np.int64), mult, bias, axis=1)]

    def _gemm(self, node, inputs):
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) > 2 else None
        if node.name not in self.plan:
            return _float_with_activation(FLOAT_KERNELS["Gemm"])(node, inputs)
        xq, wq, mult = self._quantized(node, x, w)
        acc = xq.astype(np.int64) @ wq.astype(np.int64).T  # canonical Gemm: W[M, K]
        return [self._dequantize(node, acc, mult, bias, axis=1)]


def plan_from_report(ncnn_report: dict) -> dict:
    """{node name: scales} of the int8 layers listed in the backend's report entry."""
    return {info["node"]: {"type": info["type"], "input_scale": info["input_scale"],
                           "weight_scales": info["weight_scales"]}
            for info in ncnn_report.get("int8_layers", {}).values()}
