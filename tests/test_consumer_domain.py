"""A tensor read only by saturating ops keeps its int8 range only where a reader still responds
(qcompiler/quant/quantize.py `consumer_domain`): the conv output before a HardSwish stops at -3."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper

from onnx_builders import save_model
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.quant.quantize import consumer_domain

X = (1, 4, 6, 6)


def conv_then(tmp_path, act: str, extra_reader: bool = False, act_is_output: bool = False):
    """Conv whose output reaches -20 (a large negative bias), then `act`; optionally a second
    reader (an Add) of the conv output, or the conv output itself a graph output."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, 4, 1, 1)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.array([-20.0, -5.0, 2.0, 0.0], np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node(act, ["c"], ["y"])]
    outputs = {"y": X}
    if extra_reader:
        nodes.append(helper.make_node("Add", ["c", "y"], ["z"]))
        outputs = {"z": X}
    if act_is_output:
        outputs = {"y": X, "c": X}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = save_model(tmp_path / "m.onnx", nodes, {"x": X}, outputs, [w, b], opset=14)
    calib = rng.normal(size=(16,) + X[1:]).astype(np.float32)
    (tmp_path / "out").parent.mkdir(parents=True, exist_ok=True)
    res = compile_model(path, tmp_path / "out", CompileOptions(calib=calib, bias_correction="off"))
    return {v.name: v for v in res.quant_graph.values()}


def step(v):
    return float(np.ravel(v.quant.scale)[0])


def low_end(v):
    return float((-128 - np.ravel(v.quant.zero_point)[0]) * step(v))


def test_hard_swish_input_stops_at_minus_three(tmp_path):
    c = conv_then(tmp_path, "HardSwish")["c"]
    assert -3.0 - step(c) <= low_end(c) <= -2.9


def test_sigmoid_input_stops_where_its_int8_output_saturates(tmp_path):
    vals = conv_then(tmp_path, "Sigmoid")
    c = vals["c"]
    assert low_end(c) >= -np.log(4 * 256 - 1) - step(c)  # fixed 1/256 output: ~ -6.93


def test_other_readers_and_graph_outputs_keep_the_calibrated_range(tmp_path):
    c = conv_then(tmp_path / "a", "HardSwish", extra_reader=True)["c"]
    assert low_end(c) < -15
    c = conv_then(tmp_path / "b", "HardSwish", act_is_output=True)["c"]
    assert low_end(c) < -15


def test_domains():
    class N:
        def __init__(self, op):
            self.op, self.inputs, self.attrs = op, [], {}
    assert consumer_domain(N("HardSwish")) == (-3.0, float("inf"))
    assert consumer_domain(N("Relu")) == (0.0, float("inf"))
    lo, hi = consumer_domain(N("Tanh"))
    assert -3.6 < lo < -3.4 and hi == -lo
    assert consumer_domain(N("Softmax")) is None and consumer_domain(N("Conv")) is None
