"""Calibration: streaming histogram observers, range rules with known answers, data-free ranges."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from conftest import MODELS
from qcompiler.quant.calibration import (FloatRunner, calibrate, choose_ranges, collect_statistics, iterate_samples,
                                   load_samples, minmax_tensors, tensor_roles)
from qcompiler.errors import CalibrationError
from qcompiler.ir import Graph
from qcompiler.quant.moments import clipped_gaussian_moments, data_free_ranges
from qcompiler.quant.observers import (HistogramObserver, kl_range, kl_threshold, minmax_range, mse_range,
                                 percentile_range, select_range)
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import optimize
from qcompiler.passes import COMMON_PIPELINE
from qcompiler.quant.scheme import IO_ROLES
from qcompiler.numerics.fixed_point import choose_activation_params


def observe(values, chunks=10) -> HistogramObserver:
    obs = HistogramObserver()
    for part in np.array_split(np.asarray(values, np.float64), chunks):
        obs.observe(part)
    return obs


# ---- the observer ---------------------------------------------------------------

def test_histogram_is_exact_while_the_range_grows():
    rng = np.random.default_rng(0)
    obs, everything = HistogramObserver(), []
    for i in range(200):  # the range keeps growing: bins get merged many times
        x = rng.normal(0, 1 + i, 500) * (rng.random(500) < 0.7)
        everything.append(x)
        obs.observe(x)
    x = np.concatenate(everything)
    assert obs.min == x.min() and obs.max == x.max()
    assert obs.zeros == np.count_nonzero(x == 0)
    edges, counts = obs.histogram()
    assert counts.sum() == np.count_nonzero(x)
    # every value lies in the bin the histogram counted it in (merging by pairs is exact)
    want, _ = np.histogram(x[x != 0], bins=edges)
    assert np.array_equal(want, counts)
    assert np.isclose(obs.mean, x.mean()) and np.isclose(obs.std, x.std())


def test_batched_observation_gives_the_same_histogram():
    """collect_statistics observes 8 samples at a time after the first: the bins must not change."""
    rng = np.random.default_rng(3)
    parts = [np.maximum(rng.normal(0, 1 + 3 * (i % 7), 400), 0).astype(np.float32) for i in range(41)]
    parts[5][:20] = -50.0  # a late sample widens the window on the negative side
    one, batched = HistogramObserver(), HistogramObserver()
    for p in parts:
        one.observe(p)
    batched.observe(parts[0])
    for i in range(1, len(parts), 8):
        batched.observe(np.concatenate(parts[i:i + 8]))
    assert (one.exp, one.min, one.max, one.zeros, one.n) == (batched.exp, batched.min, batched.max,
                                                              batched.zeros, batched.n)
    for a, b in zip(one.histogram(), batched.histogram()):
        assert np.array_equal(a, b)


def test_collect_statistics_batches_without_changing_results(monkeypatch):
    import qcompiler.quant.calibration as calibration
    g = _digits("digits_dwsep")
    samples = load_samples(MODELS / "digits_calib.npy", g)
    batched, n, _ = collect_statistics(g, iterate_samples(samples, g, 37))
    monkeypatch.setattr(calibration, "OBSERVE_BATCH", 1)
    single, n1, _ = collect_statistics(g, iterate_samples(samples, g, 37))
    assert n == n1 == 37 and set(batched) == set(single)
    for name in single:
        assert batched[name].exp == single[name].exp and batched[name].zeros == single[name].zeros
        for a, b in zip(batched[name].histogram(), single[name].histogram()):
            assert np.array_equal(a, b), name


def test_big_models_keep_fewer_samples_in_flight(monkeypatch):
    """A model whose activations per sample exceed the budget is calibrated one sample at a
    time (a 416x416 detector held 17 samples x 147 MB): the observers come out the same, and
    the per-layer report takes as many samples as fit."""
    import qcompiler.quant.calibration as calibration
    import qcompiler.quant.report as report
    g = _digits("digits_dwsep")
    samples = load_samples(MODELS / "digits_calib.npy", g)
    batched, _, _ = collect_statistics(g, iterate_samples(samples, g, 20))
    per_sample = 4 * calibration.values_per_sample(g)
    monkeypatch.setattr(calibration, "ACTIVATION_BYTES", 3 * per_sample)
    assert calibration.samples_in_memory(g) == 3 and report.report_samples(g) == 3
    seen = []
    original = calibration._observe_all
    monkeypatch.setattr(calibration, "_observe_all", lambda obs, batch, w=(): (seen.append(len(batch)),
                                                                              original(obs, batch, w)))
    small, _, _ = collect_statistics(g, iterate_samples(samples, g, 20))
    assert max(seen) == 1
    for name in small:
        for a, b in zip(batched[name].histogram(), small[name].histogram()):
            assert np.array_equal(a, b), name
    monkeypatch.setattr(calibration, "ACTIVATION_BYTES", 1)
    assert calibration.samples_in_memory(g) == 1 and report.report_samples(g) == 1


def test_observer_memory_does_not_grow_with_samples():
    rng = np.random.default_rng(1)
    obs = HistogramObserver()
    obs.observe(rng.normal(size=10_000))
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for _ in range(300):
        obs.observe(rng.normal(size=10_000) * 3)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert obs.n == 301 * 10_000
    assert obs.counts.shape == (obs.bins,)
    assert current - base < 200_000  # no per-sample state is kept


def test_constant_and_single_value_tensors():
    obs = observe(np.full(100, 2.5))
    assert minmax_range(obs) == (2.5, 2.5)
    for method in ("minmax", "percentile", "mse", "kl"):
        lo, hi = select_range(obs, method)
        assert lo == 2.5 and hi == 2.5
    z = observe(np.zeros(50))
    assert select_range(z, "mse") == (0.0, 0.0)


# ---- range rules with known answers ------------------------------------------------

def test_percentile_matches_numpy():
    x = np.random.default_rng(2).normal(0.5, 2.0, 200_000)
    obs = observe(x)
    lo, hi = percentile_range(obs, 99.9)
    want_lo, want_hi = np.percentile(x, [0.1, 99.9])
    width = obs.width
    assert abs(lo - want_lo) <= width and abs(hi - want_hi) <= width


def test_percentile_counts_relu_zeros():
    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(size=100_000), 0)
    lo, hi = percentile_range(observe(x), 99.0)
    assert lo == 0.0
    assert abs(hi - np.percentile(x, 99.0)) < 0.01


def _reference_kl(hist, i, levels):
    """TensorRT's KL(P || Q) for threshold bin i, spelled out with loops."""
    p = [float(h) for h in hist[:i]]
    p[-1] += float(sum(hist[i:]))
    q = [0.0] * i
    for chunk in np.array_split(np.arange(i), levels):
        mass = sum(hist[j] for j in chunk)
        used = [j for j in chunk if hist[j] > 0]
        for j in used:
            q[j] = mass / len(used)
    ps, qs = sum(p), sum(q)
    return sum(pj / ps * np.log((pj / ps) / max(qj / qs, 1e-12)) for pj, qj in zip(p, q) if pj > 0)


