"""Fuzz reproducers (see tests/fuzz_repro.py) on the MLPerf Tiny models (skipped without ../shared):
a broken field or calibration value is a clean error, never a signal."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import MLPERF_MODELS, SHARED, mlperf_data
from fuzz_repro import assert_clean_error, assert_handled, io_dtype, qcc, set_element

CALIB_SAMPLES = 64


def compile_mlperf(tmp: Path, name: str, mutate=None, *extra, infer: bool = False,
                   calib_mutate=None) -> subprocess.CompletedProcess:
    """qcc on an MLPerf Tiny model with one mutation applied (after shape inference if `infer`),
    calibrated on 64 of its samples (after `calib_mutate`)."""
    path = SHARED / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"MLPerf Tiny models not present at {SHARED}")
    m = onnx.load(path)
    if infer:
        m = onnx.shape_inference.infer_shapes(m)
    if mutate is not None:
        mutate(m)
    (tmp / "model.onnx").write_bytes(m.SerializeToString())
    x = np.ascontiguousarray(mlperf_data(MLPERF_MODELS[name], "calib")[:CALIB_SAMPLES])
    if calib_mutate is not None:
        calib_mutate(x)
    np.save(tmp / "calib.npy", x)
    return qcc(tmp, tmp / "model.onnx", "--calib", tmp / "calib.npy", "-o", "out", *extra)


def _node_ints(i: int, name: str, ints):
    def mutate(m):
        a = next(a for a in m.graph.node[i].attribute if a.name == name)
        del a.ints[:]
        a.ints.extend(ints)
    return mutate


def _node_int(i: int, name: str, value: int):
    def mutate(m):
        next(a for a in m.graph.node[i].attribute if a.name == name).i = value
    return mutate


def _value_info(name: str, dims, elem_type=TensorProto.FLOAT):
    def mutate(m):
        for v in list(m.graph.value_info):
            if v.name == name:
                m.graph.value_info.remove(v)
        m.graph.value_info.append(helper.make_tensor_value_info(name, elem_type, dims))
    return mutate


def test_ic_conv_bias_of_minus_3e38(tmp_path):
    # initializer 5: 'model/batch_normalization_2/FusedBatchNormV3;...;model/conv2d_2/BiasAdd' [16]
    assert_handled(compile_mlperf(tmp_path, "pretrainedResnet", set_element(5, 2, -3e38)))


VALUE_INFOS = {
    "vww-channels": ("vww_96_float", "model/activation_15/Relu;model/batch_normalization_15/FusedBatchNormV3;"
                     "model/depthwise_conv2d_7/depthwise;model/depthwise_conv2d_7/BiasAdd;"
                     "model/depthwise_conv2d_11/depthwise;model/depthwise_conv2d_7/BiasAdd/ReadVariableOp/resource1",
                     [1, 127, 6, 6], TensorProto.FLOAT),
    "ic-width": ("pretrainedResnet", "model/batch_normalization_4/FusedBatchNormV3;model/conv2d_4/BiasAdd/"
                 "ReadVariableOp/resource;model/conv2d_4/BiasAdd;model/conv2d_5/Conv2D;model/conv2d_4/Conv2D",
                 [1, 32, 16, 17], TensorProto.FLOAT),
    "kws-average-pool": ("kws_ref_model_float32", "functional_1/average_pooling2d/AvgPool", [1, 1, 1, 1],
                         TensorProto.FLOAT),
    "kws-complex64": ("kws_savedmodel_float",
                      "StatefulPartitionedCall/functional_1/batch_normalization_1/FusedBatchNormV3:0",
                      [1, 64, 25, 5], TensorProto.COMPLEX64),
}


@pytest.mark.parametrize("case", list(VALUE_INFOS))
def test_value_info_contradicting_the_model(tmp_path, case):
    name, tensor, dims, elem_type = VALUE_INFOS[case]
    assert_clean_error(compile_mlperf(tmp_path, name, _value_info(tensor, dims, elem_type), infer=True))


@pytest.mark.parametrize("name,mutate", [("vww_96_float", _node_ints(18, "dilations", [1, 0])),
                                         ("kws_savedmodel_float", _node_ints(16, "dilations", [-1, 1])),
                                         ("kws_ref_model_float32", _node_ints(8, "dilations", [1, 10 ** 9])),
                                         ("kws_savedmodel_float", _node_ints(8, "strides", [10 ** 9, 1])),
                                         ("ad01_fp32", _node_int(12, "transA", -(2 ** 63)))],
                         ids=["vww-dilations-1-0", "kws-dilations-minus1", "kws-dilations-1e9", "kws-strides-1e9",
                              "ad-gemm-transA-min-int64"])
def test_attribute_out_of_range(tmp_path, name, mutate):
    assert_clean_error(compile_mlperf(tmp_path, name, mutate))


@pytest.mark.parametrize("name,which,code", [("ad01_fp32", "output", TensorProto.COMPLEX64),
                                             ("ad01_fp32", "output", TensorProto.INT64),
                                             ("pretrainedResnet", "input", TensorProto.STRING)],
                         ids=["ad-output-complex64", "ad-output-int64", "ic-input-string"])
def test_graph_io_dtype_that_is_not_float(tmp_path, name, which, code):
    assert_clean_error(compile_mlperf(tmp_path, name, io_dtype(which, code)))


def test_ad_output_declared_with_one_dim_less(tmp_path):
    def mutate(m):
        del m.graph.output[0].type.tensor_type.shape.dim[-1]
    assert_clean_error(compile_mlperf(tmp_path, "ad01_fp32", mutate))


def test_ic_pass_list_of_fuse_activation_only(tmp_path):
    assert_handled(compile_mlperf(tmp_path, "pretrainedResnet", None, "--passes", "fuse_activation"))


def _fill(x):
    x[...] = -9.4e37


def _one_value(x):
    x.flat[39590] = 3e38  # sample 61, feature 550


@pytest.mark.parametrize("name,calib_mutate", [("pretrainedResnet", _fill), ("ad01_fp32", _one_value)],
                         ids=["ic-all-minus-9.4e37", "ad-one-3e38"])
def test_calibration_value_near_float32_max(tmp_path, name, calib_mutate):
    assert_clean_error(compile_mlperf(tmp_path, name, calib_mutate=calib_mutate))
