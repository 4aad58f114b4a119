"""Minimal reproducers of the fuzz campaign's distinct causes (bench/fuzz_results.md, issue 17).

Each test makes ONE hostile input, mostly from models/digits_cnn.onnx, runs `qcc` in tmp_path
and asserts what must hold once issue 17 is fixed: a failure is one `qcc: error:` line with a
non-zero exit (no traceback, no log noise), nothing is written outside -o, -o is untouched
after a failure, and an exit-0 model is right. Every cause of the seed-1 campaign is fixed;
these keep it so. About 70 qcc runs (80 s on the 2-core box); the MLPerf Tiny cases skip
without ../shared.
"""
from __future__ import annotations

import os
import resource
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
QCC = [sys.executable, "-m", "qcompiler"]
MEM_LIMIT = 2 << 30  # address space of each run: a 10^10-element allocation must fail, not page


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))


def qcc(cwd: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(cwd), OMP_NUM_THREADS="1")
    return subprocess.run(QCC + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, preexec_fn=_limits, env=env)


def cnn(tmp: Path, mutate=None, name: str = "model.onnx", src: str = "digits_cnn") -> Path:
    """The sample model with one mutation applied (no checks: the point is a broken file)."""
    m = onnx.load(MODELS / f"{src}.onnx")
    if mutate is not None:
        mutate(m)
    path = tmp / name
    path.write_bytes(m.SerializeToString())
    return path


def calib(tmp: Path, data: np.ndarray | bytes | None = None, name: str = "calib.npy") -> Path:
    path = tmp / name
    if data is None:
        shutil.copyfile(MODELS / "digits_calib.npy", path)
    elif isinstance(data, bytes):
        path.write_bytes(data)
    else:
        np.save(path, data)
    return path


