"""Error-compensating rounding of int8 weights (GPTQ, Frantar et al. 2022) for Conv and Gemm.

With int16 activations the int8 weights are what is left of the quantization noise. Rounding
each weight to nearest ignores that a layer's output error is E = (W - Q) X: GPTQ rounds the
input columns of W one at a time and spreads each column's rounding error over the columns not
yet rounded, weighted by the inverse of H = X^T X (the layer's float inputs on calibration
samples, im2col'd for convolutions, per group):

    for each column i:  q_i = clip(round(w_i / s), -qmax, qmax) * s
                        W[:, i+1:] -= ((w_i - q_i) / U_ii) U_i,i+1:      U = chol(H^-1), upper

The scales s (per output channel or per tensor) and the integer format are unchanged, so every
runtime runs the result as before.

Bounded (`--weight-rounding bounded`): q_i is clipped to floor(w_i / s) or floor(w_i / s) + 1 of
the *original* weight (AdaRound's choice set, solved by the GPTQ sweep instead of gradient
descent), and a row keeps nearest rounding where that has the smaller calibration error. It
takes every layer, batch-1 FC layers included: MLPerf AD's per-tensor int8 FC weights (TFLM
keeps per-channel multipliers in its arena, 8 B per channel) go from 33.65 to 37.83 dB output
SQNR on the evaluation set (weight-only 34.4 -> 39.5 dB), where plain GPTQ on all 128
calibration samples reached 34.1 (it moves weights several steps along directions 128 samples
do not cover) and on 32 or 64 samples lost 8 dB.
`hessians(graph, feeds, runner)` collects H per layer; `round_weights(w, scales, axis, H)`
returns the float weights on the integer grid (quantize_weights then rounds them exactly).
"""
from __future__ import annotations

import hashlib

import numpy as np

from qcompiler.ir import Graph, Node

DAMPING = 0.01   # of the mean diagonal of H, added to it (as GPTQ does)
MIN_ROWS_PER_COLUMN = 4


def _conv_geometry(node: Node):
    if str(node.attrs.get("auto_pad", "NOTSET")).strip("b'") not in ("NOTSET", ""):
        return None
    w = node.input(1)
    if w is None or not w.is_constant or w.data.ndim != 4:
        return None
    pads = [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]
    strides = [int(s) for s in node.attrs.get("strides", [1, 1])]
    dilations = [int(d) for d in node.attrs.get("dilations", [1, 1])]
    return pads, strides, dilations, int(node.attrs.get("group", 1)), w.data.shape


def _patches(x: np.ndarray, geometry) -> list[np.ndarray]:
    """im2col of x [N, C, H, W] per group: [N * Ho * Wo, C/g * kh * kw] each, column order as
    the weight's [Cin/g, kh, kw]."""
    pads, strides, dilations, group, wshape = geometry
    _, _, kh, kw = wshape
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    span_h, span_w = (kh - 1) * dilations[0] + 1, (kw - 1) * dilations[1] + 1
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::strides[0], ::strides[1], ::dilations[0], ::dilations[1]]  # N C Ho Wo kh kw
    n, c, ho, wo = win.shape[:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c, kh * kw)
    per = c // group
    return [cols[:, g * per:(g + 1) * per].reshape(len(cols), per * kh * kw) for g in range(group)]


def layer_inputs(graph: Graph) -> dict[str, tuple[str, object]]:
    """{layer name: (its input tensor, conv geometry or None for Gemm)} of the layers GPTQ rounds."""
    out = {}
    for n in graph.nodes:
        if n.meta.get("split_weights") == "hi":
            continue  # on its int8 grid already (passes/split_weights.py): the low half carries the rest
        if n.op == "Conv":
            geometry = _conv_geometry(n)
            if geometry is not None:
                out[n.name] = (n.inputs[0].name, geometry)
        elif n.op == "Gemm" and n.input(1) is not None and n.input(1).is_constant:
            out[n.name] = (n.inputs[0].name, None)
    return out


