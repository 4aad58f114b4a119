"""ONNX op -> ncnn layer converters, registered in `CONVERTERS` by op name.

A converter reads one IR node, checks that ncnn computes the same thing (raising
`Unsupported` with the reason otherwise) and adds layers through the `Lowering`.
Param ids follow each layer's `load_param` in ncnn's `src/layer/*.cpp`.
"""
from __future__ import annotations

import math

import numpy as np

from qcompiler.interp.float_kernels.nn import WindowGeometry, attr, ints, opset
from qcompiler.ir.activation import RELU, clamp_of, has_activation

from qcompiler.backends.ncnn import quant
from qcompiler.backends.ncnn.lower import Blob, Lowering, Unsupported, ncnn_dims, shape_params
from qcompiler.backends.ncnn.model import TAG_FP32, TAG_INT8, Layer, Weight
from qcompiler.backends.ncnn.resize import interp_params

CONVERTERS: dict = {}
# why ncnn refuses an op that another target lowers (what ncnn lacks); an op listed in
# neither table gets "no ncnn layer for this op"
WHY_UNSUPPORTED: dict[str, str] = {}
F32 = np.float32

FUSABLE = {"Convolution", "ConvolutionDepthWise", "InnerProduct", "Deconvolution", "DeconvolutionDepthWise"}
SHAPE_ONLY = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def converter(*ops):
    def deco(fn):
        for op in ops:
            CONVERTERS[op] = fn
        return fn
    return deco


def _const(node, i, what: str) -> np.ndarray | None:
    v = node.input(i)
    if v is None:
        return None
    if not v.is_constant:
        raise Unsupported(f"{what} must be a constant")
    return v.data


def activation_params(clamp) -> tuple[tuple, tuple]:
    """A fused clamp as ((activation_type, activation_params) of layers with params 9/10,
    (type, params) of the standalone layer for the others): relu, or clip to finite bounds."""
    lo, hi = clamp
    if clamp == RELU:
        return (1, None), ("ReLU", {})
    if math.isfinite(lo) and math.isfinite(hi):
        return (3, [lo, hi]), ("Clip", {0: lo, 1: hi})
    raise Unsupported(f"fused clamp [{lo:g}, {hi:g}]: ncnn fuses relu or a clip to finite bounds")


def _emit(lw: Lowering, node, type_: str, bottoms: list[Blob], params: dict | None = None,
          weights: list[Weight] | None = None, meta: dict | None = None) -> Layer:
    """Add the node's layer writing its (single) output, realising its fused clamp."""
    clamp = clamp_of(node)
    out_v = node.outputs[0]
    top = lw.top(out_v)
    params, meta = dict(params or {}), dict(meta or {})
    if clamp is None:
        return lw.add(type_, node, bottoms, [top], params, weights, **meta)
    fused, standalone = activation_params(clamp)
    if type_ in FUSABLE:
        act, act_params = fused
        params[9] = act
        if act_params:
            params[10] = act_params
        return lw.add(type_, node, bottoms, [top], params, weights, **meta)
    tmp = lw.new_blob(f"{out_v.name}_preact", top.dims, top.batch_dropped)
    layer = lw.add(type_, node, bottoms, [tmp], params, weights, **meta)
    act_type, act_params = standalone
    lw.add(act_type, node, [tmp], [top], act_params, name=f"{node.name}_{act_type.lower()}",
           activation_of=node.name)
    return layer


def _weights(lw: Lowering, node, layer_type: str, w: np.ndarray, bias, scale_groups: int):
    """Weight blobs + int8 params/meta: int8 when precision is int8 and the input is calibrated."""
    bias_w = [Weight(np.asarray(bias, F32))] if bias is not None else []
    x = node.input(0)
    s_in = lw.input_scale(x) if lw.int8 and layer_type in quant.SCALE_TERM else None
    if s_in is None:
        return [Weight(np.asarray(w, F32), TAG_FP32)] + bias_w, {}, {}
    ws = quant.weight_scales(w, scale_groups)
    qw = quant.quantize_weight(w, ws)
    term = quant.SCALE_TERM[layer_type]
    weights = [Weight(qw, TAG_INT8)] + bias_w + [Weight(ws), Weight(np.array([s_in], F32))]
    info = {"input": x.name, "input_scale": s_in, "weight_scales": [float(s) for s in ws],
            "output_scale": None, "int8_scale_term": term}
    return weights, {8: term}, {"int8": info}