def test_kl_threshold_on_a_known_distribution():
    centers = (np.arange(512) + 0.5) / 512 * 5.0
    hist = np.round(1e6 * np.exp(-0.5 * centers ** 2))  # half-normal over [0, 5 sigma], 512 bins
    levels = 64
    want = min(range(levels, 513), key=lambda i: (_reference_kl(hist, i, levels), i))
    got = kl_threshold(hist, levels)
    assert got == want
    assert 2.0 < got / 512 * 5.0 < 5.0  # in sigmas: clips the far tail, keeps the bulk


def test_kl_threshold_simple_cases():
    uniform = np.full(2048, 10.0)
    assert kl_threshold(uniform, 256) == 2048  # nothing to gain from clipping
    half = np.zeros(2048)
    half[:1024] = 1000.0
    assert kl_threshold(half, 256) == 1024  # empty bins above the data are not kept


def test_kl_keeps_relu_ranges():
    """A ReLU output (half exact zeros) must not get its range shrunk by the zero spike."""
    rng = np.random.default_rng(4)
    x = np.maximum(rng.uniform(-1, 1, 400_000), 0)
    lo, hi = kl_range(observe(x))
    assert lo == 0.0 and hi > 0.97


def test_kl_clips_a_long_tail_but_not_too_hard():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(0, 1, 1_000_000), rng.uniform(1, 20, 50)])
    lo, hi = kl_range(observe(x))
    assert 0.95 < hi < 20
    # never clips more than KL_MAX_CLIPPED of the values
    assert np.mean(x > hi) <= 1e-4 + 1e-6


def _fake_quant_mse(x, lo, hi):
    scale, zp = choose_activation_params(lo, hi)
    q = np.clip(np.round(x / scale) + zp, -128, 127)
    return np.mean(((q - zp) * scale - x) ** 2)


