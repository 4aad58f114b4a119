"""unroll_lstm: structure, float equivalence with onnxruntime (every output, both directions,
constant initial state, peepholes), refusals, and the pipelines that run it."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

from onnx_builders import assert_matches_onnxruntime, ops, run_passes, save_model
from qcompiler.errors import UnsupportedOpError
from qcompiler.driver.pipeline import default_pipeline
from qcompiler.passes import COMMON_PIPELINE, DECOMPOSED_PIPELINE

RNG = np.random.default_rng(14)
SEQ, BATCH, IN, H = 5, 2, 6, 4


def init(name, *shape, scale=0.6):
    return numpy_helper.from_array((RNG.normal(size=shape) * scale).astype(np.float32), name)


def lstm_model(tmp_path, direction="forward", state=False, peepholes=False, lens=None, outputs=("y",),
               seq=SEQ, batch=BATCH, zero_state=False, **attrs):
    """X -> LSTM -> the outputs named (y, y_h, y_c); weights, bias, state and P as initializers."""
    nd = 2 if direction == "bidirectional" else 1
    inits = [init("W", nd, 4 * H, IN), init("R", nd, 4 * H, H), init("B", nd, 8 * H, scale=0.3)]
    ins = ["x", "W", "R", "B", "", "", ""]
    if lens is not None:
        inits.append(numpy_helper.from_array(np.asarray(lens, np.int32), "lens"))
        ins[4] = "lens"
    if state:
        inits += [init("h0", nd, batch, H), init("c0", nd, batch, H, scale=1.0)]
        if zero_state:
            inits[-2:] = [numpy_helper.from_array(np.zeros((nd, batch, H), np.float32), k) for k in ("h0", "c0")]
        ins[5:7] = ["h0", "c0"]
    if peepholes:
        inits.append(init("P", nd, 3 * H))
        ins.append("P")
    names = {"y": "y", "y_h": "y_h", "y_c": "y_c"}
    node = helper.make_node("LSTM", ins, [names[k] if k in outputs else "" for k in ("y", "y_h", "y_c")],
                            name="lstm", direction=direction, hidden_size=H, **attrs)
    shapes = {"y": (seq, nd, batch, H), "y_h": (nd, batch, H), "y_c": (nd, batch, H)}
    return save_model(tmp_path / "lstm.onnx", [node], {"x": (seq, batch, IN)},
                      {k: shapes[k] for k in outputs}, inits)


@pytest.mark.parametrize("kw", [
    {},
    {"direction": "reverse"},
    {"direction": "bidirectional", "outputs": ("y", "y_h", "y_c")},
    {"direction": "bidirectional", "state": True, "outputs": ("y", "y_c")},
    {"direction": "bidirectional", "state": True, "zero_state": True},
    {"state": True, "peepholes": True, "outputs": ("y", "y_h", "y_c")},
    {"direction": "reverse", "peepholes": True, "outputs": ("y_h",)},
    {"lens": [SEQ, SEQ], "seq": SEQ},
    {"seq": 1, "batch": 1, "direction": "bidirectional", "outputs": ("y", "y_h")},
], ids=["fwd", "rev", "bidi-all-outputs", "bidi-state", "bidi-zero-state", "peephole-state", "rev-peephole-yh",
        "full-seq-lens", "one-step"])
def test_matches_onnxruntime(tmp_path, kw):
    path = lstm_model(tmp_path, **kw)
    g, ctx = run_passes(path, ["unroll_lstm", "dead_code"])
    assert "LSTM" not in ops(g) and set(ops(g)) <= {"Reshape", "Gemm", "Split", "Add", "Mul", "Sigmoid", "Tanh",
                                                    "Concat"}
    assert [v.name for v in g.outputs] == list(kw.get("outputs", ("y",)))
    assert_matches_onnxruntime(path, g, samples=3, tol=1e-5)
    assert ctx.log and ctx.log[0].startswith("unroll_lstm: lstm")


def test_structure_forward(tmp_path):
    """One Gemm + Split per gate for the input projection; step 0 (zero state) has no recurrent
    Gemm and no forget gate; every later step has one recurrent Gemm (all gates, split after),
    all on one constant R."""
    g, _ = run_passes(lstm_model(tmp_path), ["unroll_lstm", "dead_code"])
    o = ops(g)
    assert o.count("Gemm") == 4 + (SEQ - 1) and o.count("Split") == 4 + (SEQ - 1)
    recurrent = [n for n in g.nodes if n.op == "Gemm" and n.inputs[0].producer is not None
                 and n.inputs[0].producer.op == "Mul"]
    assert len(recurrent) == SEQ - 1 and len({id(n.inputs[1]) for n in recurrent}) == 1
    assert o.count("Sigmoid") == 2 + 3 * (SEQ - 1) and o.count("Tanh") == 2 * SEQ
    assert o.count("Concat") == 1 and o[-1] == "Reshape"
    # the cell state of every step and f * c_{t-1} of every step but the first: one range
    cells = [v for n in g.nodes for v in n.outputs if "range_group" in v.meta]
    assert len(cells) == SEQ + SEQ - 1 and len({v.meta["range_group"] for v in cells}) == 1
    roles = {}
    for n in g.nodes:
        roles.setdefault(n.meta.get("recurrent"), []).append(n.op)
    assert sorted(roles["input_projection"]) == ["Gemm"] * 4
    assert sorted(roles["recurrent_projection"]) == ["Gemm"] * (SEQ - 1)
    assert roles["hidden"] == ["Mul"] * SEQ
    assert sorted(set(roles["cell"])) == ["Add", "Mul", "Tanh"] and sorted(set(roles["gate"])) == ["Add", "Sigmoid", "Tanh"]
    assert sorted(set(roles[None])) == ["Concat", "Reshape", "Split"]   # data movement follows its input's width


@pytest.mark.parametrize("kw,what", [
    ({"clip": 0.5}, "clip=0.5"),
    ({"input_forget": 1}, "input_forget=1"),
    ({"lens": [SEQ, 2]}, "sequence_lens"),
    ({"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations"),
])
def test_refusals_name_the_node_and_reason(tmp_path, kw, what):
    path = lstm_model(tmp_path, **kw)
    with pytest.raises(UnsupportedOpError, match=f"LSTM \\(node lstm\\).*{what}"):
        run_passes(path, ["unroll_lstm"])


def test_computed_initial_state_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["h"], ["h0"]),
             helper.make_node("LSTM", ["x", "W", "R", "", "", "h0"], ["y"], name="lstm", hidden_size=H)]
    path = save_model(tmp_path / "m.onnx", nodes, {"x": (SEQ, 1, IN), "h": (1, 1, H)}, {"y": (SEQ, 1, 1, H)},
                      [init("W", 1, 4 * H, IN), init("R", 1, 4 * H, H)])
    with pytest.raises(UnsupportedOpError, match="initial_h is computed"):
        run_passes(path, ["unroll_lstm"])


def test_in_the_integer_targets_pipelines():
    """Every target unrolls (ncnn's own LSTM layer is not mapped); the float clean-up does not."""
    assert "unroll_lstm" in DECOMPOSED_PIPELINE and "unroll_lstm" not in COMMON_PIPELINE
    for target in ("tflm", "tflite", "tvm", "c", "ncnn"):
        assert "unroll_lstm" in default_pipeline(target), target


def test_sigmoid_and_tanh_inputs_stop_where_the_outputs_saturate():
    """A tensor read only by Sigmoid (or Tanh) gets at most [-ln 511, ln 511] (ln(511) / 2):
    beyond, the fixed-parameter int8 output moves by less than half a step; read by both, the
    wider. Through a Split and an Add whose other operand reaches 3: 3 more (an unrolled LSTM's
    input projection). A tensor with another, non-saturating reader keeps its calibrated range
    where that reader responds."""
    from qcompiler.ir import Graph
    from qcompiler.quant.quantize import quantize_graph
    g = Graph("sat")
    x = g.add_input("x", np.float32, (2, 4))
    u = g.add_input("u", np.float32, (1, 4))
    outs = {}

    def node(op, ins, name, n_out=1, **attrs):
        nd = g.add_node(op, ins, n_out, attrs=attrs, name=name)
        for o in nd.outputs:
            o.shape = (1, 4) if op == "Split" or ins[0].shape == (1, 4) else (2, 4)
        return nd.outputs

    for name, readers in (("s", ["Sigmoid"]), ("t", ["Tanh"]), ("st", ["Sigmoid", "Tanh"]), ("sm", ["Sigmoid", "Relu"])):
        v, = node("Relu", [x], f"{name}_src")
        outs[name] = v
        for r in readers:
            g.outputs.append(node(r, [v], f"{name}_{r}")[0])
    v, = node("Relu", [x], "proj")
    outs["proj"] = v
    for k, part in enumerate(node("Split", [v], "steps", n_out=2, axis=0)):
        z, = node("Add", [part, u], f"z{k}")
        g.outputs.append(node("Tanh", [z], f"g{k}")[0])
    ranges = {v.name: (-20.0, 20.0) for v in g.values() if not v.is_constant}
    ranges["u"] = (-3.0, 2.0)
    q = quantize_graph(g, ranges)
    qv = {v.name: v for v in q.values()}
    span = {k: float(qv[v.name].quant.scale[0]) * 255 for k, v in outs.items()}
    ln511 = np.log(511)
    assert span["s"] == pytest.approx(2 * np.log(511), rel=1e-3)
    assert span["t"] == pytest.approx(np.log(511), rel=1e-3)
    assert span["st"] == pytest.approx(2 * np.log(511), rel=1e-3)
    # read by Sigmoid and Relu: below -ln(1023) both outputs are constant (consumer_domain)
    assert span["sm"] == pytest.approx(20.0 + np.log(1023), rel=1e-3)
    assert span["proj"] == pytest.approx(2 * (ln511 / 2 + 3), rel=1e-3)
    assert qv[outs["proj"].name].meta["saturation_bound"] == pytest.approx(ln511 / 2 + 3)


@pytest.mark.parametrize("target", ["tvm", "c", "ncnn"])
def test_unrolled_crnn_runs_in_tvm_c_and_ncnn(tmp_path, target):
    """The corpus CRNN pattern (tests/test_corpus_patterns.py runs it in TFLite Micro) compiles
    for TVM and the C backend and matches the integer reference bit for bit; in ncnn it is
    within ncnn's tolerance of its scheme's simulation, every per-step intermediate included
    (the step Split cuts [T, 4H] rows into [1, 4H] blobs that must be reshaped to [4H] before
    the recurrent InnerProduct, which otherwise multiplies them as 2-D rows)."""
    import shutil
    if target in ("tvm", "ncnn"):
        pytest.importorskip(target)
    elif not (shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")):
        pytest.skip("no C compiler")
    from test_corpus_patterns import crnn_net
    from test_tflite_lowering import calib_file
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    from qcompiler.backends import registry
    net, logits = crnn_net()
    model = net.save(tmp_path / "m.onnx", logits)
    calib = calib_file(tmp_path, net)
    report = compile_model(model, tmp_path / "out", CompileOptions(target=target, calib=str(calib))).report
    # the cell in int16 (--recurrent auto) exactly where the target has the 16x8 scheme
    mode = report["calibration"].get("activations", {}).get("mode")
    assert (mode == "recurrent") == (registry.get(target).int16_scheme is not None), mode
    res = verify_outdir(tmp_path / "out", calib, limit=4)
    if target == "ncnn":
        check = res["ncnn"]
        assert res["ok"] and check["intermediates"]["compared"] > 50, check
        assert all(o["within_one_step"] == 1.0 for o in check["outputs"].values()), check
        return
    assert res["ok"] and res[target]["bit_exact"], res[target]


def test_recurrent_cells_default_to_int16(tmp_path):
    """By default (--recurrent auto, TFLite's LSTM scheme) the unrolled cell computes in int16:
    every cell state is int16, the only conversion is where the sequence enters (X, once,
    for all input projections; the classifier reading Y is the cell's head, int16 too); bit-exact in TFLite
    Micro, and its output is closer to the float model than the all-int8 cell's
    (--recurrent int8) by >= 2 dB (measured 3.7 dB, hidden 8, 6 steps; arena +384 B)."""
    from test_corpus_patterns import crnn_net
    from test_tflite_lowering import calib_file
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    net, logits = crnn_net()
    model = net.save(tmp_path / "m.onnx", logits)
    calib = calib_file(tmp_path, net, samples=16)
    sqnr = {}
    for recurrent in ("auto", "int8"):
        out = tmp_path / recurrent
        res = compile_model(model, out, CompileOptions(target="tflite", calib=str(calib), recurrent=recurrent))
        cells = [v for v in res.quant_graph.values() if v.producer is not None
                 and v.producer.meta.get("recurrent") == "cell" and v.producer.op == "Add"]
        assert cells and {v.quant.dtype.itemsize for v in cells} == {2 if recurrent == "auto" else 1}
        act = res.report["calibration"].get("activations")
        if recurrent == "auto":
            assert act["mode"] == "recurrent" and len(act["conversions"]) == 1, act["conversions"]
        else:
            assert act is None
        check = verify_outdir(out, calib, with_litert=False)
        assert check["tflm"]["bit_exact"], check["tflm"]
        sqnr[recurrent] = check["fidelity"]["tflm"][logits]["sqnr_db"]
    assert sqnr["auto"] >= sqnr["int8"] + 2.0, sqnr


def test_recurrent_head_computes_in_int16(tmp_path):
    """The classifier reading only the cell's hidden states, up to the graph output, is the
    cell's head (precision.recurrent_head): it computes in int16 like the cell (no QUANTIZE
    where Y leaves the cell, int16 logits), bit-exact in TFLite Micro, for no activation
    bytes here (the backbone sets the peak), and closer to the float model than the int8 head
    (--int8-outputs): measured +2.7 dB (hidden 8, 6 steps)."""
    from test_corpus_patterns import crnn_net
    from test_tflite_lowering import calib_file
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    net, logits = crnn_net()
    model = net.save(tmp_path / "m.onnx", logits)
    calib = calib_file(tmp_path, net, samples=16)
    sqnr, arena = {}, {}
    for label, int8_outputs in (("head16", False), ("head8", True)):
        out = tmp_path / label
        res = compile_model(model, out, CompileOptions(target="tflm", calib=str(calib), int8_outputs=int8_outputs))
        gemm = next(n for n in res.quant_graph.nodes if n.op == "Gemm" and not n.meta.get("recurrent"))
        assert gemm.outputs[0].quant.dtype.itemsize == (1 if int8_outputs else 2)
        assert res.quant_graph.outputs[0].quant.dtype.itemsize == (1 if int8_outputs else 2)
        conversions = res.report["calibration"]["activations"]["conversions"]
        assert len(conversions) == (2 if int8_outputs else 1), conversions
        check = verify_outdir(out, calib, with_litert=False)
        assert check["tflm"]["bit_exact"], check["tflm"]
        sqnr[label] = check["fidelity"]["tflm"][logits]["sqnr_db"]
        arena[label] = res.report["arena"]["arena_bytes"]
    assert sqnr["head16"] >= sqnr["head8"] + 1.5, sqnr
    assert arena["head16"] <= arena["head8"], arena


@pytest.mark.parametrize("rounding", ["auto", "bounded"])
def test_unrolled_steps_keep_one_rounding_of_their_shared_weights(tmp_path, rounding):
    """The per-step recurrent Gemms apply one weight matrix: error-compensating rounding pools
    their H (gptq._pool_shared) and rounds it once, so every step holds the same int8 weights
    and the model file keeps one buffer (per-step roundings had made the CRNN's flash 15 -> 52 MB)."""
    from test_corpus_patterns import crnn_net
    from test_tflite_lowering import calib_file
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    net, logits = crnn_net()
    model = net.save(tmp_path / "m.onnx", logits)
    calib = calib_file(tmp_path, net, samples=16)
    res = compile_model(model, tmp_path / "out", CompileOptions(target="tvm", calib=str(calib),
                                                                weight_rounding=rounding))
    steps: dict = {}
    for n in res.quant_graph.nodes:
        if n.meta.get("recurrent") == "recurrent_projection":
            w = n.inputs[1]
            steps.setdefault((w.shape, n.name.split("_step")[0][:12]), []).append(np.asarray(w.data))
    assert steps and any(len(ws) > 2 for ws in steps.values()), steps.keys()
    for ws in steps.values():
        assert all(np.array_equal(ws[0], w) for w in ws[1:])


@pytest.mark.parametrize("tail", [None, "Softmax", "Relu", "Add"])
def test_recurrent_head_is_only_linear_layers_up_to_the_outputs(tmp_path, tail):
    """The head is the Gemm reading Y when the logits are the graph output; a Softmax or Relu
    after it (not a linear layer), or an Add of a tensor from outside the cell, leaves the
    head int8 (the cell's exit conversion stays)."""
    from test_corpus_patterns import crnn_net
    from qcompiler.driver.pipeline import default_pipeline
    from qcompiler.quant.precision import recurrent_head, recurrent_nodes
    net, logits = crnn_net()
    out = logits
    if tail == "Add":
        out = net.op("Add", logits, net.op("ReduceMean", "x", axes=[2, 3], keepdims=0))
    elif tail is not None:
        out = net.op(tail, logits)
    g, _ = run_passes(net.save(tmp_path / "m.onnx", out), default_pipeline("tflm"))
    cell = recurrent_nodes(g)
    head = recurrent_head(g, cell)
    assert cell and head == (frozenset(n.name for n in g.nodes if n.op == "Gemm" and n.name not in cell)
                             if tail is None else frozenset()), (tail, head)