def _window(node, x, kernel, ceil_mode=False) -> WindowGeometry:
    if len(kernel) != 2 or len(x.shape) != 4:
        raise Unsupported("only 2-D windows (NCHW input) are supported")
    try:
        return WindowGeometry(node, x.shape[2:], list(kernel), ceil_mode=ceil_mode)
    except (NotImplementedError, ValueError) as e:
        raise Unsupported(str(e)) from None


# ---- convolutions and fully connected ----------------------------------------
@converter("Conv")
def conv(lw: Lowering, node):
    x, w, b = node.input(0), _const(node, 1, "the weight"), _const(node, 2, "the bias")
    if w.ndim != 4:
        raise Unsupported("only 2-D convolution")
    src = lw.bottom(x)
    m, _, kh, kw = w.shape
    group = int(attr(node, "group", 1))
    geo = _window(node, x, (kh, kw))
    params = {0: m, 1: kw, 11: kh, 2: geo.dil[1], 12: geo.dil[0], 3: geo.strides[1], 13: geo.strides[0],
              4: geo.begin[1], 15: geo.end[1], 14: geo.begin[0], 16: geo.end[0],
              5: int(b is not None), 6: int(w.size)}
    type_ = "Convolution" if group == 1 else "ConvolutionDepthWise"
    if group > 1:
        params[7] = group
    weights, qparams, meta = _weights(lw, node, type_, w, b, m if group == 1 else group)
    _emit(lw, node, type_, [src], {**params, **qparams}, weights, meta)


@converter("Gemm")
def gemm(lw: Lowering, node):
    x, w, b = node.input(0), _const(node, 1, "the weight"), _const(node, 2, "the bias")
    a = node.attrs
    canonical = (int(a.get("transA", 0)) == 0 and int(a.get("transB", 0)) == 1 and a.get("alpha", 1.0) == 1.0
                 and a.get("beta", 1.0) == 1.0 and w.ndim == 2 and (b is None or b.ndim == 1))
    if not canonical:
        raise Unsupported("only the canonical Gemm(x, W[M,K], b[M]) form (run normalize_gemm)")
    if x.shape is None or len(x.shape) != 2:
        raise Unsupported(f"input shape {x.shape}: InnerProduct takes rows [M, K]")
    # [1, K] is a 1-D blob; [M, K] a 2-D one, which InnerProduct multiplies row by row (its gemm path)
    src = lw.bottom(x)
    params = {0: w.shape[0], 1: int(b is not None), 2: int(w.size)}
    weights, qparams, meta = _weights(lw, node, "InnerProduct", w, b, w.shape[0])
    _emit(lw, node, "InnerProduct", [src], {**params, **qparams}, weights, meta)


