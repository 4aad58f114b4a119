"""Decompose LRN into ops every int8 target has: Mul, a 1x1 Conv, Rsqrt.

LRN(x) = x * z^-beta with z = bias + alpha/size * (sum of x^2 over a window of channels);
the window of channel c is [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, C).
The window sum is a 1x1 Conv with a constant banded C x C weight (alpha/size inside the band),
z^-beta a product of powers from a chain of Rsqrt: z^-1/2, z^1/4, z^-1/8. For beta = 0.75,
-3/4 = -1/2 - 1/2 + 1/4:

    Before: %y = LRN[size=5, alpha, beta=0.75, bias](%x)
    After:  %s = Mul(%x, %x)
            %z = Conv(%s, W[C,C,1,1], b[C])     W[o, i] = alpha/size for i in o's window; b = bias
            %r = Rsqrt(%z)                      z^-1/2
            %q = Rsqrt(%r)                      z^1/4
            %t = Mul(%r, %q)                    z^-1/4
            %u = Mul(%r, %t)                    z^-3/4
            %y = Mul(%x, %u)

Other beta: -beta must be a sum of at most MAX_FACTORS such powers (0.25, 0.5, 0.625, 1, ...);
anything else raises UnsupportedOpError naming the node and beta. Also refused: bias <= 0 or
alpha < 0 (z could reach 0 or below, where Rsqrt is undefined).

Quantization: every new tensor is an ordinary activation and gets its range from calibration.
The Conv's int32 bias is bias / (s_s * w_s) with w_s = alpha/size/127, which overflows when the
squares' scale s_s is small; so %s carries meta["range_floor"], the least upper range bound
that keeps that bias near 2^29 at most (see qcompiler/quant/quantize.py). Raising s_s that far costs nothing:
one step of %s then moves z by at most size * 2^-29 * 127 * bias, far below one step of %z.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np

from qcompiler.errors import UnsupportedOpError
from qcompiler.ir import Graph, Node
from qcompiler.ir.pass_manager import PassContext, register_pass

DEPTHS = (1, 2, 3)           # Rsqrt chain depth d gives z^((-1/2)^d)
MAX_FACTORS = 4
BIAS_QMAX = float(1 << 29)   # the Conv's int32 bias stays about this small (room for the sum)


def rsqrt_factors(beta: float) -> tuple[int, ...] | None:
    """Chain depths whose powers multiply to z^-beta (fewest factors first), or None."""
    target = -Fraction(float(beta))
    for n in range(MAX_FACTORS + 1):
        for depths in itertools.combinations_with_replacement(DEPTHS, n):
            if sum(Fraction(-1, 2) ** d for d in depths) == target:
                return depths
    return None


def band_weight(channels: int, size: int, alpha: float, rank: int) -> np.ndarray:
    """The C x C (x 1...) Conv weight summing each channel's LRN window, times alpha/size."""
    lo, hi = (size - 1) // 2, size // 2     # channels before / after c in its window
    o, i = np.meshgrid(np.arange(channels), np.arange(channels), indexing="ij")
    band = ((i >= o - lo) & (i <= o + hi)).astype(np.float32) * np.float32(alpha / size)
    return band.reshape((channels, channels) + (1,) * (rank - 2))


def _params(node: Node) -> tuple[int, float, float, float]:
    a = node.attrs
    size = int(a["size"])
    alpha, beta, bias = (float(a.get(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    x = node.inputs[0]
    problems = []
    if x.shape is None or len(x.shape) < 3:
        problems.append(f"input shape {x.shape}: needs a static (N, C, D1, ...) shape")
    if bias <= 0 or alpha < 0:
        problems.append(f"bias={bias:g}, alpha={alpha:g}: needs bias > 0 and alpha >= 0 (Rsqrt of z > 0)")
    if rsqrt_factors(beta) is None:
        problems.append(f"beta={beta:g} is not a sum of at most {MAX_FACTORS} powers (-1/2)^d, "
                        f"d in {DEPTHS} (e.g. 0.25, 0.5, 0.625, 0.75, 1)")
    if problems:
        raise UnsupportedOpError([f"LRN (node {node.name}): " + "; ".join(problems)
                                  + " -- only such LRNs are rewritten into int8 Mul/Conv/Rsqrt"])
    return size, alpha, beta, bias


def _decompose(graph: Graph, node: Node) -> None:
    size, alpha, beta, bias = _params(node)
    x = node.inputs[0]
    channels, rank = x.shape[1], len(x.shape)
    base = node.name

    def add(op, ins, name, attrs=None):
        return graph.insert_before(node, op, ins, attrs=attrs, name=f"{base}_{name}").outputs[0]

    depths = rsqrt_factors(beta)
    if not depths:                      # beta = 0: y = x
        graph.replace_node(node, add("Identity", [x], "identity").producer)
        return
    squares = add("Mul", [x, x], "square")
    # bias / (s_s * alpha/size/127) < BIAS_QMAX  <=>  s_s > 127 * bias / (alpha/size * BIAS_QMAX)
    if alpha > 0:
        squares.meta["range_floor"] = 255.0 * 127.0 * bias / (alpha / size * BIAS_QMAX)
    w = graph.add_constant(f"{base}_window", band_weight(channels, size, alpha, rank))
    b = graph.add_constant(f"{base}_bias", np.full(channels, bias, np.float32))
    z = add("Conv", [squares, w, b], "window_sum", attrs={"kernel_shape": [1] * (rank - 2)})
    chain, v = [], z
    for d in range(1, max(depths) + 1):
        v = add("Rsqrt", [v], f"rsqrt{d}")
        chain.append(v)
    factors = [chain[d - 1] for d in sorted(depths, reverse=True)]
    acc = factors[0]
    for k, f in enumerate(factors[1:], start=1):
        acc = add("Mul", [f, acc], f"pow{k}")
    graph.replace_node(node, add("Mul", [x, acc], "scale").producer)  # the last Mul writes %y


@register_pass("decompose_lrn", "rewrite LRN as Mul, a banded 1x1 Conv, Rsqrt and Mul (no int8 LRN kernel)")
def decompose_lrn(graph: Graph, ctx: PassContext) -> bool:
    lrns = [n for n in graph.nodes if n.op == "LRN"]
    problems = []
    for n in lrns:
        try:
            _params(n)
        except UnsupportedOpError as e:
            problems += e.problems
    if problems:
        raise UnsupportedOpError(problems, "the model (decompose_lrn)")
    for n in lrns:
        before = len(graph.nodes)
        _decompose(graph, n)
        ctx.log.append(f"decompose_lrn: {n.name} (beta={float(n.attrs.get('beta', 0.75)):g}) -> "
                       f"{len(graph.nodes) - before + 1} nodes")
    return bool(lrns)
