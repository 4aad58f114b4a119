"""Float reference kernel of the recurrent op LSTM (ONNX semantics, gate order i, o, f, c).

Per direction, with x_t the input at step t and h, c the running state:

    i = sigmoid(x_t Wi^T + h Ri^T + Wbi + Rbi + Pi * c)
    f = sigmoid(x_t Wf^T + h Rf^T + Wbf + Rbf + Pf * c)     (1 - i with input_forget=1)
    g = tanh(x_t Wc^T + h Rc^T + Wbc + Rbc)
    c = f * c + i * g
    o = sigmoid(x_t Wo^T + h Ro^T + Wbo + Rbo + Po * c)
    h = o * tanh(c)

`clip` bounds every gate pre-activation; the reverse direction walks the steps backwards;
`sequence_lens` stops batch entry b after its first len[b] steps (Y is 0 beyond them; Y_h /
Y_c hold the state after the last valid step). Only the default activations
(Sigmoid, Tanh, Tanh) and layout=0 are implemented.
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp.float_kernels.nn import attr, f64, opt, unsupported
from qcompiler.interp.float_kernels.registry import float_kernel

DEFAULT_ACTIVATIONS = ("sigmoid", "tanh", "tanh")
DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def lstm_directions(node) -> tuple[str, ...]:
    """The directions an LSTM node runs, in the order of Y's direction axis."""
    direction = attr(node, "direction", "forward")
    if direction not in DIRECTIONS:
        unsupported(node, f"direction={direction!r}")
    return ("forward", "reverse") if direction == "bidirectional" else (direction,)


def default_activations(node) -> bool:
    acts = attr(node, "activations")
    if acts is None:
        return True
    acts = tuple((a.decode() if isinstance(a, bytes) else str(a)).lower() for a in acts)
    return acts == DEFAULT_ACTIVATIONS * (len(acts) // 3) and len(acts) in (3, 6)


def _run(x, w, r, b, p, h, c, lens, reverse, clip, input_forget):
    """One direction over x [seq, batch, in]; returns Y [seq, batch, hidden], h, c."""
    seq, hidden = x.shape[0], r.shape[-1]
    y = np.zeros((seq, x.shape[1], hidden))
    xw = x @ w.T + b[:4 * hidden] + b[4 * hidden:]          # every step's input projection at once
    pi, po, pf = np.split(p, 3)
    for t in (range(seq - 1, -1, -1) if reverse else range(seq)):
        live = (t < lens)[:, None]
        z = xw[t] + h @ r.T
        zi, zo, zf, zc = np.split(z, 4, axis=-1)
        zi, zf = zi + pi * c, zf + pf * c
        if clip is not None:
            zi, zf, zc = (np.clip(v, -clip, clip) for v in (zi, zf, zc))
        i = _sigmoid(zi)
        f = 1.0 - i if input_forget else _sigmoid(zf)
        c_new = f * c + i * np.tanh(zc)
        zo = zo + po * c_new
        o = _sigmoid(np.clip(zo, -clip, clip) if clip is not None else zo)
        h_new = o * np.tanh(c_new)
        h, c = np.where(live, h_new, h), np.where(live, c_new, c)
        y[t] = np.where(live, h_new, 0.0)
    return y, h, c


@float_kernel("LSTM")
def lstm(node, inputs):
    x, w, r = (f64(a) for a in inputs[:3])
    if not default_activations(node):
        unsupported(node, f"activations={attr(node, 'activations')} (only Sigmoid, Tanh, Tanh)")
    if int(attr(node, "layout", 0)):
        unsupported(node, "layout=1 (batch-major; onnxruntime refuses it too)")
    dirs = lstm_directions(node)
    hidden = int(attr(node, "hidden_size", r.shape[-1]))
    batch = x.shape[1]
    zeros = np.zeros((len(dirs), batch, hidden))
    b = opt(inputs, 3)
    b = f64(b) if b is not None else np.zeros((len(dirs), 8 * hidden))
    lens = opt(inputs, 4)
    lens = np.asarray(lens, np.int64) if lens is not None else np.full(batch, x.shape[0], np.int64)
    h0, c0, p = (f64(opt(inputs, k)) if opt(inputs, k) is not None else None for k in (5, 6, 7))
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    p = np.zeros((len(dirs), 3 * hidden)) if p is None else p
    clip = attr(node, "clip")
    clip = float(clip) if clip is not None else None
    input_forget = bool(int(attr(node, "input_forget", 0)))
    ys, hs, cs = [], [], []
    for d, direction in enumerate(dirs):
        y, h, c = _run(x, w[d], r[d], b[d], p[d], h0[d], c0[d], lens, direction == "reverse", clip, input_forget)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y = np.stack(ys, axis=1)                                  # [seq, dirs, batch, hidden]
    y_h, y_c = np.stack(hs), np.stack(cs)                      # [dirs, batch, hidden]
    dtype = inputs[0].dtype
    return [a.astype(dtype) for a in (y, y_h, y_c)][:max(len(node.outputs), 1)]
