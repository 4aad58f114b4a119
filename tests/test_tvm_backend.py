"""TVM backend: integer-only Relax module, built for llvm, bit-exact with the integer reference.

Covers the fixed-point primitives (against fixed_point), every lowering on a
many-branch random graph (against the reference kernels), the sample and MLPerf
Tiny models end to end (compile -> .so -> Relax VM -> bit-exact), the no-float
walk of the Relax IR and of the TIR after legalization, the TVMScript file
round trip, determinism, and the missing-dependency / unsupported-op errors.
"""
from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest

from conftest import MLPERF_MODELS, MODELS, SAMPLE_MODELS, SHARED, mlperf_data, require_shared
from qcompiler.numerics import fixed_point as qm
from qcompiler.errors import MissingDependencyError, UnsupportedOpError
from qcompiler.interp import run_int
from qcompiler.ir import Graph, QuantParams
from qcompiler.driver.pipeline import CompileOptions, compile_model
from qcompiler.ir.serialize import load_graph
from qcompiler.driver.verify import verify_outdir

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from qcompiler.backends.tvm.build import (build, float_dtypes, legalize,  # noqa: E402
                                          read_params, run_vm)
from qcompiler.backends.tvm.intmath import RelaxEmitter  # noqa: E402
from qcompiler.backends.tvm.lower import bind_params, lower_graph  # noqa: E402

CALIB = str(MODELS / "digits_calib.npy")
EVAL = MODELS / "digits_eval.npy"
RNG = np.random.default_rng(7)


def _compile(model, outdir, **kw):
    return compile_model(model, outdir, CompileOptions(target="tvm", calib=CALIB, **kw))


def _run_module(mod, arrays):
    """Build a module whose `main` takes only the input tensors; run it on numpy arrays."""
    ex = build(mod, "llvm")
    return run_vm(relax.VirtualMachine(ex, tvm.cpu()), arrays)


# ---- fixed-point primitives against fixed_point -------------------------------------------

