"""ONNX NodeProto attributes -> plain Python values (the IR's `Node.attrs` form).

ints/floats/lists stay Python values, strings are decoded to `str`, tensors become
numpy arrays; subgraphs (If/Loop bodies) are kept as their GraphProto.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qcompiler.errors import ModelLoadError


def _convert(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return np.asarray(numpy_helper.to_array(value))
    if isinstance(value, (list, tuple)):
        return [_convert(v) for v in value]
    return value


def attrs_from_onnx(node_proto: onnx.NodeProto) -> dict:
    """The attributes of `node_proto` as a dict of Python values (ModelLoadError naming the
    node and attribute for one that cannot be read)."""
    attrs = {}
    where = f"node {node_proto.name or node_proto.op_type} ({node_proto.op_type})"
    for a in node_proto.attribute:
        if a.ref_attr_name:
            raise ModelLoadError(f"{where}: attribute {a.name} refers to function attribute "
                                 f"{a.ref_attr_name!r} (ONNX functions are not supported)")
        try:
            value = helper.get_attribute_value(a)
            attrs[a.name] = value if a.type == onnx.AttributeProto.SPARSE_TENSOR else _convert(value)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{where}: attribute {a.name} cannot be read "
                                 f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return attrs
