"""ONNX -> IR.

Loads a model (external data included), fixes dynamic input dims (batch defaults
to 1, others from `input_shapes`), runs ONNX shape inference, converts
initializers and Constant nodes to constant values, folds constant subgraphs
(Shape/Gather/Concat chains feeding Reshape, ...), gives every tensor the dtype and
shape qcc's own shape inference (qcompiler/ir/shapes.py) computes — running the float
interpreter once for what it cannot tell —, and reports every unsupported op in one error.

Shapes the file itself declares (graph outputs, value_info) must agree with the computed
ones: a contradiction is an error naming the tensor, not a silently wrong model. Shapes
that only ONNX's shape inference filled in are hints and are replaced.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from qcompiler.errors import ModelLoadError, QccError, UnsupportedOpError, require_ops
from qcompiler.ir import Graph, Value
from qcompiler.ir.shapes import Type, infer_node
from qcompiler.frontend.onnx_attrs import attrs_from_onnx

MIN_OPSET = 7  # light zoo models are opset 9; the brief asks for 11+ but older files load fine


def parse_input_shapes(spec: str | None) -> dict[str, tuple[int, ...]]:
    """'x=1,3,32,32;y=1,10' (or repeated CLI flags joined by ';') -> {name: shape}."""
    shapes: dict[str, tuple[int, ...]] = {}
    if not spec:
        return shapes
    for item in spec.replace(" ", "").split(";"):
        if not item:
            continue
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
            if any(not 0 < d < 2 ** 31 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise QccError(f"bad --input-shape {item!r}: expected NAME=D0,D1,... with positive dims, "
                           "e.g. input=1,3,32,32") from None
    return shapes


def _external_tensors(model: onnx.ModelProto):
    from onnx.external_data_helper import _get_all_tensors, uses_external_data
    return [t for t in _get_all_tensors(model) if uses_external_data(t)]


def _external_file(path: Path, tensor: onnx.TensorProto) -> tuple[Path, int, int | None]:
    """Where `tensor`'s bytes live: a regular file inside the model's folder (resolved by qcc,
    whatever onnx version is installed: onnx 1.14/1.15 follow a symlink out of the folder), and
    the offset / length in it, checked against the file's size."""
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    where = f"tensor {tensor.name!r}: external data {location!r}"
    folder = path.parent.resolve()
    if not location or os.path.isabs(location) or ".." in Path(location).parts:
        raise ModelLoadError(f"{path}: {where} must be a relative path inside the model's folder")
    target = (path.parent / location)
    real = target.resolve()
    if folder not in real.parents:
        raise ModelLoadError(f"{path}: {where} leaves the model's folder (a symlink to {real}?)")
    if not real.is_file():
        raise ModelLoadError(f"{path}: {where} is not a file beside the model")
    try:
        offset, length = int(info.get("offset", 0)), (int(info["length"]) if "length" in info else None)
    except ValueError:
        raise ModelLoadError(f"{path}: {where} has a non-integer offset or length") from None
    size = real.stat().st_size
    if offset < 0 or offset > size or (length is not None and (length < 0 or offset + length > size)):
        raise ModelLoadError(f"{path}: {where} asks for bytes {offset}..{offset + (length or 0)} "
                             f"of a {size}-byte file")
    return real, offset, length


