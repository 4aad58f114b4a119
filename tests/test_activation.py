"""The fused clamp attribute (qcompiler/ir/activation.py) and how each user maps it."""
from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest

from qcompiler.errors import BackendError, UnsupportedOpError
from qcompiler.ir import Graph, QuantParams
from qcompiler.ir.activation import clamp_of, commutes_with_positive_scale, describe, has_activation, set_clamp
from qcompiler.ir.serialize import graph_to_bytes, load_graph
from qcompiler.numerics.fixed_point import quantize_scalar
from qcompiler.numerics.qops import activation_range

TFLITE = {"RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _node(clamp=None):
    g = Graph("t")
    x = g.add_input("x", np.float32, (1, 4))
    n = g.add_node("Add", [x, x], name="add")
    n.outputs[0].shape = (1, 4)
    g.outputs.append(n.outputs[0])
    if clamp is not None:
        set_clamp(n, *clamp)
    return g, n


def test_clamp_helpers():
    g, n = _node()
    assert clamp_of(n) is None and not has_activation(n) and describe(n) == "none"
    set_clamp(n, 0.0, math.inf)
    assert n.attrs["clamp"] == [0.0, None] and clamp_of(n) == (0.0, math.inf) and describe(n) == "relu"
    assert commutes_with_positive_scale(n)
    set_clamp(n, 0, 6)
    assert n.attrs["clamp"] == [0.0, 6.0] and describe(n) == "clip(0, 6)" and not commutes_with_positive_scale(n)
    set_clamp(n, None, math.inf)
    assert "clamp" not in n.attrs
    with pytest.raises(ValueError, match="empty clamp"):
        set_clamp(n, 1.0, -1.0)


def _tflm_activation_range(name, scale, zp, qmin=-128, qmax=127):
    """TFLM's CalculateActivationRangeQuantized, by enum name (the pre-clamp implementation)."""
    lo, hi = qmin, qmax
    if name in ("RELU", "RELU6", "RELU_N1_TO_1"):
        lo = max(qmin, quantize_scalar(-1.0 if name == "RELU_N1_TO_1" else 0.0, scale, zp))
    if name in ("RELU6", "RELU_N1_TO_1"):
        hi = min(qmax, quantize_scalar(6.0 if name == "RELU6" else 1.0, scale, zp))
    return lo, hi


def test_integer_range_equals_tflm_for_its_three_activations():
    rng = np.random.default_rng(3)
    for _ in range(300):
        scale = np.float32(10 ** rng.uniform(-4, 0))
        zp = int(rng.integers(-128, 128))
        for name, clamp in TFLITE.items():
            assert activation_range(clamp, scale, zp) == _tflm_activation_range(name, scale, zp)
            assert activation_range(clamp, scale, zp, -32768, 32767) == \
                _tflm_activation_range(name, scale, zp, -32768, 32767)
    assert activation_range(None, np.float32(0.1), 3) == (-128, 127)


def test_float_interpreter_clips_to_the_clamp():
    from qcompiler.interp import FLOAT_KERNELS, Interpreter
    g, n = _node((-1.0, 0.5))
    y = Interpreter(g, FLOAT_KERNELS).run({"x": np.array([[-3, -0.25, 0.125, 3]], np.float32)})["add_out"]
    assert y.tolist() == [[-1.0, -0.5, 0.25, 0.5]]


def test_tflite_maps_its_three_ranges_and_refuses_others():
    from qcompiler.backends.tflite.lower import check_supported
    from qcompiler.backends.tflite.lower_core import fused
    for name, clamp in TFLITE.items():
        assert fused(_node(clamp)[1]) == name
    assert fused(_node()[1]) == "NONE"
    g, n = _node((0.5, 3.0))   # no TFLite activation, and no int8 range (it excludes 0) can be it
    with pytest.raises(BackendError, match=r"node add \(Add\): fused clamp \[0.5, 3\] has no TFLite fused activation"):
        fused(n)
    with pytest.raises(UnsupportedOpError, match=r"fused clamp \[0.5, 3\]"):
        check_supported(g)


def test_tflite_takes_a_clamp_its_output_range_realizes():
    """[0, 3] is no TFLite activation: accepted when the output's int8 range saturates exactly
    there (the scheme's promise), so the op runs with NONE; refused when it does not."""
    from qcompiler.backends.tflite.lower import check_supported
    from qcompiler.backends.tflite.lower_core import fused
    g, n = _node((0.0, 3.0))
    check_supported(g)
    n.outputs[0].quant = QuantParams(np.float32(3.0 / 255), -128)
    assert fused(n) == "NONE"
    n.outputs[0].quant = QuantParams(np.float32(4.0 / 255), -128)   # would saturate at 4, not 3
    with pytest.raises(BackendError, match=r"fused clamp \[0, 3\].*does not saturate there"):
        fused(n)


def test_ncnn_relu_and_clip_params():
    from qcompiler.backends.ncnn.lower import Unsupported
    from qcompiler.backends.ncnn.ops import activation_params
    assert activation_params((0.0, math.inf)) == ((1, None), ("ReLU", {}))
    assert activation_params((0.0, 6.0)) == ((3, [0.0, 6.0]), ("Clip", {0: 0.0, 1: 6.0}))
    assert activation_params((-1.0, 1.0)) == ((3, [-1.0, 1.0]), ("Clip", {0: -1.0, 1: 1.0}))
    with pytest.raises(Unsupported, match=r"fused clamp \[-inf, 2\]"):
        activation_params((-math.inf, 2.0))


def test_onnx_export_spells_the_clamp_as_a_node():
    from qcompiler.frontend.onnx_export import graph_to_onnx
    for clamp, ops in (((0.0, math.inf), ["Add", "Relu"]), ((0.0, 6.0), ["Add", "Clip"]),
                       ((-math.inf, 2.0), ["Add", "Clip"])):
        model = graph_to_onnx(_node(clamp)[0])
        assert [n.op_type for n in model.graph.node] == ops
    clip = graph_to_onnx(_node((-math.inf, 2.0))[0]).graph.node[1]
    assert list(clip.input) == ["add_out__pre_clip", "", "add__clip_max"]


def test_qir_stores_plain_json_and_reads_format_1():
    g, n = _node((0.0, math.inf))
    blob = graph_to_bytes(g)
    doc = json.loads(zipfile.ZipFile(io.BytesIO(blob)).read("graph.json"))
    assert doc["format"] == "qcc-ir/2" and doc["nodes"][0]["attrs"] == {"clamp": [0.0, None]}
    # the same graph as an older qcc wrote it
    doc["format"] = "qcc-ir/1"
    doc["nodes"][0]["attrs"] = {"fused_activation": "RELU6"}
    old = io.BytesIO()
    with zipfile.ZipFile(old, "w") as zf:
        zf.writestr("graph.json", json.dumps(doc))
    back = load_graph(_write(old.getvalue()))
    assert back.nodes[0].attrs == {"clamp": [0.0, 6.0]}


def _write(blob: bytes):
    import tempfile
    from pathlib import Path
    path = Path(tempfile.mkdtemp()) / "old.qir"
    path.write_bytes(blob)
    return path


def test_quantized_output_range_follows_the_clamp():
    from qcompiler.numerics.qops import activation_clamp
    g, n = _node((0.0, 6.0))
    n.outputs[0].quant = QuantParams(np.float32(0.05), -10)
    assert activation_clamp(n) == (-10, 110)
