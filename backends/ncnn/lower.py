"""Float IR -> ncnn layers: the lowering context and its driver.

ncnn blobs are Mats without a batch axis (1-4 dims, listed here outermost first:
c,h,w for an NCHW tensor). A batch-1 value of ONNX shape [1, *rest] becomes a
blob of dims `rest`; its ONNX axis `a` is ncnn axis `a - 1`. Each value keeps
that correspondence (`Lowering.dims`), so converters can map axes without
guessing. Converters live in `ops.py`, one per ONNX op, in a table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qcompiler.errors import UnsupportedOpError
from qcompiler.ir import Graph, Node, Value

from qcompiler.backends.ncnn import quant
from qcompiler.backends.ncnn.model import Layer, Weight, check_model, insert_splits, sanitize


class Unsupported(Exception):
    """A converter cannot express this node in ncnn; the message says why."""


@dataclass
class Blob:
    """An ncnn blob for an IR value: its name and ncnn dims (outermost first)."""

    name: str
    dims: tuple[int, ...]
    batch_dropped: bool

    def axis(self, onnx_axis: int, rank: int) -> int:
        """ncnn axis for an ONNX axis of a rank-`rank` tensor (the batch axis has none)."""
        a = onnx_axis % rank - (1 if self.batch_dropped else 0)
        if a < 0:
            raise Unsupported("it works along the batch axis, which ncnn blobs do not have")
        return a


def ncnn_dims(shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], bool]:
    """(dims, batch dropped) of a static ONNX shape; a leading 1 of rank >= 2 is the batch."""
    if shape is None:
        raise Unsupported("a tensor has no static shape")
    if len(shape) >= 2 and shape[0] == 1:
        dims, dropped = tuple(shape[1:]), True
    else:
        dims, dropped = tuple(shape), False
    if not 1 <= len(dims) <= 4:
        raise Unsupported(f"shape {list(shape)} does not fit an ncnn blob (1-4 dims besides batch 1)")
    return dims, dropped


def shape_params(dims: tuple[int, ...]) -> dict[int, int]:
    """ncnn's w/h/d/c param ids (0, 1, 11, 2) for blob dims listed outermost first."""
    keys = {1: (0,), 2: (1, 0), 3: (2, 1, 0), 4: (2, 11, 1, 0)}[len(dims)]
    return dict(zip(keys, dims))


@dataclass
class Lowering:
    """State of one lowering: layers so far, value -> blob, names, int8 choices."""

    graph: Graph
    precision: str
    ranges: dict
    layers: list[Layer] = field(default_factory=list)
    blobs: dict[int, Blob] = field(default_factory=dict)
    _layer_names: set = field(default_factory=set)
    _blob_names: set = field(default_factory=set)

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    # ---- names and blobs ----------------------------------------------
    def _unique(self, base: str, used: set) -> str:
        name, k = sanitize(base), 1
        while name in used:
            name, k = sanitize(f"{base}_{k}"), k + 1
        used.add(name)
        return name

    def new_blob(self, base: str, dims: tuple[int, ...], batch_dropped: bool = True) -> Blob:
        return Blob(self._unique(base, self._blob_names), tuple(dims), batch_dropped)

    def bottom(self, value: Value | None) -> Blob:
        """The blob holding an activation input (constants must be handled by the converter)."""
        if value is None or value.is_constant:
            raise Unsupported("a constant operand is not supported here")
        return self.blobs[id(value)]

    def top(self, value: Value) -> Blob:
        """Allocate the blob of a node output, named after the value."""
        dims, dropped = ncnn_dims(value.shape)
        blob = self.new_blob(value.name, dims, dropped)
        self.blobs[id(value)] = blob
        return blob

    def add(self, type_: str, node: Node | None, bottoms: list[Blob], tops: list[Blob],
            params: dict | None = None, weights: list[Weight] | None = None, name: str | None = None,
            **meta) -> Layer:
        base = name or (node.name if node is not None else type_)
        layer = Layer(type_, self._unique(base, self._layer_names), [b.name for b in bottoms],
                      [t.name for t in tops], dict(params or {}), list(weights or []),
                      {"node": node.name if node is not None else None, **meta})
        self.layers.append(layer)
        return layer

    # ---- int8 ------------------------------------------------------------
    def input_scale(self, value: Value) -> float | None:
        """127 / threshold of the calibrated range of `value`, None when it was not calibrated."""
        r = self.ranges.get(value.name)
        return None if r is None else quant.blob_scale(r)


