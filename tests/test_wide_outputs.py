"""Graph outputs that join values of very different ranges (YOLO heads: box pixels and class
scores in one tensor) get an int16 head by default (qcompiler/quant/wide_outputs.py): each
slice keeps its SQNR, the model runs bit-exactly in TFLite Micro and TVM, and --int8-outputs
keeps the old int8 output.

    YOLOv8 style:  x -> Conv -> Relu -> f -> Conv -> Relu -> Mul(40) -> box (0..300 px) --+-> Concat -> Reshape -> y
                                         f -> Conv -> Sigmoid -> score (0..1) ------------+
    YOLOX style (two scales, each):  f -> Conv (4 box + 1 obj logit, merged by horizontal_merge)
        -> Split -> box (+-3), obj logit (+-30) -> Sigmoid;  f -> Conv -> Sigmoid (cls);
        Concat(box, obj, cls) -> Reshape;  Concat over the scales -> Transpose -> y [1, anchors, 6]
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.driver.verify import verify_outdir
from qcompiler.interp import run_int


def _save(nodes, inits, out_shape, path, name):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _w(rng, name, shape, scale):
    return numpy_helper.from_array((rng.normal(size=shape) * scale).astype(np.float32), name)


def yolov8_head(path):
    rng = np.random.default_rng(0)
    inits = [_w(rng, "wf", (8, 3, 3, 3), 0.5), _w(rng, "wb", (4, 8, 1, 1), 0.5), _w(rng, "ws", (2, 8, 1, 1), 0.5),
             numpy_helper.from_array(np.float32(40.0), "stride"),
             numpy_helper.from_array(np.array([1, 6, 64], np.int64), "shape")]
    nodes = [helper.make_node("Conv", ["x", "wf"], ["f0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["f0"], ["f"]),
             helper.make_node("Conv", ["f", "wb"], ["b0"]), helper.make_node("Relu", ["b0"], ["b1"]),
             helper.make_node("Mul", ["b1", "stride"], ["box"]),
             helper.make_node("Conv", ["f", "ws"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["score"]),
             helper.make_node("Concat", ["box", "score"], ["cat"], axis=1),
             helper.make_node("Reshape", ["cat", "shape"], ["y"])]
    return _save(nodes, inits, [1, 6, 64], path, "yolov8_head")


def yolox_head(path):
    rng = np.random.default_rng(2)
    inits = [_w(rng, "wf", (8, 3, 3, 3), 0.5), numpy_helper.from_array(np.array([1, 6, 64], np.int64), "s8"),
             numpy_helper.from_array(np.array([1, 6, 16], np.int64), "s4")]
    nodes = [helper.make_node("Conv", ["x", "wf"], ["f0"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["f0"], ["f8"]),
             helper.make_node("MaxPool", ["f8"], ["f4"], kernel_shape=[2, 2], strides=[2, 2])]
    for k, size in (("8", 64), ("4", 16)):
        inits += [_w(rng, f"wb{k}", (4, 8, 1, 1), 0.3), _w(rng, f"wo{k}", (1, 8, 1, 1), 4.0),
                  _w(rng, f"wc{k}", (1, 8, 1, 1), 0.5)]
        nodes += [helper.make_node("Conv", [f"f{k}", f"wb{k}"], [f"box{k}"]),
                  helper.make_node("Conv", [f"f{k}", f"wo{k}"], [f"obj_logit{k}"]),
                  helper.make_node("Conv", [f"f{k}", f"wc{k}"], [f"cls_logit{k}"]),
                  helper.make_node("Sigmoid", [f"obj_logit{k}"], [f"obj{k}"]),
                  helper.make_node("Sigmoid", [f"cls_logit{k}"], [f"cls{k}"]),
                  helper.make_node("Concat", [f"box{k}", f"obj{k}", f"cls{k}"], [f"cat{k}"], axis=1),
                  helper.make_node("Reshape", [f"cat{k}", f"s{k}"], [f"flat{k}"])]
    nodes += [helper.make_node("Concat", ["flat8", "flat4"], ["all"], axis=2),
              helper.make_node("Transpose", ["all"], ["y"], perm=[0, 2, 1])]
    return _save(nodes, inits, [1, 80, 6], path, "yolox_head")


# builder, box slice, score slice, least score gain (dB): the YOLOv8 scores had ~1 int8 step
# of the 0..300 px range, the YOLOX ones ~20 of the +-5 regression range
HEADS = {"yolov8": (yolov8_head, (slice(None), slice(0, 4)), (slice(None), slice(4, None)), 20.0),
         "yolox": (yolox_head, (slice(None), slice(None), slice(0, 4)), (slice(None), slice(None), slice(4, None)), 5.0)}


def _sqnr(ref, got):
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / max(np.sum((ref - got) ** 2.0), 1e-30)))


def _slices(qgraph, model_path, x, boxes, scores):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {"x": x[i:i + 1]})[0] for i in range(len(x))])
    out = qgraph.outputs[0]
    got = np.concatenate([out.quant.dequantize(run_int(qgraph, {"x": qgraph.inputs[0].quant.quantize(x[i:i + 1])})[out.name])
                          for i in range(len(x))])
    return _sqnr(ref[(slice(None),) + boxes[1:]], got[(slice(None),) + boxes[1:]]), \
        _sqnr(ref[(slice(None),) + scores[1:]], got[(slice(None),) + scores[1:]])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    return rng.uniform(-1, 1, (48, 3, 8, 8)).astype(np.float32), rng.uniform(-1, 1, (16, 3, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, data):
    """compiled(head, **options) -> (model path, CompileResult, output dir), each compiled once."""
    done = {}
    root = tmp_path_factory.mktemp("wide")

    def get(head, **options):
        key = (head, tuple(sorted(options.items())))
        if key not in done:
            path = HEADS[head][0](root / f"{head}.onnx")
            out = root / f"{head}_{len(done)}"
            done[key] = (path, compile_model(path, out, CompileOptions(calib=data[0], **options)), out)
        return done[key]
    return get


@pytest.mark.parametrize("head", sorted(HEADS))
def test_mixed_output_is_int16_and_every_slice_gains(compiled, data, head):
    _, boxes, scores, gain = HEADS[head]
    ev = data[1]
    path, wide, out = compiled(head)
    _, narrow, _ = compiled(head, int8_outputs=True)
    assert wide.quant_graph.outputs[0].quant.dtype == np.int16
    assert narrow.quant_graph.outputs[0].quant.dtype == np.int8
    entry = wide.report["calibration"]["outputs"]
    assert entry["dtypes"] == {"y": "int16"} and entry["widened"][0]["bits_lost"] > 2
    assert "outputs" not in narrow.report["calibration"] or narrow.report["calibration"]["outputs"] is None
    b16, s16 = _slices(wide.quant_graph, path, ev, boxes, scores)
    b8, s8 = _slices(narrow.quant_graph, path, ev, boxes, scores)
    # the scores had a few int8 steps of the box range; int16 gives them their own resolution back
    assert s16 > s8 + gain, (s16, s8)
    assert b16 >= b8 - 0.1, (b16, b8)
    check = verify_outdir(out, ev[:8], with_litert=False)
    assert check["tflm"]["bit_exact"], check


def test_yolox_head_widths_and_logit_ranges(compiled):
    """The producers of the output group (box Convs, Sigmoids) compute in int16, the backbone
    stays int8, and an int8 logit read by an int16 Sigmoid (through its QUANTIZE) keeps the range
    where that Sigmoid still moves: |x| <= ln(65535) = 11.09, not int8's ln 511 = 6.24."""
    from qcompiler.quant.range_rules import saturated_beyond
    q = compiled("yolox")[1].quant_graph
    assert all(n.outputs[0].quant.dtype == np.int16 for n in q.nodes if n.op == "Sigmoid")
    assert q.nodes[0].outputs[0].quant.dtype == np.int8
    wide16 = saturated_beyond("Sigmoid", 2.0 ** -15)
    assert abs(wide16 - np.log(65535)) < 1e-9
    for n in q.nodes:
        if n.op == "Sigmoid" and n.inputs[0].producer.op == "Requantize":
            logit = n.inputs[0].producer.inputs[0]
            if not logit.name.startswith("obj_logit"):  # (+-30; the class logits stay within +-5)
                continue
            lo = float((-128 - logit.quant.zero_point[0]) * logit.quant.scale[0])
            assert logit.quant.dtype == np.int8 and -wide16 - 0.1 < lo < -saturated_beyond("Sigmoid", 1 / 256) - 1