@converter("ConvTranspose")
def conv_transpose(lw: Lowering, node):
    x, w, b = node.input(0), _const(node, 1, "the weight"), _const(node, 2, "the bias")
    if w.ndim != 4 or len(x.shape) != 4:
        raise Unsupported("only 2-D transposed convolution")
    src = lw.bottom(x)
    g = int(attr(node, "group", 1))
    cin, mg, kh, kw = w.shape
    strides, dil = ints(attr(node, "strides", [1, 1])), ints(attr(node, "dilations", [1, 1]))
    out_pad = ints(attr(node, "output_padding", [0, 0]))
    full = [(i - 1) * s + (k - 1) * d + 1 + op for i, s, k, d, op in zip(x.shape[2:], strides, (kh, kw), dil, out_pad)]
    out = node.outputs[0].shape[2:]
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if attr(node, "output_shape") is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        total = [f - o for f, o in zip(full, out)]
        begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
    else:
        begin = ints(attr(node, "pads", [0] * 4))[:2] if auto_pad == "NOTSET" else [0, 0]
    end = [f - bg - o for f, bg, o in zip(full, begin, out)]
    if min(begin + end) < 0:
        raise Unsupported("negative padding")
    # ncnn stores [group][out/group][in/group][kh][kw]; ONNX has [in][out/group][kh][kw]
    wn = w.reshape(g, cin // g, mg, kh, kw).transpose(0, 2, 1, 3, 4)
    params = {0: mg * g, 1: kw, 11: kh, 2: dil[1], 12: dil[0], 3: strides[1], 13: strides[0],
              4: begin[1], 15: end[1], 14: begin[0], 16: end[0], 18: out_pad[1], 19: out_pad[0],
              5: int(b is not None), 6: int(w.size)}
    type_ = "Deconvolution" if g == 1 else "DeconvolutionDepthWise"
    if g > 1:
        params[7] = g
    weights, _, _ = _weights(lw, node, type_, wn, b, 1)  # ncnn has no int8 deconvolution
    _emit(lw, node, type_, [src], params, weights)


# ---- pooling -----------------------------------------------------------------
POOL_TYPE = {"MaxPool": 0, "AveragePool": 1, "GlobalMaxPool": 0, "GlobalAveragePool": 1}


@converter("MaxPool", "AveragePool")
def pool(lw: Lowering, node):
    x = node.input(0)
    if len(node.outputs) > 1 and (node.outputs[1].consumers or node.outputs[1] in lw.graph.outputs):
        raise Unsupported("MaxPool indices output")
    kernel = ints(attr(node, "kernel_shape"))
    geo = _window(node, x, kernel, ceil_mode=bool(attr(node, "ceil_mode", 0)))
    if any(d != 1 for d in geo.dil):
        raise Unsupported("dilated pooling")
    include_pad = int(attr(node, "count_include_pad", 0))
    floor_geo = _window(node, x, kernel)
    pad_mode = 1  # "valid": exactly the explicit pads, floor division (ONNX ceil_mode=0)
    if geo.out != floor_geo.out:
        # ncnn's "full" mode pads the end up to a whole stride and never counts that tail
        full = [(n + b + e - k + s - 1) // s + 1 for n, b, e, k, s in
                zip(x.shape[2:], geo.begin, geo.end, kernel, geo.strides)]
        if full != geo.out or (node.op == "AveragePool" and include_pad):
            raise Unsupported("this ceil_mode window placement differs from ncnn's")
        pad_mode = 0
    params = {0: POOL_TYPE[node.op], 1: kernel[1], 11: kernel[0], 2: geo.strides[1], 12: geo.strides[0],
              3: geo.begin[1], 14: geo.end[1], 13: geo.begin[0], 15: geo.end[0], 5: pad_mode}
    if node.op == "AveragePool":
        params[6] = include_pad
    _emit(lw, node, "Pooling", [lw.bottom(x)], params)


@converter("GlobalMaxPool", "GlobalAveragePool")
def global_pool(lw: Lowering, node):
    x, out = node.input(0), node.outputs[0]
    if len(x.shape) != 4:
        raise Unsupported("only NCHW input")
    src = lw.bottom(x)
    params = {0: POOL_TYPE[node.op], 4: 1}
    flat_ok = all(c.op in SHAPE_ONLY for c in out.consumers)
    if flat_ok and not has_activation(node):
        # ncnn's global pooling gives a 1-D blob; reshape ops after it do not care
        blob = lw.new_blob(out.name, (x.shape[1],))
        lw.blobs[id(out)] = blob
        lw.add("Pooling", node, [src], [blob], params)
        return
    flat = lw.new_blob(f"{out.name}_flat", (x.shape[1],))
    lw.add("Pooling", node, [src], [flat], params)
    _emit(lw, node, "Reshape", [flat], shape_params(ncnn_dims(out.shape)[0]))


# ---- element-wise ------------------------------------------------------------
BINARY = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Max": 4, "Min": 5, "Pow": 6}
SWAPPED = {0: 0, 1: 7, 2: 2, 3: 8, 4: 4, 5: 5, 6: 9}  # op(const, x) as op'(x, const): RSUB, RDIV, RPOW


def _memory_data(lw: Lowering, node, data: np.ndarray, rank: int) -> Blob:
    """A MemoryData layer holding a constant operand, shaped for numpy broadcasting at `rank`."""
    full = (1,) * (rank - data.ndim) + tuple(data.shape)
    dims, dropped = ncnn_dims(full)
    if not dropped and rank >= 2:
        raise Unsupported(f"constant of shape {list(data.shape)} varies along the batch axis")
    blob = lw.new_blob(f"{node.name}_const", dims, dropped)
    lw.add("MemoryData", None, [], [blob], shape_params(dims), [Weight(np.asarray(data, F32).reshape(-1))],
           name=f"{node.name}_const", constant_of=node.name)
    return blob


@converter(*BINARY)
def binary(lw: Lowering, node):
    if len(node.inputs) != 2:
        raise Unsupported("only two operands")
    a, b = node.inputs
    op, rank = BINARY[node.op], len(node.outputs[0].shape)
    consts = [v is not None and v.is_constant for v in (a, b)]
    if all(consts):
        raise Unsupported("both operands are constants (fold_constants should have removed it)")
    const = a if consts[0] else b if consts[1] else None
    if const is not None and const.data.size == 1:
        x = b if consts[0] else a
        params = {0: SWAPPED[op] if consts[0] else op, 1: 1, 2: float(const.data.reshape(-1)[0])}
        _emit(lw, node, "BinaryOp", [lw.bottom(x)], params)
        return
    blobs = [_memory_data(lw, node, v.data, rank) if v.is_constant else lw.bottom(v) for v in (a, b)]
    if len(blobs[0].dims) != len(blobs[1].dims):
        raise Unsupported("operands of different rank (ncnn broadcasts those differently from ONNX)")
    _emit(lw, node, "BinaryOp", blobs, {0: op})


def _alpha(name, default):
    return lambda n: float(attr(n, name, default))


# op -> (ncnn layer, {param id: fn(node) -> value})
UNARY = {
    "Relu": ("ReLU", {}), "Sigmoid": ("Sigmoid", {}), "Tanh": ("TanH", {}),
    "LeakyRelu": ("ReLU", {0: _alpha("alpha", 0.01)}), "Elu": ("ELU", {0: _alpha("alpha", 1.0)}),
    "HardSigmoid": ("HardSigmoid", {0: _alpha("alpha", 0.2), 1: _alpha("beta", 0.5)}),
    "HardSwish": ("HardSwish", {0: lambda n: 1.0 / 6.0, 1: lambda n: 0.5}),
    **{op: ("UnaryOp", {0: (lambda k: lambda n: k)(k)}) for op, k in
       {"Abs": 0, "Neg": 1, "Floor": 2, "Ceil": 3, "Sqrt": 5, "Exp": 7, "Log": 8, "Sin": 9, "Cos": 10,
        "Reciprocal": 15}.items()},
}


@converter(*UNARY)
def unary(lw: Lowering, node):
    type_, params = UNARY[node.op]
    _emit(lw, node, type_, [lw.bottom(node.input(0))], {k: fn(node) for k, fn in params.items()})


@converter("Clip")
def clip(lw: Lowering, node):
    lo, hi = _const(node, 1, "min"), _const(node, 2, "max")
    lo = attr(node, "min") if lo is None else lo
    hi = attr(node, "max") if hi is None else hi
    params = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in ((0, lo), (1, hi)) if v is not None}
    _emit(lw, node, "Clip", [lw.bottom(node.input(0))], params)


