"""The input of a SiLU (x * Sigmoid(x)) gets the range that minimizes the SiLU's error
(observers.consumer_mse_range), not the min-max a Sigmoid's logit keeps.

Measured on the corpus detectors (40 evaluation samples, TFLM-exact reference): ddddocr_det
12.36 -> 21.34 dB, nudenet_320n boxes 28.17 -> 35.90 dB, against min-max on every SiLU input.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from onnx_builders import const, save_model
from qcompiler.driver.pipeline import CompileOptions, compile_model, optimize
from qcompiler.frontend.onnx_import import load_model
from qcompiler.interp import run_int
from qcompiler.passes import COMMON_PIPELINE
from qcompiler.quant import calibration
from qcompiler.quant.calibration import choose_ranges, collect_statistics, tensor_roles
from qcompiler.quant.observers import HistogramObserver, consumer_mse_range, minmax_range, mse_range, percentile_range


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _fake_quant(x, lo, hi):
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    step = (hi - lo) / 255.0
    zp = np.round(-128 - lo / step)
    return (np.clip(np.round(x / step) + zp, -128, 127) - zp) * step


def test_silu_rule_beats_every_other_rule_on_the_silu_error():
    """A conv output with a long negative tail (BatchNorm-folded: down to -40) and a few large
    positives: the rule cuts the tail the SiLU ignores and keeps the positives it passes on."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.5, 1.5, 200_000), rng.uniform(-40, -5, 2_000), rng.uniform(6, 12, 60)])
    obs = HistogramObserver()
    for part in np.array_split(x, 10):
        obs.observe(part)
    errors = {}
    for name, rule in {"silu": consumer_mse_range, "minmax": minmax_range, "mse": mse_range,
                       "percentile": percentile_range}.items():
        lo, hi = rule(obs)
        errors[name] = float(np.mean((_silu(_fake_quant(x, lo, hi)) - _silu(x)) ** 2))
    lo, hi = consumer_mse_range(obs)
    assert -12 < lo < -4 and hi > 9, (lo, hi)
    assert errors["silu"] < 0.5 * errors["minmax"], errors
    assert errors["silu"] < min(errors["mse"], errors["percentile"]), errors


def _model(tmp_path, score=True, seed=3):
    """x -> Conv -> SiLU -> Conv -> SiLU -> Conv [-> Sigmoid: a score, its logit stays min-max]."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c1"], ["s1"]), helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c2"], ["s2"]), helper.make_node("Mul", ["s2", "c2"], ["a2"]),
             helper.make_node("Conv", ["a2", "w3", "b3"], ["c3" if score else "y"])]
    nodes += [helper.make_node("Sigmoid", ["c3"], ["y"])] if score else []
    rng = np.random.default_rng(seed)

    def w(name, shape, scale=0.5):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)
    inits = [w("w1", [8, 3, 3, 3]), w("w2", [8, 8, 3, 3], 0.4), w("w3", [2, 8, 1, 1]), w("b3", [2])]
    # biases: strongly negative channels give the long negative tails of BatchNorm-folded convs
    inits += [numpy_helper.from_array(rng.uniform(-12, 1, 8).astype(np.float32), "b1"),
              numpy_helper.from_array(rng.uniform(-12, 1, 8).astype(np.float32), "b2")]
    return save_model(tmp_path / "silu.onnx", nodes, {"x": [1, 3, 8, 8]}, {"y": [1, 2, 8, 8]}, inits)


def test_roles_find_silu_inputs_but_not_score_logits(tmp_path):
    g = optimize(load_model(_model(tmp_path)), COMMON_PIPELINE)[0]
    roles = tensor_roles(g)
    sig_inputs = [n.inputs[0].name for n in g.nodes if n.op == "Sigmoid"]
    assert [roles.get(n) for n in sig_inputs] == ["silu", "silu", "logits"]
    rng = np.random.default_rng(1)
    obs, _, _ = collect_statistics(g, iter([{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)}
                                            for _ in range(50)]))
    ranges = choose_ranges(g, obs, "percentile")
    assert ranges[sig_inputs[0]] == consumer_mse_range(obs[sig_inputs[0]])
    assert ranges[sig_inputs[2]] == (obs[sig_inputs[2]].min, obs[sig_inputs[2]].max)
    assert all(choose_ranges(g, obs, "minmax")[n] == (obs[n].min, obs[n].max) for n in sig_inputs)


def _output_sqnr(tmp_path, name, calib, ev, seed=3):
    import onnxruntime as ort
    path = _model(tmp_path, score=False, seed=seed)
    res = compile_model(path, tmp_path / name, CompileOptions(calib=calib))
    q = res.quant_graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": ev[i:i + 1]})[0] for i in range(len(ev))])
    out = q.outputs[0]
    got = np.concatenate([out.quant.dequantize(run_int(q, {"x": q.inputs[0].quant.quantize(ev[i:i + 1])})[out.name])
                          for i in range(len(ev))])
    return 10 * np.log10(np.sum(ref ** 2.0) / np.sum((ref - got) ** 2.0)), res


def test_silu_rule_gains_end_to_end(tmp_path, monkeypatch):
    """Six random conv-SiLU stacks: the rule never loses and gains on average (measured: +0.03 to
    +1.98 dB, mean +1.04); the model runs bit-exactly in TFLite Micro."""
    rng = np.random.default_rng(2)
    calib, ev = (rng.normal(size=(n, 3, 8, 8)).astype(np.float32) for n in (64, 32))
    rule = [_output_sqnr(tmp_path, f"rule{s}", calib, ev, seed=s)[0] for s in range(6)]
    monkeypatch.setattr(calibration, "silu_inputs", lambda graph: set())
    minmax = [_output_sqnr(tmp_path, f"minmax{s}", calib, ev, seed=s)[0] for s in range(6)]
    gains = np.subtract(rule, minmax)
    assert gains.min() > -0.05 and gains.mean() > 0.7, gains
    from qcompiler.driver.verify import verify_outdir
    assert verify_outdir(tmp_path / "rule0", ev[:4], with_litert=False)["tflm"]["bit_exact"]


@pytest.mark.parametrize("other", ["Add", "Relu"])
def test_a_sigmoid_input_read_by_anything_else_stays_a_logit(tmp_path, other):
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Sigmoid", ["c1"], ["s1"]),
             helper.make_node("Mul", ["c1", "s1"], ["a1"]),
             helper.make_node(other, ["c1", "a1"] if other == "Add" else ["c1"], ["o"]),
             helper.make_node("Add", ["a1", "o"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, {"x": [1, 3, 4, 4]}, {"y": [1, 4, 4, 4]}, [const("w1", [4, 3, 1, 1])])
    g = optimize(load_model(path), COMMON_PIPELINE)[0]
    sig = next(n for n in g.nodes if n.op == "Sigmoid")
    assert tensor_roles(g).get(sig.inputs[0].name) == "logits"
