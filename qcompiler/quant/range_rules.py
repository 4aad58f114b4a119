"""Range rules from the graph: how far a calibrated range needs to reach, given who reads it.

- inputs of Rsqrt start at 0 (TFLM's int8 RSQRT refuses inputs below the zero point);
- a value's meta["range_floor"] is the least upper end its range may have
  (passes/decompose_lrn.py sets it to keep a Conv bias inside int32);
- a value read only by saturating ops (HardSwish, Relu, Clip, fixed-output Sigmoid / Tanh) keeps
  its range only where one of them still responds (`consumer_domain`);
- a tensor read only by Sigmoid / Tanh through copies or an Add stops where they saturate
  (`saturation_bounds`).
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import GraphError
from qcompiler.ir import Graph, Value
from qcompiler.ir.activation import clamp_of
from qcompiler.numerics.qops import clip_bounds

# int8 output parameters fixed by the op (TFLM requires them)
FIXED_OUTPUT = {"Softmax": (1.0 / 256, -128), "Sigmoid": (1.0 / 256, -128), "Tanh": (1.0 / 128, 0)}
# the output steps of Sigmoid / Tanh computing in int16 (TFLite 16x8: 2^-15, zero point 0)
FIXED_STEP_INT16 = 2.0 ** -15
NONNEGATIVE_INPUT = {"Rsqrt"}  # ops whose int8 input must not go below its zero point


def saturated_beyond(op: str, step: float) -> float:
    """|x| beyond which Sigmoid / Tanh with output step `step` are within half a step of their
    limits: sigmoid(-x) < step / 2 beyond ln(2 / step - 1), tanh (= 2 sigmoid(2x) - 1) half
    that; int8 (1/256, 1/128): ln 511 and ln(511) / 2; int16 (2^-15): 11.09 and 5.89."""
    return float(np.log(2.0 / step - 1.0)) if op == "Sigmoid" else float(np.log(4.0 / step - 1.0) / 2)


SATURATED_BEYOND = {op: saturated_beyond(op, FIXED_OUTPUT[op][0]) for op in ("Sigmoid", "Tanh")}


def _step(node, widths: dict | None) -> float:
    """The output step of a Sigmoid / Tanh: int8's fixed one, or int16's where `widths` says so."""
    if widths and widths.get(node.outputs[0].name) == 16:
        return FIXED_STEP_INT16
    return FIXED_OUTPUT[node.op][0]


# |x| beyond which the int16 LOGISTIC / TANH kernels (qcompiler/numerics/qops/act16.py) return
# their saturated value: their 256-entry table ends at 255/24 (Tanh reads it at 2x: 255/48).
# Within, the int16 output still moves (sigmoid(6.2) is 0.998, 66 int16 steps below 1), so an
# int16 reader needs the input range to reach this far, not the int8 bound.
SATURATED_BEYOND_INT16 = {"Sigmoid": 255.0 / 24.0, "Tanh": 255.0 / 48.0}


def _saturation(node, widths: dict | None) -> float | None:
    """Where `node` (Sigmoid / Tanh) saturates, for its output width (`widths`: tensor -> bits)."""
    table = SATURATED_BEYOND_INT16 if widths and widths.get(node.outputs[0].name) == 16 else SATURATED_BEYOND
    return table.get(node.op)


def consumer_domain(node, widths: dict | None = None) -> tuple[float, float] | None:
    """The input interval outside which `node`'s output no longer changes (in its int8 output):
    HardSwish is 0 below -3, Relu 0 below 0, Clip constant outside its bounds, and a Sigmoid /
    Tanh with fixed int8 output parameters is within a quarter step of its asymptote beyond
    ln(4 / step - 1) (6.9 for the Sigmoid's 1/256; Tanh's 1/128: 3.5); with an int16 output
    (`widths`), where its kernel saturates (SATURATED_BEYOND_INT16); None: no such interval."""
    inf = float("inf")
    if node.op == "HardSwish":
        return -3.0, inf
    if node.op == "Relu":
        return 0.0, inf
    if node.op == "Clip":
        try:
            lo, hi, _ = clip_bounds(node)
        except GraphError:  # a bound computed at run time
            return None
        return (-inf if lo is None else lo), (inf if hi is None else hi)
    if node.op in FIXED_OUTPUT and node.op != "Softmax" and widths and widths.get(node.outputs[0].name) == 16:
        bound = SATURATED_BEYOND_INT16[node.op]
        return -bound, bound
    if node.op in FIXED_OUTPUT and node.op != "Softmax":
        step = _step(node, widths)  # tanh(x) = 2 sigmoid(2x) - 1: half the step at twice x
        bound = float(np.log(8.0 / step - 1.0)) / 2.0 if node.op == "Tanh" else float(np.log(4.0 / step - 1.0))
        return -bound, bound
    return None


COPIES = {"Split", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Requantize"}


def _consumer_bound(v: Value, c, bounds: dict, ranges: dict, widths: dict | None) -> float | None:
    if c.op in SATURATED_BEYOND:
        return _saturation(c, widths)
    if c.op in COPIES:
        if c.inputs[0] is not v or any(id(o) not in bounds for o in c.outputs):
            return None
        return max(bounds[id(o)] for o in c.outputs)
    if c.op == "Add" and clamp_of(c) is None and id(c.outputs[0]) in bounds:
        others = [u for u in c.inputs if u is not v]
        if len(others) != 1:
            return None
        u = others[0]
        name = u.meta.get("range_of", u.name)   # a converted copy: its source's range
        if u.is_constant:
            reach = float(np.max(np.abs(u.data))) if u.data.size else 0.0
        elif name in ranges:
            reach = float(max(abs(ranges[name][0]), abs(ranges[name][1])))
        else:
            return None
        return bounds[id(c.outputs[0])] + reach
    return None


def saturation_bounds(graph: Graph, ranges: dict[str, tuple[float, float]],
                      widths: dict | None = None) -> dict[int, float]:
    """{id(value): bound} for tensors whose every reader ends, unchanged in value, in Sigmoid /
    Tanh saturation beyond |x| = bound: read by Sigmoid / Tanh directly (beyond ln 511, resp.
    ln(511) / 2, their fixed-parameter int8 output moves by less than half a step), through
    copies (Split, Reshape, ...), or through an Add whose other operand reaches at most r
    (calibrated) and whose sum is bounded by B: then bound B + r (an unrolled LSTM's input
    projection, which a few always-saturated channels stretch to +-130 on the CRNN). Such a
    tensor's range need not reach further: clipped values lose at most half an output step and
    its int8 steps get finer. Graph outputs are never bounded. A reader computing in int16
    (`widths`: tensor name -> bits) saturates further out (SATURATED_BEYOND_INT16); a
    Requantize between widths is a copy here."""
    outputs = {id(v) for v in graph.outputs}
    bounds: dict[int, float] = {}
    for node in reversed(graph.nodes):
        for v in node.outputs:
            if id(v) in outputs or not v.consumers:
                continue
            per = [_consumer_bound(v, c, bounds, ranges, widths) for c in v.consumers]
            if all(b is not None for b in per):
                bounds[id(v)] = max(per)
    return bounds


def constrained_range(v: Value, lo: float, hi: float, graph_output: bool = False,
                      bound: float | None = None, widths: dict | None = None) -> tuple[float, float]:
    """The calibrated range of `v` with the graph's constraints (see the module docstring).

    A tensor read only by saturating ops (`consumer_domain`) needs its range only where some
    reader still responds: the rest maps to the same outputs whatever its int8 value, so the
    range stops there and the steps inside get finer (the input of a HardSwish after a
    BatchNorm-folded conv reaches -40 where everything below -3 gives 0). Not for graph outputs.
    `bound`: its Sigmoid / Tanh saturation bound through copies and Adds (`saturation_bounds`);
    `widths`: tensor name -> bits, for readers computing in int16."""
    if any(c.op in NONNEGATIVE_INPUT for c in v.consumers):
        lo = max(lo, 0.0)
    domains = [consumer_domain(c, widths) if c.inputs and c.inputs[0] is v else None for c in v.consumers]
    if v.consumers and not graph_output and all(d is not None for d in domains):
        dlo, dhi = min(d[0] for d in domains), max(d[1] for d in domains)
        if dlo < hi and dhi > lo:  # never an empty range
            lo, hi = max(lo, dlo), min(hi, dhi)
    if bound is not None and -bound < hi and bound > lo:
        lo, hi = max(lo, -bound), min(hi, bound)
    return lo, max(hi, float(v.meta.get("range_floor", hi)))
