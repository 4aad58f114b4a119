"""Mutators of ONNX protobuf fields (family "proto", part 2): initializers, weights, names,
topology, opsets; PROTO_MUTATORS weighs both parts."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .case import EXTREMES, HUGE, Ctx, float_inits, nm, real_inputs, rename_value, set_init_array
from .mutate_fields import (DTYPES, mutate_attr_value, m_attr, m_attr_add, m_bad_utf8, m_input_dim,
                            m_input_rank, m_io_dtype, m_output_shape, m_ref_attr, m_value_info)


def m_init_dims(c: Ctx):
    t = c.choice(list(c.model.graph.initializer))
    old = list(t.dims)
    op = c.choice(["plus1", "minus1", "extra", "drop", "empty", "huge", "negative", "zero"])
    new = list(old)
    if op == "plus1" and new:
        new[c.rng.randrange(len(new))] += 1
    elif op == "minus1" and new:
        k = c.rng.randrange(len(new))
        new[k] = max(new[k] - 1, 1) if new[k] > 1 else 2
    elif op == "extra":
        new.append(c.choice([1, 2]))
    elif op == "drop" and new:
        new = new[:-1]
    elif op == "empty":
        new = []
    elif op == "huge":
        new = [HUGE] + new[1:] if new else [HUGE]
    elif op == "negative":
        new = [-1] + new[1:] if new else [-1]
    else:
        new = [0] + new[1:] if new else [0]
    del t.dims[:]
    t.dims.extend(new)
    c.note(f"initializer {nm(t.name)} dims {old} -> {new} (data unchanged)")


def m_init_dtype(c: Ctx):
    t = c.choice(list(c.model.graph.initializer))
    name, code = c.choice(DTYPES)
    old = t.data_type
    if not t.raw_data and t.float_data:  # keep the bytes, as raw data, so only the code lies
        t.raw_data = np.asarray(t.float_data, np.float32).tobytes()
        del t.float_data[:]
    t.data_type = code
    c.note(f"initializer {nm(t.name)} data_type {TensorProto.DataType.Name(old) if old in TensorProto.DataType.values() else old} "
           f"-> {name} (bytes unchanged)")


def m_init_raw(c: Ctx):
    t = c.choice([t for t in c.model.graph.initializer if t.raw_data] or list(c.model.graph.initializer))
    op = c.choice(["truncate", "extend", "empty"])
    raw = t.raw_data
    if op == "truncate" and raw:
        t.raw_data = raw[: c.rng.randrange(len(raw))]
    elif op == "extend":
        t.raw_data = raw + bytes(c.choice([1, 3, 4, 400]))
    else:
        t.raw_data = b""
    c.note(f"initializer {nm(t.name)} raw_data {op}: {len(raw)} -> {len(t.raw_data)} bytes")


def m_weights(c: Ctx):
    inits = float_inits(c.model)
    t = c.choice(inits)
    arr = numpy_helper.to_array(t).astype(np.float32, copy=True)
    v = c.choice(EXTREMES)
    how = c.choice(["one", "one", "few", "all", "scale"])
    if how == "one":
        k = c.rng.randrange(arr.size)
        arr.flat[k] = v
        what = f"element {k} := {v:g}"
    elif how == "few":
        ks = sorted({c.rng.randrange(arr.size) for _ in range(3)})
        arr.flat[ks] = v
        what = f"elements {ks} := {v:g}"
    elif how == "all":
        arr[...] = v
        what = f"all {arr.size} elements := {v:g}"
    else:
        f = c.choice([1e30, 1e-30, -1e20, 1e36])
        with np.errstate(all="ignore"):
            arr = (arr * np.float32(f)).astype(np.float32)
        what = f"all elements x {f:g}"
    set_init_array(t, arr)
    c.note(f"initializer {nm(t.name)} {list(t.dims)}: {what}")


def _pick_node(c: Ctx, op_type: str):
    """A random node of this op type, or None (the callers then mutate weights instead)."""
    nodes = [n for n in c.model.graph.node if n.op_type == op_type]
    return c.choice(nodes) if nodes else None


def m_bn_params(c: Ctx):
    n = _pick_node(c, "BatchNormalization")
    if n is None:
        return m_weights(c)
    which = c.rng.randrange(1, 5)  # scale, B, mean, var
    inits = {t.name: t for t in c.model.graph.initializer}
    t = inits.get(n.input[which])
    if t is None:
        return m_weights(c)
    arr = numpy_helper.to_array(t).astype(np.float32, copy=True)
    v = c.choice([-1.0, 0.0, -1e-6, float("nan"), 1e38, -3e38]) if which == 4 else c.choice(EXTREMES)
    arr.flat[c.rng.randrange(arr.size)] = v
    set_init_array(t, arr)
    c.note(f"BatchNormalization {nm(n.name)} input {which} ({nm(t.name)}): one element := {v:g}")


def m_constant(c: Ctx):
    n = _pick_node(c, "Constant")
    if n is None:
        return m_weights(c)
    for a in n.attribute:
        if a.name == "value":
            c.note(f"Constant {nm(n.name)} " + mutate_attr_value(c, a))
            return


EVIL_NAMES = ["*/ int evil; /*", 'a"b', "a\\b", "line\nbreak", "", "x" * 5000, "modèle",
              "模型", "../../x", "a b", "%s%n", "$(id)", "\t", "-", "1abc", "int", "input;",
              "\x00nul", "??=", "#define"]


def m_names(c: Ctx):
    what = c.choice(["input", "input", "output", "node", "graph"])
    new = c.choice(EVIL_NAMES)
    if what == "input":
        old = c.choice(real_inputs(c.model)).name
        rename_value(c.model, old, new)
    elif what == "output":
        old = c.choice(list(c.model.graph.output)).name
        rename_value(c.model, old, new)
    elif what == "node":
        n = c.choice(list(c.model.graph.node))
        old, n.name = n.name, new
    else:
        old, c.model.graph.name = c.model.graph.name, new
    c.note(f"{what} name {nm(old)} -> {new[:60]!r}{'...' if len(new) > 60 else ''} ({len(new)} chars)")
    c.case.same_function = True


def m_topology(c: Ctx):
    g = c.model.graph
    op = c.choice(["drop_node", "dangling_input", "cycle", "dup_output", "drop_init", "dup_init",
                   "no_outputs", "output_is_input", "extra_output", "empty_input_name", "input_is_init"])
    n = c.choice(list(g.node))
    if op == "drop_node":
        g.node.remove(n)
        c.note(f"node {nm(n.name)} ({n.op_type}) removed")
    elif op == "dangling_input" and n.input:
        n.input[0] = "fuzz_missing_tensor"
        c.note(f"node {nm(n.name)} input 0 -> nonexistent tensor")
    elif op == "cycle" and len(g.node) > 2:
        last = g.node[len(g.node) - 2]
        g.node[0].input[0] = last.output[0]
        c.note(f"node {nm(g.node[0].name)} input 0 := output of {nm(last.name)} (cycle)")
    elif op == "dup_output" and len(g.node) > 2:
        g.node[1].output[0] = g.node[0].output[0]
        c.note(f"node {nm(g.node[1].name)} output 0 := {nm(g.node[0].output[0])} (two producers)")
    elif op == "drop_init" and g.initializer:
        t = c.choice(list(g.initializer))
        g.initializer.remove(t)
        c.note(f"initializer {nm(t.name)} removed")
    elif op == "dup_init" and g.initializer:
        t = c.choice(list(g.initializer))
        dup = g.initializer.add()
        dup.CopyFrom(t)
        arr = numpy_helper.to_array(t).copy()
        dup.CopyFrom(numpy_helper.from_array(np.zeros_like(arr), t.name))
        c.note(f"initializer {nm(t.name)} duplicated (second copy all zeros)")
    elif op == "no_outputs":
        del g.output[:]
        c.note("graph outputs removed")
    elif op == "output_is_input":
        g.output[0].name = real_inputs(c.model)[0].name
        c.note("graph output 0 renamed to the graph input (identity graph)")
    elif op == "extra_output":
        mid = c.choice(list(g.node)).output[0]
        g.output.append(helper.make_tensor_value_info(mid, TensorProto.FLOAT, None))
        c.note(f"extra graph output {nm(mid)}")
    elif op == "empty_input_name" and n.input:
        n.input[0] = ""
        c.note(f"node {nm(n.name)} input 0 := '' (optional-absent)")
    else:
        t = c.choice(float_inits(c.model))
        vi = helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims))
        g.input.append(vi)
        c.note(f"initializer {nm(t.name)} also listed as graph input (overridable)")


def m_opset(c: Ctx):
    op = c.choice(["version", "version", "domain", "none", "ir", "node_domain", "op_type"])
    if op == "version":
        v = c.choice([1, 6, 7, 10, 18, 21, 99, 10 ** 6, -1])
        for imp in c.model.opset_import:
            if imp.domain in ("", "ai.onnx"):
                imp.version = v
        c.note(f"default opset version := {v}")
    elif op == "domain":
        for imp in c.model.opset_import:
            imp.domain = "com.fuzz"
        c.note("opset domain := 'com.fuzz'")
    elif op == "none":
        del c.model.opset_import[:]
        c.note("opset_import removed")
    elif op == "ir":
        v = c.choice([0, 1, 3, 99, -1])
        c.model.ir_version = v
        c.note(f"ir_version := {v}")
    elif op == "node_domain":
        n = c.choice(list(c.model.graph.node))
        n.domain = c.choice(["com.microsoft", "ai.onnx.ml", "x"])
        c.note(f"node {nm(n.name)} ({n.op_type}) domain := {n.domain!r}")
    else:
        n = c.choice(list(c.model.graph.node))
        old, n.op_type = n.op_type, c.choice(["Sigmoid", "ConvTranspose", "Foo", "", "conv", "Relu",
                                              "MaxPool", "Identity", "Softmax"])
        c.note(f"node {nm(n.name)} op_type {old!r} -> {n.op_type!r}")


PROTO_MUTATORS = [(m_input_dim, 4), (m_input_rank, 2), (m_output_shape, 4), (m_value_info, 5),
                  (m_io_dtype, 3), (m_attr, 10), (m_attr_add, 4), (m_ref_attr, 2), (m_bad_utf8, 2),
                  (m_init_dims, 4), (m_init_dtype, 3), (m_init_raw, 2), (m_weights, 8), (m_bn_params, 3),
                  (m_constant, 1), (m_names, 4), (m_topology, 5), (m_opset, 4)]