def test_mse_range_is_near_the_brute_force_optimum():
    rng = np.random.default_rng(6)
    x = np.maximum(rng.laplace(0, 1, 200_000), 0)
    lo, hi = mse_range(observe(x))
    grid = np.linspace(0.5, x.max(), 400)
    errors = [_fake_quant_mse(x, 0, h) for h in grid]
    best = grid[int(np.argmin(errors))]
    assert lo == 0.0
    assert abs(hi - best) / best < 0.1
    assert _fake_quant_mse(x, 0, hi) <= 1.05 * min(errors)


def test_mse_keeps_the_full_range_of_a_uniform_distribution():
    x = np.random.default_rng(7).uniform(-3, 5, 100_000)
    lo, hi = mse_range(observe(x))
    assert lo < -2.9 and hi > 4.9


# ---- calibration over a model ----------------------------------------------------------

def _digits(name="digits_cnn") -> Graph:
    g = load_model(MODELS / f"{name}.onnx")
    return optimize(g, COMMON_PIPELINE)[0]


def test_onnxruntime_and_interpreter_agree():
    g = _digits()
    samples = load_samples(MODELS / "digits_calib.npy", g)
    fast, _, engine = collect_statistics(g, iterate_samples(samples, g, 40))
    slow, _, engine2 = collect_statistics(g, iterate_samples(samples, g, 40), runner=FloatRunner(g, False))
    assert (engine, engine2) == ("onnxruntime", "interpreter")
    for name in fast:
        assert np.isclose(fast[name].min, slow[name].min, atol=1e-4)
        assert np.isclose(fast[name].max, slow[name].max, rtol=1e-5, atol=1e-5)


def test_logits_and_inputs_keep_min_max():
    g = _digits("digits_dwsep")  # ends in Gemm -> Softmax
    roles = tensor_roles(g)
    softmax = next(n for n in g.nodes if n.op == "Softmax")
    assert roles[softmax.inputs[0].name] == "logits" and roles[g.inputs[0].name] == "input"
    samples = load_samples(MODELS / "digits_calib.npy", g)
    obs, _, _ = collect_statistics(g, iterate_samples(samples, g))
    ranges = choose_ranges(g, obs, "kl")
    logits = softmax.inputs[0].name
    assert ranges[logits] == (obs[logits].min, obs[logits].max)


def test_first_layer_keeps_min_max_and_deeper_layers_clip(tmp_path):
    """The first weighted layer (here behind a layout Transpose) is not clipped; the next one is."""
    from onnx import helper
    from onnx_builders import const, save_model
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"])]
    path = save_model(tmp_path / "m.onnx", nodes, {"x": [1, 8, 8, 3]}, {"y": [1, 2, 8, 8]},
                      [const("w1", [4, 3, 3, 3]), const("b1", [4]), const("w2", [4, 4, 3, 3]), const("b2", [4]),
                       const("w3", [2, 4, 1, 1]), const("b3", [2])])
    g = optimize(load_model(path), COMMON_PIPELINE)[0]
    first, second, _ = [n.outputs[0].name for n in g.nodes if n.op == "Conv"]
    roles = tensor_roles(g)
    assert (roles[first], roles.get(second, "hidden")) == ("first", "hidden")
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.normal(size=(1, 8, 8, 3)).astype(np.float32)} for _ in range(300)]
    feeds[7]["x"][0, 3, 3] = 40.0  # one loud pixel: a tail in both layers' outputs
    obs, _, _ = collect_statistics(g, iter(feeds))
    ranges = choose_ranges(g, obs, "percentile")
    assert ranges[first] == (obs[first].min, obs[first].max)
    assert ranges[second] == percentile_range(obs[second]) and ranges[second][1] < 0.9 * obs[second].max
    # a target with its own (symmetric) scheme, e.g. ncnn, clips the first layer like the rest
    assert choose_ranges(g, obs, "percentile", minmax_roles=IO_ROLES)[first] == percentile_range(obs[first])


def test_first_layer_rule_is_for_the_int8_tflite_scheme_only():
    """Measured on digits_dwsep under ncnn: clipped 41.32 dB, min-max 36.17 dB."""
    from qcompiler.driver.pipeline import CompileOptions
    from qcompiler.backends.ncnn import NCNN_INT8
    from qcompiler.quant.ptq import run_ptq
    g = _digits("digits_dwsep")
    first = next(n for n, r in tensor_roles(g).items() if r == "first")
    calib = str(MODELS / "digits_calib.npy")
    opts = CompileOptions(calib=calib, bias_correction="off")
    _, _, tflite = run_ptq(g, calib, opts)
    _, _, ncnn = run_ptq(_digits("digits_dwsep"), calib, opts, scheme=NCNN_INT8)
    assert ncnn[first][1] < 0.95 * tflite[first][1]


