"""Softmax over more than 511 classes: TFLM's int8 -> int16 and int16 SOFTMAX paths.

* the kernels against the tflite-micro interpreter: SOFTMAX int16 on every int16 input
  (rows built so every exp / reciprocal table entry and interpolation offset is reached)
  at several input scales; SOFTMAX int8 -> int16 on every int8 difference; both on rows
  of 257 .. 65536 classes (equal, random, one-hot); QUANTIZE int8 <-> int16 on every value;
* the quantizer's choice (<= 511 classes: one int8 SOFTMAX, as before; <= 4095: int16
  output; <= 65536: the int16 kernel) and the expansion into explicit nodes (Before /
  Expected, same values as the marked node);
* TVM's lowerings of the three kernels, bit for bit with the reference;
* tiny models ending in a 1000- and a 5000-class softmax, flat and peaked logits,
  compiled for TFLite (run in TFLM) and TVM: bit-exact, and close to the float softmax.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from conftest import MODELS
from onnx_builders import save_model
from qcompiler.errors import BackendError, QuantizationError
from qcompiler.interp.int_kernels.softmax import requantize_values, softmax_int8_rows, softmax_int16_rows
from qcompiler.numerics.qops.softmax import OUTPUTS, SOFTMAX16_OUTPUT, WIDE_SOFTMAX_ATTR, int16_input_params
from qcompiler.interp import run_int
from qcompiler.ir import Graph, QuantParams
from qcompiler.quant.wide_softmax import expand_wide_softmax, mark_wide_softmax
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
fb = pytest.importorskip("qcompiler.backends.tflite.flatbuffer")

ALL16 = np.arange(-32768, 32768, dtype=np.int16)
ALL8 = np.arange(-128, 128, dtype=np.int8)
# int16 input scales: the table's own (diffs 1:1 on [-65535, 0] = [-10, 0]), tiny, and
# int8-derived (s / 128) ones whose diffs shift left or right before the exp table
SCALES = [10 / 65535, 1e-4, 0.05 / 128, 0.3 / 128, 2.0 / 128, 8.0 / 128]
# int8 input scales: taps masked below diff_min (large scales) or none (small)
SCALES8 = [0.004, 0.03, 0.1, 0.5, 2.0]


def q16(scale, zp=0):
    return QuantParams(np.float32(scale), zp, dtype=np.int16)


def q8(scale, zp=0):
    return QuantParams(np.float32(scale), zp)


OUT8 = q8(*OUTPUTS[np.dtype(np.int8)])
OUT16 = q16(*OUTPUTS[np.dtype(np.int16)])     # int8 -> int16 SOFTMAX output (1/65536, -32768)
SM16 = q16(*SOFTMAX16_OUTPUT)                   # int16 SOFTMAX output (1/32768, 0)


def tflm_single_op(opcode, x, q_in, out_dtype, q_out, **options):
    """Run one TFLite op (input x with q_in) in the tflite-micro interpreter."""
    kw = lambda q: {"scale": [float(q.scale[0])], "zero_point": [int(q.zero_point[0])]}  # noqa: E731
    tensors = [fb.TflTensor("x", x.shape, x.dtype.name, **kw(q_in)),
               fb.TflTensor("y", x.shape, out_dtype, **kw(q_out))]
    model = fb.TflModel(tensors, [fb.TflOperator(opcode, [0], [1], options)], [0], [1], "wide softmax test")
    it = runtime.Interpreter.from_bytes(bytes(fb.write_model(model)), arena_size=1 << 24)
    it.set_input(x, 0)
    it.invoke()
    return it.get_output(0)


def assert_same(want, got, what=""):
    want, got = np.asarray(want), np.asarray(got)
    assert want.shape == got.shape, (what, want.shape, got.shape)
    if not np.array_equal(want, got):
        diff = np.abs(want.astype(np.int64) - got.astype(np.int64))
        raise AssertionError(f"{what}: {int((diff > 0).sum())}/{diff.size} differ, max {int(diff.max())}")


def exhaustive_rows() -> dict[str, np.ndarray]:
    """Every int16 value against one, two and three maxima: each diff in [-65535, 0] (every exp
    table entry and offset), sums over [2^15, 2^17) (every reciprocal table entry)."""
    top = np.full_like(ALL16, 32767)
    return {"pair": np.stack([top, ALL16], 1), "pair_low": np.stack([ALL16, np.full_like(ALL16, -32768)], 1),
            "triple": np.stack([top, top, ALL16], 1), "quad": np.stack([top, top, top, ALL16], 1)}


def class_rows(rng, lo=-32768, hi=32767, dtype=np.int16, biggest=65536) -> dict[str, np.ndarray]:
    levels = np.linspace(lo, hi, 32).astype(dtype)
    one_hot = np.repeat(levels[:, None], 1000, 1)
    one_hot[np.arange(32), rng.integers(0, 1000, 32)] = hi
    rows = {"flat_1000": np.repeat(levels[:, None], 1000, 1), "one_hot_1000": one_hot,
            "random_1000": rng.integers(lo, hi + 1, (32, 1000)).astype(dtype),
            "flat_512": np.repeat(levels[:, None], 512, 1),
            "random_257": rng.integers(lo, hi + 1, (8, 257)).astype(dtype),
            f"flat_{biggest}": np.full((2, biggest), hi // 3, dtype),
            f"random_{biggest}": rng.integers(lo, hi + 1, (1, biggest)).astype(dtype)}
    if dtype == np.int16:
        rows["int8_like_1000"] = ((rng.integers(-128, 128, (32, 1000)) - rng.integers(-128, 128, (32, 1)))
                                  .clip(-255, 255) * 128).astype(np.int16)
    return rows


# ---- kernels against TFLM, exhaustively ----------------------------------------------------------

@pytest.mark.parametrize("scale", SCALES)
def test_int16_softmax_matches_tflm_exhaustively(scale):
    rng = np.random.default_rng(int(scale * 1e6))
    for name, x in {**exhaustive_rows(), **class_rows(rng)}.items():
        got = tflm_single_op("SOFTMAX", x, q16(scale), "int16", SM16, beta=1.0)
        assert_same(softmax_int16_rows(x, np.float32(scale)), got, f"{name} at scale {scale}")


@pytest.mark.parametrize("scale", SCALES8)
def test_int8_softmax_with_int16_output_matches_tflm(scale):
    """Every max - x difference (0..255) against one and two maxima; rows up to 4095 classes."""
    rng = np.random.default_rng(int(scale * 1e3))
    top = np.full_like(ALL8, 127)
    rows = {"pair": np.stack([top, ALL8], 1), "triple": np.stack([top, top, ALL8], 1),
            **class_rows(rng, -128, 127, np.int8, biggest=4095)}
    for name, x in rows.items():
        got = tflm_single_op("SOFTMAX", x, q8(scale, 7), "int16", OUT16, beta=1.0)
        assert_same(softmax_int8_rows(x, np.float32(scale), 16), got, f"{name} at scale {scale}")


def test_requantize_int16_to_int8_matches_tflm_exhaustively():
    pairs = [(OUT16, OUT8), (SM16, OUT8),  # the two wide paths' last step
             (q16(3.7e-4, 0), q8(0.011, 5)), (q16(1e-5, -300), q8(0.9, -100)), (q16(0.02, 0), q8(0.013, 0))]
    for qi, qo in pairs:
        got = tflm_single_op("QUANTIZE", ALL16, qi, "int8", qo)
        assert_same(requantize_values(ALL16, qi, qo), got, f"{qi!r} -> {qo!r}")


def test_requantize_int8_to_int16_matches_tflm_exhaustively():
    rng = np.random.default_rng(3)
    for s in 10 ** rng.uniform(-4, 1, 6):
        qi = q8(s, int(rng.integers(-128, 128)))
        for qo in (int16_input_params(qi), q16(s / 300.0), q16(s * 0.37)):
            got = tflm_single_op("QUANTIZE", ALL8, qi, "int16", qo)
            assert_same(requantize_values(ALL8, qi, qo), got, f"{qi!r} -> {qo!r}")
        # the int16 path's input step is exact: (x - zp) * 128
        assert np.array_equal(requantize_values(ALL8, qi, int16_input_params(qi)),
                              (ALL8.astype(np.int64) - int(qi.zero_point[0])) * 128)


def test_int8_softmax_is_exact_up_to_511_classes_and_undefined_at_512():
    """The bound the quantizer uses: 511 equal int8 logits still run the int8 kernel exactly;
    512 push the reciprocal shift to 32, which the reference refuses."""
    data = np.full((2, 511), 7, np.int8)
    got = tflm_single_op("SOFTMAX", data, q8(0.05, 3), "int8", OUT8, beta=1.0)
    assert_same(softmax_int8_rows(data, np.float32(0.05), 8), got, "511 classes")
    with pytest.raises(Exception, match="reciprocal exponent"):
        softmax_int8_rows(np.zeros((1, 512), np.int8), np.float32(0.05), 8)
    softmax_int8_rows(np.zeros((1, 4095), np.int8), np.float32(0.05), 16)   # int16 output: fine


# ---- the quantizer's choice and the expansion -----------------------------------------------------

def _softmax_graph(shape, q_in, opset=13, attrs=None):
    g = Graph("sm")
    x = g.add_input("x", np.int8, shape)
    x.quant = q_in
    node = g.add_node("Softmax", [x], attrs=attrs or {"axis": -1})
    node.meta["opset"] = opset
    y = node.outputs[0]
    y.dtype, y.shape, y.quant = np.dtype(np.int8), shape, OUT8
    g.outputs.append(y)
    return g, x


@pytest.mark.parametrize("shape,opset,attrs,path", [
    ((1, 10), 13, {"axis": -1}, None), ((1, 256), 13, {"axis": -1}, None),
    ((1, 511), 13, {"axis": -1}, None), ((1, 512), 13, {"axis": -1}, "int16_output"),
    ((4, 1000), 13, {"axis": -1}, "int16_output"), ((1, 1000, 3), 13, {"axis": 1}, "int16_output"),
    ((1, 1000, 3), 13, {"axis": -1}, None), ((1, 8, 8, 8), 11, {"axis": 1}, "int16_output"),  # 512
    ((1, 8, 8, 7), 11, {"axis": 1}, None), ((1, 4095), 13, {"axis": -1}, "int16_output"),
    ((1, 4096), 13, {"axis": -1}, "int16"), ((2, 65536), 13, {"axis": -1}, "int16")])
def test_the_path_follows_the_row_length(shape, opset, attrs, path):
    g, _ = _softmax_graph(shape, q8(0.1, 0), opset, attrs)
    assert mark_wide_softmax(g) == ({"Softmax": path} if path else {})
    assert g.nodes[0].attrs.get(WIDE_SOFTMAX_ATTR) == path


def test_more_than_65536_classes_is_refused():
    g, _ = _softmax_graph((1, 65537), q8(0.1, 0))
    with pytest.raises(QuantizationError, match=r"Softmax.*65537 classes"):
        mark_wide_softmax(g)


EXPANSIONS = {"int16_output": [("Softmax", "Softmax"), ("Requantize", "Softmax_to_int8")],
              "int16": [("Requantize", "Softmax_to_int16"), ("Softmax", "Softmax"),
                        ("Requantize", "Softmax_to_int8")]}


@pytest.mark.parametrize("opset,shape,attrs", [(13, (3, 1000), {"axis": -1}), (13, (2, 600, 2), {"axis": 1}),
                                               (11, (2, 10, 8, 8), {"axis": 1}), (13, (2, 5000), {"axis": -1}),
                                               (11, (1, 2, 80, 80), {"axis": 1})])
def test_expansion_is_explicit_and_computes_the_marked_values(opset, shape, attrs):
    g, x = _softmax_graph(shape, q8(0.07, -9), opset, attrs)
    (path,) = mark_wide_softmax(g).values()
    rng = np.random.default_rng(5)
    feeds = [{"x": rng.integers(-128, 128, shape).astype(np.int8)}, {"x": np.full(shape, 40, np.int8)}]
    marked = [run_int(g, f)["Softmax_out"] for f in feeds]
    assert expand_wide_softmax(g) == 1
    assert [(n.op, n.name) for n in g.nodes] == EXPANSIONS[path]
    sm, to8 = g.nodes[-2:]
    assert to8.inputs[0] is sm.outputs[0] and WIDE_SOFTMAX_ATTR not in sm.attrs
    if path == "int16":
        assert g.nodes[0].inputs[0] is x and sm.inputs[0] is g.nodes[0].outputs[0]
        assert g.nodes[0].outputs[0].quant.same_as(q16(np.float32(0.07) / 128))
    else:
        assert sm.inputs[0] is x
    assert sm.outputs[0].quant.same_as(SM16 if path == "int16" else OUT16)
    assert g.outputs == [to8.outputs[0]] and g.outputs[0].name == "Softmax_out"
    assert g.outputs[0].quant.same_as(OUT8) and g.outputs[0].dtype == np.int8
    for f, want in zip(feeds, marked):
        assert_same(want, run_int(g, f)["Softmax_out"], "expanded vs marked")


def test_unexpanded_mark_is_refused_by_the_backends():
    from qcompiler.backends.tflite.lower import lower_graph
    g, _ = _softmax_graph((1, 1000), q8(0.1, 0))
    mark_wide_softmax(g)
    with pytest.raises(BackendError, match="not expanded"):
        lower_graph(g)
    tvm_lower = pytest.importorskip("qcompiler.backends.tvm.lower")
    with pytest.raises(BackendError, match="not expanded"):
        tvm_lower.lower_graph(g)


# ---- TVM: the three kernels bit for bit ------------------------------------------------------------

def test_tvm_wide_softmax_kernels_are_bit_exact():
    tvm = pytest.importorskip("tvm")
    from tvm import relax

    from qcompiler.backends.tvm.build import build, run_vm
    from qcompiler.backends.tvm.lower import bind_params, lower_graph
    rng = np.random.default_rng(11)
    g, feeds = Graph("wide"), {}

    def node(op, data, qi, qo, attrs=None, opset=13):
        x = g.add_input(f"{op}_{len(feeds)}", data.dtype, data.shape)
        x.quant, feeds[x.name] = qi, data
        n = g.add_node(op, [x], attrs=attrs or {})
        n.meta["opset"] = opset
        y = n.outputs[0]
        y.dtype, y.shape, y.quant = qo.dtype, data.shape, qo
        g.outputs.append(y)

    small = lambda rows: {k: v for k, v in rows.items() if "65536" not in k}  # noqa: E731
    for scale in (10 / 65535, 0.3 / 128, 8.0 / 128):
        for data in {**exhaustive_rows(), **small(class_rows(rng))}.values():
            node("Softmax", data, q16(scale), SM16, {"axis": -1})
    top = np.full_like(ALL8, 127)
    for scale in (0.03, 2.0):
        for data in [np.stack([top, ALL8], 1), *class_rows(rng, -128, 127, np.int8, 4095).values()]:
            node("Softmax", data, q8(scale, -5), OUT16, {"axis": -1})
    node("Softmax", rng.integers(-128, 128, (2, 700, 3)).astype(np.int8), q8(0.2), OUT16, {"axis": 1})
    for out in (OUT8, OUT16):  # opset < 13: one softmax over the flattened C, H, W
        node("Softmax", rng.integers(-128, 128, (2, 4, 3, 3)).astype(np.int8), q8(0.05), out, {}, opset=11)
    node("Requantize", ALL16, OUT16, OUT8)
    node("Requantize", ALL16, SM16, OUT8)
    node("Requantize", ALL8, q8(0.05, -7), int16_input_params(q8(0.05, -7)))
    ref = run_int(g, feeds)
    vm = relax.VirtualMachine(build(bind_params(lower_graph(g)), "llvm"), tvm.cpu())
    got = run_vm(vm, [feeds[v.name] for v in g.inputs])
    for v, arr in zip(g.outputs, got):
        assert arr.dtype == ref[v.name].dtype
        assert_same(ref[v.name], arr, f"TVM {v.producer.op} {v.producer.inputs[0].name}")


# ---- end to end: models ending in a 1000- and a 5000-class softmax --------------------------------------

def _classifier(tmp_path, classes: int, flat: bool):
    rng = np.random.default_rng(classes + flat)
    w = np.zeros((16, classes), np.float32) if flat else rng.normal(0, 0.3, (16, classes)).astype(np.float32)
    b = np.full(classes, 0.25, np.float32) if flat else rng.normal(0, 1, classes).astype(np.float32)
    if not flat:
        b[7] += 12.0  # one dominant class
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=-1)]
    model = save_model(tmp_path / f"cls{classes}.onnx", nodes, {"x": (1, 16)}, {"y": (1, classes)},
                       [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    calib = tmp_path / "x.npy"
    np.save(calib, rng.normal(0, 1, (24, 16)).astype(np.float32))
    return model, calib


def _float_softmax(model, x, floor=0.0):
    """The float softmax; `floor` models the int16 kernel, whose exp table covers [-10, 0] and
    gives anything lower its first entry, 2 / 32768 (about exp(-9.7))."""
    import onnx
    m = onnx.load(model)
    w, b = (numpy_helper.to_array(t).astype(np.float64) for t in m.graph.initializer)
    z = x.astype(np.float64) @ w + b
    e = np.maximum(np.exp(z - z.max(axis=1, keepdims=True)), floor)
    return e / e.sum(axis=1, keepdims=True)


E2E = {1000: (["Gemm", "Softmax", "Requantize"], {"FULLY_CONNECTED": 1, "SOFTMAX": 1, "QUANTIZE": 1}, 0.0),
       5000: (["Gemm", "Requantize", "Softmax", "Requantize"], {"FULLY_CONNECTED": 1, "SOFTMAX": 1, "QUANTIZE": 2},
              2 / 32768)}


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "peaked"])
@pytest.mark.parametrize("classes", sorted(E2E))
@pytest.mark.parametrize("target", ["tflite", "tvm"])
def test_wide_softmax_end_to_end(tmp_path, target, classes, flat):
    if target == "tvm":
        pytest.importorskip("tvm")
    nodes, tfl_ops, floor = E2E[classes]
    model, calib = _classifier(tmp_path, classes, flat)
    out = tmp_path / "out"
    res = compile_model(model, out, CompileOptions(target=target, calib=str(calib)))
    assert [n.op for n in res.quant_graph.nodes] == nodes
    if target == "tflite":
        assert res.report["ops"] == tfl_ops
    check = verify_outdir(out, calib, **({"with_litert": False} if target == "tflite" else {}))
    assert check["samples"] == 24 and check["tvm" if target == "tvm" else "tflm"]["bit_exact"], check
    # and it is a softmax: within a few steps of 1/256 of the float one
    x = np.load(calib)
    qx = res.quant_graph.inputs[0].quant.quantize(x)
    y = np.concatenate([run_int(res.quant_graph, {"x": row[None]})["y"] for row in qx])
    err = np.abs(OUT8.dequantize(y) - _float_softmax(model, x, floor))
    assert err.max() <= 3 / 256, err.max()
    if not flat:
        assert np.all(np.argmax(y, axis=1) == 7)


@pytest.mark.parametrize("classes", [256, 511])
def test_up_to_511_classes_keep_one_int8_softmax(tmp_path, classes):
    model, calib = _classifier(tmp_path, classes, flat=True)
    out = tmp_path / "out"
    res = compile_model(model, out, CompileOptions(target="tflite", calib=str(calib)))
    assert [n.op for n in res.quant_graph.nodes] == ["Gemm", "Softmax"]
    assert res.report["ops"] == {"FULLY_CONNECTED": 1, "SOFTMAX": 1}
    (tflite,) = out.glob("*.tflite")
    assert "int16" not in {t.dtype for t in fb.read_model(tflite.read_bytes()).tensors}
    assert verify_outdir(out, calib, with_litert=False)["tflm"]["bit_exact"]


@pytest.mark.parametrize("name", ["digits_dwsep", "digits_cnn"])
def test_sample_models_keep_their_op_lists(tmp_path, name):
    res = compile_model(MODELS / f"{name}.onnx", tmp_path / "out",
                        CompileOptions(target="tflite", calib=str(MODELS / "digits_calib.npy")))
    assert "Requantize" not in {n.op for n in res.quant_graph.nodes}
    assert "QUANTIZE" not in res.report["ops"] and res.report["ops"].get("SOFTMAX", 0) <= 1
