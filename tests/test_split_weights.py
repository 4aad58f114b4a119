"""passes/split_weights.py and --split-weights: a Gemm as two int8 weight halves + an int16 ADD.

Structure (Before/Expected), the float function, and the point of it: with --activations int16
the split model runs bit-exactly in tflite-micro (and TVM) and gains output SQNR over int8
weights on a small MLP whose rows differ in range (as BatchNorm-folded layers do).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from onnx import helper, numpy_helper

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir
from qcompiler.errors import QccError
from qcompiler.numerics.fixed_point import symmetric_weight_scales
from qcompiler.passes.split_weights import split

from onnx_builders import assert_matches_onnxruntime, ops, run_passes, save_model


def _mlp(path, widths=(24, 48, 48, 12)):
    """Gemm + Relu layers; each weight row scaled by 10^U(-1, 1) (rows of different ranges)."""
    rng = np.random.default_rng(7)
    nodes, inits, x = [], [], "x"
    for i, (k, m) in enumerate(zip(widths, widths[1:])):
        w = rng.normal(size=(m, k)) / np.sqrt(k) * 10.0 ** rng.uniform(-1, 1, (m, 1))
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array((rng.normal(size=m) * 0.1).astype(np.float32), f"b{i}")]
        last = i == len(widths) - 2
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], ["y" if last else f"g{i}"], name=f"fc{i}",
                                      transB=1))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"], name=f"relu{i}"))
            x = f"r{i}"
    return save_model(path, nodes, {"x": (1, widths[0])}, {"y": (1, widths[-1])}, inits)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(96, 24)).astype(np.float32), rng.normal(size=(64, 24)).astype(np.float32)


def test_split_halves_sum_to_the_weight():
    w = np.random.default_rng(0).normal(size=(6, 10)).astype(np.float32) * np.array([[1e-3], [0.1], [1], [10], [0], [5]],
                                                                                    np.float32)
    hi, lo = split(w)
    s = symmetric_weight_scales(w, 0).astype(np.float64)[:, None]
    k = hi / s
    assert np.allclose(k, np.round(k), atol=1e-4) and np.abs(k).max() <= 127.0001   # on the int8 grid
    assert np.all(np.abs(lo) <= s / 2 * (1 + 1e-6))                                  # half a step at most
    assert np.allclose(hi.astype(np.float64) + lo, w, rtol=0, atol=1e-6 * np.abs(w).max())


def test_split_rewrite_structure(tmp_path):
    path = _mlp(tmp_path / "mlp.onnx", (8, 6, 4))
    g, ctx = run_passes(path, ["fuse_activation", "split_weights"])
    # Before: fc0 (relu) -> fc1.  After: fc0_hi, fc0_lo -> Add (relu); fc1_hi, fc1_lo -> Add
    assert ops(g) == ["Gemm", "Gemm", "Add", "Gemm", "Gemm", "Add"]
    fc0_hi, fc0_lo, sum0 = g.nodes[:3]
    assert (fc0_hi.meta["split_weights"], fc0_lo.meta["split_weights"]) == ("hi", "lo")
    assert len(fc0_hi.inputs) == 3 and len(fc0_lo.inputs) == 2          # the bias stays on the high half
    assert "clamp" not in fc0_hi.attrs and "clamp" not in fc0_lo.attrs and sum0.attrs["clamp"] == [0.0, None]
    assert g.outputs[0].name == "y" and g.outputs[0].producer is g.nodes[-1]
    assert "split_weights: 2 layer(s)" in ctx.log[0]
    assert_matches_onnxruntime(path, g, tol=1e-5)


def _sqnr(check, target):
    return check["fidelity"][target]["y"]["sqnr_db"]


@pytest.mark.parametrize("target", ["tflm", pytest.param("tvm", marks=pytest.mark.slow)])
def test_split_weights_bit_exact_and_more_accurate(tmp_path, data, target):
    """int16 + --split-weights: bit-exact in the runtime, and well above int8 weights."""
    if target == "tvm":
        pytest.importorskip("tvm")
    calib, evals = data
    path = _mlp(tmp_path / "mlp.onnx")
    opts = {"with_litert": False} if target == "tflm" else {}
    results = {}
    for split_on in (False, True):
        out = tmp_path / f"{target}_{split_on}"
        res = compile_model(path, out, CompileOptions(target=target, calib=calib, activations="int16",
                                                      split_weights="fc" if split_on else "off"))
        check = verify_outdir(out, evals, **opts)
        assert check[target]["bit_exact"], check[target]
        results[split_on] = _sqnr(check, target)
        if split_on:
            q = res.quant_graph
            halves = [n for n in q.nodes if n.meta.get("split_weights") in ("hi", "lo")]
            assert len(halves) == 6 and all(n.input(1).quant.axis == 0 for n in halves)
            assert all(n.outputs[0].quant.dtype == np.int16 for n in q.nodes)
    # measured: 45.3 -> 71.8 dB (tflm and tvm)
    assert results[True] > results[False] + 15, results


def _convnet(path):
    """Conv (relu) -> depthwise Conv (relu) -> GlobalAveragePool -> Flatten -> Gemm."""
    rng = np.random.default_rng(5)

    def w(name, shape, scale):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)

    inits = [w("wc", (8, 3, 3, 3), 0.3), w("bc", (8,), 0.1), w("wd", (8, 1, 3, 3), 0.5), w("bd", (8,), 0.1),
             w("wg", (5, 8), 0.5), w("bg", (5,), 0.1)]
    nodes = [helper.make_node("Conv", ["x", "wc", "bc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["cr"], name="relu_c"),
             helper.make_node("Conv", ["cr", "wd", "bd"], ["d"], name="dw", pads=[1, 1, 1, 1], group=8, strides=[2, 2]),
             helper.make_node("Relu", ["d"], ["dr"], name="relu_d"),
             helper.make_node("GlobalAveragePool", ["dr"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "wg", "bg"], ["y"], name="fc", transB=1)]
    return save_model(path, nodes, {"x": (1, 3, 8, 8)}, {"y": (1, 5)}, inits)


@pytest.mark.parametrize("target", ["tflm", pytest.param("tvm", marks=pytest.mark.slow),
                                    pytest.param("c", marks=pytest.mark.slow)])
def test_split_all_weights_conv_bit_exact(tmp_path, target):
    """`--split-weights all` also splits convolutions (regular and depthwise), bit-exactly."""
    if target == "tvm":
        pytest.importorskip("tvm")
    if target == "c" and not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    rng = np.random.default_rng(2)
    calib, evals = rng.uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32), rng.uniform(-1, 1, (16, 3, 8, 8)).astype(np.float32)
    path = _convnet(tmp_path / "convnet.onnx")
    opts = {"with_litert": False} if target == "tflm" else {}
    results = {}
    for scope in ("off", "all"):
        out = tmp_path / f"{target}_{scope}"
        res = compile_model(path, out, CompileOptions(target=target, calib=calib, activations="int16", split_weights=scope))
        check = verify_outdir(out, evals, **opts)
        assert check[target]["bit_exact"], check[target]
        results[scope] = _sqnr(check, target)
    halves = {n.name for n in res.quant_graph.nodes if n.meta.get("split_weights")}
    assert halves == {f"{b}_{h}" for b in ("conv", "dw", "fc") for h in ("hi", "lo", "sum")}
    assert results["all"] > results["off"] + 10, results   # measured: 52.9 -> 78.6 dB


def test_split_named_nodes(tmp_path):
    path = _mlp(tmp_path / "mlp.onnx", (8, 6, 4))
    g, _ = run_passes(path, ["fuse_activation", "split_weights"], split_weights="fc1")
    assert ops(g) == ["Gemm", "Gemm", "Gemm", "Add"] and g.nodes[0].name == "fc0"
    with pytest.raises(QccError, match="--split-weights: relu0 is no Gemm or Conv"):
        run_passes(path, ["split_weights"], split_weights="relu0")


def test_split_weights_needs_int16(tmp_path, data):
    path = _mlp(tmp_path / "mlp.onnx", (8, 6, 4))
    with pytest.raises(QccError, match="--split-weights needs --activations int16"):
        compile_model(path, tmp_path / "o", CompileOptions(calib=data[0][:, :8], split_weights="fc"))
