"""ONNX NodeProto attributes -> plain Python values (the IR's `Node.attrs` form).

ints/floats/lists stay Python values, strings are decoded to `str`, tensors become
numpy arrays; subgraphs (If/Loop bodies) are kept as their GraphProto.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _convert(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return np.asarray(numpy_helper.to_array(value))
    if isinstance(value, (list, tuple)):
        return [_convert(v) for v in value]
    return value


def attrs_from_onnx(node_proto: onnx.NodeProto) -> dict:
    """The attributes of `node_proto` as a dict of Python values."""
    attrs = {}
    for a in node_proto.attribute:
        if a.ref_attr_name:
            raise ValueError(f"node {node_proto.name or node_proto.op_type}: attribute {a.name} "
                             f"refers to function attribute {a.ref_attr_name!r} (functions are not supported)")
        value = helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.SPARSE_TENSOR:
            attrs[a.name] = value  # kept as the proto; no kernel densifies it
        else:
            attrs[a.name] = _convert(value)
    return attrs
