"""Which integer width each node computes in, and the QUANTIZE ops at the borders.

A `Precision` names the nodes that compute in int16 (TFLite's 16x8 scheme); every other
node computes in int8. `resolve` turns it into one width per node and per tensor:

- a compute node (Conv, Gemm, Add, Softmax, ...) takes its own width; ops without an int16
  kernel in TFLM and in the reference (`INT16_OPS`; Resize only nearest) stay int8;
- a data-movement op (`FOLLOWERS`: reshapes, pooling, Pad, Concat, ... whose output shares its
  input's parameters) follows its input -- Concat the widest of its inputs;
- a graph input takes the widest width its readers (through data movement) compute in
  (int8 with `Precision.inputs8`);
- a tensor has its producer's width.

`insert_borders` then gives every node inputs of its own width: where a tensor reaches a
node of the other width, a Requantize (TFLM QUANTIZE int8 <-> int16) makes a converted
copy, shared by all readers of that width, and marked `meta["precision_border"]`:

    Before: %y = Conv(%x)           # %x produced by an int8 node, Conv computing in int16
    After:  %x_int16 = Requantize(%x); %y = Conv(%x_int16)

The converted copy's range is its source's (`meta["range_of"]`); the quantizer gives it the
parameters of its own width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.activation import clamp_of
from qcompiler.ir.memory import activation_buffers, best_plan, lower_bound

# ops whose output shares its (first) input's quantization parameters: they move raw values
FOLLOWERS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Reshape", "Flatten",
                       "Squeeze", "Unsqueeze", "Transpose", "Pad", "Slice", "Split", "Identity", "Dropout",
                       "Concat", "Resize", "Upsample"})
# ops with an int16 kernel in TFLM and in the integer reference (checked against each other in
# tests/test_int16_kernels_tflm.py); the others stay int8 inside an int16 model
INT16_OPS = frozenset({"Conv", "Gemm", "Add", "Sub", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool",
                       "ReduceMean", "Softmax", "Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu", "Reshape",
                       "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Concat", "Pad", "Slice",
                       "Split", "Resize", "Requantize"})
# why an op stays int8 in an int16 model (report.json)
WHY_INT8 = {
    "HardSwish": "TFLM has no int16 HARD_SWISH kernel (--activations int16 writes it out: decompose_hard_swish)",
    "Rsqrt": "qcc's int16 RSQRT is not implemented (TFLM has one)",
    "PRelu": "qcc's int16 PRELU is not implemented (TFLM has one, with int8 alpha)",
    "ConvTranspose": "qcc's int16 TRANSPOSE_CONV is not implemented (TFLM has one)",
    "Resize": "TFLM has no int16 RESIZE_BILINEAR kernel",
}
BORDER = "precision_border"


@dataclass(frozen=True)
class Precision:
    """int16 for every node (`all16`) or for the nodes named in `wide`; int8 elsewhere.
    `inputs8`: graph inputs stay int8 whoever reads them (the model's interface is kept)."""

    all16: bool = False
    wide: frozenset = frozenset()
    inputs8: bool = False

    def wants16(self, node: Node) -> bool:
        return self.all16 or node.name in self.wide

    @property
    def is_int8(self) -> bool:
        return not self.all16 and not self.wide


INT8 = Precision()
INT16 = Precision(all16=True)

# node meta key of the passes that unroll a recurrent cell (passes/unroll_lstm.py): the node's
# part in it -- input_projection, recurrent_projection, gate, cell, hidden
RECURRENT = "recurrent"


def recurrent_nodes(graph: Graph) -> frozenset:
    """The nodes of unrolled recurrent cells, which compute in int16 by default where the target
    has TFLite's 16x8 scheme (`--recurrent`). A recurrence re-quantizes its state at every step:
    the rounding error of c_t = f * c_{t-1} + i * g is carried into every later step and h_t feeds
    the next step's gates, so int8 errors accumulate over the sequence where a feed-forward
    layer pays them once. TFLite's own LSTM quantization (8x8_16) therefore keeps the cell state
    and the gates in int16 with int8 weights. Unrolled, every op of the cell is an int16 op
    (16x8 FULLY_CONNECTED for both projections, ADD, MUL, LOGISTIC, TANH), so the whole cell
    goes int16 and the borders are where the sequence enters (its input, converted once) and
    leaves (the hidden states read by what follows): no conversion inside the step loop."""
    return frozenset(n.name for n in graph.nodes if n.meta.get(RECURRENT))


# compute ops a recurrent cell's head may hold: layers that mix the hidden states linearly
# (with constant weights: one activation input)
HEAD_OPS = frozenset({"Gemm", "Conv"})
RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})


