"""Horizontal merging of inception-style branches, the quantization-aware veto, a user veto."""
from __future__ import annotations

import numpy as np
from onnx import helper

from onnx_builders import RNG, assert_matches_onnxruntime, const, ops, run_passes, save_model

X = {"x": (1, 4, 8, 8)}


def inception(tmp_path, scale_b=1.0):
    """Three 1x1 branches on one input (two ReLU, one different kernel) concatenated."""
    nodes = [helper.make_node("Conv", ["x", "wa", "ba"], ["a"]), helper.make_node("Relu", ["a"], ["ar"]),
             helper.make_node("Conv", ["x", "wb", "bb"], ["b"]), helper.make_node("Relu", ["b"], ["br"]),
             helper.make_node("Conv", ["x", "wc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["ar", "br", "c"], ["y"], axis=1)]
    wb = const("wb", (6, 4, 1, 1))
    wb_data = np.frombuffer(wb.raw_data, np.float32).reshape(6, 4, 1, 1) * scale_b
    from onnx import numpy_helper
    inits = [const("wa", (3, 4, 1, 1)), const("ba", (3,)), numpy_helper.from_array(wb_data.astype(np.float32), "wb"),
             const("bb", (6,)), const("wc", (2, 4, 3, 3))]
    return save_model(tmp_path / "inc.onnx", nodes, X, {"y": (1, 11, 8, 8)}, inits)


PIPE = ["fuse_activation", "horizontal_merge", "dead_code"]


def test_inception_branches_merge(tmp_path):
    path = inception(tmp_path)
    g, ctx = run_passes(path, PIPE)
    assert ops(g) == ["Conv", "Split", "Conv", "Concat"]
    merged = g.nodes[0]
    assert merged.inputs[1].shape == (9, 4, 1, 1) and merged.attrs["clamp"] == [0.0, None]
    assert g.nodes[1].inputs[1].data.tolist() == [3, 6]
    assert any("merged" in line for line in ctx.log)
    assert_matches_onnxruntime(path, g)


def test_quantization_veto_refuses_mismatched_ranges(tmp_path):
    path = inception(tmp_path, scale_b=40.0)  # branch b's outputs span ~40x branch a's
    feeds = [{"x": RNG.normal(size=X["x"]).astype(np.float32)} for _ in range(4)]
    g, ctx = run_passes(path, PIPE, calibration_feeds=feeds)
    assert "Split" not in ops(g)
    veto = [line for line in ctx.log if "kept" in line]
    assert len(veto) == 1 and "ranges differ" in veto[0] and "dB" in veto[0]
    # with similar ranges and the same data the merge happens
    g2, _ = run_passes(inception(tmp_path, scale_b=1.0), PIPE, calibration_feeds=feeds)
    assert "Split" in ops(g2)


def test_user_veto_hook(tmp_path):
    seen = []

    def never(branches, ranges):
        seen.append([n.name for n in branches])
        return "user says no"

    g, ctx = run_passes(inception(tmp_path), PIPE, merge_veto=never)
    assert "Split" not in ops(g) and len(seen) == 1 and "user says no" in ctx.log[-1]
