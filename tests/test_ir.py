"""IR invariants: producer/consumer links, safe removal, toposort, verify messages, dump."""
from __future__ import annotations

import numpy as np
import pytest

from qcompiler.errors import GraphError
from qcompiler.ir import Graph, QuantParams


def small_graph():
    g = Graph("t")
    x = g.add_input("x", np.float32, (1, 2, 4, 4))
    w = g.add_constant("w", np.ones((3, 2, 1, 1), np.float32))
    conv = g.add_node("Conv", [x, w], name="conv")
    relu = g.add_node("Relu", [conv.outputs[0]], name="relu")
    g.outputs.append(relu.outputs[0])
    return g, x, w, conv, relu


def test_links_stay_in_sync():
    g, x, w, conv, relu = small_graph()
    assert conv.outputs[0].producer is conv and conv.outputs[0].consumers == [relu]
    assert x.consumers == [conv]
    y = g.add_input("y", np.float32, (1, 2, 4, 4))
    conv.set_input(0, y)
    assert x.consumers == [] and y.consumers == [conv]
    add = g.add_node("Add", [y, y], name="twice")
    assert y.consumers.count(add) == 2
    g.outputs.append(add.outputs[0])
    g.verify()


def test_remove_refuses_while_used_and_names_users():
    g, x, w, conv, relu = small_graph()
    with pytest.raises(GraphError, match="relu"):
        g.remove_node(conv)
    g.replace_all_uses(relu.outputs[0], conv.outputs[0])
    g.remove_node(relu)
    assert conv.outputs[0].consumers == [] and g.outputs == [conv.outputs[0]]
    g.verify()


def test_bypass_keeps_output_name():
    g, x, w, conv, relu = small_graph()
    out_name = relu.outputs[0].name
    g.bypass_node(relu)
    assert g.outputs[0] is conv.outputs[0] and g.outputs[0].name == out_name
    g.verify()


def test_toposort_and_cycle_detection():
    g, x, w, conv, relu = small_graph()
    g.nodes.reverse()
    with pytest.raises(GraphError, match="comes before the producer"):
        g.verify()
    g.toposort()
    assert g.nodes == [conv, relu]
    g.verify()
    conv.set_input(0, relu.outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        g.toposort()


def test_verify_names_the_node():
    g, x, w, conv, relu = small_graph()
    stray = g.add_value("stray", np.float32, (1,))
    relu.set_input(0, stray)
    with pytest.raises(GraphError, match=r"node relu \(Relu\).*stray"):
        g.verify()


def test_dump_is_readable():
    g, *_ = small_graph()
    text = g.dump()
    assert "Conv[conv]" in text and "Relu[relu]" in text and "const %w:float32[3x2x1x1]" in text


def test_quant_params_roundtrip_and_validation():
    q = QuantParams(np.float32(0.5), 3)
    x = np.array([-70.0, -1.0, 0.0, 0.25, 0.75, 100.0], np.float32)
    assert q.quantize(x).tolist() == [-128, 1, 3, 3, 5, 127]  # ties to even, clamped
    assert np.allclose(q.dequantize(q.quantize(np.array([1.0, -2.0]))), [1.0, -2.0])
    with pytest.raises(GraphError):
        QuantParams(np.ones(3, np.float32), np.zeros(3, np.int32))  # several scales need an axis
    pc = QuantParams(np.array([1.0, 2.0], np.float32), np.zeros(2, np.int32), axis=0)
    assert pc.quantize(np.array([[2.0], [2.0]])).ravel().tolist() == [2, 1]


def test_copy_is_deep():
    g, x, w, conv, relu = small_graph()
    h = g.copy()
    h.nodes[0].attrs["group"] = 1
    assert "group" not in conv.attrs
    h.verify()


def test_fake_quantize_equals_the_integer_round_trip():
    """Bias correction's fast path must give dequantize(quantize(x)) bit for bit, per tensor and
    per channel, including values that clip and values exactly halfway between steps."""
    rng = np.random.default_rng(11)
    x = (rng.normal(0, 3, (4, 3, 5, 5))).astype(np.float32)
    x[0, 0, 0, :3] = [40.0, -40.0, 0.25]  # clipped both ways; 0.25 / 0.5 = a half step
    for q in (QuantParams(np.float32(0.5), np.int32(3)),
              QuantParams(np.array([0.02, 0.1, 0.5], np.float32), np.zeros(3, np.int32), axis=1),
              QuantParams(np.float32(0.01), np.int32(-7), dtype=np.int16)):
        want = q.dequantize(q.quantize(x))
        got = q.fake_quantize(x)
        assert got.dtype == np.float32 and np.array_equal(got, want)
        assert np.count_nonzero(want != x) > 0  # the round trip does change values
