"""Per-channel mean / variance of every tensor, derived from BatchNorm statistics.

Used where there is no data: the data-free activation ranges and analytic bias
correction (Nagel et al. 2019). A Conv / Gemm that absorbed a BatchNorm
(`meta["bn"]`, kept by fold_batchnorm and rescaled by equalize) produces, per
channel, pre-activation mean beta and standard deviation |gamma| -- what the BN
normalised its input to. Elsewhere the moments are propagated with Gaussian
assumptions: a linear layer maps (mean m, std s) to (W m + b, |W| s) -- the
std bound that holds whatever the correlation of the inputs (assuming
independent inputs, sqrt(W^2 s^2), underestimates the logits of the sample
CNN by 2-4x: data-free SQNR 9 dB instead of 31 dB); ReLU / ReLU6 turn N(m, s^2)
into the moments of the clipped Gaussian.

Channel axis is 1 for every tensor of rank >= 2 (NCHW and [N, features]).
Graph inputs need a known value range (treated as uniform over it): nothing
here invents data.
"""
from __future__ import annotations

import math

import numpy as np

from qcompiler.errors import CalibrationError
from qcompiler.ir.activation import clamp_of
from qcompiler.ir import Graph, Node, Value

# range = mean +- k std per channel. Output SQNR (dB) of the data-free sample models, digits
# cnn / dwsep / resnet, for k = 3, 4, 5, 6: 25.1/30.6/26.4, 31.1/34.2/30.7, 30.9/31.2/29.2, 29.2/29.6/27.9
DATA_FREE_SIGMAS = 4.0
_IDENTITY_OPS = {"Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad",
                 "Squeeze", "Unsqueeze", "Resize", "Upsample", "Slice"}
_CLAMPS = {"Relu": (0.0, math.inf)}

_erf = np.vectorize(math.erf, otypes=[np.float64])


class Moments:
    """Per-channel mean and variance of one tensor (before its activation clamp, if any).

    `support` bounds the values for sure (after a ReLU: [0, inf)); ops that move
    values around without arithmetic (pooling, reshape) keep it. `source` says
    how much to trust the numbers: "bn" (a BatchNorm's statistics), "input"
    (given for a graph input) or "propagated" (derived through layers: rough).
    """

    def __init__(self, mean, var, clamp: tuple[float, float] | None = None,
                 support: tuple[float, float] = (-math.inf, math.inf), source: str = "propagated"):
        self.mean = np.atleast_1d(np.asarray(mean, np.float64))
        self.var = np.maximum(np.atleast_1d(np.asarray(var, np.float64)), 0.0)
        self.clamp = clamp
        self.support = support
        self.source = source

    def value_range(self, sigmas: float = DATA_FREE_SIGMAS) -> tuple[float, float]:
        sd = np.sqrt(self.var)
        lo, hi = float(np.min(self.mean - sigmas * sd)), float(np.max(self.mean + sigmas * sd))
        for a, b in [self.support] + ([self.clamp] if self.clamp is not None else []):
            lo, hi = min(max(lo, a), b), max(min(hi, b), a)
        return lo, hi

    def after_clamp(self) -> "Moments":
        """Moments of the clamped tensor (what consumers see)."""
        if self.clamp is None:
            return self
        m, v = clipped_gaussian_moments(self.mean, self.var, *self.clamp)
        a, b = self.clamp
        return Moments(m, v, support=(max(a, self.support[0]), min(b, self.support[1])), source=self.source)


def _phi(t):
    return np.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


def _cdf(t):
    return 0.5 * (1.0 + _erf(t / math.sqrt(2.0)))