# ---- layout ------------------------------------------------------------------
@converter(*SHAPE_ONLY)
def reshape(lw: Lowering, node):
    src = lw.bottom(node.input(0))
    dims = ncnn_dims(node.outputs[0].shape)[0]
    if len(dims) == 1:
        _emit(lw, node, "Flatten", [src])  # CHW order, the same as ONNX's row-major flatten
    else:
        _emit(lw, node, "Reshape", [src], shape_params(dims))


@converter("Softmax")
def softmax(lw: Lowering, node):
    x = node.input(0)
    rank = len(x.shape)
    legacy = (opset(node) or 13) < 13
    axis = int(attr(node, "axis", 1 if legacy else -1)) % rank
    if legacy and int(np.prod(x.shape[axis + 1:])) != 1 and axis != rank - 1:
        raise Unsupported("opset < 13 Softmax over several axes")
    src = lw.bottom(x)
    # 1=1: ncnn's "fixbug0" flag, without it ncnn rejects any axis but 0
    _emit(lw, node, "Softmax", [src], {0: src.axis(axis, rank), 1: 1})


@converter("Concat")
def concat(lw: Lowering, node):
    rank = len(node.outputs[0].shape)
    inputs = [v for v in node.inputs if v is not None]
    blobs = [_memory_data(lw, node, v.data, rank) if v.is_constant else lw.bottom(v) for v in inputs]
    axis = int(attr(node, "axis")) % rank
    if not ncnn_dims(node.outputs[0].shape)[1] and any(b.batch_dropped for b in blobs):
        # along the unit batch axis of the inputs (a CRNN's time steps [1, 1, C] -> [T, 1, C]): the
        # output keeps that axis, so each input is reshaped to its full shape and joined there
        if rank > 4 or any(v.is_constant for v in inputs):
            raise Unsupported("it works along the batch axis, which ncnn blobs do not have")
        blobs = [_reshaped(lw, node, b, tuple(v.shape), f"full{i}") if b.batch_dropped else b
                 for i, (v, b) in enumerate(zip(inputs, blobs))]
        _emit(lw, node, "Concat", blobs, {0: axis})
        return
    _emit(lw, node, "Concat", blobs, {0: blobs[0].axis(axis, rank)})


