"""Per-layer quantization report, report files, data-free mode, and the options in file headers."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import MODELS
from qcompiler.errors import CalibrationError
from qcompiler.interp import FLOAT_KERNELS, INT_KERNELS, Interpreter
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import CompileOptions, compile_model, optimize, quantize
from qcompiler.passes import COMMON_PIPELINE
from qcompiler.quant.report import (HISTOGRAM_LAYERS, REPORT_SAMPLES, layer_report, worst_layers,
                                     write_report_files)

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
    _, q, summary = resnet
    report = {"name": "digits_resnet", "calibration": summary, "layers": summary["layers"]}
    files = write_report_files(tmp_path, report, q, summary["histograms"])
    assert files == ["report.html", "report.md"]
    md = (tmp_path / "report.md").read_text()
    assert "report.html" in md and md.count("\n| ") == len(summary["layers"]) + 1
    assert md.count(" * |") == 5  # the five worst are marked
    html = (tmp_path / "report.html").read_bytes()
    again = tmp_path / "again"
    again.mkdir()
    write_report_files(again, report, q, summary["histograms"])
    assert (again / "report.html").read_bytes() == html  # deterministic


def test_histograms_of_the_worst_layers(resnet):
    _, _, summary = resnet
    hists, layers = summary["histograms"], summary["layers"]
    assert list(hists) == [e["tensor"] for e in worst_layers(layers, HISTOGRAM_LAYERS)]
    for tensor, h in hists.items():
        e = next(e for e in layers if e["tensor"] == tensor)
        assert len(h["int8"]) == 256 and len(h["float"]) == 258 and h["qmin"] == -128
        assert sum(h["int8"]) == sum(h["float"]) > 0  # the same values on both sides
        outside = (h["float"][0] + h["float"][-1]) / sum(h["float"])
        assert outside == pytest.approx(e["clipped_fraction"], abs=2e-6)
        assert h["float_min"] <= h["float_max"]


def test_histograms_match_a_direct_measurement(resnet, monkeypatch):
    """The output's histograms, counted here from the two interpreters' outputs."""
    import qcompiler.quant.report as quant_report
    g, q, _ = resnet
    monkeypatch.setattr(quant_report, "HISTOGRAM_LAYERS", 100)  # every tensor
    x = np.load(CALIB)[:3]
    feeds = [{"input": x[i:i + 1]} for i in range(3)]
    _, _, hists = layer_report(g, q, feeds)
    h = hists[q.outputs[0].name]
    qp = q.outputs[0].quant
    fi, qi = Interpreter(g, FLOAT_KERNELS), Interpreter(q, INT_KERNELS)
    ref = np.concatenate([fi.run(f)["output"].ravel() for f in feeds]).astype(np.float64)
    qin = q.inputs[0].quant
    got = np.concatenate([qi.run({"input": qin.quantize(f["input"])})["output"].ravel() for f in feeds])
    assert h["int8"] == np.bincount(got.astype(int) + 128, minlength=256).tolist()
    codes = np.clip(np.rint(ref / qp.scale[0]) + int(qp.zero_point[0]) + 129, 0, 257).astype(int)
    assert h["float"] == np.bincount(codes, minlength=258).tolist()
    assert h["float_max"] == pytest.approx(ref.max()) and h["float_min"] == pytest.approx(ref.min())


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
