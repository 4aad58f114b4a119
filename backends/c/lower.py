"""Quantized IR -> a list of C kernel calls over buffers (the schedule), by an op table.

`EMITTERS: op -> fn(ctx, node)` is filled by the sibling modules (emit_conv, emit_eltwise,
emit_pool, emit_shape) with `@emitter(...)`. An emitter asks the context for its inputs in
the layout its kernel wants (`ctx.get`: constants become flash arrays laid out that way,
activations in another layout get a copy step), places its outputs (`ctx.define`, in place
of a dying input where the kernel allows it, or as a view of an input for reshapes) and adds
kernel calls (`ctx.call`) with a parameter struct (numbers from `qcompiler.numerics.qops`).

Buffers: graph inputs are the caller's `const int8_t *`, graph outputs the caller's output
pointers (a producer writes straight into them when the layout agrees), everything else
lives in the one scratch buffer at offsets the memory plan (`memory.py`) assigns.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from qcompiler.errors import BackendError, require_ops
from qcompiler.interp import WHY_NO_INT_KERNEL
from qcompiler.ir import Graph, Node, Value
from qcompiler.quant.precision import WHY_INT8

from qcompiler.backends.c.layout import Layout, channels_last_perm, identity, merge_dims, same_memory, strides_for

EMITTERS: dict[str, Callable] = {}
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")
MAX_RANK = 6
CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
          np.dtype(np.int64): "int64_t", np.dtype(np.uint8): "uint8_t"}
# ops lowered on int16 activations (TFLite's 16x8 scheme): every op of the integer reference's
# int16 set (qcompiler.quant.precision.INT16_OPS) and GlobalMaxPool; Resize by nearest neighbour
INT16_OPS = frozenset({"Conv", "Gemm", "Add", "Sub", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool",
                       "GlobalMaxPool", "ReduceMean", "Softmax", "Sigmoid", "Tanh", "Relu", "Clip", "LeakyRelu",
                       "Transpose", "Concat", "Pad", "Slice", "Split", "Resize", "Requantize", *VIEW_OPS})


def emitter(*ops: str):
    def deco(fn):
        for op in ops:
            EMITTERS[op] = fn
        return fn
    return deco


@dataclass(eq=False)
class Storage:
    """One buffer: the caller's input / output array or a region of the scratch buffer."""

    name: str
    nbytes: int
    kind: str                 # "input" | "output" | "scratch"
    index: int = 0            # input / output position
    values: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class Placed:
    """Where a value lives: a buffer, a byte offset into it, its layout and element type."""

    buf: Storage
    offset: int
    layout: Layout
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return self.layout.size * self.dtype.itemsize


@dataclass
class Call:
    """One kernel call: `fn(&params, args...)`; args are Placed, const names or literals."""

    fn: str
    struct: str | None
    fields: dict
    args: list
    node: str
    reads: list[Storage]
    writes: list[Storage]