# ncnn Permute order types, each listed innermost axis first as in `src/layer/permute.cpp`
_ORDERS = {2: "wh hw", 3: "whc hwc wch cwh hcw chw",
           4: "whdc hwdc wdhc dwhc hdwc dhwc whcd hwcd wchd cwhd hcwd chwd wdch dwch wcdh cwdh dcwh cdwh "
              "hdcw dhcw hcdw chdw dchw cdhw"}
_AXES = {2: "hw", 3: "chw", 4: "cdhw"}  # outermost first
PERMUTE = {(r, tuple(_AXES[r].index(a) for a in reversed(s))): k
           for r, listing in _ORDERS.items() for k, s in enumerate(listing.split())}


@converter("Transpose")
def transpose(lw: Lowering, node):
    x = node.input(0)
    src = lw.bottom(x)
    rank = len(x.shape)
    perm = ints(attr(node, "perm", list(range(rank))[::-1]))
    off = rank - len(src.dims)
    if perm[:off] != list(range(off)):
        _transpose_moving_batch(lw, node, src, perm)
        return
    nperm = tuple(p - off for p in perm[off:])
    if len(nperm) == 1:
        order = 0
    elif (len(nperm), nperm) in PERMUTE:
        order = PERMUTE[(len(nperm), nperm)]
    else:
        raise Unsupported(f"permutation {perm}")
    _emit(lw, node, "Permute", [src], {0: order})


def _reshaped(lw: Lowering, node, src: Blob, dims: tuple[int, ...], suffix: str) -> Blob:
    """`src` reshaped to blob dims `dims` (a new blob; `src` itself when the dims agree)."""
    if tuple(src.dims) == tuple(dims):
        return src
    blob = lw.new_blob(f"{node.outputs[0].name}_{suffix}", dims, False)
    params = {} if len(dims) == 1 else shape_params(dims)
    lw.add("Flatten" if len(dims) == 1 else "Reshape", node, [src], [blob], params, name=f"{node.name}_{suffix}")
    return blob