def fuse_requantize(layers: list[Layer], outputs: set[str]) -> None:
    """Requantize int8 conv outputs to int8 where every consumer is an int8 conv (as ncnn2int8 does).

    Exact: the fused form computes `float2int8(act(sum * scale_in + bias) * scale_out)`,
    the same operations the unfused dequantize + next layer's quantize perform.
    """
    consumers: dict[str, list[Layer]] = {}
    for layer in layers:
        for b in layer.bottoms:
            consumers.setdefault(b, []).append(layer)
    convs = ("Convolution", "ConvolutionDepthWise")
    for layer in layers:
        info = layer.meta.get("int8")
        if layer.type not in convs or info is None or layer.tops[0] in outputs:
            continue
        users = consumers.get(layer.tops[0], [])
        if not users or not all(u.type in convs and u.meta.get("int8") for u in users):
            continue
        scales = {u.meta["int8"]["input_scale"] for u in users}
        if len(scales) != 1:
            continue
        out_scale = scales.pop()
        layer.params[8] += quant.REQUANT_OFFSET
        layer.weights.append(Weight(np.array([out_scale], np.float32)))
        info["output_scale"] = out_scale
        info["int8_scale_term"] = layer.params[8]


def lower_graph(graph: Graph, precision: str = "int8", ranges: dict | None = None) -> tuple[list[Layer], dict]:
    """Lower a float IR graph; returns (layers with Splits, io).

    io: {"inputs": [...], "outputs": [...]} (value name, blob name, ONNX shape, ncnn
    dims) and "value_blobs" {IR value name: blob name} for extracting intermediates.

    Raises one UnsupportedOpError naming every node ncnn cannot run.
    """
    from qcompiler.backends.ncnn.ops import CONVERTERS, WHY_UNSUPPORTED

    if precision not in ("int8", "fp32"):
        raise ValueError(f"ncnn precision must be int8 or fp32, not {precision!r}")
    lw = Lowering(graph, precision, ranges or {})
    problems: list[str] = []
    io = {"inputs": [], "outputs": []}
    for v in graph.inputs:
        try:
            blob = lw.top(v)
        except Unsupported as e:
            problems.append(f"graph input {v.name}: {e}")
            continue
        lw.add("Input", None, [], [blob], shape_params(blob.dims), name=v.name)
        io["inputs"].append({"name": v.name, "blob": blob.name, "shape": list(v.shape),
                             "ncnn_dims": list(blob.dims)})
    for node in graph.nodes:
        conv = CONVERTERS.get(node.op)
        try:
            if conv is None:
                raise Unsupported(WHY_UNSUPPORTED.get(node.op, "no ncnn layer for this op"))
            conv(lw, node)  # after a failure too: every problem is reported at once
        except Unsupported as e:
            problems.append(f"{node.op} (node {node.name}): {e}")
            _placeholder(lw, node)
    if problems:
        raise UnsupportedOpError(problems, where=f"graph {graph.name} (ncnn backend)")
    for v in graph.outputs:
        if v.is_constant or id(v) not in lw.blobs:
            raise UnsupportedOpError([f"graph output {v.name} is a constant"], where="the ncnn backend")
        blob = lw.blobs[id(v)]
        io["outputs"].append({"name": v.name, "blob": blob.name, "shape": list(v.shape),
                              "ncnn_dims": list(blob.dims)})
    io["value_blobs"] = {v.name: lw.blobs[id(v)].name for v in graph.values() if id(v) in lw.blobs}
    outputs = {o["blob"] for o in io["outputs"]}
    if lw.int8:
        fuse_requantize(lw.layers, outputs)
    layers = insert_splits(lw.layers)
    check_model(layers)
    return layers, io


def _placeholder(lw: Lowering, node: Node) -> None:
    """Give a failed node's outputs blobs, so later nodes can still be checked."""
    for v in node.outputs:
        if id(v) not in lw.blobs:
            try:
                lw.top(v)
            except Unsupported:
                lw.blobs[id(v)] = Blob(v.name, (1,), True)