class Lowering:
    def __init__(self, graph: Graph, io_layouts: dict[str, Layout]):
        self.graph = graph
        self.calls: list[Call] = []
        self.consts: dict[str, tuple[str, np.ndarray]] = {}   # name -> (C type, data)
        self._const_keys: dict[tuple, str] = {}
        self.placed: dict[str, Placed] = {}
        self.io_layouts = io_layouts
        self.node_index = 0
        self.node: Node | None = None
        index = {id(n): i for i, n in enumerate(graph.nodes)}
        outputs = {v.name for v in graph.outputs}
        self.last_use = {}
        for v in graph.values():
            uses = [index[id(c)] for c in v.consumers if id(c) in index]
            self.last_use[v.name] = len(graph.nodes) if v.name in outputs else max(uses, default=-1)
        self.inputs = {v.name: i for i, v in enumerate(graph.inputs)}
        self.outputs = {v.name: i for i, v in enumerate(graph.outputs)}
        self.output_bufs: dict[str, Storage] = {}
        self.padded: dict[str, tuple[Value, tuple[int, ...]]] = {}  # fused Pad output -> (its input, leading pads)
        self._homes = _output_homes(graph)
        for v in graph.inputs:
            buf = Storage(f"in{self.inputs[v.name]}", _nbytes(v), "input", self.inputs[v.name], [v.name])
            self.placed[v.name] = Placed(buf, 0, io_layouts[v.name], np.dtype(v.dtype))

    # ---- constants -------------------------------------------------------------------------
    def const(self, prefix: str, data, dtype) -> str:
        """A flash array (deduplicated by content); returns its C name."""
        arr = np.ascontiguousarray(np.asarray(data).astype(dtype).reshape(-1))
        key = (arr.dtype.str, arr.tobytes())
        if key not in self._const_keys:
            name = f"{prefix}{len(self.consts)}"
            self.consts[name] = (CTYPES[arr.dtype], arr)
            self._const_keys[key] = name
        return self._const_keys[key]

    # ---- values ----------------------------------------------------------------------------
    def get(self, v: Value, layout: Layout | None = None) -> Placed:
        """Where `v` lives, in `layout` if given (a copy step when it lives otherwise)."""
        if v.is_constant:
            raise BackendError(f"node {self.node.name} ({self.node.op}): input {v.name} is a constant where "
                               "the C backend expects an activation")
        p = self.placed.get(v.name)
        if p is None:
            raise BackendError(f"node {self.node.name} ({self.node.op}): input {v.name} was not computed")
        if layout is None or same_memory(p.layout, layout):
            return p if layout is None else Placed(p.buf, p.offset, layout, p.dtype)
        out = self.scratch(f"{v.name}:{'x'.join(map(str, layout.memory_shape))}", layout, p.dtype)
        self.copy(p, out)
        return out

    def get_const(self, v: Value, layout: Layout, dtype, prefix: str = "c") -> str:
        """A constant operand stored in `layout` (its data broadcast to the layout's view)."""
        data = np.asarray(v.data).reshape(layout.view) if np.asarray(v.data).size == layout.size \
            else np.broadcast_to(np.asarray(v.data), layout.view)
        return self.const(prefix, layout.store(data), dtype)

    def scratch(self, name: str, layout: Layout, dtype) -> Placed:
        dtype = np.dtype(dtype)
        buf = Storage(name, layout.size * dtype.itemsize, "scratch", values=[])
        return Placed(buf, 0, layout, dtype)

    def define(self, v: Value, layout: Layout, inplace: Placed | None = None) -> Placed:
        """Place the new value `v` in `layout`: the caller's output array when it is (or
        becomes, through reshapes) a graph output in that layout, else in place of `inplace`
        (a dying input of this node that the kernel may overwrite), else a new scratch buffer."""
        dtype = np.dtype(v.dtype)
        home = self._homes.get(v.name)
        if home is not None:
            _, out_value = home
            if same_memory(layout, self.io_layouts[out_value.name]):  # reshapes keep the order
                p = Placed(self._output_buf(out_value), 0, layout, dtype)
                p.buf.values.append(v.name)
                self.placed[v.name] = p
                return p
        if inplace is not None and self.dies_here(inplace.buf) and inplace.nbytes == layout.size * dtype.itemsize \
                and inplace.dtype.itemsize == dtype.itemsize and v.name not in self.outputs:
            p = Placed(inplace.buf, inplace.offset, layout, dtype)
        else:
            p = self.scratch(v.name, layout, dtype)
        p.buf.values.append(v.name)
        self.placed[v.name] = p
        return p

    def view(self, v: Value, src: Placed) -> Placed:
        """`v` is `src`'s memory under another ONNX shape (reshape-like ops): no step."""
        p = Placed(src.buf, src.offset, src.layout, np.dtype(v.dtype))
        p.buf.values.append(v.name)
        self.placed[v.name] = p
        return p

    def dies_here(self, buf: Storage) -> bool:
        """Is every value in `buf` read for the last time by the current node?"""
        return buf.kind == "scratch" and all(self.last_use.get(n, -1) <= self.node_index for n in buf.values)

    def _output_buf(self, v: Value) -> Storage:
        if v.name not in self.output_bufs:
            i = self.outputs[v.name]
            self.output_bufs[v.name] = Storage(f"out{i}", _nbytes(v), "output", i, [])
        return self.output_bufs[v.name]

    # ---- steps -----------------------------------------------------------------------------
    def call(self, fn: str, struct: str | None, fields: dict, args: list, node: str | None = None) -> None:
        reads = [a.buf for a in args[:-1] if isinstance(a, Placed)]
        writes = [args[-1].buf] if args and isinstance(args[-1], Placed) else []
        self.calls.append(Call(fn, struct, fields, args, node or (self.node.name if self.node else ""),
                               reads, writes))

    def copy(self, src: Placed, dst: Placed, dst_offset: int = 0) -> None:
        """Strided copy of `src`'s elements into `dst` laid out as dst.layout."""
        plan = strides_for(src.layout, dst.layout)
        if plan is None:  # two reshaped views: through the plain order
            mid = self.scratch(f"{dst.buf.name}:plain", Layout.plain(src.layout.view), src.dtype)
            self.copy(src, mid)
            plan = strides_for(mid.layout, dst.layout)
            src = mid
        self.strided_copy(src, dst, *plan, dst_offset=dst_offset)

    def strided_copy(self, src: Placed, dst: Placed, dims, s_strides, d_strides, src_offset: int = 0,
                     dst_offset: int = 0) -> None:
        dims, s_strides, d_strides = merge_dims(dims, s_strides, d_strides)
        if len(dims) > MAX_RANK:
            raise BackendError(f"node {self.node.name}: a copy over {len(dims)} axes (at most {MAX_RANK})")
        pad = MAX_RANK - len(dims)
        self.call("qcc_copy", "qcc_copy_params", {
            "rank": len(dims), "elem_bytes": src.dtype.itemsize,
            "dims": list(dims) + [1] * pad, "src_strides": list(s_strides) + [0] * pad,
            "dst_strides": list(d_strides) + [0] * pad, "src_offset": src_offset, "dst_offset": dst_offset,
        }, [src, dst])


