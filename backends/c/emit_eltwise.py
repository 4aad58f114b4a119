"""Elementwise ops: Add / Sub / Mul / PRelu -> qcc_binary (int16: qcc_binary_s16); one-input int8 ops
-> a lookup table; one-input int16 ops (Relu, Clip, LeakyRelu, Sigmoid, Tanh) -> qcc_act_s16.

Binary ops broadcast by strides (0 along broadcast axes) over the output's memory order, up
to six axes after merging; the output may overwrite a same-shaped input that dies here.

An int8 op of one activation (Sigmoid, Tanh, Relu, Clip, LeakyRelu, HardSwish, Rsqrt,
Requantize from int8) has at most 256 distinct inputs, so its C form is a 256-entry table
filled at compile time by running the integer reference kernel itself on every input code
(Rsqrt: qops' table, since the reference refuses codes below the zero point): TFLM's
integer algorithms bit for bit by construction, one load per element at run time. An int16
op has 65536 input codes: it runs qcc_act_s16 on the parameters of qops (relu_params,
clip_params, leaky_relu_params, logistic16_params / tanh16_params with the 256-entry sigmoid table).
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.interp import INT_KERNELS
from qcompiler.numerics import qops
from qcompiler.numerics.qops.act16 import Logistic16Params

from qcompiler.backends.c.layout import Layout, merge_dims
from qcompiler.backends.c.lower import MAX_RANK, Placed, emitter

BINARY_OPS = {"Add": 0, "Sub": 1, "Mul": 2, "PRelu": 3}
LUT_OPS = ("Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu", "HardSwish", "Rsqrt", "Requantize")


def _binary_fields(node) -> dict:
    if node.op in ("Add", "Sub"):
        p = qops.add_params(node)
        return dict(a_zp=p.input1_zero_point, b_zp=p.input2_zero_point, out_zp=p.output_zero_point,
                    left_shift=p.left_shift, a_mult=p.input1_multiplier, a_shift=p.input1_shift,
                    b_mult=p.input2_multiplier, b_shift=p.input2_shift, out_mult=p.output_multiplier,
                    out_shift=p.output_shift, act_min=p.act_min, act_max=p.act_max)
    if node.op == "Mul":
        p = qops.mul_params(node)
        return dict(a_zp=p.input1_zero_point, b_zp=p.input2_zero_point, out_zp=p.output_zero_point,
                    left_shift=0, a_mult=0, a_shift=0, b_mult=0, b_shift=0, out_mult=p.multiplier,
                    out_shift=p.shift, act_min=p.act_min, act_max=p.act_max)
    p = qops.prelu_params(node)
    return dict(a_zp=p.input_zero_point, b_zp=p.alpha_zero_point, out_zp=p.output_zero_point, left_shift=0,
                a_mult=p.identity_multiplier, a_shift=p.identity_shift, b_mult=p.alpha_multiplier,
                b_shift=p.alpha_shift, out_mult=0, out_shift=0, act_min=-128, act_max=127)


def _aligned_strides(shape, strides, out_shape) -> list[int]:
    """Strides of an operand broadcast to `out_shape` (right-aligned; 0 where it repeats)."""
    pad = len(out_shape) - len(shape)
    full = [0] * pad + [s if d != 1 else 0 for d, s in zip(shape, strides)]
    return [0 if out_shape[i] != 1 and (i < pad or shape[i - pad] == 1) else full[i] for i in range(len(out_shape))]


def _operand(ctx, v, y_shape, layout: Layout):
    """(pointer arg, strides in the output's memory order) of one operand."""
    ctype = np.int16 if v.quant is not None and v.quant.dtype == np.int16 else np.int8
    if tuple(v.shape) == tuple(y_shape):
        arg = ctx.get_const(v, layout, ctype, "k") if v.is_constant else ctx.get(v, layout)
        return arg, None
    if v.is_constant:
        plain = Layout.plain(v.shape)
        arg = ctx.get_const(v, plain, ctype, "k")
    else:
        arg = ctx.get(v)
        if not arg.layout.is_transpose_of(v.shape):
            arg = ctx.get(v, Layout.plain(v.shape))
        plain = arg.layout
    axis = _aligned_strides(v.shape, plain.axis_strides(), y_shape)
    return arg, [axis[p] for p in layout.perm]


@emitter(*BINARY_OPS)
def binary(ctx, node):
    a, b = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    shape = tuple(y.shape)
    full = [v for v in (a, b) if not v.is_constant and tuple(v.shape) == shape]
    layout = ctx.get(full[0]).layout if full else None
    if layout is None or (not layout.is_transpose_of(shape) and any(tuple(v.shape) != shape for v in (a, b))):
        layout = Layout.channels_last(shape)
    (pa, sa), (pb, sb) = _operand(ctx, a, shape, layout), _operand(ctx, b, shape, layout)
    dying = [p for p, s in ((pa, sa), (pb, sb)) if s is None and isinstance(p, Placed) and ctx.dies_here(p.buf)]
    dst = ctx.define(y, layout, inplace=dying[0] if dying else None)
    contiguous = list(Layout.plain(layout.memory_shape).axis_strides())
    dims = layout.memory_shape
    dims, sa, sb = merge_dims(dims, sa or contiguous, sb or contiguous)
    if len(dims) > MAX_RANK:
        raise BackendError(f"node {node.name} ({node.op}): broadcasting over {len(dims)} axes (at most {MAX_RANK})")
    pad = MAX_RANK - len(dims)
    fields = dict(rank=len(dims), dims=list(dims) + [1] * pad, a_strides=list(sa) + [0] * pad,
                  b_strides=list(sb) + [0] * pad, op=BINARY_OPS[node.op], **_binary_fields(node))
    ctx.call("qcc_binary_s16" if np.dtype(y.dtype).itemsize == 2 else "qcc_binary", "qcc_binary_params", fields,
             [pa, pb, dst])


# ---- one-input ops as tables ------------------------------------------------------------------

CODES = np.arange(-128, 128, dtype=np.int8)


def lookup_table(node) -> np.ndarray:
    """The op's output for every int8 input code -128..127 (from the integer reference)."""
    if node.op == "Rsqrt":
        return np.asarray(qops.rsqrt_params(node).table)
    args = [CODES] + [None if v is None else (np.asarray(v.data) if v.is_constant else None)
                      for v in node.inputs[1:]]
    if any(a is None and v is not None for a, v in zip(args[1:], node.inputs[1:])):
        raise BackendError(f"node {node.name} ({node.op}): only the first input may be computed at run time")
    return np.asarray(INT_KERNELS[node.op](node, args)[0]).reshape(256)


@emitter(*LUT_OPS)
def unary(ctx, node):
    x, y = node.inputs[0], node.outputs[0]
    in_bytes, out_bytes = np.dtype(x.dtype).itemsize, np.dtype(y.dtype).itemsize
    src = ctx.get(x)
    if in_bytes != 1 and node.op != "Requantize":
        _act16(ctx, node, src)
        return
    if in_bytes != 1:
        p = qops.requantize_params(node)
        dst = ctx.define(y, src.layout, inplace=src)
        ctx.call("qcc_requantize_s16_s16" if out_bytes == 2 else "qcc_requantize_s16_s8", "qcc_requantize_params",
                 dict(count=src.layout.size, in_zp=p.input_zero_point, out_zp=p.output_zero_point,
                      mult=p.multiplier, shift=p.shift, qmin=p.qmin, qmax=p.qmax), [src, dst])
        return
    table = lookup_table(node)
    dst = ctx.define(y, src.layout, inplace=src)
    fn, struct, ctype = (("qcc_lut_s8_s16", "qcc_lut16_params", np.int16) if out_bytes == 2
                         else ("qcc_lut_s8", "qcc_lut_params", np.int8))
    ctx.call(fn, struct, dict(count=src.layout.size, table=ctx.const("t", table, ctype)), [src, dst])


# ---- one-input int16 ops -------------------------------------------------------------------------

I16 = dict(act_min=-32768, act_max=32767)


def _relu16(node) -> dict:
    if node.op == "Clip" and not qops.clip_params(node).relu:   # RELU6, MINIMUM / MAXIMUM: raw values
        p = qops.clip_params(node)
        return {"op": 1, "act_min": p.act_min, "act_max": p.act_max}
    p = qops.relu_params(node)
    return {"in_zp": p.input_zero_point, "out_zp": p.output_zero_point, "mult": p.multiplier, "shift": p.shift,
            "act_min": p.act_min, "act_max": p.act_max}


def _leaky_relu16(node) -> dict:
    p = qops.leaky_relu_params(node)
    return {"op": 2, "in_zp": p.input_zero_point, "out_zp": p.output_zero_point, "mult": p.identity_multiplier,
            "shift": p.identity_shift, "mult2": p.alpha_multiplier, "shift2": p.alpha_shift}


def _sigmoid_tanh16(node) -> dict:
    p = qops.logistic_params(node) if node.op == "Sigmoid" else qops.tanh_params(node)
    assert isinstance(p, Logistic16Params)
    return {"op": 3 if node.op == "Sigmoid" else 4, "mult": p.input_multiplier, "shift": p.input_left_shift,
            "table": p.table}


# op -> qcc_act16_params fields beyond the defaults (op 0 = RELU, zero points 0, the int16 range)
ACT16 = {"Relu": _relu16, "Clip": _relu16, "LeakyRelu": _leaky_relu16, "Sigmoid": _sigmoid_tanh16,
         "Tanh": _sigmoid_tanh16}
ACT16_OPS = tuple(ACT16)


def _act16_fields(node) -> dict:
    base = dict(op=0, in_zp=0, out_zp=0, mult=0, shift=0, mult2=0, shift2=0, **I16, table="NULL")
    return {**base, **ACT16[node.op](node)}


def _act16(ctx, node, src) -> None:
    x, y = node.inputs[0], node.outputs[0]
    if node.op not in ACT16_OPS or np.dtype(y.dtype).itemsize != 2:
        raise BackendError(f"node {node.name} ({node.op}): no int16 -> {np.dtype(y.dtype).name} {node.op} kernel "
                           f"(int16: {', '.join(ACT16_OPS)} and Requantize)")
    if any(v is not None and not v.is_constant for v in node.inputs[1:]):
        raise BackendError(f"node {node.name} ({node.op}): only the first input may be computed at run time")
    fields = _act16_fields(node)
    if not isinstance(fields["table"], str):
        fields["table"] = ctx.const("t", fields["table"], np.int32)
    dst = ctx.define(y, src.layout, inplace=src)
    ctx.call("qcc_act_s16", "qcc_act16_params", dict(count=src.layout.size, **fields), [src, dst])
