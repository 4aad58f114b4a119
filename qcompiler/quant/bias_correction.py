"""Bias correction: remove the mean output shift that quantization causes (Nagel et al. 2019).

With float weights W and dequantized int8 weights Wq, a layer's quantized
output is off on average by E[(W - Wq) x] (+ the shift its already-quantized
input brings along). Adding that expectation to the bias, channel by channel,
makes the mean right again; it matters most for per-tensor weights, where
small channels lose most of their precision.

- empirical: E[...] measured on calibration samples. A simulation of the
  quantized network (dequantized weights, every activation fake-quantized with
  its int8 parameters) runs node by node over all samples; each layer's shift is
  measured with its predecessors already corrected, so the correction also
  covers the drift of the layers before it. The float side needs only each
  layer's mean output, which one float pass (onnxruntime) gives through the
  layer's mean input (`float_output_means`).
- analytic: E[x] per input channel from BatchNorm statistics (`moments.py`),
  shift = (W - Wq) E[x]; needs no data but covers weight rounding only, and
  only layers fed (through ReLU / pooling / reshape) by a layer with BN
  statistics or by a graph input: moments propagated further are too rough
  (measured: correcting with them ruins the MLPerf models, which have no BN).

Not a registered graph pass: it edits the int32 biases of an already quantized
graph and needs the float graph next to it (`quantize()` calls it).
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp import FLOAT_KERNELS
from qcompiler.ir.activation import clamp_of
from qcompiler.ir import Graph, Node
from qcompiler.quant.precision import is_border
from qcompiler.quant.quantize import quantize_bias

# ops whose float kernels treat every index of axis 0 independently (when `axis`, if any, is not 0)
BATCH_SAFE = {"Conv", "Gemm", "Relu", "Clip", "Add", "Sub", "Mul", "Div", "MaxPool", "AveragePool",
              "GlobalAveragePool", "GlobalMaxPool", "Softmax", "Sigmoid", "Tanh", "Concat", "Identity",
              "Dropout", "LeakyRelu", "HardSwish", "PRelu"}

# ops whose constant inputs are all weights / biases (never broadcast against the sample axis)
PARAMETER_INPUTS = {"Conv", "Gemm"}


def node_pairs(float_graph: Graph, qgraph: Graph) -> list[tuple[Node, Node]]:
    """(float node, quantized node) pairs by name: quantize_graph keeps names and order and may
    add Requantize nodes (identity in float, fake-quantized by the next node's output anyway)."""
    qnodes = {n.name: n for n in qgraph.nodes}
    fnames = {n.name for n in float_graph.nodes}
    missing = [n.name for n in float_graph.nodes if n.name not in qnodes]
    extra = [n.name for n in qgraph.nodes if n.name not in fnames and n.op != "Requantize"]
    if missing or extra:
        raise ValueError("bias correction needs the float graph the quantized graph was made from "
                         f"(float-only nodes {missing[:3]}, quantized-only {extra[:3]})")
    return [(f, qnodes[f.name]) for f in float_graph.nodes]


def is_corrected_layer(q: Node) -> bool:
    w = q.input(1)
    return q.op in ("Conv", "Gemm") and w is not None and w.is_constant and w.quant is not None


def _float_bias(f: Node) -> np.ndarray:
    b = f.input(2)
    return b.data.astype(np.float64) if b is not None else np.zeros(f.input(1).data.shape[0])


def set_float_bias(qgraph: Graph, f: Node, q: Node, bias: np.ndarray) -> None:
    """Quantize `bias` (float) into q's int32 bias at scale in_scale * w_scale."""
    src = f.input(2) if f.input(2) is not None else qgraph.add_constant(f"{q.name}_bias", bias)
    qb = quantize_bias(qgraph, src, q.inputs[0].quant, q.input(1).quant, data=np.asarray(bias))
    if len(q.inputs) > 2:
        q.set_input(2, qb)
    else:
        q.append_input(qb)


def expected_shift(f: Node, dw: np.ndarray, mean_in: np.ndarray) -> np.ndarray:
    """Per output channel E[conv(x, dw)] for inputs with per-channel mean `mean_in` (padding ignored)."""
    m_out = dw.shape[0]
    if f.op == "Gemm":
        return dw.astype(np.float64) @ mean_in
    groups = int(f.attrs.get("group", 1))
    cg, mg = dw.shape[1], m_out // groups
    ws = dw.astype(np.float64).reshape(m_out, cg, -1).sum(axis=2)
    src = (np.arange(m_out) // mg)[:, None] * cg + np.arange(cg)[None, :]
    return np.sum(ws * mean_in[src], axis=1)


def analytic_bias_correction(float_graph: Graph, qgraph: Graph, post_moments: dict) -> dict:
    """Correct every quantized Conv / Gemm with E[x] from propagated BN statistics."""
    shifts = {}
    for f, q in node_pairs(float_graph, qgraph):
        if not is_corrected_layer(q):
            continue
        x = f.inputs[0]
        mo = post_moments.get(x.name)
        if mo is None or mo.source == "propagated":
            continue  # only BN statistics (or the given input statistics) are good enough
        dw = f.input(1).data.astype(np.float64) - q.input(1).quant.dequantize(q.input(1).data)
        channels = dw.shape[1] * int(f.attrs.get("group", 1)) if f.op == "Conv" else dw.shape[1]
        mean_in = mo.mean if mo.mean.size == channels else np.full(channels, float(np.mean(mo.mean)))
        shift = expected_shift(f, dw, mean_in)
        set_float_bias(qgraph, f, q, _float_bias(f) + shift)
        shifts[q.name] = shift
    return _summary("analytic", shifts)


def _summary(mode: str, shifts: dict) -> dict:
    return {"mode": mode, "layers": len(shifts),
            "max_abs_shift": float(max((np.max(np.abs(s)) for s in shifts.values()), default=0.0))}


def _fake_quant(x: np.ndarray, quant) -> np.ndarray:
    return quant.fake_quantize(x) if quant is not None else x


def _clamp(node: Node, y: np.ndarray) -> np.ndarray:
    clamp = clamp_of(node)
    if clamp is not None:
        return np.clip(y, *clamp).astype(y.dtype)
    return y


def _channel_mean(y: np.ndarray) -> np.ndarray:
    """Mean over samples, batch and spatial positions, per channel (axis 1)."""
    return np.moveaxis(y, 1, 0).reshape(y.shape[1], -1).astype(np.float64).mean(axis=1)


class _QuantStream:
    """The quantized simulation, all samples stacked on axis 0.

    Ops that treat the batch axis independently run once on the stack; the
    others (Reshape with a literal batch of 1, ...) run sample by sample.
    """

    def __init__(self, graph: Graph, qgraph: Graph, feeds: list[dict], nodes: set[str] | None = None):
        """`nodes`: the names of the float nodes that will run (default: all)."""
        self.samples = len(feeds)
        self.batch = graph.inputs[0].shape[0] if graph.inputs[0].shape else 1
        qin = {v.name: v.quant for v in qgraph.inputs}
        self.env = {k: _fake_quant(np.concatenate([f[k] for f in feeds]).astype(np.float32), qin.get(k))
                    for k in feeds[0]}
        self.uses: dict[str, int] = {}
        for n in graph.nodes:
            if nodes is not None and n.name not in nodes:
                continue
            for v in n.inputs:
                if v is not None and not v.is_constant:
                    self.uses[v.name] = self.uses.get(v.name, 0) + 1
        self.keep = {v.name for v in graph.outputs}

    def args(self, f: Node, q: Node, weights: tuple | None = None) -> list:
        """Kernel arguments: dequantized constants (or `weights`), stacked activations."""
        out = []
        for i, (fv, qv) in enumerate(zip(f.inputs, q.inputs)):
            if fv is None:
                out.append(None)
            elif not fv.is_constant:
                x = self.env[fv.name]
                border = qv.producer
                if border is not None and is_border(border):  # an int8 <-> int16 conversion
                    x = _fake_quant(x, qv.quant)
                out.append(x)
            elif weights is not None and i in (1, 2):
                out.append(weights[i - 1])
            else:
                out.append(qv.quant.dequantize(qv.data) if qv.quant is not None else qv.data)
        return out

    def _batchable(self, f: Node) -> bool:
        """True when running the stacked arrays at once computes every sample independently."""
        if f.op not in BATCH_SAFE or int(f.attrs.get("axis", 1)) == 0:
            return False
        acts = [v for v in f.inputs if v is not None and not v.is_constant] + list(f.outputs)
        if any(v.shape is None or len(v.shape) == 0 or v.shape[0] != self.batch for v in acts):
            return False
        rank = len(acts[0].shape)
        if any(len(v.shape) != rank for v in acts):
            return False  # a lower-rank operand would broadcast against the sample axis
        if f.op in PARAMETER_INPUTS:  # weights and biases are parameters, not broadcast operands
            return True
        return all(v.data.ndim < rank or v.data.shape[0] == 1 for v in f.inputs if v is not None and v.is_constant)

    def run(self, f: Node, args: list) -> list[np.ndarray]:
        kernel = FLOAT_KERNELS[f.op]
        if self._batchable(f):
            return kernel(f, args)
        split = [np.array_split(a, self.samples) if v is not None and not v.is_constant else None
                 for a, v in zip(args, f.inputs)]
        parts = [kernel(f, [a if sp is None else sp[s] for a, sp in zip(args, split)])
                 for s in range(self.samples)]
        return [np.concatenate([np.asarray(x) for x in p]) for p in zip(*parts)]

    def store(self, f: Node, q: Node, outs: list) -> None:
        for fv, qv, o in zip(f.outputs, q.outputs, outs):
            if self.uses.get(fv.name) or fv.name in self.keep:  # (no later node that runs reads it)
                self.env[fv.name] = _fake_quant(o, qv.quant)
        for v in f.inputs:  # free what no later node reads
            if v is not None and not v.is_constant and v.name in self.uses:
                self.uses[v.name] -= 1
                if self.uses[v.name] == 0 and v.name not in self.keep:
                    self.env.pop(v.name, None)


class LayerInputSums:
    """Per Conv / Gemm layer, the sum of its float input over the samples `indices`.

    Fed by any float pass over the samples in order (`add(index, acts)`: calibration taps
    its own pass), so that bias correction needs no second one (`float_output_means`).
    """

    def __init__(self, float_graph: Graph, indices):
        self.layers = [n for n in float_graph.nodes if n.op in ("Conv", "Gemm") and n.input(1) is not None
                       and n.input(1).is_constant]
        self.batch = float_graph.inputs[0].shape[0] if float_graph.inputs[0].shape else 1
        self.indices = set(indices)
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}  # rows (axis-0 entries) summed per layer: a Gemm's axis 0
        self.rows = 0                     # may hold more than the batch (an unrolled LSTM's steps)

    def add(self, index: int, acts: dict[str, np.ndarray]) -> None:
        if index not in self.indices:
            return
        for f in self.layers:
            x = acts[f.inputs[0].name]
            n = x.shape[0]
            if n != 1:
                x = x.astype(np.float64).sum(axis=0, keepdims=True)
            if f.name in self.sums:  # in place: float64 += float32 converts as it adds
                np.add(self.sums[f.name], x, out=self.sums[f.name])
            else:
                self.sums[f.name] = x.astype(np.float64)
            self.counts[f.name] = self.counts.get(f.name, 0) + n
        self.rows += self.batch

    def complete(self, layers: list[Node]) -> bool:
        return self.rows == self.batch * len(self.indices) and all(f.name in self.sums for f in layers)

    def output_means(self, layers: list[Node]) -> dict[str, np.ndarray]:
        """Per output channel, each layer's mean pre-activation output over the samples: as
        Conv / Gemm are affine, the layer applied to the mean input, averaged over positions."""
        means = {}
        for f in layers:
            args = [self.sums[f.name] / self.counts[f.name]] + [v.data.astype(np.float64) if v is not None else None
                                                      for v in f.inputs[1:]]
            means[f.name] = _channel_mean(FLOAT_KERNELS[f.op](f, args)[0])
        return means

    def scale_input(self, layer: str, gain: np.ndarray) -> None:
        """The layer's input channels were multiplied by `gain` (activation equalization)."""
        if layer in self.sums:
            s = self.sums[layer]
            self.sums[layer] = s * gain.reshape((1, -1) + (1,) * (s.ndim - 2))


def float_output_means(float_graph: Graph, feeds: list[dict], layers: list[Node],
                       runner=None) -> dict[str, np.ndarray]:
    """Per output channel, the float network's mean pre-activation output of each layer.

    One float forward pass per sample (onnxruntime when available) accumulates the mean
    input image of each layer; as Conv / Gemm are affine, the layer applied to that mean
    image and averaged over positions is exactly the mean of its outputs.
    """
    from qcompiler.quant.calibration import FloatRunner
    runner = runner or FloatRunner(float_graph)
    sums = LayerInputSums(float_graph, range(len(feeds)))
    for index, feed in enumerate(feeds):
        sums.add(index, runner.run(feed))
    return sums.output_means(layers)


def _feeding(graph: Graph, layers: list[Node]) -> set[str]:
    """Names of `layers` and of every node they read from, directly or not: the nodes after the
    last corrected layer (detector heads: Sigmoid, Concat, ...) change no bias."""
    producer = {v.name: n for n in graph.nodes for v in n.outputs}
    needed: set[str] = set()
    todo = list(layers)
    while todo:
        n = todo.pop()
        if n.name in needed:
            continue
        needed.add(n.name)
        todo += [producer[v.name] for v in n.inputs if v is not None and v.name in producer]
    return needed


def empirical_bias_correction(float_graph: Graph, qgraph: Graph, feeds: list[dict], runner=None,
                              input_sums: LayerInputSums | None = None) -> dict:
    """Correct every quantized Conv / Gemm so its mean output matches the float network's.

    `runner`: a calibration.FloatRunner of `float_graph` to reuse (one is made when not given);
    `input_sums`: the layers' float input sums over exactly `feeds`, if a pass already made them.
    """
    pairs = node_pairs(float_graph, qgraph)
    layers = [f for f, q in pairs if is_corrected_layer(q)]
    if input_sums is not None and input_sums.complete(layers):
        float_means = input_sums.output_means(layers)
    else:
        float_means = float_output_means(float_graph, feeds, layers, runner)
    needed = _feeding(float_graph, layers)
    stream = _QuantStream(float_graph, qgraph, feeds, needed)
    shifts = {}
    for f, q in pairs:
        if f.name not in needed:
            continue
        weights = None
        if is_corrected_layer(q):
            weights = (q.input(1).quant.dequantize(q.input(1).data).astype(np.float32),
                       _float_bias(f).astype(np.float32))
        outs = stream.run(f, stream.args(f, q, weights))
        if weights is not None:
            shift = float_means[f.name] - _channel_mean(outs[0])
            set_float_bias(qgraph, f, q, _float_bias(f) + shift)
            shape = (1, -1) + (1,) * (outs[0].ndim - 2)
            outs[0] = outs[0] + shift.reshape(shape).astype(np.float32)
            shifts[q.name] = shift
        outs[0] = _clamp(f, outs[0])
        stream.store(f, q, outs)
    return _summary("empirical", shifts)
