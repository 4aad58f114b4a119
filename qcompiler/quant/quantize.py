"""Float IR -> int8 IR following the TFLite int8 quantization specification.

- activations: int8 asymmetric per-tensor, parameters from calibrated ranges;
- ops that must not rescale (pooling, reshape, concat, pad, transpose, ...) share
  one parameter set across inputs and outputs: values are grouped with a
  union-find and each group gets the union of its members' ranges; so do values
  carrying the same meta["range_group"] (a pass's statement that they are one
  quantity, e.g. an unrolled LSTM's cell state at every step);
- fixed output parameters: Softmax / Sigmoid (1/256, -128), Tanh (1/128, 0), and exactly
  [lo, hi] for the output of a node whose fused clamp the scheme realizes by the range
  (`QuantScheme.fused_clamps`: e.g. [0, 1] after a folded HardSigmoid); a Softmax
  over more than 511 classes is marked for a wider TFLM path (qcompiler/quant/wide_softmax.py);
- range constraints from the graph (who reads a tensor): `range_rules.py`;
- Conv weights int8 symmetric per output channel in [-127, 127], zero point 0;
  Gemm weights: `per_channel_fc` True -> per output channel, False -> per tensor (the
  spec's FULLY_CONNECTED), "auto" -> per channel only where it buys accuracy and, on
  TFLM, fits the arena budget (qcompiler/quant/fc_weights.py);
  every weight per tensor with `per_tensor` (what older runtimes / DSPs need);
- bias int32 at scale in_scale * w_scale[c];
- other constant operands (Add/Mul by a constant) int8 per tensor.

int16 activations (TFLite's 16x8 scheme, `precision`, qcompiler/quant/precision.py): the
nodes computing in int16 get symmetric int16 tensors (zero point 0) from their min-max
ranges (`wide_ranges`), int64 biases, int16 constant operands and the int16 fixed outputs
(Softmax (1/32768, 0), Sigmoid / Tanh (2^-15, 0)); Requantize nodes convert where a tensor
reaches a node of the other width.

The quantized graph keeps ONNX op names, attributes and layout; integer kernels
and backends read `Value.quant`.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import GraphError, QuantizationError, require_ops
from qcompiler.ir import Graph, QuantParams, Value
from qcompiler.ir.activation import clamp_of
from qcompiler.quant.fc_weights import per_channel_fc_layers
from qcompiler.quant.precision import FOLLOWERS, INT8, Precision, clamp_keeps_int8, insert_borders, resolve
from qcompiler.quant.range_rules import (FIXED_OUTPUT, SATURATED_BEYOND, consumer_domain,  # noqa: F401
                                         constrained_range, saturation_bounds)
from qcompiler.quant.scheme import TFLITE_INT8, QuantScheme
from qcompiler.quant.wide_softmax import mark_wide_softmax
from qcompiler.numerics.fixed_point import choose_activation_params, choose_symmetric_params, symmetric_weight_scales
from qcompiler.numerics.qops import clip_bounds

# ops whose outputs must carry exactly their (first) input's parameters
SAME_PARAMS = FOLLOWERS
FIXED_OUTPUT_INT16 = {"Softmax": (1.0 / 32768, 0), "Sigmoid": (2.0 ** -15, 0), "Tanh": (2.0 ** -15, 0)}
SPLIT = "split_weights"  # node meta of passes/split_weights.py's halves
# input index -> role, for ops with constant weights
WEIGHTED = {"Conv": 0, "Gemm": 0, "ConvTranspose": 1}  # value = weight channel axis (per-channel)
SHAPE_INPUTS = {"Reshape": {1}, "Pad": {1, 2}, "Slice": {1, 2, 3, 4}, "Split": {1}, "Squeeze": {1},
                "Unsqueeze": {1}, "ReduceMean": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "Clip": set()}


class _UnionFind:
    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, k: int) -> int:
        self.parent.setdefault(k, k)
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def check_finite(graph: Graph) -> None:
    for v in graph.constants():
        if np.issubdtype(v.data.dtype, np.floating) and not np.all(np.isfinite(v.data)):
            users = ", ".join(f"{n.name} ({n.op})" for n in v.consumers) or "no node"
            raise QuantizationError(f"constant {v.name} (used by {users}) contains NaN or Inf values")


def _activation_values(graph: Graph) -> list[Value]:
    return [v for v in graph.values() if not v.is_constant and np.issubdtype(v.dtype, np.floating)]


def _raw_clamp(node) -> bool:
    """A Clip other than max(x, 0): the reference clamps raw values, so its input and output
    share parameters (a computed bound is left to the kernel's own error)."""
    try:
        return not clip_bounds(node)[2]
    except GraphError:
        return False


def _groups(graph: Graph) -> _UnionFind:
    uf = _UnionFind()
    for n in graph.nodes:
        if n.op in SAME_PARAMS or (n.op == "Clip" and _raw_clamp(n)):
            members = [n.inputs[0]] + list(n.outputs)
            if n.op == "Concat":
                members += [v for v in n.inputs if v is not None and not v.is_constant]
            for v in members[1:]:
                uf.union(id(v), id(members[0]))
    tagged: dict[str, Value] = {}
    for v in _activation_values(graph):  # e.g. an unrolled LSTM's cell states (passes/unroll_lstm.py)
        key = v.meta.get("range_group")
        if key is not None:
            uf.union(id(v), id(tagged.setdefault(key, v)))
    return uf


def fixed_range(op: str) -> tuple[float, float]:
    """The float range an op's fixed int8 output parameters cover."""
    scale, zp = FIXED_OUTPUT[op]
    return (-128 - zp) * scale, (127 - zp) * scale


def release_fixed_outputs(graph: Graph, ranges: dict[str, tuple[float, float]]) -> list[str]:
    """A Softmax / Sigmoid / Tanh output (fixed int8 parameters: [0, 1) for a Sigmoid) that would
    share parameters with tensors reaching far beyond that range -- a Concat of box coordinates
    and scores, as detection heads write -- gets a Requantize after it: the fixed op keeps its
    parameters and the group's range is its own. (Before, the group took the fixed parameters
    and the other members were clipped to [0, 1): 32 % of a YOLOX head's output.) Returns the
    Requantize node names; `ranges` gains their outputs."""
    uf = _groups(graph)
    members: dict[int, list[Value]] = {}
    for v in _activation_values(graph):
        members.setdefault(uf.find(id(v)), []).append(v)
    inserted = []
    for n in list(graph.nodes):
        if n.op not in FIXED_OUTPUT or n.outputs[0].name not in ranges:
            continue
        y = n.outputs[0]
        lo, hi = fixed_range(n.op)
        step = FIXED_OUTPUT[n.op][0]
        others = [ranges[v.name] for v in members.get(uf.find(id(y)), [])
                  if v.name in ranges and not (v.producer is not None and v.producer.op in FIXED_OUTPUT)]
        if not others or (min(r[0] for r in others) >= lo - step and max(r[1] for r in others) <= hi + step):
            continue
        grouped = [c for c in y.consumers if c.op in SAME_PARAMS]
        r = graph.insert_after(n, "Requantize", [y], 1, name=f"{n.name}_requantized")
        out = r.outputs[0]
        out.meta["float_name"] = y.name  # the float graph has no such tensor: compare with y
        for c in grouped:
            c.replace_input(y, out)
        ranges[out.name] = ranges[y.name]
        inserted.append(r.name)
    return inserted


def clamp_range(node, calibrated: tuple[float, float]) -> tuple[float, float]:
    """The output range realizing `node`'s fused clamp: its finite bounds, the calibrated
    values on an unbounded side; a clamp excluding 0 has no int8 range (zero point) to be."""
    lo, hi = clamp_of(node)
    if lo > 0.0 or hi < 0.0:
        raise QuantizationError(f"node {node.name} ({node.op}): its clamp [{lo:g}, {hi:g}] excludes 0, so no "
                                "int8 range can realize it and the runtime has no such fused activation")
    return (lo if np.isfinite(lo) else min(calibrated[0], 0.0)), (hi if np.isfinite(hi) else max(calibrated[1], 0.0))


def _fixed_params(graph: Graph, uf: _UnionFind, ranges: dict, scheme: QuantScheme, widths: dict) -> dict:
    """Groups whose parameters the graph fixes: root -> (scale, zero point, node name)."""
    fixed: dict[int, tuple[float, int, str]] = {}
    for n in graph.nodes:
        table = FIXED_OUTPUT_INT16 if widths.get(n.outputs[0].name) == 16 else FIXED_OUTPUT
        if n.op in table:
            scale, zp = table[n.op]
        elif scheme.clamp_by_range(clamp_of(n)):
            lo, hi = clamp_range(n, ranges.get(n.outputs[0].name, (0.0, 0.0)))
            # int16 (only [0, hi]: precision.clamp_keeps_int8): [-hi, hi], the kernel's RELU cuts at 0
            scale, zp = (choose_symmetric_params(lo, hi) if widths.get(n.outputs[0].name) == 16
                         else choose_activation_params(lo, hi))
        else:
            continue
        root = uf.find(id(n.outputs[0]))
        if root in fixed and fixed[root][:2] != (scale, zp):
            raise QuantizationError(f"node {n.name} ({n.op}) needs output parameters {scale}, {zp} "
                                    f"but shares them with {fixed[root][2]}")
        fixed[root] = (scale, zp, n.name)
    return fixed


def assign_activation_params(graph: Graph, ranges: dict[str, tuple[float, float]],
                             scheme: QuantScheme = TFLITE_INT8, widths: dict[str, int] | None = None,
                             wide_ranges: dict | None = None) -> None:
    """Parameters of every activation from its group's range: int8 asymmetric, or, for tensors
    `widths` marks 16 bits, int16 symmetric from `wide_ranges` (converted copies read their
    source's range: meta["range_of"])."""
    widths = widths or {}
    acts = _activation_values(graph)
    uf = _groups(graph)
    fixed = _fixed_params(graph, uf, ranges, scheme, widths)
    outputs = set(graph.outputs)
    span: dict[int, tuple[float, float]] = {}
    bits: dict[int, int] = {}
    own = dict(ranges)  # each tensor's range in its own width (what an Add's other operand reaches)
    if wide_ranges is not None:
        own.update({name: wide_ranges[name] for name, b in widths.items() if b == 16 and name in wide_ranges})
    bounds = saturation_bounds(graph, own, widths)
    for v in acts:
        width = widths.get(v.name, 8)
        source = v.meta.get("range_of", v.name)
        table = wide_ranges if width == 16 and wide_ranges is not None else ranges
        if source not in table:
            raise QuantizationError(f"no calibration range for tensor {v.name} "
                                    f"(produced by {v.producer.name if v.producer else 'graph input'})")
        if id(v) in bounds:
            v.meta["saturation_bound"] = bounds[id(v)]  # the per-layer report compares within it
        lo, hi = constrained_range(v, *table[source], graph_output=v in outputs, bound=bounds.get(id(v)),
                                   widths=widths)
        root = uf.find(id(v))
        if bits.setdefault(root, width) != width:
            raise QuantizationError(f"tensor {v.name} ({width}-bit) shares parameters with a "
                                    f"{bits[root]}-bit tensor (internal: precision borders)")
        plo, phi = span.get(root, (lo, hi))
        span[root] = (min(lo, plo), max(hi, phi))
    for v in acts:
        root = uf.find(id(v))
        if root in fixed:
            scale, zp, _ = fixed[root]
        elif bits[root] == 16:
            scale, zp = choose_symmetric_params(*span[root])
        else:
            scale, zp = choose_activation_params(*span[root])
        dtype = np.dtype(np.int16 if bits[root] == 16 else np.int8)
        v.quant = QuantParams(np.float32(scale), zp, dtype=dtype)
        v.dtype = dtype


# the int32 bias must fit with room to spare (bias correction may double it): a weight scale
# never goes below |bias| / (input scale * BIAS_HEADROOM), like the TFLite converter's bias
# adjustment. Matters for channels whose weights are ~0 but whose bias is not (a constant
# channel; VWW has two with |w| ~ 1e-29): their tiny weight scale made the bias saturate at
# 2^31 - 1 and the channel output 0 instead of relu(bias). int64 biases (16x8) keep
# BIAS_HEADROOM_INT64: TFLM's int64 requantization takes accumulators below 2^47.
BIAS_HEADROOM = 2.0 ** 30
BIAS_HEADROOM_INT64 = 2.0 ** 45
BIAS_LIMITS = {32: 2.0 ** 31, 64: 2.0 ** 47}


def bias_safe_scales(scales: np.ndarray, bias: np.ndarray | None, in_scale: float,
                     headroom: float = BIAS_HEADROOM) -> np.ndarray:
    """`scales` raised where bias / (in_scale * scale) would leave the bias headroom."""
    if bias is None:
        return scales
    need = np.abs(bias.astype(np.float64)) / (float(in_scale) * headroom)
    if scales.size == 1:
        need = np.array([need.max(initial=0.0)])
    return np.maximum(scales.astype(np.float64), need).astype(np.float32)


def _quantize_weight(graph: Graph, w: Value, axis: int | None, bias: Value | None = None,
                     in_q: QuantParams | None = None, hessians: dict | None = None, layer: str = "") -> Value:
    scales = symmetric_weight_scales(w.data, axis)
    if bias is not None and in_q is not None:
        headroom = BIAS_HEADROOM_INT64 if in_q.dtype == np.int16 else BIAS_HEADROOM
        scales = bias_safe_scales(scales, bias.data, float(in_q.scale[0]), headroom)
    q = QuantParams(scales, np.zeros_like(scales, dtype=np.int32), axis=axis)
    source = w.data
    if hessians is not None and layer in hessians:  # error-compensating rounding onto the same grid (quant/gptq.py)
        from qcompiler.quant.gptq import rounded
        source = rounded(hessians, layer, w.data, scales, axis)
    data = q.quantize(source)
    data = np.clip(data, -127, 127).astype(np.int8)
    out = graph.add_constant(f"{w.name}_q", data)
    out.quant = q
    return out


def quantize_bias(graph: Graph, b: Value, in_q: QuantParams, w_q: QuantParams,
                  data: np.ndarray | None = None) -> Value:
    """Bias constant at scale in_scale * w_scale[c] (`data` overrides b's float values): int32,
    or int64 for int16 inputs (TFLite's 16x8 scheme).

    Per-tensor weights give a per-tensor bias, as the TFLite converter writes
    it (LiteRT's XNNPACK delegate refuses a per-tensor filter with a per-axis bias).
    """
    data = b.data if data is None else data
    bits = 64 if in_q.dtype == np.int16 else 32
    bias_scale = (np.float32(in_q.scale[0]) * w_q.scale).astype(np.float32)
    with np.errstate(all="ignore"):
        q = np.round(data.astype(np.float64) / bias_scale.astype(np.float64))
    if not np.all(np.isfinite(q)) or np.any(np.abs(q) > BIAS_LIMITS[bits]):
        users = ", ".join(f"{n.name} ({n.op})" for n in b.consumers) or "no node"
        raise QuantizationError(f"bias {b.name} (used by {users}) does not fit an int{bits} at scale "
                                f"{bias_scale.min():.3g} (bias {data.min():.3g}..{data.max():.3g}); "
                                "check the layer's weights and input range for extreme values")
    limit = int(BIAS_LIMITS[bits]) - 1
    q = np.clip(q, -limit, limit).astype(np.int32 if bits == 32 else np.int64)
    out = graph.add_constant(f"{b.name}_q", q)
    axis = 0 if bias_scale.size > 1 else None
    out.quant = QuantParams(bias_scale, np.zeros(bias_scale.shape, np.int32), axis=axis, dtype=q.dtype)
    return out


def _quantize_operand(graph: Graph, c: Value, int16: bool = False) -> Value:
    lo, hi = float(np.min(c.data)), float(np.max(c.data))
    if int16:
        q = QuantParams(*choose_symmetric_params(lo, hi), dtype=np.int16)
    else:
        q = QuantParams(*choose_activation_params(lo, hi))
    out = graph.add_constant(f"{c.name}_q", q.quantize(c.data))
    out.quant = q
    return out


def quantize_weights(graph: Graph, per_channel_fc: bool | str = False, per_tensor: bool = False,
                     scheme: QuantScheme = TFLITE_INT8, hessians: dict | None = None) -> None:
    fc_channelwise = per_channel_fc_layers(graph, per_channel_fc, scheme)
    for n in graph.nodes:
        if n.op in WEIGHTED and n.input(1) is not None and n.input(1).is_constant:
            axis = WEIGHTED[n.op]
            if per_tensor or (n.op == "Gemm" and n.name not in fc_channelwise and SPLIT not in n.meta):
                axis = None  # the halves of a split layer (passes/split_weights.py) are per channel
            wq = _quantize_weight(graph, n.input(1), axis, n.input(2), n.inputs[0].quant,
                                  hessians if n.op != "ConvTranspose" else None, n.name)
            n.set_input(1, wq)
            if n.input(2) is not None:
                n.set_input(2, quantize_bias(graph, n.input(2), n.inputs[0].quant, wq.quant))
            continue
        skip = SHAPE_INPUTS.get(n.op, set())
        for i, c in enumerate(n.inputs):
            if c is None or not c.is_constant or i in skip:
                continue
            if np.issubdtype(c.data.dtype, np.floating):
                n.set_input(i, _quantize_operand(graph, c, _computes_int16(n)))


def _computes_int16(n) -> bool:
    return any(v.quant is not None and v.quant.dtype == np.int16 for v in n.outputs)


# requantization multipliers in_scale * w_scale / out_scale the runtimes can apply: TFLM's
# QuantizeMultiplier keeps a shift of at most 31 bits, i.e. a multiplier below 2^31
LARGEST_MULTIPLIER = 2.0 ** 31


def check_multipliers(qgraph: Graph) -> None:
    """Every weighted layer's requantization multipliers are within what the runtimes apply
    (extreme weights or biases otherwise make shifts no kernel implements, and a silently
    different result in each runtime)."""
    for n in qgraph.nodes:
        w = n.input(1) if n.op in WEIGHTED else None
        if w is None or w.quant is None or n.inputs[0].quant is None or n.outputs[0].quant is None:
            continue
        real = (float(n.inputs[0].quant.scale[0]) * w.quant.scale.astype(np.float64)
                / float(n.outputs[0].quant.scale[0]))
        if not np.all(np.isfinite(real)) or real.max(initial=0.0) >= LARGEST_MULTIPLIER:
            raise QuantizationError(f"node {n.name} ({n.op}): requantization multiplier {real.max():.3g} is out of "
                                    "range (weight or bias values far beyond the activations'); check the layer "
                                    "for extreme weights or biases")


def check_quantizable(graph: Graph) -> None:
    """Every op has an integer kernel, and in the form the quantizer expects (a pipeline given
    with --passes may leave out the normalizing passes)."""
    from qcompiler.interp import INT_KERNELS, WHY_NO_INT_KERNEL
    require_ops(graph.nodes, INT_KERNELS, "the model (int8 quantization)", WHY_NO_INT_KERNEL)
    for n in graph.nodes:
        if n.op == "Gemm" and (int(n.attrs.get("transB", 0)) != 1 or int(n.attrs.get("transA", 0)) != 0
                               or float(n.attrs.get("alpha", 1.0)) != 1.0 or float(n.attrs.get("beta", 1.0)) != 1.0):
            raise QuantizationError(f"node {n.name} (Gemm) is not in the form the quantizer takes (transA=0, "
                                    "transB=1, alpha=beta=1): keep the normalize_gemm pass in the pipeline")


def quantize_graph(graph: Graph, ranges: dict[str, tuple[float, float]], per_channel_fc: bool | str = False,
                   per_tensor: bool = False, scheme: QuantScheme = TFLITE_INT8, precision: Precision = INT8,
                   wide_ranges: dict | None = None, hessians: dict | None = None) -> Graph:
    """Return an integer copy of the float `graph` using calibrated `ranges`, in `scheme`
    (its FULLY_CONNECTED weight choice); `precision` names the nodes computing in int16,
    whose tensors take their ranges from `wide_ranges` (default `ranges`); `hessians`: weights
    of those layers rounded by GPTQ (qcompiler/quant/gptq.py) instead of to nearest."""
    check_finite(graph)
    check_quantizable(graph)
    q = graph.copy()
    float_io = {v.name: (v.dtype, v.shape) for v in q.inputs + q.outputs}
    ranges = dict(ranges)
    released = release_fixed_outputs(q, ranges)
    widths = None
    wide = dict(wide_ranges if wide_ranges is not None else ranges)
    if not precision.is_int8:
        for r in (n for n in q.nodes if n.name in released):
            wide[r.outputs[0].name] = wide[r.inputs[0].name]
        nodes, widths = resolve(q, precision, keep8=lambda n: clamp_keeps_int8(scheme, n))
        insert_borders(q, nodes, widths)
    assign_activation_params(q, ranges, scheme, widths, wide)
    if released:
        q.meta["released_fixed_outputs"] = released
    mark_wide_softmax(q)
    quantize_weights(q, per_channel_fc=per_channel_fc, per_tensor=per_tensor, scheme=scheme, hessians=hessians)
    check_multipliers(q)
    q.meta["float_io"] = float_io
    q.meta["quantized"] = True
    q.verify()
    return q
