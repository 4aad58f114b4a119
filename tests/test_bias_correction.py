"""Bias correction removes the mean output shift planted by weight quantization."""
from __future__ import annotations

import numpy as np

from qcompiler.interp import INT_KERNELS, Interpreter
from qcompiler.ir import Graph
from qcompiler.quant.moments import Moments
from qcompiler.quant.bias_correction import analytic_bias_correction, empirical_bias_correction
from qcompiler.quant.quantize import quantize_graph

STEP = 0.01  # per-tensor weight step (max |w| = 1.27)


def planted_gemm() -> Graph:
    """FC layer whose weights all sit 0.4 step above the int8 grid: quantization lowers every output."""
    rng = np.random.default_rng(0)
    k = rng.integers(-100, 100, size=(4, 64)).astype(np.float64)
    k[0, 0] = 127  # pins the per-tensor scale to exactly STEP
    w = (k + np.where(k == 127, 0.0, 0.4)) * STEP
    g = Graph("planted")
    x = g.add_input("x", np.float32, (1, 64))
    node = g.add_node("Gemm", [x, g.add_constant("w", w.astype(np.float32)),
                               g.add_constant("b", np.zeros(4, np.float32))], attrs={"transB": 1})
    y = node.outputs[0]
    y.shape = (1, 4)
    g.outputs.append(y)
    return g


def inputs(n=200):
    return np.random.default_rng(1).uniform(0.5, 1.5, size=(n, 64)).astype(np.float32)  # mean 1


def mean_error(g: Graph, q: Graph, xs: np.ndarray) -> np.ndarray:
    w, b = g.nodes[0].input(1).data.astype(np.float64), g.nodes[0].input(2).data.astype(np.float64)
    qi = Interpreter(q, INT_KERNELS)
    err = []
    for x in xs:
        ref = x.astype(np.float64) @ w.T + b
        out = q.outputs[0].quant.dequantize(qi.run({"x": q.inputs[0].quant.quantize(x[None])})["%s" % q.outputs[0].name])
        err.append(out[0] - ref)
    return np.mean(err, axis=0)


def _quantized(g: Graph) -> Graph:
    xs = inputs()
    y = xs.astype(np.float64) @ g.nodes[0].input(1).data.T.astype(np.float64)
    ranges = {"x": (0.0, 1.5), g.outputs[0].name: (float(y.min()) - 1, float(y.max()) + 1)}
    return quantize_graph(g, ranges, per_tensor=True)


def test_planted_shift_exists_without_correction():
    g = planted_gemm()
    shift = mean_error(g, _quantized(g), inputs())
    assert np.all(shift < -0.2)  # 63 weights x 0.4 step x E[x] = 1 -> about -0.25 per output


def test_empirical_bias_correction_removes_the_shift():
    g = planted_gemm()
    q = _quantized(g)
    xs = inputs()
    summary = empirical_bias_correction(g, q, [{"x": x[None]} for x in xs[:100]])
    assert summary["layers"] == 1 and summary["max_abs_shift"] > 0.2
    assert np.all(np.abs(mean_error(g, q, xs[100:])) < 0.03)


def test_analytic_bias_correction_removes_the_shift():
    g = planted_gemm()
    q = _quantized(g)
    moments = {"x": Moments(np.ones(64), np.full(64, 1 / 12), source="input")}
    summary = analytic_bias_correction(g, q, moments)
    assert summary["layers"] == 1
    assert np.all(np.abs(mean_error(g, q, inputs())) < 0.03)


def test_analytic_correction_ignores_rough_moments():
    g = planted_gemm()
    q = _quantized(g)
    before = q.nodes[0].input(2).data.copy()
    summary = analytic_bias_correction(g, q, {"x": Moments(np.ones(64), np.ones(64), source="propagated")})
    assert summary["layers"] == 0 and np.array_equal(q.nodes[0].input(2).data, before)


def test_input_sums_tapped_from_calibration_give_the_same_correction():
    """The float side of bias correction from calibration's own pass (LayerInputSums) equals a
    separate float pass over the same samples, bit for bit, on a real conv net."""
    from conftest import MODELS
    from qcompiler.quant.calibration import (FloatRunner, choose_ranges, collect_statistics, iterate_samples,
                                       load_samples, spread_indices)
    from qcompiler.frontend.onnx_import import load_model
    from qcompiler.quant.bias_correction import LayerInputSums
    from qcompiler.driver.pipeline import optimize
    from qcompiler.passes import COMMON_PIPELINE
    g = optimize(load_model(MODELS / "digits_dwsep.onnx"), COMMON_PIPELINE)[0]
    samples = load_samples(MODELS / "digits_calib.npy", g)
    indices = spread_indices(60, 13)
    sums = LayerInputSums(g, indices)
    runner = FloatRunner(g)
    obs, _, _ = collect_statistics(g, iterate_samples(samples, g, 60), 60, runner, tap=sums.add)
    ranges = choose_ranges(g, obs, "percentile")
    feeds = list(iterate_samples(samples, g, indices=indices))
    tapped, separate = quantize_graph(g, ranges), quantize_graph(g, ranges)
    empirical_bias_correction(g, tapped, feeds, runner, input_sums=sums)
    assert sums.complete(sums.layers) and len(sums.layers) == 6  # 5 Conv + 1 Gemm
    empirical_bias_correction(g, separate, feeds, runner)
    biases = [(a.input(2).data, b.input(2).data) for a, b in zip(tapped.nodes, separate.nodes)
              if a.op in ("Conv", "Gemm")]
    assert len(biases) == 6 and all(np.array_equal(a, b) for a, b in biases)
    partial = LayerInputSums(g, indices)
    partial.add(indices[0], runner.run(feeds[0]))
    assert not partial.complete(partial.layers)  # not every sample seen: bias correction runs its own pass


def test_input_sums_of_a_gemm_over_several_rows_per_sample():
    """A Gemm whose axis 0 is not the batch (an unrolled LSTM's input projection over its time
    steps, [steps, K]): the mean input is the mean over every row of every sample, not the
    per-sample row sum (which made the CRNN's correction shift biases by up to 354)."""
    from qcompiler.quant.bias_correction import LayerInputSums
    rng = np.random.default_rng(2)
    g = Graph("steps")
    x = g.add_input("x", np.float32, (1, 5, 8))
    r = g.add_node("Reshape", [x, g.add_constant("shape", np.array([5, 8], np.int64))], name="r").outputs[0]
    r.shape = (5, 8)
    w = rng.normal(size=(3, 8)).astype(np.float32)
    gemm = g.add_node("Gemm", [r, g.add_constant("w", w), g.add_constant("b", np.ones(3, np.float32))],
                      attrs={"transB": 1}, name="fc")
    gemm.outputs[0].shape = (5, 3)
    g.outputs.append(gemm.outputs[0])
    xs = rng.uniform(0, 2, size=(4, 5, 8)).astype(np.float32)
    sums = LayerInputSums(g, range(4))
    for i, s in enumerate(xs):
        sums.add(i, {"x": s[None], r.name: s})
    mean = sums.output_means(sums.layers)["fc"]
    np.testing.assert_allclose(mean, xs.reshape(-1, 8).astype(np.float64).mean(axis=0) @ w.T + 1, rtol=1e-6)