def recurrent_head(graph: Graph, region: frozenset) -> frozenset:
    """The compute nodes of a recurrent cell's head, which compute in int16 with the cell: the
    layers that read only the cell's hidden states (through data movement) and whose every
    result is a graph output -- a CTC classifier, a per-step projection. The cell hands them
    int16 values already; keeping the head in int16 drops the conversion at the exit and the
    int8 rounding of the output, whose one scale must span every class at every step (the
    ddddocr CRNN's 8210 CTC logits: +2.0 dB at the output, bench/crnn_lstm.md).

    Empty unless every reader of the cell's results (outside the cell, through
    `FOLLOWERS`) is a `HEAD_OPS` layer with constant weights and no fused clamp, or data
    movement, and every path ends at a graph output; or when the head's int16 tensors would raise the
    activation peak (their bytes doubled against the int8 head's)."""
    if not region:
        return frozenset()
    by_name = {n.name: n for n in graph.nodes}
    outputs = {id(v) for v in graph.outputs}
    inside: set[str] = set(region)
    head: set[str] = set()
    moved: set[str] = set()
    work = [c for name in region for v in by_name[name].outputs for c in v.consumers if c.name not in region]
    while work:
        n = work.pop()
        if n.name in inside or n.name in head or n.name in moved:
            continue
        sources = [v for v in n.inputs if v is not None and not v.is_constant]
        if not all(v.producer is not None and (v.producer.name in inside or v.producer.name in head
                                              or v.producer.name in moved) for v in sources):
            if n.op in FOLLOWERS and all(c.name in inside for v in n.outputs for c in v.consumers):
                continue   # data movement inside the cell (a step's gate Split) reached early
            return frozenset()
        readers = [c for v in n.outputs for c in v.consumers]
        if n.op in FOLLOWERS and int16_capable(n):
            if readers and all(c.name in inside for c in readers):
                inside.add(n.name)   # inside the cell: a step's gate Split
                continue
            moved.add(n.name)
        elif n.op in HEAD_OPS and int16_capable(n) and len(sources) == 1 and clamp_of(n) is None:
            head.add(n.name)
        else:
            return frozenset()
        for v in n.outputs:
            if not v.consumers and id(v) not in outputs:
                return frozenset()
        work.extend(readers)
    if not head:
        return frozenset()
    if activation_peak(graph, region | head) > activation_peak(graph, region):
        return frozenset()
    return frozenset(head)


