"""An int8 tensor converted to int16 for a Conv that TFLite pads explicitly is padded before the
conversion (backends/tflite/lower_quant.py): PAD int8 -> QUANTIZE int16, so no unpadded int16
copy lives next to the padded one. Same values (the int16 zero point is 0), bit-exact in
TFLite Micro, a smaller arena.

    x [1, 3, 16, 16] -> Conv1x1 (8 ch, int8) -> Relu -> a
    a -> Conv3x3 stride 2, pads 1 (int16: --int16-nodes; TFLite's SAME pads 0/1 here) -> y
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper
from onnx_builders import save_model

from qcompiler.backends.tflite import lower_quant
from qcompiler.backends.tflite.lower import lower
from qcompiler.backends.tflite.memory import offline_plan
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir


def _model(path):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.normal(size=(8, 3, 1, 1)) * 0.5).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.normal(size=(4, 8, 3, 3)) * 0.2).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a0"], name="first"),
             helper.make_node("Relu", ["a0"], ["a"], name="relu"),
             helper.make_node("Conv", ["a", "w2"], ["y"], name="strided", strides=[2, 2], pads=[1, 1, 1, 1])]
    return save_model(path, nodes, {"x": (1, 3, 16, 16)}, {"y": (1, 4, 8, 8)}, inits)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("padwiden")
    calib = np.random.default_rng(1).uniform(-1, 1, (16, 3, 16, 16)).astype(np.float32)
    out = root / "out"
    res = compile_model(_model(root / "m.onnx"), out, CompileOptions(calib=calib, activations="auto",
                                                                     int16_nodes=("strided",)))
    return res, out, calib


def _ops(model):
    return [(op.opcode, [model.tensors[i].dtype for i in op.inputs if i >= 0][:1],
             [model.tensors[i].shape for i in op.outputs]) for op in model.operators]


def test_the_int8_tensor_is_padded_before_it_widens(compiled):
    res, _, _ = compiled
    model = lower(res.quant_graph).model
    ops = _ops(model)
    pad = next(i for i, o in enumerate(ops) if o[0] == "PAD")
    assert ops[pad][1] == ["int8"], ops
    assert ops[pad + 1][0] == "QUANTIZE" and ops[pad + 1][2] == ops[pad][2], ops   # widens the padded tensor
    assert ops[pad + 2][0] == "CONV_2D" and ops[pad + 2][1] == ["int16"], ops
    # no unpadded int16 copy of the conv's input
    assert not any(t.dtype == "int16" and t.shape == (1, 16, 16, 8) for t in model.tensors)


def test_it_saves_arena_and_stays_bit_exact(compiled, monkeypatch):
    res, out, calib = compiled
    _, head, _ = offline_plan(lower(res.quant_graph).model)
    monkeypatch.setattr(lower_quant, "_padded_conv_reader", lambda ctx, x, y: None)
    _, head_after, _ = offline_plan(lower(res.quant_graph).model)
    # before: int8 a (2 KiB) + int16 a (4 KiB) + int16 padded (4.6 KiB); now int8 a + int8 padded + int16 padded
    assert head < head_after, (head, head_after)
    check = verify_outdir(out, calib[:4], with_litert=False)
    assert check["tflm"]["bit_exact"], check