@pytest.mark.parametrize("head", [pytest.param("yolov8", marks=pytest.mark.slow), "yolox"])
def test_int16_head_is_bit_exact_in_tvm(compiled, data, head):
    pytest.importorskip("tvm")
    _, res, out = compiled(head, target="tvm")
    assert res.quant_graph.outputs[0].quant.dtype == np.int16
    check = verify_outdir(out, data[1][:8])
    assert check["ok"] and check["tvm"]["bit_exact"], check


def test_outputs_of_one_range_stay_int8(tmp_path, data):
    """A Concat whose members share a range (two box branches) is no reason for int16."""
    rng = np.random.default_rng(3)
    inits = [_w(rng, "w1", (4, 3, 1, 1), 1.0), _w(rng, "w2", (4, 3, 1, 1), 1.0)]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"]), helper.make_node("Conv", ["x", "w2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    path = _save(nodes, inits, [1, 8, 8, 8], tmp_path / "same.onnx", "same")
    res = compile_model(path, tmp_path / "out", CompileOptions(calib=data[0]))
    assert res.quant_graph.outputs[0].quant.dtype == np.int8
    assert "outputs" not in res.report["calibration"]


@pytest.mark.parametrize("head", sorted(HEADS))
def test_c_target_runs_the_int16_head_bit_exactly(compiled, data, head):
    """backends/c has the 16x8 kernels: the output is int16 there too and the C build matches
    the integer reference bit for bit."""
    _, res, out = compiled(head, target="c")
    assert res.quant_graph.outputs[0].quant.dtype == np.int16
    check = verify_outdir(out, data[1][:4])
    assert check["ok"] and check["c"]["bit_exact"], check


def test_cli_announces_the_int16_output(tmp_path, data, capsys):
    from qcompiler.driver.cli import main
    path = yolov8_head(tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", data[0])
    assert main([str(path), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "y are int16" in out and "--int8-outputs" in out