def _nbytes(v: Value) -> int:
    return int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize


def _output_homes(graph: Graph) -> dict[str, tuple[str, Value]]:
    """value name -> (output name, output value) for graph outputs and the values they are
    reshapes of (single-consumer chains), which may be computed straight into the output."""
    homes = {}
    inputs = {v.name for v in graph.inputs}
    outputs = {v.name for v in graph.outputs}
    for out in graph.outputs:
        if out.is_constant or out.name in inputs or out.name in homes:
            continue
        v = out
        homes[v.name] = (out.name, out)
        while v.producer is not None and v.producer.op in VIEW_OPS:
            src = v.producer.inputs[0]
            if src is None or src.is_constant or src.name in inputs or src.name in outputs \
                    or len(src.consumers) != 1:
                break
            homes[src.name] = (out.name, out)
            v = src
    return homes


def _feeds_only_convs(v: Value) -> bool:
    """Is `v` read only as the data input of Convs, directly or through Pads (which may become
    the Conv's padding)?"""
    for u in v.consumers:
        if u.op == "Pad" and u.inputs[0] is v:
            if not _feeds_only_convs(u.outputs[0]):
                return False
        elif not (u.op == "Conv" and u.inputs[0] is v):
            return False
    return bool(v.consumers)


def io_layouts(graph: Graph) -> dict[str, Layout]:
    """Graph I/O layouts, as the TFLite backend chooses them: rank-4 NHWC (unless only
    Transposes touch it), rank-3 NWC when only 1-D convolutions read / write it, else ONNX."""
    out = {}
    for v, is_input in [(v, True) for v in graph.inputs] + [(v, False) for v in graph.outputs]:
        rank = len(v.shape)
        users = list(v.consumers) if is_input else [v.producer] if v.producer is not None else []
        if users and all(u.op == "Transpose" for u in users):
            perm = identity(rank)
        elif rank == 3:
            conv = _feeds_only_convs(v) if is_input else bool(users) and users[0].op == "Conv"
            perm = channels_last_perm(3) if conv else identity(3)
        else:
            perm = channels_last_perm(rank)
        out.setdefault(v.name, Layout.transposed(v.shape, perm))
    return out


def why_unsupported(op: str) -> str | None:
    """The C kernels reproduce the integer reference: an op it has no kernel for is refused
    for the reference's reason."""
    return None if op in EMITTERS else WHY_NO_INT_KERNEL.get(op)


def why_unsupported_int16(op: str) -> str | None:
    """Why the C backend refuses `op` on int16 activations: the integer reference has no int16
    form of it to reproduce (the quantizer keeps such ops int8 behind QUANTIZE conversions)."""
    if op in INT16_OPS:
        return None
    return WHY_INT8.get(op, f"the integer reference has no int16 {op} kernel") + \
        " (qcc keeps it int8 between QUANTIZE ops in int16 models)"


def _int16_nodes(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes
            if any(v is not None and not v.is_constant and v.quant is not None and v.quant.dtype == np.int16
                   for v in list(n.inputs) + list(n.outputs))]


def check_supported(graph: Graph) -> None:
    require_ops(graph.nodes, EMITTERS, "the model (C backend)", {op: why_unsupported(op) for op in WHY_NO_INT_KERNEL})
    wide = _int16_nodes(graph)
    require_ops(wide, INT16_OPS, "the model's int16 nodes (C backend)",
                {n.op: why_unsupported_int16(n.op) for n in wide})


def lower(graph: Graph) -> Lowering:
    """Lower every node; the graph outputs end in the caller's arrays in their I/O layout."""
    check_supported(graph)
    ctx = Lowering(graph, io_layouts(graph))
    for i, node in enumerate(graph.nodes):
        ctx.node_index, ctx.node = i, node
        EMITTERS[node.op](ctx, node)
    ctx.node_index = len(graph.nodes)
    for v in graph.outputs:
        want = ctx.io_layouts[v.name]
        if v.is_constant:
            raise BackendError(f"graph output {v.name} is a constant; the C backend computes outputs")
        p = ctx.placed[v.name]
        if p.buf.kind == "output" and p.buf is ctx.output_bufs.get(v.name) and same_memory(p.layout, want):
            continue
        dst = Placed(ctx._output_buf(v), 0, want, np.dtype(v.dtype))
        ctx.copy(p, dst)
    return ctx
