"""Fuzz reproducers (see tests/fuzz_repro.py) on the sample models' ONNX fields: a broken field is
a clean error, and an exit-0 model is right (silently wrong is the worst outcome)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import MODELS
from fuzz_repro import (assert_clean_error, assert_handled, calib, cnn, compile_cnn, initializer, io_dtype,
                        qcc, set_element)


def _set_dims(name, dims):
    def mutate(m):
        t = initializer(m, name)
        del t.dims[:]
        t.dims.extend(dims)
    return mutate


def _set_dtype(name, code):
    def mutate(m):
        initializer(m, name).data_type = code
    return mutate


# ---------------------------------------------------------------- ONNX fields

@pytest.mark.parametrize("mutate", [_set_dims("8.bias", []), _set_dims("0.weight", [8, 1, 2, 3]),
                                    _set_dtype("8.weight", TensorProto.UINT8)],
                         ids=["dims-empty", "dims-smaller", "dtype-uint8"])
def test_initializer_dims_or_dtype_not_matching_its_data(tmp_path, mutate):
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_initializer_unknown_dtype_code(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=_set_dtype("8.bias", -3)))


def test_value_info_unknown_dtype_code(tmp_path):
    def mutate(m):
        m.graph.value_info.append(helper.make_tensor_value_info("/2/Relu_output_0", 999, [1, 8, 8, 8]))
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_input_dtype_undefined(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=io_dtype("input", 0)))


def test_attribute_with_ref_attr_name(tmp_path):
    def mutate(m):
        m.graph.node[0].attribute[0].ref_attr_name = "x"
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_invalid_utf8_in_auto_pad(tmp_path):
    def mutate(m):
        m.graph.node[0].attribute.append(helper.make_attribute("auto_pad", b"\xed\xa0\x80"))
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_conv_group_that_does_not_divide_the_channels(tmp_path):
    def mutate(m):
        next(a for a in m.graph.node[3].attribute if a.name == "group").i = 2
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_batchnorm_bias_at_float32_max(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=set_element("1.bias", 3, np.finfo(np.float32).max)))


def test_conv_weight_at_float32_max(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=set_element("0.weight", 0, np.finfo(np.float32).max)))


def test_graph_input_dim_of_2_31(tmp_path):
    def mutate(m):
        m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 2 ** 31
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


# ---------------------------------------------------------------- silently wrong (exit 0)

def test_graph_output_declared_with_a_wrong_shape(tmp_path):
    def mutate(m):
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 12345
    proc = compile_cnn(tmp_path, mutate=mutate)
    if proc.returncode == 0:
        assert json.loads((tmp_path / "out" / "report.json").read_text())["outputs"][0]["shape"] == [1, 10]
    else:
        assert_clean_error(proc)


def test_input_name_closing_a_c_comment(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")

    def mutate(m):
        old = m.graph.input[0].name
        m.graph.input[0].name = "*/ int evil; /*"
        m.graph.node[0].input[0] = "*/ int evil; /*"
        assert old == "input"
    proc = compile_cnn(tmp_path, mutate=mutate)
    assert_handled(proc)
    if proc.returncode == 0:
        src = next((tmp_path / "out").glob("*_model_data.c"))
        res = subprocess.run([cc, "-std=c99", "-fsyntax-only", "-Wall", "-Werror", "-I", str(src.parent), str(src)],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


def relative_error(model: Path, out: Path, samples: int = 8) -> float:
    """max |emitted - onnxruntime| / onnxruntime's output range, on digits samples (the fuzz check)."""
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    x = np.load(MODELS / "digits_eval.npy")[:samples]
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    ref = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(samples)])
    report = json.loads((out / "report.json").read_text())
    it = Interpreter(model_path=str(out / f"{report['name']}.tflite"),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    d, o = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for i in range(samples):
        s, z = d["quantization"]
        it.set_tensor(d["index"], np.clip(np.round(x[i:i + 1].transpose(0, 2, 3, 1) / s) + z, -128, 127)
                      .astype(d["dtype"]))
        it.invoke()
        s, z = o["quantization"]
        got.append((it.get_tensor(o["index"]).astype(np.float64) - z) * s)
    got = np.concatenate(got).reshape(ref.shape)
    return float(np.abs(got - ref).max() / max(float(ref.max() - ref.min()), 1e-30))


def _fill(name, value):
    def mutate(m):
        t = initializer(m, name)
        t.CopyFrom(numpy_helper.from_array(np.full(list(t.dims), value, np.float32), t.name))
    return mutate


@pytest.mark.parametrize("mutate", [set_element("0.6.weight", 100, -5.96e37), _fill("0.4.bias", -3e38)],
                         ids=["weight-of-minus-6e37", "bias-of-minus-3e38"])
def test_dwsep_extreme_parameter_data_free(tmp_path, mutate):
    """Data-free (no calibration data to reveal the extreme): right within the fuzz tolerance, or refused."""
    model = cnn(tmp_path, mutate, src="digits_dwsep")
    proc = qcc(tmp_path, model, "--input-range", "0,1", "-o", "out")
    if proc.returncode == 0:
        assert relative_error(model, tmp_path / "out") <= 0.3
    else:
        assert_clean_error(proc)


# ---------------------------------------------------------------- found on other sample models

def test_value_info_with_a_wrong_batch(tmp_path):
    def mutate(m):
        m.graph.value_info.append(helper.make_tensor_value_info("/4/conv1/Conv_output_0", TensorProto.FLOAT,
                                                                [12345, 32, 4, 4]))
    assert_clean_error(qcc(tmp_path, cnn(tmp_path, mutate, src="digits_resnet"), "--calib", calib(tmp_path),
                           "-o", "out"))


@pytest.mark.parametrize("src,data_free", [("digits_resnet", False), ("digits_cnn", True)])
def test_input_dtype_bfloat16(tmp_path, src, data_free):
    args = ["--input-range", "0,1"] if data_free else ["--calib", calib(tmp_path)]
    model = cnn(tmp_path, io_dtype("input", TensorProto.BFLOAT16), src=src)
    assert_clean_error(qcc(tmp_path, model, *args, "-o", "out"))


def test_graph_output_batch_of_1e9(tmp_path):
    def mutate(m):
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 10 ** 9
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_batchnorm_variance_negative(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=set_element("1.running_var", 2, -1.0)))


def test_graph_without_outputs(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=lambda m: m.graph.ClearField("output")))


@pytest.mark.parametrize("field,ok", [("node", True), ("tensor", False)])
def test_names_that_are_not_utf8(tmp_path, field, ok):
    """Seed 2, case 1088: one byte of a node name := 0x80; protobuf hands such a name over as bytes
    and writing the .qir raised a TypeError (traceback). A node name is a label (shown escaped);
    a tensor name must match the calibration data and the artifacts: a clean error."""
    def mutate(m):
        if field == "node":
            m.graph.node[0].name = marker
            return
        old = m.graph.node[0].output[0]
        m.graph.node[0].output[0] = marker
        for n in m.graph.node[1:]:
            for i, t in enumerate(n.input):
                if t == old:
                    n.input[i] = marker

    marker = "QCCMARKER"
    model = cnn(tmp_path, mutate)
    model.write_bytes(model.read_bytes().replace(marker.encode(), b"QCC\x80ARKER"))
    calib(tmp_path)
    proc = qcc(tmp_path, "model.onnx", "--calib", "calib.npy", "-o", "out", "-q")
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert_clean_error(proc, "UTF-8")