def npy_header(descr: str, shape: tuple) -> bytes:
    """A .npy v1.0 header declaring any shape; the caller writes as little data as it likes."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    text = (d + " " * (64 - (10 + len(d) + 1) % 64) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode not in (0, 70), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("qcc: error:"), proc.stderr
    assert all(line.startswith("qcc:") for line in lines), proc.stderr  # qcc's own warnings only
    assert "\x1b[" not in proc.stderr + proc.stdout and "allow_pickle" not in proc.stderr, proc.stderr
    for n in needles:
        assert n in lines[-1], lines[-1]


def assert_handled(proc: subprocess.CompletedProcess) -> None:
    """Either compiled or refused cleanly."""
    if proc.returncode != 0:
        assert_clean_error(proc)


def new_files(tmp: Path, before: set[str], allowed: Path) -> list[str]:
    after = {str(p.relative_to(tmp)) for p in tmp.rglob("*")}
    return sorted(p for p in after - before if not (tmp / p).resolve().is_relative_to(allowed.resolve())
                  and not (tmp / p).is_dir() and p != ".ses")


def compile_cnn(tmp: Path, *extra, mutate=None) -> subprocess.CompletedProcess:
    return qcc(tmp, cnn(tmp, mutate), "--calib", calib(tmp), "-o", "out", *extra)


# ---------------------------------------------------------------- files outside -o / --name

def test_name_with_parent_dir_writes_inside_o(tmp_path):
    before = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    proc = compile_cnn(tmp_path, "--name", "../x")
    assert_handled(proc)
    assert new_files(tmp_path, before | {"model.onnx", "calib.npy"}, tmp_path / "out") == []


@pytest.mark.parametrize("name", ["abs/x", ""], ids=["abs-x", "trailing-slash"])
def test_absolute_name_writes_inside_o(tmp_path, name):
    # "<folder>/" stands for `--name /`, which wrote /.tflite and /.qir at the root
    (tmp_path / "abs").mkdir()
    before = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")}
    proc = compile_cnn(tmp_path, "--name", f"{tmp_path}/{name}")
    assert_handled(proc)
    assert new_files(tmp_path, before | {"model.onnx", "calib.npy"}, tmp_path / "out") == []


def test_name_with_subfolder(tmp_path):
    assert_handled(compile_cnn(tmp_path, "--name", "a/b"))


@pytest.mark.parametrize("name", ["..", ".", "_", "\t", "模型"])
def test_name_without_identifier_characters(tmp_path, name):
    assert_handled(compile_cnn(tmp_path, "--name", name))


def test_name_of_251_characters(tmp_path):
    assert_handled(compile_cnn(tmp_path, "--name", "n" * 251))


# ---------------------------------------------------------------- -o paths

def test_output_folder_name_of_250_characters(tmp_path):
    assert_handled(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "o" * 250))


def test_output_path_of_5000_characters(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "/".join(["p" * 200] * 25)))


def test_existing_output_holding_a_folder_named_report_json(tmp_path):
    out = tmp_path / "out"
    (out / "report.json").mkdir(parents=True)
    (out / "keep.txt").write_text("keep")
    proc = compile_cnn(tmp_path)
    assert_clean_error(proc)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "report.json"]
    assert not [p for p in tmp_path.iterdir() if ".qcc-" in p.name]


def test_output_is_a_dangling_symlink(tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "missing")
    assert_clean_error(compile_cnn(tmp_path))
    assert not [p for p in tmp_path.iterdir() if ".qcc-" in p.name]


def test_output_path_through_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "afile/out"))


def _make_read_only(path: Path) -> bool:
    path.chmod(0o555)
    if os.geteuid() != 0:
        return True
    return shutil.which("chattr") is not None and \
        subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def _undo_read_only(path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("chattr"):
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755)


def test_output_in_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _make_read_only(ro):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    try:
        assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "ro/out"))
    finally:
        _undo_read_only(ro)


def test_output_is_an_existing_read_only_folder(tmp_path):
    ro = tmp_path / "out"
    ro.mkdir()
    if not _make_read_only(ro):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    try:
        assert_clean_error(compile_cnn(tmp_path))
        assert not [p for p in tmp_path.iterdir() if ".qcc-" in p.name]
    finally:
        _undo_read_only(ro)


# ---------------------------------------------------------------- ONNX fields


def _init(m: onnx.ModelProto, name: str) -> TensorProto:
    return next(t for t in m.graph.initializer if t.name == name)


def _set_dims(name, dims):
    def mutate(m):
        t = _init(m, name)
        del t.dims[:]
        t.dims.extend(dims)
    return mutate


def _set_dtype(name, code):
    def mutate(m):
        _init(m, name).data_type = code
    return mutate


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
    def mutate(m):
        m.graph.input[0].type.tensor_type.elem_type = 0
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


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


def _set_element(name, index, value):
    def mutate(m):
        t = _init(m, name)
        w = numpy_helper.to_array(t).copy()
        w.flat[index] = value
        t.CopyFrom(numpy_helper.from_array(w, t.name))
    return mutate


def test_batchnorm_bias_at_float32_max(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=_set_element("1.bias", 3, np.finfo(np.float32).max)))


def test_conv_weight_at_float32_max(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=_set_element("0.weight", 0, np.finfo(np.float32).max)))


# ---------------------------------------------------------------- calibration files

def test_npy_header_with_negative_shape(tmp_path):
    x = np.load(MODELS / "digits_calib.npy")
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib",
                           calib(tmp_path, npy_header("<f4", (-1, 1, 8, 8)) + x[:4].tobytes()), "-o", "out"))


def test_npy_header_with_huge_shape(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib",
                           calib(tmp_path, npy_header("<f4", (2 ** 62, 1, 8, 8)) + bytes(1024)), "-o", "out"))


def _npz(tmp: Path, members: dict[str, bytes]) -> Path:
    path = tmp / "calib.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return path


def _npy(arr, allow_pickle=False) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_npz_with_a_pickled_member(tmp_path):
    x = np.load(MODELS / "digits_calib.npy")
    members = {"input.npy": _npy(x), "extra.npy": _npy(np.array([{"a": 1}, None], dtype=object), True)}
    assert_handled(qcc(tmp_path, cnn(tmp_path), "--calib", _npz(tmp_path, members), "-o", "out"))  # never read
    members = {"input.npy": _npy(np.array([{"a": 1}, None], dtype=object), True)}
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", _npz(tmp_path, members), "-o", "out2"), "dtype object")


def test_npz_with_an_unused_member_declaring_1e10_floats(tmp_path):
    x = np.load(MODELS / "digits_calib.npy")
    members = {"input.npy": _npy(x), "extra.npy": npy_header("<f4", (10 ** 10,))}
    proc = qcc(tmp_path, cnn(tmp_path), "--calib", _npz(tmp_path, members), "-o", "out")
    assert_handled(proc)  # the member is not an input: ignoring it is fine too


def test_calibration_value_near_float32_min(tmp_path):
    x = np.load(MODELS / "digits_calib.npy").copy()
    x.flat[5] = -3e38
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path, x), "-o", "out"))


def test_calibration_file_that_is_not_npy(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path, b"\x08\x07not numpy"), "-o", "out"))


# ---------------------------------------------------------------- CLI options

def test_input_range_with_one_value(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--input-range", "1", "-o", "out"))


@pytest.mark.parametrize("args", [["--input-range", "-1,1"], ["-o", "-x"]], ids=["input-range", "output"])
def test_option_value_starting_with_dash(tmp_path, args):
    assert_handled(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), *args))


@pytest.mark.parametrize("shape", ["input=-1,1,8,8", "input=0,1,8,8", "input=99999999999999999999,1,8,8"])
def test_input_shape_out_of_range(tmp_path, shape):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path), "-o", "out", "--input-shape", shape))


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
        import json
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


def test_input_range_beyond_float32(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--input-range", "0,1e39", "-o", "out"))


def relative_error(model: Path, out: Path, samples: int = 8) -> float:
    """max |emitted - onnxruntime| / onnxruntime's output range, on digits samples (the fuzz check)."""
    import json

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


