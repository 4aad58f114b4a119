"""`--target c` with int16 activations end to end: `--activations int16` (TFLite's 16x8 scheme) on
the sample and MLPerf Tiny models and a mixed `--activations auto` model, each verified bit for
bit against the integer reference on its evaluation inputs (`qcc verify`: the emitted C built for
the host), the emitted program warning-free, under ASan + UBSan and on QEMU's Cortex-M boards."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from conftest import MLPERF_MODELS, MODELS, SAMPLE_MODELS, SHARED, mlperf_data, require_shared
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir
from test_c_backend import STRICT, _files, run_on_qemu, run_sanitized
from test_mixed_precision import _borders, _model

MLPERF_DEFAULT = {"kws_ref_model_float32", "ad01_fp32"}


def compile16(onnx_path, calib, out, **kw):
    compile_model(onnx_path, out, CompileOptions(target="c", calib=calib, activations="int16", **kw))
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def samples16(tmp_path_factory):
    out = {}
    for name in SAMPLE_MODELS:
        d = tmp_path_factory.mktemp(name + "_int16")
        out[name] = (d, compile16(MODELS / f"{name}.onnx", str(MODELS / "digits_calib.npy"), d))
    return out


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_models_int16_bit_exact(samples16, name):
    outdir, report = samples16[name]
    res = verify_outdir(outdir, np.load(MODELS / "digits_eval.npy"))
    assert res["ok"] and res["c"]["bit_exact"] and res["samples"] == 300, res
    assert report["calibration"]["activations"]["mode"] == "int16"
    assert all(d["dtype"] == "int16" for d in report["inputs"] + report["outputs"])
    assert any(op.endswith("_s16") for op in report["ops"]) and "conv2d" not in report["ops"], report["ops"]
    c = report["c"]
    assert c["scratch_bytes"] <= 1.05 * c["live_bytes"], c
    ident = c["ident"]
    assert f"int {ident}_invoke(const int16_t *input0, int16_t *output0, void *scratch)" in \
        (outdir / f"{ident}.h").read_text()


def test_int16_scratch_is_twice_the_int8_one(samples16, tmp_path):
    """Every activation is 2 bytes: the plan (same schedule) needs twice the int8 bytes."""
    outdir, report = samples16["digits_cnn"]
    compile_model(MODELS / "digits_cnn.onnx", tmp_path / "int8", CompileOptions(
        target="c", calib=str(MODELS / "digits_calib.npy")))
    int8 = json.loads((tmp_path / "int8" / "report.json").read_text())["c"]
    assert report["c"]["scratch_bytes"] == 2 * int8["scratch_bytes"]
    assert report["c"]["io_bytes"] == 2 * int8["io_bytes"]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_int16_model_warning_free_and_sanitized(samples16, cc, tmp_path):
    if not shutil.which(cc):
        pytest.skip(f"{cc} not installed")
    outdir, report = samples16["digits_resnet"]
    ident, sources = _files(outdir, report)
    subprocess.run([cc, *STRICT, "-Wconversion", "-c", str(outdir / f"{ident}.c"), "-o", str(tmp_path / "m.o")],
                   check=True, capture_output=True)
    run_sanitized(outdir, report, cc, tmp_path, np.load(MODELS / "digits_eval.npy")[:10])


@pytest.mark.parametrize("name,cpu", [("digits_resnet", "cortex-m4"), ("digits_dwsep", "cortex-m55"),
                                      ("digits_cnn", "cortex-m3")])
def test_int16_model_on_cortex_m_under_qemu(samples16, tmp_path, name, cpu):
    """M4 and M55: the SMLAD path of the 16x8 dot products (PKHBT / PKHTB pairs); M3: plain C."""
    outdir, report = samples16[name]
    run_on_qemu(outdir, report, np.load(MODELS / "digits_eval.npy")[:8], cpu, tmp_path / "fw")


@pytest.fixture(scope="module")
def mlperf16(tmp_path_factory):
    done = {}

    def get(name):
        if name not in done:
            require_shared()
            kind = MLPERF_MODELS[name]
            out = tmp_path_factory.mktemp(name + "_int16")
            done[name] = (out, compile16(SHARED / f"{name}.onnx", mlperf_data(kind, "calib"), out),
                          mlperf_data(kind, "eval"))
        return done[name]
    return get


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in MLPERF_DEFAULT else pytest.mark.slow)
                                  for n in MLPERF_MODELS])
def test_mlperf_models_int16_bit_exact(name, mlperf16):
    """Every MLPerf Tiny model in 16x8 on its evaluation set (KWS and AD: the first 100 samples
    by default, everything with -m slow)."""
    out, report, data = mlperf16(name)
    res = verify_outdir(out, data, limit=100 if name in MLPERF_DEFAULT else None)
    assert res["ok"] and res["c"]["bit_exact"] and res["c"]["mismatched_elements"] == 0, res
    c = report["c"]
    assert c["scratch_bytes"] <= 1.05 * c["live_bytes"], c


@pytest.mark.slow
@pytest.mark.parametrize("cpu", ["cortex-m3", "cortex-m55"])
def test_mlperf_kws_int16_under_qemu(mlperf16, tmp_path, cpu):
    out, report, data = mlperf16("kws_ref_model_float32")
    run_on_qemu(out, report, data[:4], cpu, tmp_path / "fw")


# ---- mixed int8 / int16 (--activations auto) ---------------------------------------------------

@pytest.fixture(scope="module")
def mixed_data():
    return np.random.default_rng(1).uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32)


def test_mixed_borders_are_bit_exact_in_c(tmp_path, mixed_data):
    """tests/test_mixed_precision.py's model: borders on an ADD (int16 and int8 inputs), a
    CONCATENATION (int8 into int16) and a SOFTMAX (int16 after an int8 FULLY_CONNECTED)."""
    res = compile_model(_model(tmp_path / "mixed.onnx"), tmp_path / "c", CompileOptions(
        target="c", calib=mixed_data, activations="auto", int16_nodes=("ConvA", "Softmax")))
    q = res.quant_graph
    dtypes = {n.name: n.outputs[0].quant.dtype.name for n in q.nodes}
    assert dtypes["ConvA"] == dtypes["Concat"] == dtypes["Softmax"] == "int16"
    assert dtypes["ConvB"] == dtypes["Add"] == dtypes["ConvC"] == dtypes["Gemm"] == "int8"
    assert _borders(q) == {("Add", "int16", "int8"), ("Concat", "int8", "int16"), ("Gemm", "int16", "int8"),
                           ("Softmax", "int8", "int16"), ("Conv", "int16", "int8")}
    ops = res.report["ops"]
    assert {"conv2d_s16", "conv2d", "binary", "softmax_s16", "lut_s8_s16", "requantize_s16_s8"} <= set(ops), ops
    check = verify_outdir(tmp_path / "c", mixed_data)
    assert check["c"]["bit_exact"] and check["c"]["mismatched_elements"] == 0, check["c"]
    assert check["fidelity"]["c"]["y"]["sqnr_db"] > 25


def test_auto_search_reaches_its_target_in_c(tmp_path, mixed_data):
    """`--activations auto --min-sqnr` on the C target compiles a model that verifies bit for bit;
    the candidates' memory (CBackend.cost: the static plan with the I/O in the scratch buffer) is
    in the Pareto table, all-int8 the smallest."""
    res = compile_model(_model(tmp_path / "mixed.onnx"), tmp_path / "c", CompileOptions(
        target="c", calib=mixed_data, activations="auto", min_sqnr=45.0))
    a = res.report["calibration"]["activations"]
    assert a["mode"] == "auto" and a["reached"] and a["search_sqnr_db"] >= 45.0, a
    sizes = {r["config"]: r["arena_bytes"] for r in a["pareto"]}
    assert all(isinstance(v, int) and v > 0 for v in sizes.values()), sizes
    assert sizes["all int8"] == min(sizes.values())
    check = verify_outdir(tmp_path / "c", mixed_data[:24])
    assert check["c"]["bit_exact"], check["c"]


def test_int16_memory_plan_counts_two_bytes_and_never_overlaps(samples16):
    """The static plan of 2-byte tensors: every buffer's size is its elements times 2, its offset
    even, and buffers alive at the same step never overlap."""
    from qcompiler.ir.serialize import load_graph
    outdir, report = samples16["digits_resnet"]
    g = load_graph(outdir / report["ir_file"])
    sizes = {v.name: int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in g.values() if v.shape is not None}
    plan = report["memory_plan"]
    for b in plan["buffers"]:
        assert b["offset"] % 2 == 0
        named = [sizes[t] for t in b["tensors"] if t in sizes]
        assert named and b["size"] == max(named) and all(s % 2 == 0 for s in named), b
    for i, a in enumerate(plan["buffers"]):
        for b in plan["buffers"][i + 1:]:
            if a["first"] <= b["last"] and b["first"] <= a["last"]:
                assert a["offset"] + a["size"] <= b["offset"] or b["offset"] + b["size"] <= a["offset"], (a, b)


def test_emitted_files_are_deterministic(samples16, tmp_path):
    outdir, report = samples16["digits_dwsep"]
    again = tmp_path / "again"
    compile16(MODELS / "digits_dwsep.onnx", str(MODELS / "digits_calib.npy"), again)
    for f in report["files"]:
        assert (outdir / f).read_bytes() == (again / f).read_bytes(), f