def test_range_only_observers_keep_extremes_and_refuse_histogram_rules():
    """Tensors whose range is min-max anyway skip the histogram; the ranges do not change."""
    g = _digits("digits_dwsep")
    samples = load_samples(MODELS / "digits_calib.npy", g)
    full, _, _ = collect_statistics(g, iterate_samples(samples, g, 40))
    names = minmax_tensors(g, "percentile")
    assert g.inputs[0].name in names and any(r == "first" for n, r in tensor_roles(g).items() if n in names)
    lean, _, _ = collect_statistics(g, iterate_samples(samples, g, 40), range_only=names)
    assert choose_ranges(g, lean, "percentile") == choose_ranges(g, full, "percentile")
    hidden = next(n for n in full if n not in names)
    assert choose_ranges(g, full, "percentile")[hidden] != (full[hidden].min, full[hidden].max)
    some = next(iter(names))
    assert lean[some].counts.size == 0 and (lean[some].min, lean[some].max) == (full[some].min, full[some].max)
    with pytest.raises(ValueError, match="needs a histogram"):
        select_range(lean[some], "percentile")
    assert minmax_tensors(g, "minmax") == {v.name for v in g.values()}


def test_unknown_method_is_a_clear_error():
    g = _digits()
    with pytest.raises(CalibrationError, match="minmax, percentile, kl, mse"):
        calibrate(g, iter([]), "entropy")


def test_large_npy_samples_are_memory_mapped_small_ones_read_whole(tmp_path, monkeypatch):
    from qcompiler.quant import samples
    g = _digits()
    data = np.load(MODELS / "digits_calib.npy")
    np.save(tmp_path / "c.npy", data)
    small = load_samples(tmp_path / "c.npy", g)["input"]
    assert not isinstance(small, np.memmap) and np.array_equal(small, data)
    monkeypatch.setattr(samples, "SMALL_FILE_BYTES", data.nbytes - 1)
    assert isinstance(load_samples(tmp_path / "c.npy", g)["input"], np.memmap)


# ---- data-free ranges ---------------------------------------------------------------------

def test_clipped_gaussian_moments_match_sampling():
    rng = np.random.default_rng(8)
    for m, v, a, b in [(0.5, 2.0, 0, np.inf), (3.0, 4.0, 0, 6), (0.0, 1.0, -1, 1)]:
        z = np.clip(rng.normal(m, np.sqrt(v), 1_000_000), a, b)
        mean, var = clipped_gaussian_moments(np.array([m]), np.array([v]), a, b)
        assert abs(mean[0] - z.mean()) < 0.01 and abs(var[0] - z.var()) < 0.02


def test_data_free_ranges_from_batchnorm_statistics():
    g = Graph("bn")
    x = g.add_input("x", np.float32, (1, 2, 4, 4))
    w = g.add_constant("w", np.ones((3, 2, 1, 1), np.float32))
    conv = g.add_node("Conv", [x, w], attrs={"clamp": [0.0, None]})
    y = conv.outputs[0]
    y.shape = (1, 3, 4, 4)
    g.outputs.append(y)
    beta, gamma = np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, 2.0])
    conv.meta["bn"] = {"beta": beta, "gamma": gamma, "mean": 0, "var": 1, "eps": 0}
    ranges = data_free_ranges(g, {"x": (0.0, 1.0)}, sigmas=4.0)
    assert ranges["x"] == (0.0, 1.0)
    assert ranges[y.name] == (0.0, pytest.approx(max(beta + 4 * np.abs(gamma))))


def test_data_free_needs_an_input_range():
    with pytest.raises(CalibrationError, match="--input-range"):
        data_free_ranges(_digits(), {})


def test_quantization_numerics_use_one_blas_thread_even_if_numpy_came_first(monkeypatch):
    """A script that imported numpy before qcompiler has a multi-threaded BLAS, whose float32
    products round differently (MLPerf IC: 71 bias entries differ); run_ptq limits it to one."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import qcompiler.quant.ptq as ptq
    from qcompiler.driver.pipeline import CompileOptions
    seen = []
    real = ptq.choose_ranges

    def spy(*args, **kwargs):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ptq, "choose_ranges", spy)
    g = _digits()
    calib = str(MODELS / "digits_calib.npy")
    with threadpool_limits(limits=2, user_api="blas"):
        outside = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
        ptq.run_ptq(g, calib, CompileOptions(calib=calib, max_calib_samples=8))
    assert outside and all(n == 2 for n in outside)
    assert seen and all(n == 1 for n in seen[0])
