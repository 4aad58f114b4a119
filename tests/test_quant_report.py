"""Per-layer quantization report, report files, data-free mode, and the options in file headers."""
from __future__ import annotations

import json
import sys
import zlib

import numpy as np
import pytest

from conftest import MODELS
from qcompiler.errors import CalibrationError
from qcompiler.interp import FLOAT_KERNELS, INT_KERNELS, Interpreter
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import CompileOptions, compile_model, optimize, quantize
from qcompiler.passes import COMMON_PIPELINE
from qcompiler.quant.report import REPORT_SAMPLES, png_bytes, sqnr_chart, worst_layers, write_report_files

CALIB = str(MODELS / "digits_calib.npy")


def _graph(name="digits_cnn"):
    return optimize(load_model(MODELS / f"{name}.onnx"), COMMON_PIPELINE)[0]


@pytest.fixture(scope="module")
def resnet():
    g = _graph("digits_resnet")
    q, summary, ranges = quantize(g, CALIB, CompileOptions(calib=CALIB))
    return g, q, summary


def test_every_int8_tensor_is_reported(resnet):
    g, q, summary = resnet
    layers = summary["layers"]
    acts = [v.name for v in q.values() if not v.is_constant and v.quant is not None and v.quant.dtype == np.int8]
    assert [e["tensor"] for e in layers] == acts
    for e in layers:
        assert e["sqnr_db"] is not None and 15 < e["sqnr_db"] <= 99
        assert 0 <= e["clipped_fraction"] < 0.01
        assert e["scale"] > 0 and -128 <= e["zero_point"] <= 127
    convs = [e for e in layers if e["op"] == "Conv"]
    assert convs and all(e["weight_sqnr_db"] > 30 for e in convs)
    assert summary["report_samples"] == REPORT_SAMPLES


def test_report_sqnr_matches_a_direct_measurement(resnet):
    g, q, summary = resnet
    out = next(e for e in summary["layers"] if e["tensor"] == q.outputs[0].name)
    n = REPORT_SAMPLES
    x = np.load(CALIB)[[int(i) for i in np.linspace(0, 199, n).round()]]
    fi, qi = Interpreter(g, FLOAT_KERNELS), Interpreter(q, INT_KERNELS)
    ref = np.concatenate([fi.run({"input": x[i:i + 1]})["output"] for i in range(n)]).astype(np.float64)
    got = np.concatenate([q.outputs[0].quant.dequantize(qi.run({"input": q.inputs[0].quant.quantize(x[i:i + 1])})
                                                        ["output"]) for i in range(n)])
    want = 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2))
    assert out["sqnr_db"] == pytest.approx(want, abs=0.05)


def test_worst_layers_are_sorted(resnet):
    _, _, summary = resnet
    worst = worst_layers(summary["layers"])
    assert len(worst) == 5 and [e["sqnr_db"] for e in worst] == sorted(e["sqnr_db"] for e in worst)
    assert summary["worst_layers"][0]["tensor"] == worst[0]["tensor"]
    assert all(e["op"] != "input" for e in worst)