def test_intmath_primitives_match_fixed_point():
    n = 4096
    a = RNG.integers(qm.INT32_MIN, qm.INT32_MAX + 1, n)
    b = RNG.integers(qm.INT32_MIN, qm.INT32_MAX + 1, n)
    a[:8], b[:4] = qm.INT32_MIN, qm.INT32_MIN                  # the SRDHM overflow case
    a[8:1024] = RNG.integers(-3000, 3000, 1016)                 # small values: rounding ties
    e = RNG.integers(0, 31, n)
    chan_mult = np.array([1 << 30, 1518500250, 2147483647, 1073741825], np.int64)
    chan_shift = np.array([-7, 0, 3, -31], np.int64)
    recip_in = RNG.integers(1, qm.INT32_MAX + 1, n)
    recip_in[:40] = 1 << np.arange(40) % 31

    bb = relax.BlockBuilder()
    em = RelaxEmitter(bb)
    va, vb, ve, vr = (relax.Var(k, relax.TensorType((n,), "int64")) for k in "aber")
    with bb.function("main"):
        with bb.dataflow():
            per_chan = bb.emit(relax.op.reshape(va, (n // 4, 4)))
            recip, bits = em.reciprocal(vr, 12)
            outs = [em.srdhm(va, vb), em.rdbpot(va, ve), em.rdbpot(va, 5),
                    em.mbqm(per_chan, chan_mult, chan_shift), em.clz32(em.emit(relax.op.bitwise_and(
                        va, em.const(0xFFFFFFFF)))), recip, bits, em.sat_rounding_mul_pot(va, 3),
                    em.rounding_half_sum(va, qm.INT32_MAX)]
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out, params=[va, vb, ve, vr] + em.param_vars)
    mod = relax.transform.BindParams("main", em.params)(bb.get())
    got = _run_module(mod, [a, b, e, recip_in])
    r_scale, r_bits = qm.get_reciprocal(recip_in, 12)
    want = [qm.saturating_rounding_doubling_high_mul(a, b), qm.rounding_divide_by_pot(a, e),
            qm.rounding_divide_by_pot(a, 5),
            qm.multiply_by_quantized_multiplier(a.reshape(-1, 4), chan_mult, chan_shift),
            qm.count_leading_zeros_u32(a), r_scale, np.broadcast_to(r_bits, (n,)),
            qm.saturating_rounding_multiply_by_pot(a, 3), qm.rounding_half_sum(a, qm.INT32_MAX)]
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g, w, err_msg=f"primitive #{k}")


# ---- every lowering on one random many-branch graph -------------------------------------------

def _q(scale, zp=0, axis=None):
    return QuantParams(np.asarray(scale, np.float32), np.asarray(zp), axis)


def _node(g, op, ins, q, attrs=None):
    (v,) = g.add_node(op, ins, attrs=attrs or {}).outputs
    v.quant = q
    g.outputs.append(v)
    return v


def _const(g, name, arr, q=None):
    v = g.add_constant(name, arr)
    v.quant = q
    return v


def _conv_weights(g, name, shape, in_scale):
    w = RNG.integers(-127, 128, shape).astype(np.int8)
    ws = (10 ** RNG.uniform(-2.5, -1, shape[0])).astype(np.float32)
    bias = RNG.integers(-3000, 3000, shape[0]).astype(np.int32)
    return (_const(g, f"{name}_w", w, _q(ws, np.zeros(shape[0], np.int64), axis=0)),
            _const(g, f"{name}_b", bias, _q(ws * np.float32(in_scale), np.zeros(shape[0], np.int64), 0)))


def _op_graph() -> Graph:
    """Every supported op, with attribute corners: ceil_mode, padding, dilation, groups,
    depthwise multiplier, multipliers > 1 (left shifts), fused activations, broadcasting,
    softmax taps beyond diff_min and on a non-last axis, table ops, data movement."""
    g = Graph("ops")
    xq, yq = _q(0.05, -3), _q(0.08, 10)
    x = g.add_input("x", np.int8, (1, 4, 7, 7))
    y = g.add_input("y", np.int8, (1, 4, 1, 7))
    z = g.add_input("z", np.int8, (1, 4, 9))
    x.quant, y.quant, z.quant = xq, yq, xq
    w, b = _conv_weights(g, "c1", (6, 4, 3, 3), 0.05)
    c1 = _node(g, "Conv", [x, w, b], _q(0.01, 5), {"pads": [1, 1, 1, 1], "strides": [2, 2],
                                                  "clamp": [0.0, 6.0]})
    w, b = _conv_weights(g, "dw", (8, 1, 3, 3), 0.05)
    _node(g, "Conv", [x, w, b], _q(0.2, -20), {"pads": [2, 1, 2, 1], "dilations": [2, 1],
                                              "group": 4, "clamp": [0.0, None]})
    w, b = _conv_weights(g, "c1d", (3, 4, 3), 0.05)
    _node(g, "Conv", [z, w, b], _q(0.3, 0), {"pads": [1, 0]})
    flat = _node(g, "Flatten", [x], xq, {"axis": 1})
    wg = RNG.integers(-127, 128, (5, 196)).astype(np.int8)
    gm = _node(g, "Gemm", [flat, _const(g, "fc_w", wg, _q(0.01)),
                           _const(g, "fc_b", RNG.integers(-500, 500, 5).astype(np.int32),
                                  _q(0.0005))], _q(0.6, 2), {"transB": 1})
    _node(g, "Softmax", [gm], _q(1 / 256, -128), {"axis": -1})
    _node(g, "Softmax", [c1], _q(1 / 256, -128), {"axis": 1})
    _node(g, "Add", [x, y], _q(0.1, -7), {"clamp": [0.0, None]})
    _node(g, "Sub", [x, y], _q(0.12, 3))
    _node(g, "Mul", [x, y], _q(0.02, -1))
    _node(g, "MaxPool", [x], xq, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                  "ceil_mode": 1})
    _node(g, "AveragePool", [x], xq, {"kernel_shape": [3, 3], "strides": [2, 2],
                                      "pads": [1, 1, 1, 1]})
    _node(g, "GlobalAveragePool", [x], xq)
    _node(g, "ReduceMean", [x], _q(0.03, 4), {"axes": [2, 3], "keepdims": 1})
    _node(g, "Sigmoid", [x], _q(1 / 256, -128))
    _node(g, "Tanh", [x], _q(1 / 128, 0))
    _node(g, "Relu", [x], _q(0.04, -128))
    _node(g, "LeakyRelu", [x], _q(0.06, 1), {"alpha": 0.1})
    _node(g, "HardSwish", [x], _q(0.05, -5))
    _node(g, "Clip", [x, _const(g, "lo", np.float32(0.0)), _const(g, "hi", np.float32(1.5))], xq)
    _node(g, "Transpose", [x], xq, {"perm": [0, 2, 3, 1]})
    _node(g, "Concat", [x, x], xq, {"axis": 1})
    _node(g, "Reshape", [x, _const(g, "shape", np.array([1, -1], np.int64))], xq)
    _new_ops(g, x, xq)
    return g


