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
