"""Activation equalization (conv -> depthwise conv): gains, float invariance, unchanged integer
weights, the per-layer accuracy it buys on a real model, and the bias-safe weight scales it relies on."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MODELS
from qcompiler.quant.calibration import FloatRunner
from qcompiler.interp import FLOAT_KERNELS, INT_KERNELS, Interpreter
from qcompiler.ir import Graph
from qcompiler.frontend.onnx_import import load_model
from qcompiler.quant.act_eq import (MAX_GAIN, ChannelExtremes, channel_gains, equalizable_pairs,
                                                  equalize_activations)
from qcompiler.quant.quantize import quantize_graph
from qcompiler.driver.pipeline import CompileOptions, optimize, pass_list, quantize
from test_equalize import _conv


def conv_then_depthwise(act="RELU"):
    """1x1 conv (4 channels of very different size) -> 3x3 depthwise conv."""
    rng = np.random.default_rng(0)
    g = Graph("conv_dw")
    x = g.add_input("x", np.float32, (1, 3, 6, 6))
    w1 = (rng.normal(size=(4, 3, 1, 1)) * np.array([5.0, 1.0, 0.1, 0.02])[:, None, None, None]).astype(np.float32)
    a, y1 = _conv(g, x, w1, np.abs(rng.normal(size=4)).astype(np.float32) * 0.1, act)
    b, y2 = _conv(g, y1, rng.normal(size=(4, 1, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32),
                  "NONE", group=4, pads=(1, 1, 1, 1))
    g.outputs.append(y2)
    return g, a, b


def samples(n=16):
    return np.random.default_rng(1).normal(size=(n, 1, 3, 6, 6)).astype(np.float32)


def extremes_of(g: Graph, xs) -> ChannelExtremes:
    ext = ChannelExtremes(a.outputs[0].name for a, _ in equalizable_pairs(g))
    runner = FloatRunner(g)
    acts = [runner.run({"x": x}) for x in xs]
    for name in ext.names:  # one sample, then the rest stacked (as calibration hands them over)
        ext.watch(name, acts[0][name])
        ext.watch(name, np.concatenate([a[name] for a in acts[1:]]))
    return ext


def test_channel_gains_known_answer():
    lo = np.zeros(5)
    hi = np.array([4.0, 1.0, 0.1, 0.0, 0.0039])
    t = channel_gains(lo, hi)
    # the largest channel stays; 4x smaller gets 4; 40x smaller is capped; 0 and < 1e-3 of the top are dead
    assert np.allclose(t, [1.0, 4.0, MAX_GAIN, 1.0, 1.0])
    assert np.allclose(channel_gains(np.array([-2.0, -0.5]), np.array([1.0, 0.25])), [1.0, 4.0])


def test_pairs_need_a_depthwise_reader_and_relu_or_nothing():
    g, a, b = conv_then_depthwise()
    assert equalizable_pairs(g) == [(a, b)]
    assert equalizable_pairs(conv_then_depthwise("RELU6")[0]) == []  # relu6(t x) != t relu6(x)


def test_float_function_and_integer_weights_unchanged():
    g, a, b = conv_then_depthwise()
    xs = samples()
    before = [Interpreter(g, FLOAT_KERNELS).run({"x": x})[g.outputs[0].name] for x in xs]
    name = a.outputs[0].name
    ranges = {v.name: (-10.0, 10.0) for v in g.values() if not v.is_constant}
    q_before = quantize_graph(g, ranges)
    ext = extremes_of(g, xs)
    done = equalize_activations(g, ext)
    assert list(done) == [name]
    after = [Interpreter(g, FLOAT_KERNELS).run({"x": x})[g.outputs[0].name] for x in xs]
    for y0, y1 in zip(before, after):
        assert np.max(np.abs(y1 - y0)) <= 1e-5 * np.max(np.abs(y0))
    q_after = quantize_graph(g, ranges)
    for n0, n1 in zip(q_before.nodes, q_after.nodes):  # per-channel weights: the same integers
        assert np.array_equal(n0.input(1).data, n1.input(1).data)
    # every live channel now reaches the largest channel's extreme (or the cap)
    t, (lo, hi) = done[name]
    runner = FloatRunner(g)
    peak = np.max([runner.run({"x": x})[name].max(axis=(0, 2, 3)) for x in xs], axis=0)
    top = ext.hi[name].max()
    assert np.allclose(np.minimum(peak, top), np.minimum(ext.hi[name] * t, top), rtol=1e-5)
    assert t[0] == 1.0 and t[3] == MAX_GAIN and hi == pytest.approx(top, rel=1e-6) and lo == 0.0


def test_digits_dwsep_gains_precision_where_it_equalizes():
    """On the shipped depthwise-separable model the equalized tensor gets better per-layer SQNR
    (measured +0.55 dB) and no layer after it gets worse (+0.1 to +1.3 dB); off, the summary
    says nothing was equalized."""
    model, calib = MODELS / "digits_dwsep.onnx", str(MODELS / "digits_calib.npy")
    reports = {}
    for on in (True, False):
        opts = CompileOptions(calib=calib, act_eq=on)
        g, _ = optimize(load_model(model), pass_list(opts), opts)
        _, summary, _ = quantize(g, calib, opts)
        reports[on] = (summary, {e["tensor"]: e["sqnr_db"] for e in summary["layers"]})
    (s_on, on), (s_off, off) = reports[True], reports[False]
    assert s_on["activation_equalization"]["tensors"] == 1 and "activation_equalization" not in s_off
    assert on["/0/0.6/Conv_output_0"] >= off["/0/0.6/Conv_output_0"] + 0.3
    for tensor in ("/0/0.9/Conv_output_0", "/0/0.12/Conv_output_0", "/0/0.17/Gemm_output_0"):
        assert on[tensor] >= off[tensor], tensor
    assert "--no-act-eq" in CompileOptions(act_eq=False).describe()


def test_constant_channel_keeps_its_bias():
    """Weights ~0 with a non-zero bias (a constant channel, as in MLPerf VWW): the weight scale is
    raised so the int32 bias fits, and the channel outputs relu(bias) instead of 0."""
    g = Graph("const_channel")
    x = g.add_input("x", np.float32, (1, 2, 4, 4))
    w = np.ones((2, 2, 1, 1), np.float32) * 0.5
    w[1] = 1e-30
    _, y = _conv(g, x, w, np.array([0.1, 0.75], np.float32), "RELU")
    g.outputs.append(y)
    q = quantize_graph(g, {"x": (-1.0, 1.0), y.name: (0.0, 2.0)})
    bias = q.nodes[0].input(2).data
    assert np.all(np.abs(bias) <= 2 ** 30)  # at most half of the int32 range
    xin = np.random.default_rng(2).uniform(-1, 1, size=(1, 2, 4, 4)).astype(np.float32)
    out = q.outputs[0].quant.dequantize(
        Interpreter(q, INT_KERNELS).run({"x": q.inputs[0].quant.quantize(xin)})[y.name])
    assert np.allclose(out[0, 1], 0.75, atol=q.outputs[0].quant.scale[0])


def test_cli_switch(tmp_path):
    """`qcc --no-act-eq` leaves the graph alone; the default equalizes (and says so in report.json)."""
    import json
    import subprocess
    import sys
    for flag, expect in (([], 1), (["--no-act-eq"], None)):
        out = tmp_path / f"out{len(flag)}"
        proc = subprocess.run([sys.executable, "-m", "qcompiler", str(MODELS / "digits_dwsep.onnx"),
                               "--target", "tflm", "--calib", str(MODELS / "digits_calib.npy"), "-o", str(out),
                               *flag], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        report = json.loads((out / "report.json").read_text())
        got = report["calibration"].get("activation_equalization")
        assert (got or {}).get("tensors") == expect
        assert ("--no-act-eq" in report["generated_by"]) == bool(flag)
