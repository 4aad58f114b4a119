"""Fused activations: a clamp of a node's output in float units, named by no target.

Fusion (passes/fuse_activation.py) puts `attrs["clamp"] = [lo, hi]` on the producer of a
Relu / Clip; `None` stands for an unbounded side, so the attribute is plain JSON in the
`.qir` file. Read it with `clamp_of(node)`, which gives floats with ±inf for unbounded.

    Relu -> [0.0, None]      Clip(0, 6) -> [0.0, 6.0]      Clip(-1, 1) -> [-1.0, 1.0]

Every user maps the range by a table or a formula: the float interpreter clips to it; the
integer kernels (and every backend through them) narrow the output range to
[max(qmin, Q(lo)), min(qmax, Q(hi))], TFLite's CalculateActivationRangeQuantized; the TFLite
backend maps a range to an ActivationFunctionType and refuses others, ncnn to its relu / clip
activation parameters, the ONNX export to a Relu / Clip node.
"""
from __future__ import annotations

import math

ATTR = "clamp"
INF = math.inf

RELU = (0.0, INF)
# the clamps fuse_activation folds into their producer: the ones every backend can fuse
FUSIBLE = (RELU, (0.0, 6.0), (-1.0, 1.0))


def clamp_of(node) -> tuple[float, float] | None:
    """The node's fused clamp (lo, hi) in float units, ±inf for an unbounded side; None if none."""
    c = node.attrs.get(ATTR)
    if c is None:
        return None
    lo, hi = c
    return (-INF if lo is None else float(lo), INF if hi is None else float(hi))


def set_clamp(node, lo: float | None, hi: float | None) -> None:
    """Fuse the clamp [lo, hi] (None or ±inf: unbounded) into the node's output."""
    lo = None if lo is None or lo == -INF else float(lo)
    hi = None if hi is None or hi == INF else float(hi)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"node {node.name}: empty clamp [{lo}, {hi}]")
    if lo is None and hi is None:
        node.attrs.pop(ATTR, None)
    else:
        node.attrs[ATTR] = [lo, hi]


def has_activation(node) -> bool:
    return node.attrs.get(ATTR) is not None


def commutes_with_positive_scale(node) -> bool:
    """clamp(t * x) == t * clamp(x) for every t > 0: no clamp, or bounds only at 0 / ±inf
    (a Relu does; a Relu6 does not). What per-channel rescaling (equalization) needs."""
    c = clamp_of(node)
    return c is None or (c[0] in (-INF, 0.0) and c[1] in (0.0, INF))


def describe(node) -> str:
    """'relu', 'clip(0, 6)', ... for logs and reports."""
    c = clamp_of(node)
    if c is None:
        return "none"
    return "relu" if c == RELU else f"clip({c[0]:g}, {c[1]:g})"