def clipped_gaussian_moments(mean, var, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of clip(z, a, b) for z ~ N(mean, var), elementwise."""
    m = np.asarray(mean, np.float64)
    sd = np.sqrt(np.maximum(np.asarray(var, np.float64), 1e-30))
    with np.errstate(over="ignore", invalid="ignore"):
        al = np.where(np.isfinite(a), (a - m) / sd, -np.inf)
        be = np.where(np.isfinite(b), (b - m) / sd, np.inf)
        pa, pb = _cdf(al), _cdf(be)
        fa, fb = _phi(np.where(np.isfinite(al), al, 0.0)) * np.isfinite(al), \
            _phi(np.where(np.isfinite(be), be, 0.0)) * np.isfinite(be)
        fin_a = a if np.isfinite(a) else 0.0
        fin_b = b if np.isfinite(b) else 0.0
        inner = pb - pa
        e1 = m * inner + sd * (fa - fb) + fin_a * pa + fin_b * (1 - pb)
        e2 = ((m * m + sd * sd) * inner + sd * ((fin_a + m) * fa - (fin_b + m) * fb)
              + fin_a ** 2 * pa + fin_b ** 2 * (1 - pb))
    return e1, np.maximum(e2 - e1 * e1, 0.0)


def _channels(v: Value) -> int:
    return int(v.shape[1]) if v.shape is not None and len(v.shape) >= 2 else 1


def _broadcast(mo: Moments, n: int) -> Moments:
    """The same values seen as n channels (support kept)."""
    if mo.mean.size == n:
        return Moments(mo.mean, mo.var, support=mo.support, source=mo.source)
    mean = float(np.mean(mo.mean))  # channel structure lost: pool to one distribution
    var = float(np.mean(mo.var + (mo.mean - mean) ** 2))
    return Moments(np.full(n, mean), np.full(n, var), support=mo.support, source=mo.source)


def _linear(node: Node, x: Moments) -> Moments:
    """Conv (any group) / Gemm(transB=1): mean W m + b, std |W| s (any input correlation)."""
    w = node.input(1).data.astype(np.float64)
    b = node.input(2).data.astype(np.float64) if node.input(2) is not None else 0.0
    m_out = w.shape[0]
    sd = np.sqrt(x.var)
    if node.op == "Gemm":
        mean, std = w @ x.mean, np.abs(w) @ sd
    else:
        groups = int(node.attrs.get("group", 1))
        cg, mg = w.shape[1], m_out // groups
        ws = w.reshape(m_out, cg, -1).sum(axis=2)
        wa = np.abs(w).reshape(m_out, cg, -1).sum(axis=2)
        src = (np.arange(m_out) // mg)[:, None] * cg + np.arange(cg)[None, :]
        mean, std = np.sum(ws * x.mean[src], axis=1), np.sum(wa * sd[src], axis=1)
    return Moments(mean + b, std ** 2)


def _from_bn(node: Node) -> Moments | None:
    bn = node.meta.get("bn")
    if bn is None:
        return None
    return Moments(np.asarray(bn["beta"], np.float64), np.asarray(bn["gamma"], np.float64) ** 2, source="bn")


def _reshape(x: Moments, src: Value, dst: Value) -> Moments:
    n = _channels(dst)
    if src.shape is not None and len(src.shape) > 2 and n == x.mean.size * int(np.prod(src.shape[2:])):
        rep = int(np.prod(src.shape[2:]))  # NCHW flattened: channel c covers features c*HW..(c+1)*HW-1
        return Moments(np.repeat(x.mean, rep), np.repeat(x.var, rep), support=x.support, source=x.source)
    return _broadcast(x, n)


def _binary(node: Node, a: Moments, b: Moments) -> Moments:
    n = max(a.mean.size, b.mean.size)
    a, b = _broadcast(a, n), _broadcast(b, n)
    if node.op == "Add":
        return Moments(a.mean + b.mean, a.var + b.var)
    if node.op == "Sub":
        return Moments(a.mean - b.mean, a.var + b.var)
    return Moments(a.mean * b.mean, a.var * b.var + a.var * b.mean ** 2 + b.var * a.mean ** 2)  # Mul


def _const_moments(v: Value, n: int) -> Moments:
    d = v.data.astype(np.float64)
    if d.ndim >= 2 and d.shape[1] == n and d.size == n:
        return Moments(d.reshape(n), np.zeros(n))
    if d.size == 1:
        return Moments(np.full(n, float(d.reshape(()))), np.zeros(n))
    return Moments(np.full(n, float(d.mean())), np.full(n, float(d.var())))


def _node_moments(node: Node, env: dict) -> Moments:
    """Pre-clamp moments of the node's first output."""
    out = node.outputs[0]
    n = _channels(out)
    x = node.inputs[0]
    if node.op in ("Conv", "Gemm") and node.input(1) is not None and node.input(1).is_constant:
        return _from_bn(node) or _linear(node, _broadcast(env[x.name], _channels(x)))
    if node.op in _IDENTITY_OPS:
        return _broadcast(env[x.name], n)
    if node.op in ("Flatten", "Reshape"):
        return _reshape(env[x.name], x, out)
    if node.op in ("Add", "Sub", "Mul"):
        ops = [env[v.name] if not v.is_constant else _const_moments(v, n) for v in node.inputs[:2]]
        return _from_bn(node) or _binary(node, *ops)
    if node.op == "Concat" and int(node.attrs.get("axis", 1)) == 1:
        parts = [env[v.name] if not v.is_constant else _const_moments(v, _channels(v)) for v in node.inputs]
        return Moments(np.concatenate([p.mean for p in parts]), np.concatenate([p.var for p in parts]),
                       support=(min(p.support[0] for p in parts), max(p.support[1] for p in parts)))
    if node.op in ("Relu", "Clip"):
        return _broadcast(env[x.name], n)  # the clamp is attached by the caller
    if node.op == "Softmax":
        return Moments(np.full(n, 1.0 / max(n, 1)), np.full(n, 1.0 / max(n, 1)), support=(0.0, 1.0))
    if node.op in ("Sigmoid", "Tanh"):
        return Moments(np.full(n, 0.5 if node.op == "Sigmoid" else 0.0), np.full(n, 0.25),
                       support=(0.0, 1.0) if node.op == "Sigmoid" else (-1.0, 1.0))
    raise CalibrationError(f"data-free mode cannot estimate the statistics of {node.op} (node {node.name}); "
                           "pass --calib FILE with calibration samples")


def _clamp_of(node: Node) -> tuple[float, float] | None:
    fused = clamp_of(node)
    if fused is not None:
        return fused
    if node.op == "Relu":
        return _CLAMPS["Relu"]
    if node.op == "Clip":
        lo = node.input(1).data if node.input(1) is not None and node.input(1).is_constant else \
            node.attrs.get("min", -math.inf)
        hi = node.input(2).data if node.input(2) is not None and node.input(2).is_constant else \
            node.attrs.get("max", math.inf)
        return float(lo), float(hi)
    return None


def propagate(graph: Graph, input_ranges: dict[str, tuple[float, float]],
              input_moments: dict[str, Moments] | None = None
              ) -> tuple[dict[str, Moments], dict[str, Moments]]:
    """({name: pre-clamp moments}, {name: moments consumers see}) for inputs and node outputs.

    Graph inputs take `input_moments` when given, else uniform over their range.
    """
    pre, post = {}, {}
    for v in graph.inputs:
        if input_moments and v.name in input_moments:
            pre[v.name] = post[v.name] = input_moments[v.name]
            continue
        if v.name not in input_ranges:
            raise CalibrationError(f"data-free mode needs the value range of input {v.name!r}: pass "
                                   "--input-range LO,HI (or --calib FILE with calibration samples)")
        lo, hi = input_ranges[v.name]
        mo = Moments(np.full(_channels(v), (lo + hi) / 2), np.full(_channels(v), (hi - lo) ** 2 / 12),
                     support=(lo, hi), source="input")
        pre[v.name] = post[v.name] = mo
    for node in graph.nodes:
        mo = _node_moments(node, post)
        mo.clamp = _clamp_of(node)
        out = node.outputs[0]
        pre[out.name], post[out.name] = mo, mo.after_clamp()
    return pre, post


def data_free_ranges(graph: Graph, input_ranges: dict[str, tuple[float, float]],
                     sigmas: float = DATA_FREE_SIGMAS) -> dict[str, tuple[float, float]]:
    """{tensor: (lo, hi)}: mean +- k std per channel, clamped by the activation, union over channels."""
    return data_free_estimate(graph, input_ranges, sigmas)[0]


def data_free_estimate(graph: Graph, input_ranges: dict[str, tuple[float, float]],
                       sigmas: float = DATA_FREE_SIGMAS) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    """(ranges, {"bn" | "input" | "propagated": number of tensors whose statistics came from there}).

    Refuses graphs without any BatchNorm statistics: ranges propagated through
    every layer from the input range alone grow with depth until they are
    useless (measured on the MLPerf Tiny models, whose ONNX files have BN
    folded away: output SQNR 0-4 dB).
    """
    if not any("bn" in n.meta for n in graph.nodes):
        raise CalibrationError("data-free quantization needs BatchNorm statistics, and this model has none "
                               "(BatchNorm was folded before export); pass --calib FILE with calibration samples")
    pre, _ = propagate(graph, input_ranges)
    ranges = {name: mo.value_range(sigmas) for name, mo in pre.items()}
    ranges.update({v.name: tuple(map(float, input_ranges[v.name])) for v in graph.inputs})
    sources: dict[str, int] = {}
    for mo in pre.values():
        sources[mo.source] = sources.get(mo.source, 0) + 1
    return ranges, dict(sorted(sources.items()))