class Hessians(dict):
    """{layer: [H per group]}, the layers rounded `bounded` (see round_weights), and the
    weights already rounded (`rounded`): the `--activations auto` search quantizes the same
    layers once per candidate, on the same grid unless the bias headroom moved the scales."""

    def __init__(self, *args, bounded=frozenset(), check: dict | None = None):
        super().__init__(*args)
        self.bounded = frozenset(bounded)
        self.check = check or {}   # layer: [H per group] of held-out samples (bounded's safeguard)
        self.memo: dict[tuple, np.ndarray] = {}


def rounded(hs: dict, name: str, w: np.ndarray, scales: np.ndarray, axis: int | None) -> np.ndarray:
    """round_weights(w, scales, axis, hs[name]), remembered in `hs` when it is a Hessians."""
    memo = getattr(hs, "memo", None)
    # layers pooled by _pool_shared (same weights) hold the same H list: they share one rounding
    key = (id(hs[name]), name in getattr(hs, "bounded", ()), np.asarray(scales, np.float32).tobytes(), axis, w.shape)
    if memo is not None and key in memo:
        return memo[key]
    out = round_weights(w, scales, axis, hs[name], bounded=name in getattr(hs, "bounded", ()),
                        check=getattr(hs, "check", {}).get(name))
    if memo is not None:
        memo[key] = out
    return out


def hessians(graph: Graph, feeds: list[dict], runner, bounded: bool = False, only=None,
             rescue=frozenset(), held_out: list[dict] = ()) -> Hessians:
    """{layer: [H per group]} from the float activations `runner.run(feed)` gives; `only`:
    these layers. Every layer is rounded bounded with `bounded`; else a layer whose H came from
    fewer than MIN_ROWS_PER_COLUMN rows per column (GPTQ would drift there, bounded cannot) is
    rounded bounded when in `rescue`, to nearest otherwise. `held_out`: samples for bounded
    rounding's check against nearest."""
    layers = {k: v for k, v in layer_inputs(graph).items() if only is None or k in only}
    h, count = _accumulate(layers, feeds, runner)
    h, count = _pool_shared(graph, h, count)
    # H from fewer input rows than MIN_ROWS_PER_COLUMN x its size is rank-poor: GPTQ would move
    # the rounding error into directions the calibration inputs never excite (a batch-1 FC layer
    # gets one row per sample: AD's 640-wide layers lost 3 dB on the evaluation set)
    poor = {name for name, hs in h.items() if count[name] < MIN_ROWS_PER_COLUMN * hs[0].shape[0]}
    chosen = set(h) if bounded else poor & set(rescue)
    h = {name: hs for name, hs in h.items() if bounded or name not in poor or name in chosen}
    check = {}
    if held_out and chosen:   # bounded's safeguard compares with nearest on samples not fitted
        hc, cc = _pool_shared(graph, *_accumulate({k: layers[k] for k in chosen}, held_out, runner))
        check = {name: [x / cc[name] for x in hs] for name, hs in hc.items()}
    normalized: dict[int, list] = {}   # one list per pooled H: shared layers stay shared
    return Hessians({name: normalized.setdefault(id(hs), [x / count[name] for x in hs]) for name, hs in h.items()},
                    bounded=chosen, check=check)


def _pool_shared(graph: Graph, h: dict, count: dict) -> tuple[dict, dict]:
    """Layers that apply the same weights (an unrolled LSTM's per-step recurrent Gemms) get
    the sum of their H and counts: rounded once against all their inputs, they keep one
    weight buffer in the model file instead of one per step (the CRNN's flash 15 -> 52 MB)."""
    nodes = {n.name: n for n in graph.nodes if n.name in h}
    groups: dict[tuple, list[str]] = {}
    for name, n in nodes.items():
        if n.inputs[1].data is None:
            continue
        w = np.ascontiguousarray(n.inputs[1].data)
        key = (w.shape, w.dtype.str, hashlib.sha1(w.tobytes()).hexdigest())
        groups.setdefault(key, []).append(name)
    h, count = dict(h), dict(count)
    for names in groups.values():
        if len(names) > 1:
            pooled = [sum(h[m][g] for m in names) for g in range(len(h[names[0]]))]
            total = sum(count[m] for m in names)
            for m in names:
                h[m], count[m] = pooled, total
    return h, count