def _load_external_data(path: Path, model: onnx.ModelProto) -> None:
    for tensor in _external_tensors(model):
        real, offset, length = _external_file(path, tensor)
        with open(real, "rb") as f:
            f.seek(offset)
            tensor.raw_data = f.read() if length is None else f.read(length)
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Read an ONNX file; external data is resolved by qcc itself (see `_external_file`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise ModelLoadError(f"{path} is not a readable ONNX model ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else 'parse error'})") from None
    _load_external_data(path, model)
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{path} contains no graph (is it an ONNX file?)")
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        msg = str(e).strip().splitlines()
        raise ModelLoadError(f"{path} is not a valid ONNX model: {msg[0] if msg else e}") from None
    return model


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _fix_input_dims(model: onnx.ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> None:
    """Make every graph input's dims static in place: --input-shape where given, a dynamic batch
    set to 1, any other dynamic dim an error naming the input. Edited on the proto directly: an
    onnx-graphsurgeon round trip (tried) re-encodes every attribute and fails on ones it cannot
    type (an empty `pads` list: fuzz seed 15, case 4), for what is one field per dim."""
    init_names = {i.name for i in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in init_names]
    unknown = set(input_shapes) - {i.name for i in real_inputs}
    if unknown:
        raise QccError(f"--input-shape names unknown input(s) {sorted(unknown)}; "
                       f"model inputs are {[i.name for i in real_inputs]}")
    for inp in real_inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in input_shapes:
            shape = input_shapes[inp.name]
            if len(shape) != len(dims) and len(dims):
                raise QccError(f"--input-shape {inp.name}: rank {len(shape)} but the model's input "
                               f"has rank {len(dims)}")
            del dims[:]
            for d in shape:
                dims.add().dim_value = d
            continue
        for k, d in enumerate(dims):
            if d.dim_value > 0:
                continue
            if k == 0:
                d.dim_value = 1  # batch defaults to 1
            else:
                raise QccError(f"input {inp.name!r} has a dynamic dimension {k} "
                               f"({d.dim_param or '?'}); give it with --input-shape {inp.name}=...")


def _onnx_dtype(elem_type: int, what: str = "a tensor") -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(f"{what} has element type {elem_type}, which is not an ONNX tensor type "
                             "numpy can hold") from None


FLOAT_INPUTS = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64))


def _initializer(init: onnx.TensorProto) -> np.ndarray:
    try:
        return numpy_helper.to_array(init)
    except Exception as e:  # noqa: BLE001 - onnx raises several types for data not matching dims/type
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelLoadError(f"initializer {init.name!r} (dims {list(init.dims)}, type {init.data_type}) "
                             f"cannot be read: {first}") from None


def _value_infos(model: onnx.ModelProto) -> dict[str, tuple[np.dtype, tuple[int, ...] | None]]:
    infos = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        tt = vi.type.tensor_type
        if not tt.elem_type:
            continue
        shape = None
        if tt.HasField("shape") and all(d.dim_value > 0 for d in tt.shape.dim):
            shape = tuple(d.dim_value for d in tt.shape.dim)
        infos[vi.name] = (_onnx_dtype(tt.elem_type, f"tensor {vi.name!r}"), shape)
    return infos


def check_supported(graph: Graph) -> None:
    """One error listing every op the float interpreter cannot run."""
    from qcompiler.interp import FLOAT_KERNELS
    require_ops(graph.nodes, FLOAT_KERNELS)


DEFAULT_MAX_INPUT_BYTES = 4096 << 20


