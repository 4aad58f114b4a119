"""Split a layer's weights into two int8 layers: ~15-bit weights (--split-weights [fc|all|NODES]).

With int16 activations (TFLite's 16x8 scheme) the int8 weights are the error left: MLPerf AD's
int16 model reads 47.5 dB, its activations alone would allow 78 dB. A Gemm (and, with `all`, a
Conv, depthwise included) whose weight W is written as the sum of two int8-quantizable
tensors runs on the runtime's existing 16x8 FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D and
ADD kernels (output channel c = row c of a Gemm weight, W[c] of a Conv weight):

    W_hi = s_hi * round(W / s_hi)       per output channel, s_hi = max|W_c| / 127 (the int8 grid)
    W_lo = W - W_hi                     |W_lo| <= s_hi / 2, quantized with its own row scale
    act(x W^T + b) = act((x W_hi^T + b) + x W_lo^T)

W_lo's int8 grid is ~254x finer than W_hi's, so the pair is a ~15-bit weight. The fused
activation moves to the Add; the Add's inputs keep their own int16 ranges.

    Before: %y = Gemm[fc] clamp=[0, None](%x, W, b)
    After:  %fc_hi = Gemm[fc_hi](%x, W_hi, b); %fc_lo = Gemm[fc_lo](%x, W_lo)
            %y = Add[fc] clamp=[0, None](%fc_hi, %fc_lo)

The same holds for a Conv (linear in W: conv(x, W_hi) + conv(x, W_lo) = conv(x, W)).
`ctx.options["split_weights"]`: "fc" (default) splits the Gemms, "all" the Convs too, any other
value names the nodes to split (comma-separated IR names): on AD, splitting only its two most
sensitive layers (Gemm_1, Gemm_2: +16 KB of weights instead of +270 KB) gives 53.9 dB.

The halves are marked `node.meta["split_weights"]` ("hi" / "lo"): the quantizer gives both
per-channel scales (W_hi's are the ones above, so W_hi quantizes exactly) and leaves W_hi's
rounding alone (qcompiler/quant/gptq.py skips it). Runs after horizontal_merge (which would
merge the two halves back into one Gemm). The float function changes only by float32
rounding of W_hi + W_lo.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import QccError
from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import ATTR
from qcompiler.ir.pass_manager import PassContext, register_pass
from qcompiler.numerics.fixed_point import symmetric_weight_scales

META = "split_weights"


SCOPES = {"fc": ("Gemm",), "all": ("Gemm", "Conv")}


def splittable(node: Node, ops=SCOPES["fc"]) -> bool:
    """A Gemm computing x W^T (+ b) with constant 2-D W, or a Conv with constant weights (when
    `ops` has it), not split already."""
    if node.op not in ops or META in node.meta:
        return False
    w = node.input(1)
    if w is None or not w.is_constant or not np.issubdtype(w.data.dtype, np.floating):
        return False
    if node.op == "Conv":
        return w.data.ndim >= 3
    if w.data.ndim != 2:
        return False
    if int(node.attrs.get("transB", 0)) != 1 or int(node.attrs.get("transA", 0)) != 0:
        return False
    b = node.input(2)
    return float(node.attrs.get("alpha", 1.0)) == 1.0 and (b is None or float(node.attrs.get("beta", 1.0)) == 1.0)


def split(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(W_hi, W_lo): W_hi on the per-output-channel (axis 0) symmetric int8 grid the quantizer
    uses, W_lo = W - W_hi."""
    scales = symmetric_weight_scales(w, 0).astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
    hi = (np.clip(np.round(w.astype(np.float64) / scales), -127, 127) * scales).astype(np.float32)
    return hi, (w.astype(np.float64) - hi).astype(np.float32)


def split_node(graph: Graph, node: Node) -> None:
    x, w, b = node.input(0), node.input(1), node.input(2)
    hi, lo = split(w.data)
    attrs = {k: v for k, v in node.attrs.items() if k != ATTR}
    fc_hi = graph.insert_before(node, node.op, [x, graph.add_constant(f"{w.name}_hi", hi)] + ([b] if b is not None else []),
                                attrs=dict(attrs), name=f"{node.name}_hi")
    fc_lo = graph.insert_before(node, node.op, [x, graph.add_constant(f"{w.name}_lo", lo)], attrs=dict(attrs),
                                name=f"{node.name}_lo")
    fc_hi.meta[META], fc_lo.meta[META] = "hi", "lo"
    add = graph.insert_before(node, "Add", [fc_hi.outputs[0], fc_lo.outputs[0]],
                              attrs={ATTR: node.attrs[ATTR]} if ATTR in node.attrs else {}, name=f"{node.name}_sum")
    add.meta[META] = "sum"
    graph.replace_node(node, add)


@register_pass("split_weights", "Gemm (Conv) -> Gemm(W_hi) + Gemm(W_lo): two int8 weight halves, ~15-bit weights "
                                "(--split-weights, for int16 activations)")
def split_weights(graph: Graph, ctx: PassContext) -> bool:
    scope = ctx.options.get("split_weights") or "fc"
    by_name = {n.name: n for n in graph.nodes}
    if scope in SCOPES:
        done = [n.name for n in graph.nodes if splittable(n, SCOPES[scope])]
    else:
        done = [name for name in dict.fromkeys(scope.split(",")) if name]
        bad = [name for name in done if name not in by_name or not splittable(by_name[name], SCOPES["all"])]
        if bad:
            raise QccError(f"--split-weights: {', '.join(bad[:3])} is no Gemm or Conv with constant weights in the "
                           "optimized graph (`qcc MODEL --dump-after split_weights` shows the IR names; or give "
                           "fc / all)")
    for name in done:
        split_node(graph, by_name[name])
    if done:
        ctx.log.append(f"split_weights: {len(done)} layer(s) split into int8 halves ({', '.join(done[:3])}"
                       f"{', ...' if len(done) > 3 else ''})")
    return bool(done)