def _accumulate(layers: dict, feeds: list[dict], runner) -> tuple[dict, dict]:
    acc: dict[str, list[np.ndarray]] = {}
    count: dict[str, int] = {}
    for feed in feeds:
        acts = runner.run(feed)
        for name, (tensor, geometry) in layers.items():
            x = acts.get(tensor, feed.get(tensor))
            if x is None:
                continue
            x = np.asarray(x)
            groups = _patches(x, geometry) if geometry is not None else [x.reshape(-1, x.shape[-1]).astype(np.float64)]
            hs = [g.T @ g for g in groups]
            acc[name] = hs if name not in acc else [a + h for a, h in zip(acc[name], hs)]
            count[name] = count.get(name, 0) + len(groups[0])
    return acc, count


def _gptq_rows(w: np.ndarray, scales: np.ndarray, h: np.ndarray, qmax: int, bounded: bool = False,
               check: np.ndarray | None = None) -> np.ndarray:
    """w [rows, K], one scale per row: the rows rounded column by column with compensation;
    `bounded`: each weight onto the floor or the ceiling of its own value (see `round_weights`)."""
    s = scales.astype(np.float64)
    w0, h0 = w.astype(np.float64), h.astype(np.float64)
    if bounded:
        lo = np.floor(w0 / s[:, None])
        hi = lo + 1.0
    w = w0.copy()
    k = w.shape[1]
    h = h0.copy()
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += np.eye(k) * DAMPING * float(np.mean(np.diag(h)))
    try:
        u = np.linalg.cholesky(np.linalg.inv(h)).T   # upper: H^-1 = U^T U
    except np.linalg.LinAlgError:
        return np.clip(np.round(w / scales[:, None]), -qmax, qmax) * scales[:, None]
    q = np.empty_like(w)
    for i in range(k):
        r = np.round(w[:, i] / s)
        if bounded:
            r = np.clip(r, lo[:, i], hi[:, i])
        qi = np.clip(r, -qmax, qmax) * s
        err = (w[:, i] - qi) / u[i, i]
        w[:, i + 1:] -= np.outer(err, u[i, i + 1:])
        q[:, i] = qi
    if bounded:  # a row whose calibration error (w - q) H (w - q) beats nearest's keeps it
        near = np.clip(np.round(w0 / s[:, None]), -qmax, qmax) * s[:, None]
        hc = h0 if check is None else check.astype(np.float64)
        worse = _row_errors(w0 - q, hc) > _row_errors(w0 - near, hc)
        q[worse] = near[worse]
    return q


def _row_errors(d: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per row of d [rows, K], d H d^T: the layer's mean squared output error on H's inputs."""
    return np.einsum("rk,kj,rj->r", d, h, d)


def round_weights(w: np.ndarray, scales: np.ndarray, axis: int | None, hs: list[np.ndarray],
                  qmax: int = 127, bounded: bool = False, check: list[np.ndarray] | None = None) -> np.ndarray:
    """Conv [Cout, Cin/g, kh, kw] or Gemm [M, K] weights (per-channel on axis 0, or per tensor)
    rounded by GPTQ onto the grid of `scales`; float32, same shape.

    `bounded` (--weight-rounding bounded): every weight goes to the grid point just below or
    just above its own value (AdaRound's choice set), the compensated value only deciding
    which: no weight moves by a step or more, so the rounding cannot drift into directions
    the calibration inputs never excited (a rank-poor H is harmless; plain GPTQ needs
    MIN_ROWS_PER_COLUMN rows per column); a row whose result has a larger error on the
    calibration inputs, (w - q) H (w - q), than rounding to nearest keeps nearest."""
    rows = w.reshape(w.shape[0], -1)
    s = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (w.shape[0],)) if axis is not None \
        else np.full(w.shape[0], float(np.asarray(scales).reshape(-1)[0]))
    per = w.shape[0] // len(hs)
    out = np.empty(rows.shape, np.float64)
    for g, h in enumerate(hs):
        sl = slice(g * per, (g + 1) * per)
        out[sl] = _gptq_rows(rows[sl], s[sl], h, qmax, bounded, None if check is None else check[g])
    return out.reshape(w.shape).astype(np.float32)
