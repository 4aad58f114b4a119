"""Data-movement kernels: values are copied unchanged, so quantization must match.

TFLM RESHAPE / SQUEEZE / TRANSPOSE / CONCATENATION / PAD / STRIDED_SLICE / SPLIT copy raw
int8 (or int16) values (CONCATENATION and PAD check the parameters, the others assume them).
PAD fills with the output zero point; PADV2 with an int8 constant (same parameters).
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp.float_kernels import shape as layout
from qcompiler.errors import GraphError
from qcompiler.interp.int_kernels.registry import int_kernel
from qcompiler.numerics.qops.common import int_list
from qcompiler.numerics.qops.shape import pad_params, slice_params, split_params


def _check_same(node, in_indices=(0,)):
    """Refuse differing parameters between the given inputs and every output."""
    outs = [v.quant for v in node.outputs if v.quant is not None]
    for i in in_indices:
        v = node.inputs[i] if i < len(node.inputs) else None
        if v is None or v.quant is None:
            continue
        for q in outs:
            if not (np.array_equal(v.quant.scale, q.scale) and v.quant.dtype == q.dtype
                    and np.array_equal(v.quant.zero_point, q.zero_point)):
                raise GraphError(f"node {node.name} ({node.op}): input {v.name} {v.quant!r} and "
                                 f"output {q!r} must share quantization parameters (TFLM copies "
                                 "raw values); fix the quantizer")


def _reshape_to(node, x, shape):
    out = node.outputs[0].shape
    return x.reshape(out if out is not None else shape)


@int_kernel("Reshape")
def reshape(node, inputs):
    _check_same(node)
    x = inputs[0]
    shape = int_list(node, 1, "shape", inputs)
    if shape is not None and not int(node.attrs.get("allowzero", 0)):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [_reshape_to(node, x, shape)]


@int_kernel("Flatten")
def flatten(node, inputs):
    _check_same(node)
    x = inputs[0]
    axis = int(node.attrs.get("axis", 1)) % max(x.ndim, 1) if x.ndim else 0
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


@int_kernel("Identity")
def identity(node, inputs):
    _check_same(node)
    return [inputs[0]]


def _copying(move):
    """An int kernel for a pure layout op: shared parameters checked, values moved like `move`
    (the float kernel: the same index arithmetic on any dtype)."""
    def kernel(node, inputs):
        _check_same(node)
        return move(node, inputs)
    return kernel


for _op, _move in (("Squeeze", layout.squeeze), ("Unsqueeze", layout.unsqueeze), ("Transpose", layout.transpose)):
    int_kernel(_op)(_copying(_move))


@int_kernel("Concat")
def concat(node, inputs):
    _check_same(node, range(len(inputs)))
    return [np.concatenate(inputs, axis=int(node.attrs["axis"]))]


@int_kernel("Pad")
def pad(node, inputs):
    _check_same(node)
    x = inputs[0]
    p = pad_params(node, x.shape, inputs)
    crop = tuple(slice(max(-b, 0), x.shape[a] - max(-e, 0)) for a, (b, e) in enumerate(zip(p.before, p.after)))
    width = [(max(b, 0), max(e, 0)) for b, e in zip(p.before, p.after)]
    return [np.pad(x[crop], width, mode="constant", constant_values=p.fill).astype(x.dtype)]


@int_kernel("Slice")
def slice_(node, inputs):
    _check_same(node)
    x = inputs[0]
    p = slice_params(node, x.shape, inputs)
    index = []
    for b, st, c in zip(p.begin, p.step, p.count):
        stop = b + st * c
        index.append(slice(b, stop if stop >= 0 else None, st))
    return [np.ascontiguousarray(x[tuple(index)])]


@int_kernel("Split")
def split(node, inputs):
    _check_same(node)
    x = inputs[0]
    p = split_params(node, x.shape, inputs)
    return list(np.split(x, np.cumsum(p.sizes)[:-1], axis=p.axis))