def test_dwsep_weight_of_minus_6e37_data_free(tmp_path):
    def mutate(m):
        t = _init(m, "0.6.weight")
        w = numpy_helper.to_array(t).copy()
        w.flat[100] = -5.96e37
        t.CopyFrom(numpy_helper.from_array(w, t.name))
    model = cnn(tmp_path, mutate, src="digits_dwsep")
    proc = qcc(tmp_path, model, "--input-range", "0,1", "-o", "out")
    if proc.returncode == 0:
        assert relative_error(model, tmp_path / "out") <= 0.3
    else:
        assert_clean_error(proc)


# ---------------------------------------------------------------- found on other sample models

def test_dwsep_bias_of_minus_3e38_data_free(tmp_path):
    def mutate(m):
        t = _init(m, "0.4.bias")
        t.CopyFrom(numpy_helper.from_array(np.full(list(t.dims), -3e38, np.float32), t.name))
    model = cnn(tmp_path, mutate, src="digits_dwsep")
    proc = qcc(tmp_path, model, "--input-range", "0,1", "-o", "out")
    if proc.returncode == 0:
        assert relative_error(model, tmp_path / "out") <= 0.3
    else:
        assert_clean_error(proc)


def test_value_info_with_a_wrong_batch(tmp_path):
    def mutate(m):
        m.graph.value_info.append(helper.make_tensor_value_info("/4/conv1/Conv_output_0", TensorProto.FLOAT,
                                                                [12345, 32, 4, 4]))
    assert_clean_error(qcc(tmp_path, cnn(tmp_path, mutate, src="digits_resnet"), "--calib", calib(tmp_path),
                           "-o", "out"))


@pytest.mark.parametrize("src,data_free", [("digits_resnet", False), ("digits_cnn", True)])
def test_input_dtype_bfloat16(tmp_path, src, data_free):
    def mutate(m):
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.BFLOAT16
    args = ["--input-range", "0,1"] if data_free else ["--calib", calib(tmp_path)]
    assert_clean_error(qcc(tmp_path, cnn(tmp_path, mutate, src=src), *args, "-o", "out"))


