"""GPTQ weight rounding (qcompiler/quant/gptq.py): same integer grid, smaller layer output error,
and the compiled int16 model keeps running bit-exactly."""
from __future__ import annotations

import numpy as np

from conftest import MODELS
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.numerics.fixed_point import symmetric_weight_scales
from qcompiler.quant.gptq import _gptq_rows, _patches, round_weights


def test_gptq_stays_on_the_grid_and_lowers_the_output_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 48)) + 2.0
    w = rng.normal(size=(12, 48)) * 0.1
    s = symmetric_weight_scales(w, 0).astype(np.float64)
    nearest = np.clip(np.round(w / s[:, None]), -127, 127) * s[:, None]
    g = _gptq_rows(w, s, x.T @ x / len(x), 127)
    k = np.round(g / s[:, None])
    assert np.allclose(k * s[:, None], g) and np.abs(k).max() <= 127
    err = lambda q: np.mean(((w - q) @ x.T) ** 2)  # noqa: E731
    assert err(g) < 0.5 * err(nearest)


def test_patches_are_the_convolution():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 7, 6))
    w = rng.normal(size=(6, 2, 3, 3))  # group 2
    geometry = ([1, 0, 1, 2], [2, 1], [1, 1], 2, w.shape)
    cols = _patches(x, geometry)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (0, 2)))
    ho, wo = (xp.shape[2] - 3) // 2 + 1, xp.shape[3] - 2
    for g in range(2):
        y = cols[g] @ w[3 * g:3 * g + 3].reshape(3, -1).T
        ref = np.array([[[[np.sum(xp[n, 2 * g:2 * g + 2, 2 * i:2 * i + 3, j:j + 3] * w[3 * g + c])
                           for j in range(wo)] for i in range(ho)] for c in range(3)] for n in range(2)])
        assert np.allclose(y.reshape(2, ho, wo, 3).transpose(0, 3, 1, 2), ref)
    assert round_weights(w, symmetric_weight_scales(w, 0), 0, [np.eye(18)] * 2).shape == w.shape


def test_int16_with_gptq_is_bit_exact_and_not_worse(tmp_path):
    calib, evals = np.load(MODELS / "digits_calib.npy"), np.load(MODELS / "digits_eval.npy")[:32]
    from qcompiler.driver.verify import verify_outdir
    sqnr = {}
    for rounding in ("nearest", "gptq"):
        out = tmp_path / rounding
        res = compile_model(MODELS / "digits_dwsep.onnx", out, CompileOptions(
            calib=calib, activations="int16", weight_rounding=rounding))
        assert ("weight_rounding" in res.report["calibration"]) == (rounding == "gptq")
        check = verify_outdir(out, evals, with_litert=False)
        assert check["tflm"]["bit_exact"]
        sqnr[rounding] = check["fidelity"]["tflm"]["output"]["sqnr_db"]
    assert sqnr["gptq"] > sqnr["nearest"] - 0.5


def test_bounded_rounding_picks_floor_or_ceiling_and_is_never_worse_than_nearest():
    """Against brute force over every floor/ceiling choice of small rows: each weight stays on
    one of its two neighbours, the calibration error is never above nearest's and never below
    the optimum, and the greedy sweep finds the optimum on at least half of the rows, clearly more often than nearest."""
    import itertools
    rng = np.random.default_rng(3)
    optimal = near_optimal = 0
    for _ in range(60):
        k = 6
        x = rng.normal(size=(int(rng.integers(3, 30)), k)) + rng.normal(size=k)
        w = rng.normal(size=(2, k)) * 0.3
        s = np.abs(w).max(axis=1) / 127 * 40          # coarse grid: the choice matters
        h = x.T @ x / len(x)
        q = _gptq_rows(w, s, h, 127, bounded=True)
        lo = np.floor(w / s[:, None])
        k_int = np.round(q / s[:, None])
        assert np.all((k_int == lo) | (k_int == lo + 1))
        for r in range(2):
            err = lambda v: float((w[r] - v) @ h @ (w[r] - v))  # noqa: E731
            best = min(err((lo[r] + np.array(b)) * s[r]) for b in itertools.product((0, 1), repeat=k))
            near = np.round(w[r] / s[r]) * s[r]
            assert best - 1e-12 <= err(q[r]) <= err(near) + 1e-12
            optimal += err(q[r]) <= best * (1 + 1e-9) + 1e-15
            near_optimal += err(near) <= best * (1 + 1e-9) + 1e-15
    assert optimal >= 0.5 * 120 and optimal > near_optimal + 10, (optimal, near_optimal)


