"""Shape rules of the windowed ops (Conv, ConvTranspose, pooling) and Resize / Upsample,
mirroring `WindowGeometry` and the Resize kernel of qcompiler/interp/float_kernels/."""
from __future__ import annotations

import math

import numpy as np

from qcompiler.ir.shapes import INT64, Type, _attr, _Unknown, _axis, _const, _dtype, _ints, _shape, _value, rule


def window_sizes(node, spatial, kernel, ceil_mode: bool = False) -> list[int]:
    """Output size per spatial axis of a strided, dilated, padded window (as the kernels)."""
    nd = len(spatial)
    strides = _ints(_attr(node, "strides", [1] * nd))
    dil = _ints(_attr(node, "dilations", [1] * nd))
    auto_pad = _attr(node, "auto_pad", "NOTSET")
    pads = _ints(_attr(node, "pads", [0] * 2 * nd)) if auto_pad == "NOTSET" else [0] * 2 * nd
    # strides and dilations beyond 2^15 mean nothing for a real model and overflow runtimes' fields
    for what, values, low, high in (("strides", strides, 1, 2 ** 15), ("dilations", dil, 1, 2 ** 15),
                                    ("pads", pads, 0, 2 ** 31)):
        if len(values) < (2 * nd if what == "pads" else nd) or any(not low <= v < high for v in values):
            raise ValueError(f"{what} {values} out of range for a {nd}-D window (each in [{low}, {high}))")
    out = []
    for i, (n, s, k, d) in enumerate(zip(spatial, strides, kernel, dil)):
        ke = (k - 1) * d + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            o = -(-n // s)
        elif auto_pad in ("NOTSET", "VALID"):
            pb, pe = pads[i], pads[i + nd]
            span = n + pb + pe - ke
            o = (-(-span // s) if ceil_mode else span // s) + 1
            if ceil_mode and (o - 1) * s >= n + pb:
                o -= 1  # the last window would start in the end padding
        else:
            raise _Unknown  # the kernels refuse it
        if o <= 0:
            raise ValueError(f"kernel {list(kernel)} does not fit the padded input {list(spatial)}")
        out.append(o)
    return out


@rule("Conv")
def _conv(node):
    x, w = _shape(node), _shape(node, 1)
    g = int(_attr(node, "group", 1))
    c, m = x[1], w[0]
    if len(w) != len(x) or c % g or m % g or w[1] != c // g:
        raise ValueError(f"weight {w} does not fit input {x} with group={g}")
    out = window_sizes(node, x[2:], w[2:])
    return Type(np.result_type(_dtype(node), _dtype(node, 1)), (x[0], m, *out))


@rule("ConvTranspose")
def _conv_transpose(node):
    x, w = _shape(node), _shape(node, 1)
    nd, g = len(x) - 2, int(_attr(node, "group", 1))
    if len(w) != len(x) or w[0] != x[1] or x[1] % g:
        raise ValueError(f"weight {w} does not fit input {x} with group={g}")
    strides = _ints(_attr(node, "strides", [1] * nd))
    dil = _ints(_attr(node, "dilations", [1] * nd))
    out_pad = _ints(_attr(node, "output_padding", [0] * nd))
    full = [(i - 1) * s + (k - 1) * d + 1 + op for i, s, k, d, op in zip(x[2:], strides, w[2:], dil, out_pad)]
    auto_pad, out_shape = _attr(node, "auto_pad", "NOTSET"), _attr(node, "output_shape")
    if out_shape is not None:
        size = _ints(out_shape)[-nd:]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        size = [i * s for i, s in zip(x[2:], strides)]
    elif auto_pad in ("NOTSET", "VALID"):
        pads = _ints(_attr(node, "pads", [0] * 2 * nd)) if auto_pad == "NOTSET" else [0] * 2 * nd
        size = [f - pb - pe for f, pb, pe in zip(full, pads[:nd], pads[nd:])]
    else:
        raise _Unknown
    return Type(np.result_type(_dtype(node), _dtype(node, 1)), (x[0], w[1] * g, *size))


@rule("MaxPool", "AveragePool", "LpPool")
def _pool(node):
    x = _shape(node)
    out = window_sizes(node, x[2:], _ints(_attr(node, "kernel_shape")), bool(_attr(node, "ceil_mode", 0)))
    shape = (x[0], x[1], *out)
    return [Type(_dtype(node), shape), Type(INT64, shape)]


@rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(node):
    x = _shape(node)
    return Type(_dtype(node), x[:2] + (1,) * (len(x) - 2))


@rule("Resize", "Upsample")
def _resize(node):
    x = _shape(node)
    r = len(x)
    if node.op == "Upsample" or len(node.inputs) == 2:  # Upsample-7/9, Resize-10
        scales = _const(node, 1) if _value(node, 1) is not None else _attr(node, "scales")
        sizes = None
    else:
        scales, sizes = _const(node, 2), _const(node, 3)
    axes = [_axis(a, r) for a in _ints(_attr(node, "axes", list(range(r))))]
    in_shape = [x[a] for a in axes]
    if sizes is not None:
        sizes = _ints(sizes)
        policy = _attr(node, "keep_aspect_ratio_policy", "stretch")
        if policy in ("not_larger", "not_smaller"):
            sc = [np.float32(o) / np.float32(i) for o, i in zip(sizes, in_shape)]
            s = min(sc) if policy == "not_larger" else max(sc)
            sizes = [int(math.floor(float(s) * i + 0.5)) for i in in_shape]
        elif policy != "stretch":
            raise _Unknown
    elif scales is not None:
        sc = [np.float32(v) for v in np.asarray(scales, np.float32).reshape(-1)]
        if len(sc) != len(axes):
            raise ValueError(f"{len(sc)} scales for {len(axes)} axes")
        sizes = [int(np.floor(s * np.float32(i))) for s, i in zip(sc, in_shape)]
    else:
        raise ValueError("neither scales nor sizes given")
    out = list(x)
    for a, n in zip(axes, sizes):
        out[a] = n
    return Type(_dtype(node), tuple(out))


@rule("LSTM")
def _lstm(node):
    x, r = _shape(node), _shape(node, 2)
    if int(_attr(node, "layout", 0)):
        raise _Unknown  # the kernel refuses batch-major LSTMs
    seq, batch = x[0], x[1]
    dirs, hidden = r[0], r[2]
    if int(_attr(node, "hidden_size", hidden)) != hidden or _shape(node, 1)[:2] != (dirs, 4 * hidden) \
            or _shape(node, 1)[2] != x[2]:
        raise ValueError(f"W {_shape(node, 1)} / R {r} do not fit input {x} and hidden_size")
    state = Type(_dtype(node), (dirs, batch, hidden))
    return [Type(_dtype(node), (seq, dirs, batch, hidden)), state, state]
