"""Lowering machinery: the op table, layouts, and the context that builds TFLite tensors.

Layouts. The IR is ONNX-shaped (NCHW). Every activation gets a *layout* when
its TFLite tensor is created: a permutation `perm` with

    tflite_tensor = onnx_tensor.transpose(perm)

Rank-4 tensors default to NHWC, perm (0, 2, 3, 1); other ranks to the identity.
Ops that do not care about layout (elementwise, Transpose, reshapes, Concat,
Split, Slice, Pad, ReduceMean) keep or derive the layout of their input and
remap their axes through it, so a value is only transposed when a consumer
really needs another order: `ctx.get(v, perm)` then emits one TRANSPOSE (or
a RESHAPE when the two orders differ only by size-1 axes) and caches it.

Integer values are never changed by lowering: each op computes in TFLite what
the integer reference computes on the NCHW graph.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from qcompiler.errors import BackendError
from qcompiler.ir import Graph, Node, Value
from qcompiler.ir.activation import clamp_of
from qcompiler.numerics.qops import activation_clamp

from qcompiler.backends.tflite.flatbuffer import TflOperator, TflTensor

NHWC = (0, 2, 3, 1)
NWC = (0, 2, 1)
LOWERINGS: dict[str, Callable] = {}


def lowering(*ops: str):
    """Register `fn(ctx, node)` as the lowering of ONNX ops `ops`."""
    def deco(fn):
        for op in ops:
            LOWERINGS[op] = fn
        return fn
    return deco


# ---- layout algebra ---------------------------------------------------------------

def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def default_perm(rank: int) -> tuple[int, ...]:
    """Channels-last for images (NCHW -> NHWC); everything else as in ONNX."""
    return NHWC if rank == 4 else identity(rank)


def permute(shape, perm) -> tuple[int, ...]:
    return tuple(int(shape[p]) for p in perm)


def nonunit_order(shape, perm) -> list[int]:
    """The ONNX axes of size > 1 in the order a layout stores them."""
    return [a for a in perm if shape[a] != 1]


def same_order(shape, p, q) -> bool:
    """True when two layouts hold the same bytes (they differ only by size-1 axes)."""
    return nonunit_order(shape, p) == nonunit_order(shape, q)


def place_unit_axes(order: list[int], shape, prefer) -> tuple[int, ...]:
    """A full layout whose non-unit axes come in `order`; `prefer` if it qualifies.

    Size-1 axes can sit anywhere without moving data; a qualifying `prefer`
    (usually the rank's default) saves later RESHAPEs.
    """
    if prefer is not None and nonunit_order(shape, prefer) == list(order):
        return tuple(prefer)
    out = list(order)
    for u in (a for a in range(len(shape)) if shape[a] == 1):
        later = [i for i, a in enumerate(out) if a > u]
        out.insert(later[0] if later else len(out), u)
    return tuple(out)


def reshape_groups(in_shape, out_shape) -> list[tuple[list[int], list[int]]]:
    """Minimal groups (input axes, output axes) of non-unit axes with equal element counts."""
    ia = [a for a, d in enumerate(in_shape) if d != 1]
    oa = [a for a, d in enumerate(out_shape) if d != 1]
    groups, i, j = [], 0, 0
    while i < len(ia) and j < len(oa):
        gi, go = [ia[i]], [oa[j]]
        pi, po = in_shape[ia[i]], out_shape[oa[j]]
        i, j = i + 1, j + 1
        while pi != po:
            if pi < po:
                gi.append(ia[i])
                pi *= in_shape[ia[i]]
                i += 1
            else:
                go.append(oa[j])
                po *= out_shape[oa[j]]
                j += 1
        groups.append((gi, go))
    return groups


def reshape_perm(in_shape, in_perm, out_shape, prefer=None) -> tuple[int, ...] | None:
    """Layout of a reshape's output such that a TFLite RESHAPE of the input in `in_perm`
    yields exactly the ONNX reshape; None when the input's byte order does not allow it.

    The reshape splits/merges groups of axes; the input layout must keep each
    group's axes adjacent and in ONNX order. The groups may be permuted: the
    output then stores its groups in the same permuted order.
    """
    groups = reshape_groups(in_shape, out_shape)
    owner = {a: k for k, (gi, _) in enumerate(groups) for a in gi}
    order = nonunit_order(in_shape, in_perm)
    seq, pos = [], 0
    while pos < len(order):
        k = owner[order[pos]]
        gi = groups[k][0]
        if order[pos:pos + len(gi)] != gi:
            return None
        seq.append(k)
        pos += len(gi)
    return place_unit_axes([a for k in seq for a in groups[k][1]], out_shape, prefer)


def transpose_perm(src_perm, dst_perm) -> list[int]:
    """TFLite TRANSPOSE permutation turning a tensor stored in src_perm into dst_perm."""
    return [list(src_perm).index(a) for a in dst_perm]


def layout_name(rank: int, perm) -> str:
    perm = tuple(perm)
    if perm == identity(rank):
        return "same"
    return {NHWC: "NHWC", NWC: "NWC"}.get(perm, "perm" + "".join(map(str, perm)))


# ---- the context -------------------------------------------------------------------

def quant_kw(q) -> dict:
    if q is None:
        return {}
    return {"scale": [float(s) for s in q.scale], "zero_point": [int(z) for z in q.zero_point]}


class LoweringContext:
    """Accumulates TFLite tensors and operators while walking the graph in order."""

    def __init__(self, graph: Graph, io_perms: dict[int, tuple[int, ...]]):
        self.graph = graph
        self.tensors: list[TflTensor] = []
        self.ops: list[TflOperator] = []
        self.io_perms = io_perms                       # id(graph input/output) -> its layout
        self.homes: dict[int, tuple[int, tuple]] = {}  # id(value) -> (tensor, layout) as produced
        self.copies: dict[tuple, int] = {}            # (id(value), layout) -> tensor
        # value -> ONNX column index of each TFLite column (a Flatten feeding only Gemms)
        self.fc_columns: dict[int, np.ndarray] = {}
        # value -> NHWC tensor holding it already padded for its one Conv reader (a conversion to
        # int16 padded on the int8 side: lower_quant.py)
        self.prepadded: dict[int, int] = {}
        self._outputs = {id(v) for v in graph.outputs}

    # -- tensors and ops
    def add(self, t: TflTensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, q=None, qdim: int = 0) -> int:
        data = np.ascontiguousarray(data)
        return self.add(TflTensor(name, data.shape, np.dtype(data.dtype).name, data=data,
                                  quantized_dimension=qdim, **quant_kw(q)))

    def int32(self, name: str, values) -> int:
        """An int32 constant (shapes, axes, paddings: the second inputs of many ops)."""
        return self.const(name, np.asarray(values, np.int32))

    def scratch(self, name: str, shape, like: Value) -> int:
        """An intermediate tensor with `like`'s dtype and quantization."""
        return self.add(TflTensor(name, tuple(shape), like.dtype.name, **quant_kw(like.quant)))

    def op(self, opcode: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append(TflOperator(opcode, inputs, outputs, options))

    # -- layouts of values
    def is_output(self, v: Value) -> bool:
        return id(v) in self._outputs

    def preferred(self, v: Value) -> tuple[int, ...]:
        """The layout v should be produced in: its I/O layout, else the rank's default."""
        return self.io_perms.get(id(v)) or default_perm(len(v.shape))

    def perm(self, v: Value) -> tuple[int, ...]:
        """Layout of v as produced (constants: the default)."""
        if v.is_constant:
            return default_perm(len(v.shape))
        return self._home(v)[1]

    def _home(self, v: Value):
        if id(v) not in self.homes:
            raise BackendError(f"value {v.name} is used before it is produced (internal)")
        return self.homes[id(v)]

    def _name(self, v: Value, perm, copy: bool = False) -> str:
        """v's name for its I/O tensor and (if not I/O) its first tensor; copies get the layout."""
        io = self.is_output(v) or any(v is i for i in self.graph.inputs)
        keep = perm == self.preferred(v) if io else not copy
        return v.name if keep else f"{v.name}_{layout_name(len(perm), perm)}"

    def define(self, v: Value, perm=None) -> int:
        """Create the tensor an op writes for activation v, stored in layout perm."""
        perm = tuple(self.preferred(v) if perm is None else perm)
        if id(v) in self.homes:
            raise BackendError(f"value {v.name} is produced twice (internal)")
        idx = self.add(TflTensor(self._name(v, perm), permute(v.shape, perm), v.dtype.name,
                                 **quant_kw(v.quant)))
        self.homes[id(v)] = (idx, perm)
        self.copies[(id(v), perm)] = idx
        return idx

    def alias(self, v: Value, tensor: int, perm) -> None:
        """v is stored in an existing tensor (ops that move no data: Identity, Transpose)."""
        perm = tuple(perm)
        self.homes[id(v)] = (tensor, perm)
        self.copies[(id(v), perm)] = tensor

    def get(self, v: Value, perm=None) -> int:
        """Tensor holding v in layout perm (default: as produced), converting at most once."""
        if v.is_constant:
            return self.constant(v, perm)
        if id(v) in self.fc_columns:
            raise BackendError(f"value {v.name} holds permuted columns for a FULLY_CONNECTED "
                               "and cannot feed other ops (internal)")
        src, home = self._home(v)
        perm = home if perm is None else tuple(perm)
        key = (id(v), perm)
        if key not in self.copies:
            dst = self.add(TflTensor(self._name(v, perm, copy=True), permute(v.shape, perm),
                                     v.dtype.name, **quant_kw(v.quant)))
            if same_order(v.shape, home, perm):
                self.reshape(src, dst, permute(v.shape, perm))
            else:
                self.op("TRANSPOSE", [src, self.int32(f"{v.name}_perm", transpose_perm(home, perm))],
                        [dst])
            self.copies[key] = dst
        return self.copies[key]

    def constant(self, v: Value, perm=None, rank: int | None = None) -> int:
        """A constant operand, broadcast to `rank` (leading 1s) and stored in layout perm."""
        data = np.asarray(v.data)
        rank = data.ndim if rank is None else rank
        data = data.reshape((1,) * (rank - data.ndim) + data.shape)
        perm = default_perm(rank) if perm is None else tuple(perm)
        q = v.quant
        qdim = 0
        if q is not None and q.axis is not None:
            qdim = perm.index(q.axis + rank - np.asarray(v.data).ndim)
        return self.const(v.name, data.transpose(perm), q, qdim)

    def reshape(self, src: int, dst: int, shape) -> None:
        self.op("RESHAPE", [src, self.int32(f"{self.tensors[dst].name}_shape", list(shape))], [dst],
                new_shape=list(shape))

    def operand(self, v: Value, rank: int, perm) -> int:
        """An elementwise operand of an op whose output has `rank` and layout perm.

        ONNX broadcasts from the right: a lower-rank operand gets leading 1s
        (constants directly; activations through a RESHAPE).
        """
        if v.is_constant:
            return self.constant(v, perm, rank)
        if len(v.shape) == rank:
            return self.get(v, perm)
        shape = (1,) * (rank - len(v.shape)) + tuple(v.shape)
        target = permute(shape, perm)
        src = self.get(v, identity(len(v.shape)))
        out = self.scratch(f"{v.name}_rank{rank}", target, v)
        if same_order(shape, identity(rank), perm):  # only size-1 axes move
            self.reshape(src, out, target)
            return out
        expanded = self.scratch(f"{v.name}_rank{rank}_onnx", shape, v)
        self.reshape(src, expanded, shape)
        self.op("TRANSPOSE", [expanded, self.int32(f"{v.name}_perm", list(perm))], [out])
        return out

    def common_perm(self, node: Node, rank: int) -> tuple[int, ...]:
        """Layout for an op mixing several inputs: the output's I/O layout, else the
        default if an input already has it, else the first full-rank input's layout."""
        y = node.outputs[0]
        if id(y) in self.io_perms:
            return self.io_perms[id(y)]
        perms = [self.perm(v) for v in node.inputs
                 if v is not None and not v.is_constant and len(v.shape) == rank]
        if not perms or default_perm(rank) in perms:
            return default_perm(rank)
        return perms[0]


# a fused clamp (qcompiler/ir/activation.py) -> TFLite's ActivationFunctionType
FUSED_ACTIVATIONS = {None: "NONE", (0.0, math.inf): "RELU", (0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1"}


def by_range(clamp) -> bool:
    """A clamp TFLite has no fused activation for, which the int8 range of the output can be
    (it contains 0): the scheme then gives that output exactly the clamp's range."""
    return clamp not in FUSED_ACTIVATIONS and clamp[0] <= 0.0 <= clamp[1]


def fused(node: Node) -> str:
    """The node's fused clamp as a TFLite fused_activation_function: one of TFLite's, NONE
    when the output's int8 range already is the clamp, RELU for [0, hi] on an int16 output whose
    symmetric range ends at hi; others are refused."""
    clamp = clamp_of(node)
    if clamp in FUSED_ACTIVATIONS:
        return FUSED_ACTIVATIONS[clamp]
    q = node.outputs[0].quant
    if by_range(clamp) and q is not None and activation_clamp(node) == (q.qmin, q.qmax):
        return "NONE"
    if by_range(clamp) and clamp[0] == 0.0 and q is not None and q.dtype == np.int16 \
            and activation_clamp(node) == (0, q.qmax):
        return "RELU"  # [0, hi] in int16: symmetric range [-hi, hi] (zero point 0), RELU cuts at 0
    raise BackendError(unfusable(node) + ("" if q is None else f"; its output int8(s={float(q.scale[0]):g}, "
                                          f"zp={int(q.zero_point[0])}) does not saturate there"))


def unfusable(node: Node) -> str:
    return (f"node {node.name} ({node.op}): fused clamp [{clamp_of(node)[0]:g}, {clamp_of(node)[1]:g}] "
            "has no TFLite fused activation (RELU [0, inf], RELU6 [0, 6], RELU_N1_TO_1 [-1, 1]) and the "
            "output's int8 range can realize only clamps containing 0")
