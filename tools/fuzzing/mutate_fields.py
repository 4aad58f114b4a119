"""Mutators of ONNX protobuf fields (family "proto", part 1): graph input/output shapes and
dtypes, value_info, node attributes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .case import Ctx, nm, real_inputs


WEIRD_DIMS = [0, -1, -7, 2, 3, 12345, 10 ** 9, 2 ** 31, 2 ** 40]
DTYPES = [("BOOL", TensorProto.BOOL), ("INT32", TensorProto.INT32), ("INT64", TensorProto.INT64),
          ("INT8", TensorProto.INT8), ("UINT8", TensorProto.UINT8), ("STRING", TensorProto.STRING),
          ("FLOAT16", TensorProto.FLOAT16), ("DOUBLE", TensorProto.DOUBLE),
          ("BFLOAT16", TensorProto.BFLOAT16), ("COMPLEX64", TensorProto.COMPLEX64),
          ("UNDEFINED(0)", 0), ("unknown 999", 999), ("unknown -3", -3)]


def m_input_dim(c: Ctx):
    inp = c.choice(real_inputs(c.model))
    dims = inp.type.tensor_type.shape.dim
    k = c.rng.randrange(len(dims))
    v = c.choice(WEIRD_DIMS + ["param"])
    if v == "param":
        dims[k].Clear()
        dims[k].dim_param = c.choice(["N", "", "batch", "h"])
        c.note(f"graph input {nm(inp.name)} dim {k} := dim_param {dims[k].dim_param!r}")
    else:
        dims[k].dim_value = v
        c.note(f"graph input {nm(inp.name)} dim {k} := {v}")


def m_input_rank(c: Ctx):
    inp = c.choice(real_inputs(c.model))
    shape = inp.type.tensor_type.shape
    op = c.choice(["drop", "add", "clear", "scalar"])
    if op == "drop" and len(shape.dim) > 1:
        del shape.dim[c.rng.randrange(len(shape.dim))]
    elif op == "add":
        shape.dim.add().dim_value = c.choice([1, 2, 3])
    elif op == "clear":
        inp.type.tensor_type.ClearField("shape")
    else:
        del shape.dim[:]
    c.note(f"graph input {nm(inp.name)} shape {op} -> "
           f"{[d.dim_value or d.dim_param for d in shape.dim] if inp.type.tensor_type.HasField('shape') else None}")


def m_output_shape(c: Ctx):
    out = c.choice(list(c.model.graph.output))
    shape = out.type.tensor_type.shape
    op = c.choice(["dim", "dim", "dim", "rank+", "rank-", "clear"])
    if op == "dim" and len(shape.dim):
        k = c.rng.randrange(len(shape.dim))
        v = c.choice([12345, 0, -1, 2, 11, 10 ** 9])
        shape.dim[k].dim_value = v
        c.note(f"graph output {nm(out.name)} dim {k} := {v}")
    elif op == "rank+":
        shape.dim.add().dim_value = c.choice([1, 7])
        c.note(f"graph output {nm(out.name)} gains a dim -> {[d.dim_value for d in shape.dim]}")
    elif op == "rank-" and len(shape.dim) > 1:
        del shape.dim[-1]
        c.note(f"graph output {nm(out.name)} loses its last dim -> {[d.dim_value for d in shape.dim]}")
    else:
        out.type.tensor_type.ClearField("shape")
        c.note(f"graph output {nm(out.name)} shape cleared")
    c.case.same_function = True


def _inferred(c: Ctx) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(c.model)
    except Exception:
        return c.model


def m_value_info(c: Ctx):
    m = _inferred(c)
    c.model = m
    vis = [v for v in m.graph.value_info if v.type.tensor_type.HasField("shape")]
    if not vis:
        c.note("no value_info to corrupt")
        return
    vi = c.choice(vis)
    dims = vi.type.tensor_type.shape.dim
    op = c.choice(["dim", "dim", "dim", "dtype", "rank", "clear"])
    if op == "dim" and len(dims):
        k = c.rng.randrange(len(dims))
        old = dims[k].dim_value
        v = c.choice([old + 1, old * 2, max(old - 1, 0), 12345, 0, -3, 1])
        dims[k].dim_value = v
        c.note(f"value_info {nm(vi.name)} dim {k}: {old} -> {v}")
    elif op == "dtype":
        name, code = c.choice(DTYPES)
        vi.type.tensor_type.elem_type = code
        c.note(f"value_info {nm(vi.name)} elem_type := {name}")
    elif op == "rank":
        dims.add().dim_value = 2
        c.note(f"value_info {nm(vi.name)} gains a dim of 2")
    else:
        vi.type.tensor_type.ClearField("shape")
        c.note(f"value_info {nm(vi.name)} shape cleared")
    c.case.same_function = op != "dtype"


def m_io_dtype(c: Ctx):
    which = c.choice(["input", "input", "output"])
    vi = c.choice(real_inputs(c.model) if which == "input" else list(c.model.graph.output))
    name, code = c.choice(DTYPES)
    vi.type.tensor_type.elem_type = code
    c.note(f"graph {which} {nm(vi.name)} elem_type := {name}")


INTERESTING_ATTRS = ("group", "auto_pad", "pads", "strides", "kernel_shape", "dilations", "axis",
                     "epsilon", "momentum", "alpha", "beta", "transA", "transB", "perm", "ceil_mode",
                     "count_include_pad", "keepdims", "min", "max", "storage_order")


def mutate_attr_value(c: Ctx, a: onnx.AttributeProto) -> str:
    t = a.type
    A = onnx.AttributeProto
    if a.name == "auto_pad" or t == A.STRING:
        v = c.choice([b"", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"NOTSET", b"same_upper", b"FOO",
                      b"\xff\xfe", b"SAME_UPPER\x00", b"\xc3\x28"])
        a.type, a.s = A.STRING, v
        return f"{a.name} := {v!r}"
    if t == A.INT:
        old = a.i
        v = c.choice([0, -1, 2, old + 1, old * 2 if old else 3, 10 ** 9, 2 ** 62, -(2 ** 63)])
        a.i = v
        return f"{a.name}: {old} -> {v}"
    if t == A.INTS:
        old = list(a.ints)
        op = c.choice(["neg", "huge", "zero", "longer", "shorter", "empty", "swap"])
        new = list(old)
        if op == "neg" and new:
            new[c.rng.randrange(len(new))] = c.choice([-1, -3])
        elif op == "huge" and new:
            new[c.rng.randrange(len(new))] = c.choice([1000, 10 ** 9, 2 ** 40])
        elif op == "zero" and new:
            new[c.rng.randrange(len(new))] = 0
        elif op == "longer":
            new = new + [c.choice([0, 1, 2])]
        elif op == "shorter" and new:
            new = new[:-1]
        elif op == "empty":
            new = []
        elif len(new) > 1:
            new = new[::-1]
        else:
            new = [v + 1 for v in new]
        del a.ints[:]
        a.ints.extend(new)
        return f"{a.name}: {old} -> {new}"
    if t == A.FLOAT:
        old = a.f
        v = c.choice([float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 3e38, 1e-45])
        a.f = v
        return f"{a.name}: {old:g} -> {v:g}"
    if t == A.FLOATS:
        old = list(a.floats)
        new = [float("nan")] + old[1:]
        del a.floats[:]
        a.floats.extend(new)
        return f"{a.name}: first element -> nan"
    if t == A.TENSOR:
        arr = numpy_helper.to_array(a.t).copy()
        if arr.size == 0:
            return f"{a.name}: empty tensor left unchanged"
        if np.issubdtype(arr.dtype, np.floating):
            v = c.choice([np.nan, np.inf, 3e38, -9.4e37])
            with np.errstate(all="ignore"):
                arr.flat[0] = v
        elif np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            v = c.choice([info.max, info.min, 0])
            arr.flat[0] = v
        else:
            return f"{a.name}: {arr.dtype} tensor left unchanged"
        a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
        return f"{a.name}: tensor element 0 -> {v:g}"
    return f"{a.name}: left unchanged (type {t})"


def m_attr(c: Ctx):
    cands = [(n, a) for n in c.model.graph.node for a in n.attribute]
    interesting = [(n, a) for n, a in cands if a.name in INTERESTING_ATTRS]
    if not cands:
        c.note("no attribute to mutate")
        return
    n, a = c.choice(interesting if interesting and c.rng.random() < 0.85 else cands)
    c.note(f"node {nm(n.name)} ({n.op_type}) attribute " + mutate_attr_value(c, a))


def m_attr_add(c: Ctx):
    convs = [n for n in c.model.graph.node if n.op_type in ("Conv", "MaxPool", "AveragePool")]
    n = c.choice(convs or list(c.model.graph.node))
    what = c.choice(["auto_pad", "auto_pad", "group", "dilations", "unknown", "duplicate"])
    if what == "auto_pad":
        v = c.choice([b"", b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"FOO", b"\xff\xfe\xfd"])
        for a in list(n.attribute):
            if a.name == "auto_pad":
                n.attribute.remove(a)
        n.attribute.append(helper.make_attribute("auto_pad", v))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains auto_pad={v!r}")
    elif what == "group":
        n.attribute.append(helper.make_attribute("group", c.choice([2, 0, -1, 3])))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains a second/extra group={n.attribute[-1].i}")
    elif what == "dilations":
        n.attribute.append(helper.make_attribute("dilations", c.choice([[2, 2], [0, 0], [-1, 1], [9, 9]])))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains dilations={list(n.attribute[-1].ints)}")
    elif what == "unknown":
        n.attribute.append(helper.make_attribute("fuzz_unknown", 1))
        c.note(f"node {nm(n.name)} ({n.op_type}) gains unknown attribute fuzz_unknown=1")
    elif n.attribute:
        dup = onnx.AttributeProto()
        dup.CopyFrom(n.attribute[0])
        n.attribute.append(dup)
        c.note(f"node {nm(n.name)} ({n.op_type}) attribute {dup.name!r} duplicated")


def m_ref_attr(c: Ctx):
    cands = [(n, a) for n in c.model.graph.node for a in n.attribute]
    if not cands:
        return
    n, a = c.choice(cands)
    a.ref_attr_name = c.choice(["x", a.name, ""]) or "r"
    c.note(f"node {nm(n.name)} ({n.op_type}) attribute {a.name!r} ref_attr_name := {a.ref_attr_name!r}")


def m_bad_utf8(c: Ctx):
    n = c.choice(list(c.model.graph.node))
    v = c.choice([b"\xff\xfe", b"\xc3\x28", b"SAME\xe2\x82", b"\xed\xa0\x80"])
    name = c.choice(["auto_pad", "fuzz_str", "mode"])
    for a in list(n.attribute):
        if a.name == name:
            n.attribute.remove(a)
    n.attribute.append(helper.make_attribute(name, v))
    c.note(f"node {nm(n.name)} ({n.op_type}) string attribute {name}={v!r} (invalid UTF-8)")