def _transpose_moving_batch(lw: Lowering, node, src: Blob, perm: list[int]):
    """A Transpose that moves the (unit) batch axis, e.g. a CRNN's [1, C, T] -> [T, 1, C]: the
    data moves as the permutation of the non-unit axes alone, so it is a Reshape to those axes,
    a Permute and a Reshape to the output's blob dims."""
    shape = node.input(0).shape
    keep = [a for a in range(len(shape)) if shape[a] != 1]
    nperm = tuple(keep.index(a) for a in perm if shape[a] != 1)
    if len(keep) > 4:
        raise Unsupported(f"it moves the batch axis and permutes {len(keep)} non-unit axes (ncnn: at most 4)")
    out_dims = ncnn_dims(node.outputs[0].shape)[0]
    if nperm == tuple(range(len(keep))):  # only unit axes move: the data stays in place
        _emit(lw, node, "Flatten" if len(out_dims) == 1 else "Reshape", [src],
              {} if len(out_dims) == 1 else shape_params(out_dims))
        return
    squeezed = _reshaped(lw, node, src, tuple(shape[a] for a in keep), "squeezed")
    permuted_dims = tuple(shape[keep[i]] for i in nperm)
    if tuple(permuted_dims) == tuple(out_dims):
        _emit(lw, node, "Permute", [squeezed], {0: PERMUTE[(len(nperm), nperm)]})
        return
    permuted = lw.new_blob(f"{node.outputs[0].name}_permuted", permuted_dims, False)
    lw.add("Permute", node, [squeezed], [permuted], {0: PERMUTE[(len(nperm), nperm)]})
    _emit(lw, node, "Reshape", [permuted], shape_params(out_dims))


PAD_MODE = {"constant": 0, "edge": 1, "reflect": 2}
PAD_KEYS = ((7, 8), (0, 1), (2, 3))  # (front, behind), (top, bottom), (left, right): outermost 3 dims


@converter("Pad")
def pad(lw: Lowering, node):
    x = node.input(0)
    rank = len(x.shape)
    mode = attr(node, "mode", "constant")
    if mode not in PAD_MODE:
        raise Unsupported(f"mode {mode!r}")
    pads = ints(attr(node, "pads")) if node.input(1) is None else ints(_const(node, 1, "pads"))
    value = _const(node, 2, "the pad value") if len(node.inputs) > 2 else None
    value = float(attr(node, "value", 0.0)) if value is None or np.asarray(value).size == 0 \
        else float(np.asarray(value).reshape(-1)[0])
    axes = _const(node, 3, "axes")
    axes = list(range(rank)) if axes is None else [a % rank for a in ints(axes)]
    width = [[0, 0] for _ in range(rank)]
    for i, a in enumerate(axes):
        width[a] = [pads[i], pads[i + len(axes)]]
    if any(p < 0 for w in width for p in w):
        raise Unsupported("negative pads (cropping)")
    src = lw.bottom(x)
    off = rank - len(src.dims)
    if any(any(w) for w in width[:off]):
        raise Unsupported("it pads the batch axis")
    nwidth = width[off:]
    if len(nwidth) == 4 and any(nwidth[0]):
        raise Unsupported("ncnn cannot pad the channels of a 4-D blob")
    params = {4: PAD_MODE[mode], 5: value}
    for (kb, ke), (b, e) in zip(PAD_KEYS[-min(3, len(nwidth)):], nwidth[-3:]):
        params[kb], params[ke] = b, e
    _emit(lw, node, "Padding", [src], params)


@converter("Resize", "Upsample")
def resize(lw: Lowering, node):
    _emit(lw, node, "Interp", [lw.bottom(node.input(0))], interp_params(node))


from qcompiler.backends.ncnn import ops_extra  # noqa: E402,F401  (registers its converters)