def _new_ops(g, x, xq):
    """The issue-20 lowerings: ConvTranspose (crop and zero extension), PRelu, GlobalMaxPool,
    Pad (negative pads, PADV2 fill), Slice (negative steps), Split, Resize (every mode)."""
    wt = RNG.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    ws = (10 ** RNG.uniform(-2.5, -1, 3)).astype(np.float32)
    _node(g, "ConvTranspose", [x, _const(g, "ct_w", wt, _q(ws, np.zeros(3, np.int64), axis=1)),
                               _const(g, "ct_b", RNG.integers(-900, 900, 3).astype(np.int32),
                                      _q(ws * np.float32(0.05), np.zeros(3, np.int64), 1))],
          _q(0.07, 3), {"strides": [2, 2], "pads": [1, 0, 0, 1], "output_padding": [1, 1]})
    _node(g, "ConvTranspose", [x, _const(g, "ct2_w", wt, _q(0.02))], _q(0.1, -9),
          {"strides": [1, 2], "pads": [0, 1, 1, 0], "clamp": [0.0, None]})
    alpha = _const(g, "alpha", RNG.integers(-128, 128, (4, 1, 1)).astype(np.int8), _q(0.01, 5))
    _node(g, "PRelu", [x, alpha], _q(0.04, -2))
    _node(g, "GlobalMaxPool", [x], xq)
    _node(g, "Pad", [x, _const(g, "pads", np.array([0, 1, -2, 3, 0, 0, 1, -1], np.int64))], xq)
    _node(g, "Pad", [x, _const(g, "pads2", np.array([0, 0, 1, 1, 0, 0, 2, 0], np.int64)),
                     _const(g, "pad_value", np.array([17], np.int8))], xq)
    _node(g, "Slice", [x, _const(g, "starts", np.array([3, -1, 0], np.int64)),
                       _const(g, "ends", np.array([0, -100, 99], np.int64)),
                       _const(g, "axes", np.array([1, 2, 3], np.int64)),
                       _const(g, "steps", np.array([-1, -2, 3], np.int64))], xq)
    for v in g.add_node("Split", [x, _const(g, "split", np.array([1, 3], np.int64))],
                        attrs={"axis": 1}, outputs=2).outputs:
        v.quant = xq
        g.outputs.append(v)
    resize_attrs = [
        {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
        {"mode": "nearest", "coordinate_transformation_mode": "align_corners",
         "nearest_mode": "round_prefer_ceil"},
        {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
        {"mode": "linear", "coordinate_transformation_mode": "asymmetric"}]
    for k, attrs in enumerate(resize_attrs):
        v = _node(g, "Resize", [x, None, None, _const(g, f"sizes{k}", np.array([1, 4, 12, 5], np.int64))],
                  xq, attrs)
        v.shape = (1, 4, 12, 5)


def _infer_types(g: Graph, feeds) -> None:
    """Give every computed value the reference's shape and dtype (as shape inference would)."""
    out = run_int(g, feeds)
    for v in g.outputs:
        v.shape, v.dtype = out[v.name].shape, out[v.name].dtype


def _random_feed(g):
    return {v.name: RNG.integers(-128, 128, v.shape).astype(np.int8) for v in g.inputs}


def test_every_lowering_is_bit_exact_on_random_inputs():
    g = _op_graph()
    _infer_types(g, _random_feed(g))
    lowered = lower_graph(g)
    assert float_dtypes(lowered.mod) == []
    vm = relax.VirtualMachine(build(bind_params(lowered), "llvm"), tvm.cpu())
    for _ in range(8):
        feed = _random_feed(g)
        ref = run_int(g, feed)
        got = run_vm(vm, [feed[v.name] for v in g.inputs])
        for v, arr in zip(g.outputs, got):
            np.testing.assert_array_equal(arr, ref[v.name], err_msg=f"{v.producer.op} {v.name}")


def test_unsupported_ops_are_listed():
    g = Graph("u")
    x = g.add_input("x", np.int8, (1, 2, 4, 4))
    x.quant = _q(0.1)
    for op in ("Resize", "TopK"):
        _node(g, op, [x], _q(0.1))
    with pytest.raises(UnsupportedOpError, match=r"Resize.*TopK"):
        lower_graph(g)


def test_float_walk_is_not_vacuous():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((2,), "int8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.astype(relax.op.astype(x, "float32"), "int8"))
        bb.emit_func_output(out)
    mod = bb.get()
    assert float_dtypes(mod) and float_dtypes(legalize(mod))


def test_missing_tvm_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tvm", None)   # `import tvm` now fails like a missing package
    with pytest.raises(MissingDependencyError, match=r"pip install 'qcompiler\[tvm\]'"):
        _compile(MODELS / "digits_cnn.onnx", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---- sample models end to end ------------------------------------------------------------------

@pytest.fixture(scope="module")
def compiled_samples(tmp_path_factory):
    return {name: _compile(MODELS / f"{name}.onnx", tmp_path_factory.mktemp(name) / "out").outdir
            for name in SAMPLE_MODELS}


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_model_bit_exact(compiled_samples, name):
    res = verify_outdir(compiled_samples[name], EVAL)
    assert res["samples"] == 300
    assert res["tvm"]["bit_exact"] and res["ok"], res


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_model_outputs(compiled_samples, name):
    d = compiled_samples[name]
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"{name}.so", f"{name}.py", f"{name}_params.npz", f"{name}.qir", f"{name}.float.qir", "report.json",
         "report.md", "report.html"])
    assert (d / f"{name}.py").read_text().splitlines()[0].startswith("# generated by qcc from ")
    report = json.loads((d / "report.json").read_text())
    assert report["tvm_target"] == "llvm" and report["tvm_version"] == tvm.__version__
    assert report["integer_only"] and report["constant_bytes"] > 0
    assert sum(report["ops"].values()) == len(load_graph(d / f"{name}.qir").nodes)


def _script_module(path):
    """The `<name>.py` file executed as Python: its `Module` (an IRModule)."""
    return runpy.run_path(str(path))["Module"]


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_model_is_integer_only(compiled_samples, name):
    """The shipped TVMScript and its TIR after legalization carry no float dtype."""
    d = compiled_samples[name]
    mod = relax.transform.BindParams("main", read_params(d / f"{name}_params.npz"))(
        _script_module(d / f"{name}.py"))
    assert float_dtypes(mod) == []
    tir = legalize(mod)
    assert any(isinstance(f, tvm.tirx.PrimFunc) for f in tir.functions.values())
    assert float_dtypes(tir) == []


def test_script_and_params_rebuild_the_compiled_module(compiled_samples):
    """`<name>.py` + `<name>_params.npz` are exactly the module that went into the .so."""
    d = compiled_samples["digits_dwsep"]
    from_files = relax.transform.BindParams("main", read_params(d / "digits_dwsep_params.npz"))(
        _script_module(d / "digits_dwsep.py"))
    compiled = bind_params(lower_graph(load_graph(d / "digits_dwsep.qir")))
    tvm.ir.assert_structural_equal(from_files, compiled)


def test_compile_is_deterministic(compiled_samples, tmp_path):
    """Same model and options: byte-identical .py, params, report and .so."""
    a = compiled_samples["digits_cnn"]
    b = _compile(MODELS / "digits_cnn.onnx", tmp_path / "b").outdir
    for f in sorted(a.iterdir()):
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


# ---- MLPerf Tiny -----------------------------------------------------------------------------------

MLPERF_EVAL_SAMPLES = 10
MLPERF_CALIB_SAMPLES = 16  # bit-exactness does not depend on calibration quality


@pytest.mark.parametrize("model", sorted(MLPERF_MODELS))  # all five (vww: the biggest build, ~10 s)
def test_mlperf_tvm_bit_exact(model, tmp_path):
    require_shared()
    kind = MLPERF_MODELS[model]
    calib, evaln = tmp_path / "calib.npy", tmp_path / "eval.npy"
    np.save(calib, mlperf_data(kind, "calib")[:MLPERF_CALIB_SAMPLES])
    np.save(evaln, mlperf_data(kind, "eval")[:MLPERF_EVAL_SAMPLES])
    out = compile_model(SHARED / f"{model}.onnx", tmp_path / "out",
                        CompileOptions(target="tvm", calib=str(calib))).outdir
    res = verify_outdir(out, evaln)
    assert res["samples"] == MLPERF_EVAL_SAMPLES
    assert res["tvm"]["bit_exact"] and res["ok"], res