def test_graph_output_batch_of_1e9(tmp_path):
    def mutate(m):
        m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 10 ** 9
    assert_clean_error(compile_cnn(tmp_path, mutate=mutate))


def test_empty_calibration_file(tmp_path):
    assert_clean_error(qcc(tmp_path, cnn(tmp_path), "--calib", calib(tmp_path, b""), "-o", "out"))


def test_batchnorm_variance_negative(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=_set_element("1.running_var", 2, -1.0)))


def test_graph_without_outputs(tmp_path):
    assert_clean_error(compile_cnn(tmp_path, mutate=lambda m: m.graph.ClearField("output")))


# ---------------------------------------------------------------- MLPerf Tiny models (need ../shared)

SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"


def mlperf(tmp: Path, name: str, mutate=None, infer: bool = False) -> Path:
    if not (SHARED / f"{name}.onnx").is_file():
        pytest.skip(f"MLPerf Tiny models not present at {SHARED}")
    m = onnx.load(SHARED / f"{name}.onnx")
    if infer:
        m = onnx.shape_inference.infer_shapes(m)
    if mutate is not None:
        mutate(m)
    path = tmp / "model.onnx"
    path.write_bytes(m.SerializeToString())
    return path


def mlperf_calib(tmp: Path, kind: str, mutate=None, samples: int = 64) -> Path:
    d = SHARED / "data"
    if kind in ("vww", "ic"):
        x = np.load(d / f"{kind}_calib_u8.npy")[:samples].astype(np.float32) / (255.0 if kind == "vww" else 1.0)
    else:
        x = np.load(d / f"{kind}_calib.npy")[:samples].astype(np.float32)
    x = np.ascontiguousarray(x)
    if mutate is not None:
        mutate(x)
    np.save(tmp / "calib.npy", x)
    return tmp / "calib.npy"


def _by_index(i: int, value):
    def mutate(m):
        t = m.graph.initializer[i]
        w = numpy_helper.to_array(t).copy()
        w.flat[2] = value
        t.CopyFrom(numpy_helper.from_array(w, t.name))
    return mutate


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
    model = mlperf(tmp_path, "pretrainedResnet", _by_index(5, -3e38))
    proc = qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ic"), "-o", "out")
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_handled(proc)


def test_vww_value_info_with_a_wrong_channel_count(tmp_path):
    name = ("model/activation_15/Relu;model/batch_normalization_15/FusedBatchNormV3;model/depthwise_conv2d_7/"
            "depthwise;model/depthwise_conv2d_7/BiasAdd;model/depthwise_conv2d_11/depthwise;"
            "model/depthwise_conv2d_7/BiasAdd/ReadVariableOp/resource1")
    model = mlperf(tmp_path, "vww_96_float", _value_info(name, [1, 127, 6, 6]), infer=True)
    proc = qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "vww"), "-o", "out")
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}"
    assert_clean_error(proc)


def test_ic_value_info_with_a_wrong_width(tmp_path):
    name = ("model/batch_normalization_4/FusedBatchNormV3;model/conv2d_4/BiasAdd/ReadVariableOp/resource;"
            "model/conv2d_4/BiasAdd;model/conv2d_5/Conv2D;model/conv2d_4/Conv2D")
    model = mlperf(tmp_path, "pretrainedResnet", _value_info(name, [1, 32, 16, 17]), infer=True)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ic"), "-o", "out"))


def test_kws_value_info_of_average_pool(tmp_path):
    model = mlperf(tmp_path, "kws_ref_model_float32",
                   _value_info("functional_1/average_pooling2d/AvgPool", [1, 1, 1, 1]), infer=True)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "kws"), "-o", "out"))


def test_kws_value_info_complex64(tmp_path):
    model = mlperf(tmp_path, "kws_savedmodel_float",
                   _value_info("StatefulPartitionedCall/functional_1/batch_normalization_1/FusedBatchNormV3:0",
                               [1, 64, 25, 5], TensorProto.COMPLEX64), infer=True)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "kws"), "-o", "out"))


