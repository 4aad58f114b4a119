"""Heavy-tailed tensors compute in int16 in int8 models that already hold 16x8 layers
(qcompiler/quant/wide_tails.py): a detector's rare strong responses keep their values, the
model runs bit-exactly in TFLite Micro, models without int16 layers are untouched.

    x -> Conv1x1 (32 ch, the arena's peak) -> Relu -> Conv2x2/2 -> SiLU (Sigmoid . Mul) -> h
    h -> Conv1x1 -> Mul(8) -> box (pixels);  h -> Conv1x1 -> Sigmoid -> obj (0..1)
    Concat(box, obj) -> Reshape -> y [1, 3, 64]      (a mixed output: int16 head)

h (rare strong responses) lies after the peak, so int16 costs it no arena.

The calibration set holds two "objects" (single bright pixels), so h's 99.99th percentile
(the int8 range) clips them at a fraction of their value; the evaluation set holds one per
sample, whose objectness the clipped int8 model gets wrong.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_builders import save_model

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir
from qcompiler.interp import run_int
from qcompiler.quant import wide_tails
from qcompiler.quant.wide_tails import fit_arena, region_of

SIZE = 16
OUT = (SIZE // 2) ** 2


def _tailed_head(path):
    rng = np.random.default_rng(3)

    def w(name, shape, scale):
        return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)
    inits = [w("w1", (32, 3, 1, 1), 0.6), w("w2", (8, 32, 2, 2), 0.2), w("wb", (2, 8, 1, 1), 0.3),
             numpy_helper.from_array((np.abs(rng.normal(size=(1, 8, 1, 1))) * 0.8).astype(np.float32), "wo"),
             numpy_helper.from_array(np.float32(8.0), "stride"),
             numpy_helper.from_array(np.array([1, 3, OUT], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a0"]), helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["a", "w2"], ["g"], strides=[2, 2]), helper.make_node("Sigmoid", ["g"], ["gs"]),
             helper.make_node("Mul", ["g", "gs"], ["h"]),
             helper.make_node("Conv", ["h", "wb"], ["b0"]), helper.make_node("Mul", ["b0", "stride"], ["box"]),
             helper.make_node("Conv", ["h", "wo"], ["obj_logit"]), helper.make_node("Sigmoid", ["obj_logit"], ["obj"]),
             helper.make_node("Concat", ["box", "obj"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "shape"], ["y"])]
    return save_model(path, nodes, {"x": (1, 3, SIZE, SIZE)}, {"y": (1, 3, OUT)}, inits)


def _images(rng, count, objects):
    x = rng.uniform(-0.5, 0.5, (count, 3, SIZE, SIZE)).astype(np.float32)
    for i in objects:
        x[i, :, rng.integers(SIZE), rng.integers(SIZE)] = 4.0   # one bright pixel: an object
    return x


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return _images(rng, 64, [7, 40]), _images(rng, 16, range(16))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, data):
    """compiled(name, **options) -> (model path, CompileResult, output dir); `tails_off` compiles
    with the rule disabled (TAIL_RATIO infinite), everything else the same."""
    done = {}
    root = tmp_path_factory.mktemp("tails")
    path = _tailed_head(root / "tailed.onnx")

    def get(name, tails_off=False, **options):
        if name not in done:
            out = root / name
            with pytest.MonkeyPatch.context() as mp:
                if tails_off:
                    mp.setattr(wide_tails, "TAIL_RATIO", math.inf)
                done[name] = (path, compile_model(path, out, CompileOptions(calib=data[0], **options)), out)
        return done[name]
    return get


def _objectness_sqnr(qgraph, path, x):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])[:, 2]
    out = qgraph.outputs[0]
    got = np.concatenate([out.quant.dequantize(run_int(qgraph, {"x": qgraph.inputs[0].quant.quantize(x[i:i + 1])})[out.name])
                          for i in range(len(x))])[:, 2]
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - got) ** 2.0), 1e-30)))


def _width(qgraph, tensor: str) -> int:
    return next(v for v in qgraph.values() if v.name == tensor).quant.dtype.itemsize * 8


def test_the_tailed_tensor_and_its_readers_go_int16(compiled):
    _, res, _ = compiled("on")
    entry = res.report["calibration"]["heavy_tails"]
    tails = {e["tensor"]: e for e in entry["tensors"]}
    assert "h" in tails and tails["h"]["ratio"] >= wide_tails.TAIL_RATIO, entry
    q = res.quant_graph
    assert _width(q, "h") == 16
    # its readers compute in int16 too (no int8 copy clips the tail again)
    for node in q.nodes:
        if any(v is not None and v.name == "h" for v in node.inputs):
            assert node.outputs[0].quant.dtype.itemsize == 2, node.name
    assert q.inputs[0].quant.dtype == np.int8    # the interface is kept


def test_the_objects_keep_their_objectness(compiled, data):
    path, on, out = compiled("on")
    _, off, _ = compiled("off", tails_off=True)
    assert "heavy_tails" not in off.report["calibration"]
    assert _width(off.quant_graph, "h") == 8
    s_on, s_off = (_objectness_sqnr(r.quant_graph, path, data[1]) for r in (on, off))
    assert s_on > s_off + 6.0, (s_on, s_off)
    check = verify_outdir(out, data[1][:6], with_litert=False)
    assert check["tflm"]["bit_exact"], check


def test_models_without_int16_layers_are_untouched(compiled):
    _, res, _ = compiled("int8_outputs", int8_outputs=True)
    assert "heavy_tails" not in res.report["calibration"]
    assert all(v.quant.dtype.itemsize == 1 for v in res.quant_graph.values()
               if v.quant is not None and not v.is_constant)


def test_fit_arena_gives_back_the_largest_tensors_first():
    tails = [{"node": f"n{i}", "readers": [f"r{i}"], "elements": size} for i, size in enumerate([400, 100, 400, 25])]
    growth = {"n0": 2000, "n2": 2000, "n1": 10, "n3": 1}

    def arena_of(wide):
        return 100_000 + sum(growth[n] for n in wide if n in growth)
    kept = fit_arena(frozenset(), tails, arena_of)
    assert [e["node"] for e in kept] == ["n1", "n3"]
    assert region_of(kept) == {"n1", "r1", "n3", "r3"}
    assert fit_arena(frozenset(), tails, lambda wide: 100_000 + 10_000 * len(wide)) == []


def test_the_choice_is_planned_not_measured(tmp_path, data, monkeypatch):
    """The arena check reads the target's offline plan (Backend.activation_arena), never a
    runtime measurement (Backend.cost), so the artifact does not depend on installed runtimes."""
    from qcompiler.backends.tflite import TfliteBackend

    def measured(*args, **kwargs):
        raise AssertionError("the heavy-tails rule must not measure the arena in a runtime")
    monkeypatch.setattr(TfliteBackend, "cost", measured)
    calls = []
    planned = TfliteBackend.activation_arena
    monkeypatch.setattr(TfliteBackend, "activation_arena", lambda self, q: calls.append(1) or planned(self, q))
    res = compile_model(_tailed_head(tmp_path / "m.onnx"), tmp_path / "out", CompileOptions(calib=data[0]))
    assert res.report["calibration"]["heavy_tails"]["tensors"] and calls