def test_report_files(tmp_path, resnet):
    _, _, summary = resnet
    files = write_report_files(tmp_path, "digits_resnet", summary, summary["layers"])
    assert files == ["layer_sqnr.png", "report.md"]
    png = (tmp_path / "layer_sqnr.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and png.endswith(b"IEND\xaeB`\x82")
    md = (tmp_path / "report.md").read_text()
    assert "![per-layer SQNR" in md and md.count("\n| ") == len(summary["layers"]) + 1
    again = tmp_path / "again"
    again.mkdir()
    write_report_files(again, "digits_resnet", summary, summary["layers"])
    assert (again / "layer_sqnr.png").read_bytes() == png  # deterministic


def test_png_decodes_to_the_drawn_pixels():
    img = sqnr_chart([10.0, None, 35.5, 60.0], {2})
    data = png_bytes(img)
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (h, w) == img.shape[:2] and np.all(raw[:, 0] == 0)
    assert np.array_equal(raw[:, 1:].reshape(h, w, 3), img)
    assert np.any(np.all(img == (214, 39, 40), axis=-1))  # the highlighted bar


def test_compile_summary_in_report_json(tmp_path):
    res = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions(calib=CALIB))
    cal = json.loads((tmp_path / "o" / "report.json").read_text())["calibration"]
    assert cal["method"] == "percentile" and cal["bias_correction"]["mode"] == "empirical"
    assert len(cal["worst_layers"]) == 5
    assert "--calib-method percentile --percentile 99.99 --no-cle --bias-correction empirical" \
        in res.report["generated_by"]


def test_data_free_mode(tmp_path, capsys):
    opts = CompileOptions(input_range=(0.0, 1.0))
    res = compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", opts)
    err = capsys.readouterr().err
    assert "DATA-FREE" in err
    cal = res.report["calibration"]
    assert cal["data_free"] and cal["samples"] == 0 and "DATA-FREE" in cal["warning"]
    assert cal["bias_correction"]["mode"] == "analytic"
    assert all(e["sqnr_db"] is None for e in res.report["layers"])
    assert "--input-range 0,1" in res.report["generated_by"] and "--calib " not in res.report["generated_by"]
    # the model still works: int8 top-1 accuracy close to float
    x, labels = np.load(MODELS / "digits_eval.npy"), np.load(MODELS / "digits_eval_labels.npy")
    q = res.quant_graph
    qi = Interpreter(q, INT_KERNELS)
    pred = [np.argmax(qi.run({"input": q.inputs[0].quant.quantize(x[i:i + 1])})["output"]) for i in range(len(x))]
    assert np.mean(np.array(pred) == labels) > 0.95


def test_data_free_without_input_range_is_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="--calib FILE.*--input-range"):
        compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions())


def test_empirical_correction_needs_data(tmp_path):
    with pytest.raises(CalibrationError, match="analytic"):
        compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o",
                      CompileOptions(input_range=(0.0, 1.0), bias_correction="empirical"))


def test_data_free_refuses_models_without_batchnorm_statistics(tmp_path):
    import onnx
    from onnx import helper, numpy_helper
    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "nobn",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 2, 2])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 2, 2])], [w])
    path = tmp_path / "nobn.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(CalibrationError, match="BatchNorm statistics.*--calib"):
        compile_model(path, tmp_path / "o", CompileOptions(input_range=(0.0, 1.0)))


def test_bad_percentile_is_a_clear_error(tmp_path):
    with pytest.raises(CalibrationError, match="--percentile"):
        compile_model(MODELS / "digits_cnn.onnx", tmp_path / "o", CompileOptions(calib=CALIB, percentile=120))


def test_report_samples_follow_the_value_budget(resnet, monkeypatch):
    import qcompiler.quant.report as quant_report
    g, _, _ = resnet
    per_sample = sum(int(np.prod(v.shape)) for n in g.nodes for v in n.outputs if v.shape)
    assert quant_report.report_samples(g) == REPORT_SAMPLES  # a digits net is far below the budget
    monkeypatch.setattr(quant_report, "REPORT_VALUES", 5 * per_sample + 1)
    assert quant_report.report_samples(g) == 5
    monkeypatch.setattr(quant_report, "REPORT_VALUES", 1)
    assert quant_report.report_samples(g) == quant_report.REPORT_MIN_SAMPLES


def test_report_is_right_without_onnxruntime(tmp_path, monkeypatch):
    """Activation-equalized layers: the numpy engine's float side once saw the equalized graph
    and scaled it a second time (VWW's lowest layer read 0.6 dB instead of 21.6 dB)."""
    opts = CompileOptions(calib=str(MODELS / "digits_calib.npy"))
    with_ort = compile_model(MODELS / "digits_dwsep.onnx", tmp_path / "a", opts).report
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails: the interpreter runs
    without = compile_model(MODELS / "digits_dwsep.onnx", tmp_path / "b", opts).report
    assert with_ort["calibration"]["engine"] == "onnxruntime" and without["calibration"]["engine"] == "interpreter"
    assert with_ort["calibration"]["activation_equalization"]["tensors"] > 0
    a = {e["tensor"]: e["sqnr_db"] for e in with_ort["layers"]}
    b = {e["tensor"]: e["sqnr_db"] for e in without["layers"]}
    assert a.keys() == b.keys()
    worst = max(abs(a[k] - b[k]) for k in a if a[k] is not None and b[k] is not None)
    assert worst < 1.0, worst
