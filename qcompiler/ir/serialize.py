"""Save / load a Graph as a deterministic zip: `graph.json` + one `.npy` per array.

Used to keep the quantized IR next to emitted artifacts, so `qcc verify` can run
the integer reference on exactly the graph the backend lowered. Archive members
carry a fixed timestamp, so identical graphs give identical bytes.

Format 2 spells a fused activation as the clamp `clamp: [lo, hi]` (None: unbounded);
format-1 files (`fused_activation: "RELU" | "RELU6" | "RELU_N1_TO_1"`) still load.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from qcompiler.errors import ModelLoadError
from qcompiler.ir import Graph, QuantParams, Value
from qcompiler.ir.activation import set_clamp

FORMAT = "qcc-ir/2"
_FORMAT_1 = "qcc-ir/1"
_FORMAT_1_ACTIVATIONS = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


class _Arrays:
    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    def put(self, arr: np.ndarray) -> str:
        key = f"a{len(self.blobs)}.npy"
        self.blobs[key] = _npy(arr)
        return key


def _attr_to_json(value, arrays: _Arrays):
    if isinstance(value, np.ndarray):
        return {"__array__": arrays.put(value)}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_attr_to_json(x, arrays) for x in value]
    return value


def _attr_from_json(value, zf):
    if isinstance(value, dict) and "__array__" in value:
        return np.load(io.BytesIO(zf.read(value["__array__"])), allow_pickle=False)
    if isinstance(value, list):
        return [_attr_from_json(x, zf) for x in value]
    return value


def graph_to_bytes(graph: Graph) -> bytes:
    arrays = _Arrays()
    values = graph.values()
    vid = {id(v): i for i, v in enumerate(values)}
    vals = []
    for v in values:
        entry = {"name": v.name, "dtype": v.dtype.name, "shape": list(v.shape) if v.shape is not None else None}
        if v.is_constant:
            entry["data"] = arrays.put(v.data)
        if v.quant is not None:
            q = v.quant
            entry["quant"] = {"scale": arrays.put(q.scale), "zero_point": arrays.put(q.zero_point),
                              "axis": q.axis, "dtype": q.dtype.name}
        vals.append(entry)
    nodes = [{"op": n.op, "name": n.name, "attrs": {k: _attr_to_json(a, arrays) for k, a in n.attrs.items()},
              "meta": {k: m for k, m in n.meta.items() if k == "opset"},  # kernels read the opset
              "inputs": [vid[id(v)] if v is not None else None for v in n.inputs],
              "outputs": [vid[id(v)] for v in n.outputs]} for n in graph.nodes]
    meta = {k: m for k, m in graph.meta.items() if isinstance(m, (str, int, float, bool))}
    doc = {"format": FORMAT, "name": graph.name, "meta": meta, "values": vals, "nodes": nodes,
           "inputs": [vid[id(v)] for v in graph.inputs], "outputs": [vid[id(v)] for v in graph.outputs]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in [("graph.json", json.dumps(doc, indent=1, sort_keys=True).encode())] + \
                sorted(arrays.blobs.items()):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, blob)
    return out.getvalue()


def save_graph(graph: Graph, path: str | Path) -> None:
    Path(path).write_bytes(graph_to_bytes(graph))


def load_graph(path: str | Path) -> Graph:
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
        doc = json.loads(zf.read("graph.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{path} is not a qcc IR file ({e})") from None
    if doc.get("format") not in (FORMAT, _FORMAT_1):
        raise ModelLoadError(f"{path}: unknown IR format {doc.get('format')!r}")

    def arr(key):
        return np.load(io.BytesIO(zf.read(key)), allow_pickle=False)

    g = Graph(doc["name"])
    g.meta.update(doc["meta"])
    values = []
    for e in doc["values"]:
        v = Value(e["name"], e["dtype"], e["shape"], arr(e["data"]) if "data" in e else None)
        g._names.add(v.name)
        if "quant" in e:
            q = e["quant"]
            v.quant = QuantParams(arr(q["scale"]), arr(q["zero_point"]), q["axis"], q["dtype"])
        values.append(v)
    for n in doc["nodes"]:
        attrs = {k: _attr_from_json(a, zf) for k, a in n["attrs"].items()}
        node = g.add_node(n["op"], [values[i] if i is not None else None for i in n["inputs"]],
                          [values[i] for i in n["outputs"]], attrs=attrs, name=n["name"])
        node.meta.update(n.get("meta", {}))
        if "fused_activation" in node.attrs and doc["format"] == _FORMAT_1:
            set_clamp(node, *_FORMAT_1_ACTIVATIONS[node.attrs.pop("fused_activation")])
            node.attrs = dict(sorted(node.attrs.items()))  # as a format-2 file lists them
    g.inputs = [values[i] for i in doc["inputs"]]
    g.outputs = [values[i] for i in doc["outputs"]]
    g.verify()
    return g
