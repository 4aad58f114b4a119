"""passes/channel_ranges.py: a Conv -> HardSwish -> depthwise chain whose near-dead channels the
depthwise kernel amplifies is split so those channels get their own int8 range.

Structure (which channels, the Concat, the permuted reader), the float function, and the point
of it: the default compile gains output SQNR on a model built like PP-PicoDet's first block
(two BatchNorm-shrunk channels in [-0.2, 0.1] beside channels reaching 10, read by depthwise
kernels of norm ~60), and stays bit-exact in TFLite Micro.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.passes.channel_ranges import candidate_chains, narrow_channels

from onnx_builders import assert_matches_onnxruntime, ops, run_passes, save_model

C, NARROW = 8, [2, 5]
SHAPE = (1, 3, 16, 16)


def _model(path, written_out: bool = False):
    """written_out: the first hard-swish as PP-PicoDet's exporter writes it, x * Clip(x + 3, 0, 6) / 6."""
    rng = np.random.default_rng(5)
    wa = rng.normal(size=(C, 3, 3, 3)) * 0.8
    ba = rng.normal(size=C) + 1.0
    wa[NARROW] *= 0.02                   # near-dead after BatchNorm folding: hard-swish's negative lobe
    ba[NARROW] = -0.15
    wb = rng.normal(size=(C, 1, 3, 3)) * 0.5
    wb[NARROW] = rng.normal(size=(len(NARROW), 1, 3, 3)) * 20.0  # ... read by a large, edge-like kernel
    wb[NARROW] -= wb[NARROW].mean(axis=(2, 3), keepdims=True)
    wc = rng.normal(size=(4, C, 1, 1)) * 0.3
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in
             ((wa, "wa"), (ba, "ba"), (wb, "wb"), (np.zeros(C), "bb"), (wc, "wc"),
                               (np.array(3.0), "three"), (np.array(0.0), "zero"), (np.array(6.0), "six"))]
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"], pads=[1, 1, 1, 1]),
             *([helper.make_node("Add", ["a", "three"], ["a3"]),
                helper.make_node("Clip", ["a3", "zero", "six"], ["r6"]),
                helper.make_node("Mul", ["a", "r6"], ["m"]),
                helper.make_node("Div", ["m", "six"], ["h"])] if written_out else
               [helper.make_node("HardSwish", ["a"], ["h"])]),
             helper.make_node("Conv", ["h", "wb", "bb"], ["b"], pads=[1, 1, 1, 1], group=C),
             helper.make_node("HardSwish", ["b"], ["y"]),
             helper.make_node("Conv", ["y", "wc"], ["z"])]
    return save_model(path, nodes, {"x": SHAPE}, {"z": (1, 4, 16, 16)}, inits, opset=14)


def _data(n, seed):
    return np.random.default_rng(seed).normal(size=(n,) + SHAPE[1:]).astype(np.float32)


def test_splits_the_narrow_channels_and_keeps_the_function(tmp_path):
    path = _model(tmp_path / "m.onnx")
    feeds = [{"x": x[None]} for x in _data(8, 1)]
    g, ctx = run_passes(path, ["split_channel_ranges"], calibration_feeds=feeds)
    assert ops(g) == ["Conv", "HardSwish", "Conv", "Conv", "HardSwish", "Conv", "Concat", "HardSwish", "Conv"]
    parts = [n for n in g.nodes if n.op == "Conv" and int(n.attrs.get("group", 1)) > 1]
    assert [n.attrs["group"] for n in parts] == [len(NARROW), C - len(NARROW)]
    assert ctx.log == [f"split_channel_ranges: {g.nodes[0].name.rsplit('_part', 1)[0]} -> "
                       f"{parts[0].name.rsplit('_part', 1)[0]}: channels {NARROW} of {C} get their own int8 range"]
    assert_matches_onnxruntime(path, g, samples=3, tol=1e-5)


def test_no_data_or_no_drowned_channel_no_change(tmp_path):
    path = _model(tmp_path / "m.onnx")
    g, _ = run_passes(path, ["split_channel_ranges"])  # no calibration feeds: nothing to judge
    assert ops(g) == ["Conv", "HardSwish", "Conv", "HardSwish", "Conv"] and len(candidate_chains(g)) == 1
    # same spans everywhere, or drowned channels that would not gain: no split
    w = np.ones((4, 1, 3, 3))
    assert narrow_channels(np.zeros(4), np.full(4, 5.0), np.ones(4), w) == []
    assert narrow_channels(np.zeros(4), np.array([5.0, 5.0, 4.0, 5.0]), np.array([1, 1, 1e-9, 1.0]), w) == []
    assert narrow_channels(np.zeros(4), np.array([5.0, 5.0, 0.1, 5.0]), np.array([1, 1, 1e-9, 1.0]), w) == [2]


def test_default_compile_gains_and_stays_bit_exact(tmp_path):
    """The split model's output SQNR against float beats the unsplit one by more than 6 dB."""
    path = _model(tmp_path / "m.onnx")
    calib, evals = _data(32, 2), _data(8, 3)
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[None]})[0] for x in evals])

    def sqnr(outdir, **extra):
        res = compile_model(path, outdir, CompileOptions(calib={"x": calib}, **extra))
        from qcompiler.interp import INT_KERNELS, Interpreter
        q = res.quant_graph
        run = Interpreter(q, INT_KERNELS).run
        out = q.outputs[0]
        got = np.concatenate([out.quant.dequantize(run({"x": q.inputs[0].quant.quantize(x[None])})[out.name])
                              for x in evals])
        return 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((ref - got) ** 2)), res

    split, res = sqnr(tmp_path / "split")
    plain, _ = sqnr(tmp_path / "plain", disable_passes=["split_channel_ranges"])
    assert any("split_channel_ranges" in line for line in res.report["pass_log"])
    assert split > plain + 6.0, (split, plain)
    pytest.importorskip("tflite_micro")
    from qcompiler.driver.verify import verify_outdir
    assert verify_outdir(tmp_path / "split", evals[:2], limit=2, with_litert=False)["tflm"]["bit_exact"]


@pytest.mark.parametrize("written_out", [False, True], ids=["HardSwish", "Clip-Div"])
def test_ncnn_default_splits_too_and_stays_within_its_step(tmp_path, written_out):
    """ncnn quantizes each Convolution's input with one symmetric scale: the same channels drown,
    so its default pipeline splits them as well (a written-out hard-swish is fused first), and
    the split model stays within one step of qcc's simulation of ncnn's scheme while its output
    gains on the float model."""
    pytest.importorskip("ncnn")
    from qcompiler.driver.verify import verify_outdir
    path = _model(tmp_path / "m.onnx", written_out)
    calib, evals = _data(32, 2), _data(8, 3)

    def run(outdir, **extra):
        res = compile_model(path, outdir, CompileOptions(target="ncnn", calib={"x": calib}, **extra))
        v = verify_outdir(outdir, evals, limit=len(evals))
        assert v["ncnn"]["ok"], v["ncnn"]
        return v["fidelity"]["ncnn"]["z"]["sqnr_db"], res

    split, res = run(tmp_path / "split")
    plain, _ = run(tmp_path / "plain", disable_passes=["split_channel_ranges"])
    assert any("split_channel_ranges" in line for line in res.report["pass_log"])
    assert split > plain + 3.0, (split, plain)
