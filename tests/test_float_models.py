"""Float reference interpreter (and the optimized float graph) vs onnxruntime on whole models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import MLPERF_MODELS, MODELS, SAMPLE_MODELS, SHARED, mlperf_data, require_shared
from qcompiler.interp import run_float
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import default_pipeline, optimize

ort = pytest.importorskip("onnxruntime")
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem for p in LIGHT.glob("*.onnx"))


def _assert_close(graph, feeds_list, refs, label):
    for feeds, ref in zip(feeds_list, refs):
        ours = run_float(graph, feeds)
        for v, r in zip(graph.outputs, ref):
            err = np.max(np.abs(ours[v.name] - r)) / max(1.0, float(np.max(np.abs(r))))
            assert err <= 1e-4, (label, v.name, err)


def _check(path: Path, inputs: list[np.ndarray], optimized: bool = True):
    """Float interpreter on the loaded graph, then on the optimized graph, vs one onnxruntime run."""
    g = load_model(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds_list = [{g.inputs[0].name: x.reshape(g.inputs[0].shape)} for x in inputs]
    refs = [sess.run(None, feeds) for feeds in feeds_list]
    _assert_close(g, feeds_list, refs, path.name)
    if optimized:
        opt, _ = optimize(g, default_pipeline("tflm"))
        assert not any(n.op == "BatchNormalization" for n in opt.nodes)
        _assert_close(opt, feeds_list, refs, f"{path.name} optimized")


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_models_float(name):
    x = np.load(MODELS / "digits_eval.npy")[:5]
    _check(MODELS / f"{name}.onnx", list(x))


@pytest.mark.parametrize("name", sorted(MLPERF_MODELS))
def test_mlperf_models_float(name):
    require_shared()
    x = mlperf_data(MLPERF_MODELS[name], "eval")[:3]
    _check(SHARED / f"{name}.onnx", list(x))


# The light zoo's weights are constants (ConstantOfShape), so every channel computes the same
# sum; squeezenet's logits reach ~7e9 where float32 steps are 512, and its final softmax
# then depends on summation order (onnxruntime's and ours differ). Its logits are compared
# instead (relative 1e-4 holds there); every other light model is compared on its outputs.
ILL_CONDITIONED_OUTPUT = {"light_squeezenet"}


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_zoo_models_float(name, tmp_path):
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    path = LIGHT / f"{name}.onnx"
    if name in ILL_CONDITIONED_OUTPUT:
        m = onnx.load(path)
        last = m.graph.node[-1]
        assert last.op_type == "Softmax"
        m.graph.node.remove(last)
        m.graph.output[0].name = last.input[0]
        path = tmp_path / f"{name}_logits.onnx"
        onnx.save(m, path)
    _check(path, [x], optimized=True)
