"""Conv (2-D, 1-D, depthwise, grouped), Gemm and ConvTranspose -> TFLite.

Weights are permuted to TFLite's layouts: CONV_2D OHWI (grouped convolutions
too: TFLM infers the groups from input channels / filter channels),
DEPTHWISE_CONV_2D 1HW(C*m) with quantized_dimension 3, TRANSPOSE_CONV OHWI
from ONNX [I, O, kh, kw], FULLY_CONNECTED [out, in]. A 1-D convolution is a
2-D one of height 1: its [N, C, L] activations are stored NWC and reshaped.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.ir import Node, Value

from qcompiler.backends.tflite.lower_core import NHWC, NWC, LoweringContext, fused, lowering, permute


# ---- window geometry (shared with pooling) -------------------------------------------

def tfl_window(size: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(output size, leading pad) TFLite computes for one spatial axis (ComputePadding)."""
    eff = (k - 1) * dilation + 1
    out = -(-size // stride) if padding == "SAME" else (size - eff + stride) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2


def onnx_pads(node: Node, spatial: int) -> list[int]:
    """ONNX begin/end pads [b0, b1, ..., e0, e1, ...]; auto_pad must have been resolved."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
        raise BackendError(f"node {node.name} ({node.op}): auto_pad={auto} is not resolved into "
                           "explicit pads (the integer reference reads `pads`)")
    return [int(p) for p in node.attrs.get("pads", [0] * 2 * spatial)]


def matching_padding(sizes, kernel, strides, dilations, begins, outs) -> str | None:
    """'SAME' or 'VALID' when TFLite's windows start exactly where ONNX's do, else None."""
    for padding in ("VALID", "SAME"):
        geo = [tfl_window(s, k, st, d, padding) for s, k, st, d in zip(sizes, kernel, strides, dilations)]
        if all(g == (o, b) for g, o, b in zip(geo, outs, begins)):
            return padding
    return None


def explicit_pad(ctx: LoweringContext, node: Node, x: Value, src: int, shape_hw, begins, ends,
                 value: int | None) -> int:
    """PAD (with the zero point) or PADV2 (with `value`) of an NHWC tensor; returns it.

    `ends` may be negative (rows no window reads): those are cropped away by
    padding less, which TFLite's VALID output size then ignores.
    """
    ends = [max(e, 0) for e in ends]
    (h, w), (t, l), (b, r) = shape_hw, begins, ends
    shape = (x.shape[0], h + t + b, w + l + r, x.shape[1])
    out = ctx.scratch(f"{node.name}_padded", shape, x)
    paddings = ctx.int32(f"{node.name}_paddings", [[0, 0], [t, b], [l, r], [0, 0]])
    if value is None:
        ctx.op("PAD", [src, paddings], [out])
    else:
        pad_value = ctx.const(f"{node.name}_pad_value", np.array([value], x.dtype), x.quant)
        ctx.op("PADV2", [src, paddings, pad_value], [out])
    return out


def window_ends(sizes, kernel, strides, dilations, begins, outs) -> list[int]:
    """Effective end pads: what the last window reaches past the input (may be < 0)."""
    return [(o - 1) * s + (k - 1) * d + 1 - n - b
            for n, k, s, d, b, o in zip(sizes, kernel, strides, dilations, begins, outs)]


# ---- Conv ----------------------------------------------------------------------------

def _conv_weights(ctx: LoweringContext, w: Value, data: np.ndarray, group: int, cin: int):
    """(opcode, weight tensor, extra options) for 2-D conv weights `data` [O, I/g, kh, kw]."""
    cout, cin_g = data.shape[0], data.shape[1]
    if group > 1 and group == cin and cin_g == 1:
        return ("DEPTHWISE_CONV_2D", ctx.const(w.name, data.transpose(1, 2, 3, 0), w.quant, 3),
                {"depth_multiplier": cout // group})               # [1, kh, kw, C*m]
    return "CONV_2D", ctx.const(w.name, data.transpose(0, 2, 3, 1), w.quant, 0), {}  # OHWI


@lowering("Conv")
def lower_conv(ctx: LoweringContext, node: Node):
    x, w, b = node.input(0), node.input(1), node.input(2)
    y = node.outputs[0]
    if not w.is_constant or len(w.shape) not in (3, 4):
        raise BackendError(f"node {node.name}: Conv needs constant 1-D or 2-D weights for TFLite")
    one_d = len(w.shape) == 3
    sizes, kernel, strides, dilations, begins, outs = conv_window(node)
    prepadded = ctx.prepadded.get(id(x))  # padded before its conversion to int16 (lower_quant.py)
    if one_d:  # height-1 image: a unit spatial axis prepended everywhere
        src = _nwc_to_nhwc(ctx, x)
    else:
        src = prepadded if prepadded is not None else ctx.get(x, NHWC)
    wdata = w.data[:, :, None, :] if one_d else w.data
    padding = "VALID" if prepadded is not None else matching_padding(sizes, kernel, strides, dilations, begins, outs)
    if padding is None:  # zero-point padding = skipped taps in the reference
        ends = window_ends(sizes, kernel, strides, dilations, begins, outs)
        src = explicit_pad(ctx, node, x, src, sizes, begins, ends, None)
        padding = "VALID"
    group = int(node.attrs.get("group", 1))
    opcode, wt, extra = _conv_weights(ctx, w, wdata, group, x.shape[1])
    bias = ctx.const(b.name, b.data, b.quant, 0) if b is not None else -1
    out = (ctx.scratch(f"{y.name}_nhwc", (y.shape[0], 1, y.shape[2], y.shape[1]), y) if one_d
           else ctx.define(y, NHWC))
    ctx.op(opcode, [src, wt, bias], [out], padding=padding, stride_h=strides[0], stride_w=strides[1],
           dilation_h_factor=dilations[0], dilation_w_factor=dilations[1],
           fused_activation_function=fused(node), **extra)
    if one_d:
        ctx.reshape(out, ctx.define(y, NWC), permute(y.shape, NWC))


def _nwc_to_nhwc(ctx: LoweringContext, x: Value) -> int:
    """[N, C, L] stored NWC -> a [N, 1, L, C] tensor for the 2-D kernels."""
    src = ctx.get(x, NWC)
    out = ctx.scratch(f"{x.name}_h1", (x.shape[0], 1, x.shape[2], x.shape[1]), x)
    ctx.reshape(src, out, ctx.tensors[out].shape)
    return out


# ---- Gemm ----------------------------------------------------------------------------

@lowering("Gemm")
def lower_gemm(ctx: LoweringContext, node: Node):
    x, w, b = node.input(0), node.input(1), node.input(2)
    if node.attrs.get("transB", 0) != 1 or node.attrs.get("transA", 0):
        raise BackendError(f"node {node.name}: Gemm is not in canonical form (run normalize_gemm)")
    if not w.is_constant or len(x.shape) != 2:
        raise BackendError(f"node {node.name}: FULLY_CONNECTED needs a 2-D input and constant weights")
    weight = w.data
    columns = ctx.fc_columns.get(id(x))
    if columns is not None:  # the input arrives flattened in its stored (e.g. HWC) order
        weight = weight[:, columns]
        src = ctx.homes[id(x)][0]
    else:
        src = ctx.get(x, (0, 1))
    inputs = [src, ctx.const(w.name, weight, w.quant, 0),
              ctx.const(b.name, b.data, b.quant, 0) if b is not None else -1]
    ctx.op("FULLY_CONNECTED", inputs, [ctx.define(node.outputs[0], (0, 1))],
           fused_activation_function=fused(node))


# ---- ConvTranspose ---------------------------------------------------------------------

def _transpose_conv_padding(kernel, strides, begins, outs):
    """TFLite padding whose crop equals ONNX's top/left pads, and the output rows to
    compute (more than ONNX's when a STRIDED_SLICE must crop the start)."""
    for padding in ("SAME", "VALID"):
        # TRANSPOSE_CONV pads as a forward conv from its output back to its input would
        tops = [tfl_window(o, k, s, 1, padding)[1] for o, k, s in zip(outs, kernel, strides)]
        if tops == list(begins):
            return padding, list(outs)
    return "VALID", [o + b for o, b in zip(outs, begins)]


@lowering("ConvTranspose")
def lower_conv_transpose(ctx: LoweringContext, node: Node):
    x, w, b = node.input(0), node.input(1), node.input(2)
    y = node.outputs[0]
    if not w.is_constant or len(w.shape) != 4:
        raise BackendError(f"node {node.name}: ConvTranspose needs constant 2-D weights for TFLite")
    if int(node.attrs.get("group", 1)) != 1 or any(int(d) != 1 for d in node.attrs.get("dilations", [1, 1])):
        raise BackendError(f"node {node.name}: TRANSPOSE_CONV supports group 1 and dilation 1 only")
    pads = onnx_pads(node, 2)
    strides = [int(s) for s in node.attrs.get("strides", [1, 1])]
    n, cout, ho, wo = y.shape
    padding, (hc, wc) = _transpose_conv_padding(w.shape[2:], strides, pads[:2], (ho, wo))
    weight = ctx.const(w.name, w.data.transpose(1, 2, 3, 0), w.quant, 0)  # [O, kh, kw, I]
    shape = ctx.int32(f"{node.name}_output_shape", [n, hc, wc, cout])
    bias = ctx.const(b.name, b.data, b.quant, 0) if b is not None else -1
    cropped = (hc, wc) != (ho, wo)
    out = ctx.scratch(f"{y.name}_uncropped", (n, hc, wc, cout), y) if cropped else ctx.define(y, NHWC)
    ctx.op("TRANSPOSE_CONV", [shape, weight, ctx.get(x, NHWC), bias], [out], padding=padding,
           stride_h=strides[0], stride_w=strides[1], fused_activation_function=fused(node))
    if cropped:
        begin = [0, pads[0], pads[1], 0]
        strided_slice(ctx, node.name, out, ctx.define(y, NHWC), begin,
                      [n, pads[0] + ho, pads[1] + wo, cout], [1, 1, 1, 1])


def strided_slice(ctx: LoweringContext, name: str, src: int, dst: int, begin, end, strides,
                  end_mask: int = 0) -> None:
    ctx.op("STRIDED_SLICE", [src, ctx.int32(f"{name}_begin", begin), ctx.int32(f"{name}_end", end),
                             ctx.int32(f"{name}_strides", strides)], [dst], end_mask=end_mask)


def conv_window(node: Node) -> tuple:
    """(sizes, kernel, strides, dilations, begin pads, output sizes) of a Conv over its 2-D NHWC
    image; a 1-D Conv's as a height-1 image (a unit spatial axis prepended)."""
    x, w, y = node.input(0), node.input(1), node.outputs[0]
    spatial = len(w.shape) - 2
    pads = onnx_pads(node, spatial)
    strides = [int(s) for s in node.attrs.get("strides", [1] * spatial)]
    dilations = [int(d) for d in node.attrs.get("dilations", [1] * spatial)]
    if spatial == 1:
        return (1, x.shape[2]), (1, w.shape[2]), [1] + strides, [1] + dilations, [0, pads[0]], (1, y.shape[2])
    return x.shape[2:], w.shape[2:], strides, dilations, pads[:2], y.shape[2:]


def explicit_pads(node: Node) -> tuple[list[int], list[int]] | None:
    """(begin, end) pads of a 2-D Conv whose ONNX padding TFLite's SAME / VALID cannot express
    (lower_conv pads it explicitly); None when one of them does, or for 1-D convs."""
    w = node.input(1)
    if w is None or not w.is_constant or len(w.shape) != 4:
        return None
    sizes, kernel, strides, dilations, begins, outs = conv_window(node)
    if matching_padding(sizes, kernel, strides, dilations, begins, outs) is not None:
        return None
    return begins, window_ends(sizes, kernel, strides, dilations, begins, outs)