def onnx_to_graph(model: onnx.ModelProto, name: str = "model",
                  input_shapes: dict[str, tuple[int, ...]] | None = None,
                  max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Graph:
    """Convert a loaded ModelProto to a Graph with static shapes and folded constants."""
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise ModelLoadError(f"model {name} uses opset {opset}; qcc needs opset {MIN_OPSET} or newer")
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError([f"{n.domain}.{n.op_type} (node {n.name or '?'})"])
    model = onnx.ModelProto.FromString(model.SerializeToString())  # we edit input dims
    _fix_input_dims(model, input_shapes or {})
    declared = _value_infos(model)
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:
        pass  # inference is a help, not a requirement: the interpreter fills in shapes below
    infos = _value_infos(model)

    g = Graph(name)
    g.meta["opset"] = opset
    g.meta["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    values: dict[str, Value] = {}
    for init in model.graph.initializer:
        values[init.name] = g.add_constant(init.name, _initializer(init))
    if not model.graph.output:
        raise ModelLoadError(f"model {name} declares no graph outputs")
    for inp in model.graph.input:
        if inp.name in values:
            continue
        if inp.name not in infos:
            raise ModelLoadError(f"graph input {inp.name!r} has no tensor type")
        dtype, shape = infos[inp.name]
        if dtype not in FLOAT_INPUTS:
            raise UnsupportedOpError([f"graph input {inp.name!r} of type {dtype.name}: qcc compiles models "
                                      "with float inputs"])
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize if shape else 0
        if size > max_input_bytes:
            raise ModelLoadError(f"graph input {inp.name!r} of shape {list(shape)} needs "
                                 f"{size / 2**20:,.0f} MB, over the {max_input_bytes / 2**20:,.0f} MB limit "
                                 "(--max-memory; fix dynamic dims with --input-shape)")
        values[inp.name] = g.add_input(inp.name, dtype, shape)

    for i, node in enumerate(model.graph.node):
        attrs = attrs_from_onnx(node)
        node_name = node.name or f"{node.op_type}_{i}"
        if node.op_type == "Constant":
            key, = attrs.keys() if len(attrs) == 1 else (None,)
            data = attrs.get("value")
            if data is None:
                data = {"value_float": np.float32, "value_int": np.int64, "value_floats": np.float32,
                        "value_ints": np.int64}.get(key)
                if data is None:
                    raise UnsupportedOpError([f"Constant with attribute {key} (node {node_name})"])
                data = np.array(attrs[key], dtype=data)
            values[node.output[0]] = g.add_constant(node.output[0], np.asarray(data))
            continue
        ins = []
        for x in node.input:
            if x == "":
                ins.append(None)
            elif x in values:
                ins.append(values[x])
            else:
                raise ModelLoadError(f"node {node_name} ({node.op_type}) reads {x!r}, which no node, "
                                     "initializer or graph input defines")
        outs = []
        for y in node.output:
            dtype, shape = infos.get(y, (np.dtype(np.float32), None))
            v = g.add_value(y or f"{node_name}_unused", dtype, shape)
            outs.append(v)
        n = g.add_node(node.op_type, ins, outs, attrs=attrs, name=node_name)
        n.meta["opset"] = opset  # kernels read it for opset-dependent semantics (e.g. Softmax axis)
        for y, v in zip(node.output, n.outputs):
            if y:
                values[y] = v

    for out in model.graph.output:
        if out.name not in values:
            raise ModelLoadError(f"graph output {out.name!r} is not produced by any node")
        g.outputs.append(values[out.name])
    check_supported(g)
    from qcompiler.passes.fold_constants import fold_constants
    from qcompiler.ir.pass_manager import PassContext
    fold_constants(g, PassContext())
    g.toposort()
    settle_shapes(g, declared)
    g.verify()
    return g


def settle_shapes(g: Graph, declared: dict | None = None) -> None:
    """Give every activation its computed dtype/shape: by shape inference, then by one float
    run on zeros for what inference cannot tell (a shape computed from data). `declared`:
    {tensor name: (dtype, shape)} the model file states, each checked against the result."""
    declared = declared or {}
    for n in g.nodes:
        _settle(n, infer_node(n), declared)
    if all(v.shape is not None for v in g.values()):
        return
    from qcompiler.interp import FLOAT_KERNELS, Interpreter

    def hook(node, outs):
        _settle(node, [Type(np.asarray(a).dtype, np.shape(a)) for a in outs], declared)

    feeds = {v.name: np.zeros(v.shape, v.dtype) for v in g.inputs}
    Interpreter(g, FLOAT_KERNELS, hook=hook).run(feeds)


def _settle(node, types, declared: dict) -> None:
    for v, t in zip(node.outputs, types):
        if t is None or t.shape is None:
            continue
        dtype = v.dtype if t.dtype is None else np.dtype(t.dtype)
        stated = declared.get(v.name)
        if stated is not None and stated[1] is not None and (stated[1] != tuple(t.shape) or stated[0] != dtype):
            raise ModelLoadError(f"tensor {v.name!r}: the model declares {stated[0].name}{list(stated[1])} but "
                                 f"node {node.name} ({node.op}) computes {dtype.name}{list(t.shape)}; "
                                 "fix or remove the declaration (graph output / value_info)")
        v.shape, v.dtype = tuple(t.shape), dtype


def load_model(path: str | os.PathLike, input_shapes: dict[str, tuple[int, ...]] | None = None,
               max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Graph:
    """Load an ONNX file into the IR (the usual entry point); a graph input larger than
    `max_input_bytes` is refused before anything is allocated."""
    model = load_onnx(path)
    return onnx_to_graph(model, name=Path(path).stem, input_shapes=input_shapes, max_input_bytes=max_input_bytes)
