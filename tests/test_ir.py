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
        g.erase_node(conv)
    g.replace_all_uses_with(relu.outputs[0], conv.outputs[0])
    g.erase_node(relu)
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


# ---- editing operations: Before / Expected ---------------------------------------
def chain():
    """x -> Relu[relu] -> Neg[neg] -> y, typed."""
    g = Graph("t")
    x = g.add_input("x", np.float32, (1, 4))
    relu = g.add_node("Relu", [x], name="relu")
    neg = g.add_node("Neg", [relu.outputs[0]], name="neg")
    for n in (relu, neg):
        n.outputs[0].shape = (1, 4)
    g.outputs.append(neg.outputs[0])
    return g, x, relu, neg


def lines(g: Graph) -> list[str]:
    return g.dump().splitlines()[1:]


def test_insert_before_and_after_place_and_type_the_node():
    g, x, relu, neg = chain()
    g.insert_before(relu, "Abs", [x], name="abs")
    g.insert_after(relu, "Exp", [relu.outputs[0]], name="exp")
    assert lines(g) == [
        "  %abs_out:float32[1x4] = Abs[abs](%x:float32[1x4])",
        "  %relu_out:float32[1x4] = Relu[relu](%x:float32[1x4])",
        "  %exp_out:float32[1x4] = Exp[exp](%relu_out:float32[1x4])",
        "  %neg_out:float32[1x4] = Neg[neg](%relu_out:float32[1x4])",
        "  return %neg_out:float32[1x4]"]
    assert relu.users == [neg, g.nodes[2]]  # in the order the uses were made
    g.verify()


def test_insert_refuses_a_node_outside_the_graph():
    g, x, relu, neg = chain()
    other, *_ = chain()
    with pytest.raises(GraphError, match=r"node relu \(Relu\) is not in graph t"):
        g.insert_before(other.nodes[0], "Abs", [x])


def test_erase_node_refuses_while_used_and_names_every_user():
    g, x, relu, neg = chain()
    g.add_node("Exp", [relu.outputs[0]], name="exp")
    with pytest.raises(GraphError, match=r"cannot erase node relu \(Relu\): its output relu_out is still "
                                         r"used by neg, exp"):
        g.erase_node(relu)
    with pytest.raises(GraphError, match="neg_out is still used by a graph output"):
        g.erase_node(neg)


def test_erase_node_unlinks_its_inputs():
    g, x, relu, neg = chain()
    dead = g.add_node("Exp", [x, x], name="dead")
    g.erase_node(dead)
    assert x.consumers == [relu] and dead not in g.nodes and dead.inputs == ()
    g.verify()


def test_erase_node_keeping_outputs_hands_them_to_a_new_node():
    g, x, relu, neg = chain()
    (y,) = g.erase_node(relu, keep_outputs=True)
    assert y.producer is None and y.consumers == [neg]
    with pytest.raises(GraphError, match="relu_out has no producer"):
        g.verify()
    g.add_node("Sigmoid", [x], [y], name="sig", index=0)
    assert lines(g)[0] == "  %relu_out:float32[1x4] = Sigmoid[sig](%x:float32[1x4])"
    g.verify()


def test_replace_node_by_a_node_keeps_the_output_tensor():
    g, x, relu, neg = chain()
    sq = g.insert_before(relu, "Mul", [x, x], name="square")
    g.replace_node(relu, sq)
    assert lines(g) == [
        "  %relu_out:float32[1x4] = Mul[square](%x:float32[1x4], %x:float32[1x4])",
        "  %neg_out:float32[1x4] = Neg[neg](%relu_out:float32[1x4])",
        "  return %neg_out:float32[1x4]"]
    assert "square_out" not in g._names  # the dropped fresh output's name is free again
    g.verify()


def test_replace_node_by_values_moves_every_use():
    g, x, relu, neg = chain()
    g.replace_node(neg, [relu.outputs[0]])
    assert lines(g) == ["  %relu_out:float32[1x4] = Relu[relu](%x:float32[1x4])",
                        "  return %relu_out:float32[1x4]"]
    g.verify()


def test_replace_node_refusals():
    g, x, relu, neg = chain()
    busy = g.insert_before(relu, "Abs", [x], name="busy")
    g.add_node("Exp", [busy.outputs[0]], name="reader", index=2)
    with pytest.raises(GraphError, match=r"cannot replace node relu \(Relu\) by busy \(Abs\): the new node's "
                                         r"own output busy_out is still used by reader"):
        g.replace_node(relu, busy)
    split = g.insert_before(relu, "Split", [x], outputs=2, attrs={"axis": 1}, name="split")
    with pytest.raises(GraphError, match=r"cannot replace node relu \(Relu\) by split \(Split\): 2 outputs for 1"):
        g.replace_node(relu, split)
    with pytest.raises(GraphError, match=r"cannot replace node relu \(Relu\): 2 values for 1 outputs"):
        g.replace_node(relu, list(split.outputs))
    pair = g.insert_before(relu, "Split", [x], outputs=2, attrs={"axis": 1}, name="pair")
    g.add_node("Exp", [pair.outputs[1]], name="second_reader", index=g.nodes.index(pair) + 1)
    with pytest.raises(GraphError, match=r"cannot replace node pair \(Split\) by lone \(Abs\): the output the "
                                         r"new node does not produce, pair_out1 is still used by second_reader"):
        g.replace_node(pair, g.insert_before(relu, "Abs", [x], name="lone"))


def test_set_inputs_keeps_consumer_lists():
    g, x, relu, neg = chain()
    neg.set_inputs([x, x])
    assert relu.outputs[0].consumers == [] and x.consumers == [relu, neg, neg]


# ---- verify is linear ----------------------------------------------------------------
class _Name(str):
    """A value name that counts equality comparisons (a list.count / `in list` over names)."""
    compared = 0

    def __eq__(self, other):
        _Name.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def _wide(n: int) -> Graph:
    """n Relus reading one input, summed by a chain of n - 1 Adds: fan-out and depth both n."""
    g = Graph("wide")
    x = g.add_input("x", np.float32, (1, 8))
    outs = [g.add_node("Relu", [x]).outputs[0] for _ in range(n)]
    acc = outs[0]
    for y in outs[1:]:
        acc = g.add_node("Add", [acc, y]).outputs[0]
    g.outputs.append(acc)
    for v in g.values():
        v.shape, v.name = (1, 8), _Name(v.name)
    return g


def _verify_cost(g: Graph) -> tuple[int, int]:
    """(function calls, equality comparisons of nodes / values / names) made by verify()."""
    import sys
    from qcompiler.ir import Node, Value
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    compared = [0]

    def eq(a, b):
        compared[0] += 1
        return a is b

    _Name.compared = 0
    Node.__eq__ = Value.__eq__ = eq
    sys.setprofile(profile)
    try:
        g.verify()
    finally:
        sys.setprofile(None)
        del Node.__eq__, Value.__eq__
    return calls, compared[0] + _Name.compared


def test_verify_is_linear():
    """The work of verify() grows like the graph (the old one compared every pair: 0.84 s at 4k)."""
    small, big = _verify_cost(_wide(1000)), _verify_cost(_wide(4000))
    assert big[0] / small[0] < 4.5, (small, big)    # 4x the nodes, at most ~4x the calls
    assert big[1] <= 4 * 4000, big                   # no list.count / `in list` over nodes or names