@pytest.mark.parametrize("name,node,dilations", [("vww_96_float", 18, [1, 0]), ("kws_savedmodel_float", 16, [-1, 1]),
                                                  ("kws_ref_model_float32", 8, [1, 10 ** 9])],
                         ids=["vww-1-0", "kws-minus1", "kws-1e9"])
def test_conv_dilations_out_of_range(tmp_path, name, node, dilations):
    kind = "vww" if name.startswith("vww") else "kws"
    model = mlperf(tmp_path, name, _node_ints(node, "dilations", dilations))
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, kind), "-o", "out"))


def test_kws_conv_stride_of_1e9(tmp_path):
    model = mlperf(tmp_path, "kws_savedmodel_float", _node_ints(8, "strides", [10 ** 9, 1]))
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "kws"), "-o", "out"))


def test_ad_gemm_trans_a_out_of_range(tmp_path):
    model = mlperf(tmp_path, "ad01_fp32", _node_int(12, "transA", -(2 ** 63)))
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ad"), "-o", "out"))


def test_ad_output_dtype_complex64(tmp_path):
    def mutate(m):
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.COMPLEX64
    model = mlperf(tmp_path, "ad01_fp32", mutate)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ad"), "-o", "out"))


def test_ic_input_dtype_string(tmp_path):
    def mutate(m):
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING
    model = mlperf(tmp_path, "pretrainedResnet", mutate)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ic"), "-o", "out"))


def test_ic_pass_list_of_fuse_activation_only(tmp_path):
    model = mlperf(tmp_path, "pretrainedResnet")
    assert_handled(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ic"), "-o", "out",
                       "--passes", "fuse_activation"))


def test_ic_calibration_all_minus_9_4e37(tmp_path):
    def mutate(x):
        x[...] = -9.4e37
    model = mlperf(tmp_path, "pretrainedResnet")
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ic", mutate), "-o", "out"))


def test_ad_calibration_value_of_3e38(tmp_path):
    def mutate(x):
        x.flat[39590] = 3e38  # sample 61, feature 550
    model = mlperf(tmp_path, "ad01_fp32")
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ad", mutate), "-o", "out"))


def test_ad_output_declared_with_one_dim_less(tmp_path):
    def mutate(m):
        del m.graph.output[0].type.tensor_type.shape.dim[-1]
    model = mlperf(tmp_path, "ad01_fp32", mutate)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ad"), "-o", "out"))


def test_ad_output_dtype_int64(tmp_path):
    def mutate(m):
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    model = mlperf(tmp_path, "ad01_fp32", mutate)
    assert_clean_error(qcc(tmp_path, model, "--calib", mlperf_calib(tmp_path, "ad"), "-o", "out"))


@pytest.mark.parametrize("field,ok", [("node", True), ("tensor", False)])
def test_names_that_are_not_utf8(tmp_path, field, ok):
    """Seed 2, case 1088: one byte of a node name := 0x80; protobuf hands such a name over as bytes
    and writing the .qir raised a TypeError (traceback). A node name is a label (shown escaped);
    a tensor name must match the calibration data and the artifacts: a clean error."""
    m = onnx.load(MODELS / "digits_cnn.onnx")
    marker = "QCCMARKER"
    if field == "node":
        m.graph.node[0].name = marker
    else:
        old = m.graph.node[0].output[0]
        m.graph.node[0].output[0] = marker
        for n in m.graph.node[1:]:
            for i, t in enumerate(n.input):
                if t == old:
                    n.input[i] = marker
    data = m.SerializeToString().replace(marker.encode(), b"QCC\x80ARKER")
    (tmp_path / "model.onnx").write_bytes(data)
    calib(tmp_path)
    proc = qcc(tmp_path, "model.onnx", "--calib", "calib.npy", "-o", "out", "-q")
    if ok:
        assert proc.returncode == 0, proc.stderr
    else:
        assert_clean_error(proc, "UTF-8")
