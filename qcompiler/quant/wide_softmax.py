"""Softmax over more than 511 classes: kept out of the int8 kernel's undefined range.

TFLM's int8 SOFTMAX shifts its Q12.19 sum of exponentials by num_bits_over_unit + 23,
which reaches 32 (undefined behaviour) once the sum reaches 512: a flat distribution
over 512 or more classes (each exp term is at most 1.0, so 511 classes are always
safe). Longer rows take one of two TFLM-native paths (qcompiler/interp/int_kernels/softmax.py;
the limits and path names are in qcompiler/numerics/qops/softmax.py):

- up to 4095 classes, "int16_output": the same int8 kernel writing int16 (1/65536,
  -32768), whose shift stays <= 27, then QUANTIZE to int8 -- as accurate as before;
- up to 65536 classes, "int16": QUANTIZE to int16, the int16 (LUT) kernel, QUANTIZE back.

Two steps, because bias correction pairs the float and quantized graphs node for node:

- `mark_wide_softmax` (in `quantize_graph`): the Softmax gets the attribute
  WIDE_SOFTMAX_ATTR = path; its integer kernel computes the path in one go, so the
  calibration report and bias correction see the same node list as the float graph.
- `expand_wide_softmax` (after quantization, `pipeline.quantize`): the mark becomes
  explicit nodes, so the reference, the TFLite lowering and TVM run the same graph.

    Before: %y:int8(1/256,-128) = Softmax[qcc_wide_softmax=int16_output](%x:int8(s,zp))
    After:  %y16:int16(1/65536,-32768) = Softmax(%x)
            %y:int8(1/256,-128)        = Requantize(%y16)

    Before: %y:int8(1/256,-128) = Softmax[qcc_wide_softmax=int16](%x:int8(s,zp))
    After:  %x16:int16(s/128,0)   = Requantize(%x)
            %y16:int16(1/32768,0) = Softmax(%x16)
            %y:int8(1/256,-128)   = Requantize(%y16)

The graph's inputs, outputs and every int8 tensor keep their names and parameters.
"""
from __future__ import annotations

import numpy as np

from qcompiler.errors import QuantizationError
from qcompiler.numerics.qops.softmax import (INT16_SOFTMAX_MAX_CLASSES, OUTPUTS, SOFTMAX16_OUTPUT,
                                             WIDE_SOFTMAX_ATTR, int16_input_params, params, reduced_size,
                                             wide_softmax_path)
from qcompiler.ir import Graph, Node, Value


def wide_path(node: Node) -> str | None:
    """The path an int8 Softmax needs (None: the plain int8 kernel is safe)."""
    if node.op != "Softmax" or node.inputs[0].quant is None or node.inputs[0].quant.dtype != np.int8:
        return None
    size = reduced_size(node)
    if size is None:
        raise QuantizationError(f"node {node.name} (Softmax): input {node.inputs[0].name} has no static "
                                "shape; the quantizer needs the row length to pick a TFLM kernel "
                                "(fix the shape with --input-shape)")
    if size > INT16_SOFTMAX_MAX_CLASSES:
        raise QuantizationError(f"node {node.name} (Softmax): {size} classes per row; TFLM's int16 "
                                f"kernel, the widest, handles at most {INT16_SOFTMAX_MAX_CLASSES}")
    return wide_softmax_path(size)


def mark_wide_softmax(graph: Graph) -> dict[str, str]:
    """Mark every int8 Softmax over more than 511 classes; returns {node name: path}."""
    marked = {}
    for n in graph.nodes:
        path = wide_path(n)
        if path is not None:
            n.attrs[WIDE_SOFTMAX_ATTR] = marked[n.name] = path
    return marked


def _retype_output(graph: Graph, node: Node, q16) -> tuple[Value, Value]:
    """node keeps writing its output, now int16 with q16 and renamed; a new int8 value takes
    over the old one's name, parameters and uses (graph outputs included)."""
    y = node.outputs[0]
    y8 = Value(y.name, y.dtype, y.shape)
    y8.quant, y8.meta = y.quant, dict(y.meta)
    y.name = graph.unique_name(f"{y.name}_int16")
    graph.replace_all_uses_with(y, y8)
    y.dtype, y.quant = np.dtype(np.int16), q16
    return y, y8


def expand_wide_softmax(graph: Graph) -> int:
    """Spell out every marked Softmax's path as explicit nodes; returns how many."""
    count = 0
    for n in [n for n in graph.nodes if n.attrs.get(WIDE_SOFTMAX_ATTR)]:
        path = n.attrs.pop(WIDE_SOFTMAX_ATTR)
        if path == "int16":
            x = n.inputs[0]
            x16 = graph.add_value(f"{x.name}_int16", np.int16, x.shape)
            x16.quant = int16_input_params(x.quant)
            graph.insert_before(n, "Requantize", [x], [x16], name=f"{n.name}_to_int16")
            n.set_input(0, x16)
            q16 = params(*SOFTMAX16_OUTPUT, np.int16)
        elif path == "int16_output":
            q16 = params(*OUTPUTS[np.dtype(np.int16)], np.int16)
        else:
            raise QuantizationError(f"node {n.name} (Softmax): unknown {WIDE_SOFTMAX_ATTR} path {path!r}")
        y16, y8 = _retype_output(graph, n, q16)
        graph.insert_after(n, "Requantize", [y16], [y8], name=f"{n.name}_to_int8")
        count += 1
    if count:
        graph.verify()
    return count