def test_bounded_takes_batch_one_fc_layers_and_stays_bit_exact(tmp_path):
    """Bounded rounding keeps no rank guard (a batch-1 Gemm gets one H row per sample) and
    the int8 model still runs bit-exactly in TFLM."""
    from qcompiler.driver.verify import verify_outdir
    calib, evals = np.load(MODELS / "digits_calib.npy"), np.load(MODELS / "digits_eval.npy")[:32]
    res = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "b", CompileOptions(calib=calib, weight_rounding="bounded"))
    wr = res.report["calibration"]["weight_rounding"]
    gemms = [n for n in res.quant_graph.nodes if n.op == "Gemm"]
    assert wr["method"] == "bounded" and gemms and wr["layers"] == len(
        [n for n in res.quant_graph.nodes if n.op in ("Conv", "Gemm")])
    check = verify_outdir(tmp_path / "b", evals, with_litert=False)
    assert check["tflm"]["bit_exact"]


def _mlp(path, row_spread: float):
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(5)
    w1 = rng.normal(size=(32, 48)) * np.geomspace(1.0, row_spread, 32)[:, None] * 0.2   # rows differ in range
    w2 = rng.normal(size=(16, 32)) * 0.2
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((w1, "w1"), (rng.normal(size=32) * 0.1, "b1"), (w2, "w2"), (rng.normal(size=16) * 0.1, "b2"))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h0"], name="fc1", transB=1),
             helper.make_node("Relu", ["h0"], ["h"], name="relu"),
             helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], name="fc2", transB=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_int8_auto_rounds_bounded_only_the_layers_per_channel_would_rescue(tmp_path):
    """--weight-rounding auto (int8, tflm): fc1's rows span 1..40x in range (per channel would
    gain >= 3 dB, the arena budget keeps it per tensor) -> bounded; fc2's rows are alike ->
    nearest. The model stays bit-exact in TFLM and is not worse than all-nearest."""
    from qcompiler.driver.verify import verify_outdir
    model = _mlp(tmp_path / "mlp.onnx", 1 / 40)
    rng = np.random.default_rng(6)
    calib, evals = rng.normal(size=(96, 48)).astype(np.float32), rng.normal(size=(48, 48)).astype(np.float32)
    sqnr = {}
    for rounding in ("auto", "nearest"):
        res = compile_model(model, tmp_path / rounding, CompileOptions(calib=calib, weight_rounding=rounding))
        wr = res.report["calibration"].get("weight_rounding")
        if rounding == "auto":
            assert wr == {"method": "bounded", "layers": 1, "samples": 32, "scope": "layers with per-tensor weights"}
            assert res.report["calibration"]["fc_per_channel"] == []
        else:
            assert wr is None
        check = verify_outdir(tmp_path / rounding, evals, with_litert=False)
        assert check["tflm"]["bit_exact"]
        sqnr[rounding] = check["fidelity"]["tflm"]["y"]["sqnr_db"]
    assert sqnr["auto"] >= sqnr["nearest"] - 0.1, sqnr
    alike = compile_model(_mlp(tmp_path / "alike.onnx", 1.0), tmp_path / "alike", CompileOptions(calib=calib))
    assert "weight_rounding" not in alike.report["calibration"]