def activation_buffers_at(graph: Graph, wide: frozenset) -> list:
    """The activation buffers (`ir.memory.Buffer`) with `wide` computing in int16, the QUANTIZE
    copies at the borders included; a reshape's output shares its input's bytes (as TFLM's
    planner aliases RESHAPE)."""
    graph = graph.copy()
    nodes, bits = resolve(graph, Precision(wide=frozenset(wide), inputs8=True))
    insert_borders(graph, nodes, bits)
    root: dict[str, str] = {}
    for n in graph.nodes:
        if n.op in RESHAPES and n.inputs and n.inputs[0] is not None and not n.inputs[0].is_constant:
            root[n.outputs[0].name] = root.get(n.inputs[0].name, n.inputs[0].name)
    buffers = {b.name: b for b in activation_buffers(graph, element_bytes=1)}
    for alias, src in root.items():
        if alias in buffers and src in buffers:
            buffers[src] = replace(buffers[src], last=max(buffers[src].last, buffers.pop(alias).last))
    return [replace(b, size=b.size * bits.get(b.name, 8) // 8) for b in buffers.values()]


def activation_peak(graph: Graph, wide: frozenset) -> int:
    """Bytes of activations alive at once (no plan uses less) with `wide` computing in int16."""
    return lower_bound(activation_buffers_at(graph, wide))


def planned_arena(graph: Graph, wide: frozenset) -> int:
    """The arena the best of the greedy offline plans (`ir.memory.best_plan`) needs with `wide`
    computing in int16: mixed buffer sizes can keep a plan above the lower bound."""
    return best_plan(activation_buffers_at(graph, wide))[1]


def int16_capable(node: Node) -> bool:
    """The op has an int16 kernel (Resize: nearest only)."""
    if node.op not in INT16_OPS:
        return False
    if node.op == "Resize":
        mode = node.attrs.get("mode", "nearest")
        return (mode.decode() if isinstance(mode, bytes) else mode) == "nearest"
    return True


def clamp_keeps_int8(scheme, node: Node) -> bool:
    """The node's fused clamp is realized by its output range (no fused activation of the
    runtime) and int16 cannot realize it: int16's symmetric range [-hi, hi] with a RELU realizes
    [0, hi] (a folded HardSigmoid's [0, 1]); other clamps need int8's asymmetric range."""
    clamp = clamp_of(node)
    if not scheme.clamp_by_range(clamp):
        return False
    return not (clamp[0] == 0.0 and 0.0 < clamp[1] < math.inf)


def _activations(node: Node) -> list[Value]:
    ins = [v for v in node.inputs if v is not None and not v.is_constant]
    return ins if node.op == "Concat" else ins[:1]


def resolve(graph: Graph, precision: Precision, keep8=None) -> tuple[dict[str, int], dict[str, int]]:
    """({node name: 8 or 16}, {tensor name: 8 or 16}) per the rules in the module docstring;
    `keep8(node)` True keeps a node int8 (`clamp_keeps_int8`: a clamp only the int8 output
    range realizes)."""
    nodes: dict[str, int] = {}
    for n in graph.nodes:
        if n.op == "Requantize" and n.inputs[0].producer is not None and n.inputs[0].producer.name in nodes:
            nodes[n.name] = nodes[n.inputs[0].producer.name]  # keeps a fixed output's own width
        elif n.op not in FOLLOWERS:
            wide = precision.wants16(n) and int16_capable(n) and not (keep8 is not None and keep8(n))
            nodes[n.name] = 16 if wide else 8

    memo: dict[str, int] = {}

    def demand(v: Value) -> int:
        if v.name not in memo:
            bits = 8
            for c in v.consumers:
                if c.op not in FOLLOWERS:
                    bits = max(bits, nodes[c.name])
                elif int16_capable(c):
                    bits = max([bits] + [demand(o) for o in c.outputs])
            memo[v.name] = bits
        return memo[v.name]

    values = {v.name: 8 if precision.inputs8 else demand(v) for v in graph.inputs}
    for n in graph.nodes:
        if n.op in FOLLOWERS:
            ins = _activations(n)
            bits = max((values.get(v.name, 8) for v in ins), default=8)
            nodes[n.name] = bits if int16_capable(n) else 8
        for v in n.outputs:
            values[v.name] = nodes[n.name]
    return nodes, values


def insert_borders(graph: Graph, nodes: dict[str, int], values: dict[str, int]) -> list[Node]:
    """Insert the Requantize conversions (see the module docstring); returns them. `values`
    gains the converted copies' widths."""
    made: dict[tuple[str, int], Value] = {}
    borders = []
    for n in list(graph.nodes):
        bits = nodes[n.name]
        for i, v in enumerate(n.inputs):
            if v is None or v.is_constant or values[v.name] == bits:
                continue
            key = (v.name, bits)
            if key not in made:
                out = graph.add_value(f"{v.name}_int{bits}", v.dtype, v.shape)
                out.meta["range_of"] = v.meta.get("range_of", v.name)
                border = graph.insert_before(n, "Requantize", [v], [out], name=f"{v.name}_to_int{bits}")
                border.meta[BORDER] = True
                nodes[border.name] = bits
                values[out.name] = bits
                made[key] = out
                borders.append(border)
            n.set_input(i, made[key])
    return borders


def is_border(node: Node) -> bool:
    return bool(node.meta.get(BORDER))


def int8_reasons(qgraph: Graph, precision: Precision) -> dict[str, str]:
    """{node name: why it stays int8} for compute nodes the precision wanted in int16."""
    out = {}
    for n in qgraph.nodes:
        if not precision.wants16(n) or n.op in FOLLOWERS or is_border(n) or n.outputs[0].quant is None \
                or n.outputs[0].quant.dtype.itemsize != 1:
            continue
        if not int16_capable(n):
            out[n.name] = WHY_INT8.get(n.op, f"no int16 {n.op} kernel")
        else:
            out[n.name] = ("its clamp is no TFLite fused activation: the int8 output range realizes it, "
                           "int16's symmetric range cannot")
    return out


def precision_summary(graph: Graph, qgraph: Graph, precision: Precision) -> dict:
    """report.json's calibration "activations": the widths chosen and why some stay int8."""
    wide = [n.name for n in qgraph.nodes if not is_border(n) and n.outputs[0].quant is not None
            and n.outputs[0].quant.dtype.itemsize == 2]
    borders = [n for n in qgraph.nodes if is_border(n)]
    return {"mode": "int16" if precision.all16 else "mixed",
            "int16_nodes": len(wide) if precision.all16 else wide,
            "int8_nodes": int8_reasons(qgraph, precision),
            "conversions": [{"node": b.name, "from": b.inputs[0].quant.dtype.name, "to": b.outputs[0].quant.dtype.name}
                            for b in borders]}
