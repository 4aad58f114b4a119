"""PassManager: verification, failure wrapping, dumps, the README example, idempotency."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import MLPERF_MODELS, MODELS, ROOT, SAMPLE_MODELS, SHARED
from qcompiler.errors import GraphError, QccError
from qcompiler.frontend.onnx_import import load_model
from qcompiler.ir.pass_manager import PASSES, PassContext, PassManager, register_pass
from qcompiler.driver.pipeline import default_pipeline


@register_pass("test_break_graph", "test only: leaves a dangling input")
def _break(graph, ctx):
    stray = graph.add_value("stray", np.float32, (1,))
    graph.nodes[-1].set_input(0, stray)
    return True


def test_unknown_pass_is_an_error():
    with pytest.raises(QccError, match="unknown pass"):
        PassManager(["fold_constants", "no_such_pass"])


def test_failure_names_the_pass_and_what_ran_before():
    g = load_model(MODELS / "digits_cnn.onnx")
    with pytest.raises(GraphError, match=r"in pass test_break_graph after \['fold_constants', 'dead_code'\]"):
        PassManager(["fold_constants", "dead_code", "test_break_graph"]).run(g)


def test_records_node_counts_and_dump(tmp_path):
    g = load_model(MODELS / "digits_cnn.onnx")
    dumps = {}
    pm = PassManager(default_pipeline("tflm"), dump_after={"fold_batchnorm"},
                     dump=lambda name, graph: dumps.setdefault(name, graph.dump()))
    pm.run(g, PassContext())
    bn = next(r for r in pm.records if r.name == "fold_batchnorm")
    assert bn.changed and bn.nodes_after == bn.nodes_before - 2
    assert "BatchNormalization" not in dumps["fold_batchnorm"]


def test_cli_dump_after_and_disable_pass(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "qcompiler", str(MODELS / "digits_cnn.onnx"), "--calib",
                           str(MODELS / "digits_calib.npy"), "-o", str(out), "--dump-after", "fold_batchnorm",
                           "--dump-dir", str(tmp_path / "dumps"), "--disable-pass", "fuse_activation"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "dumps" / "digits_cnn.after_fold_batchnorm.onnx").is_file()
    text = (tmp_path / "dumps" / "digits_cnn.after_fold_batchnorm.txt").read_text()
    assert "BatchNormalization" not in text and "Relu" in text
    import json
    report = json.loads((out / "report.json").read_text())
    assert "fuse_activation" not in [p["name"] for p in report["passes"]]
    assert "--disable-pass fuse_activation" in report["generated_by"]
    explain = subprocess.run([sys.executable, "-m", "qcompiler", str(MODELS / "digits_cnn.onnx"), "--explain"],
                             capture_output=True, text=True)
    assert explain.returncode == 0 and "fold_batchnorm" in explain.stdout


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(MODELS)
    PASSES.pop("clamp_big_weights", None)
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "out" / "digits_cnn_custom" / "digits_cnn.tflite").is_file()
    report = (tmp_path / "out" / "digits_cnn_custom" / "report.json").read_text()
    assert "clamp_big_weights" in report


def _models():
    paths = [MODELS / f"{m}.onnx" for m in SAMPLE_MODELS]
    paths += [SHARED / f"{m}.onnx" for m in sorted(MLPERF_MODELS) if (SHARED / f"{m}.onnx").is_file()]
    import onnx
    from pathlib import Path
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    return paths + sorted(light.glob("*.onnx"))


@pytest.mark.parametrize("path", _models(), ids=lambda p: p.stem)
def test_default_pipeline_is_idempotent(path):
    g = load_model(path)
    PassManager(default_pipeline("tflm")).run(g, PassContext())
    first = g.dump()
    pm = PassManager(default_pipeline("tflm"))
    pm.run(g, PassContext())
    assert not any(r.changed for r in pm.records), [r.name for r in pm.records if r.changed]
    assert g.dump() == first
    assert not any(n.op == "BatchNormalization" for n in g.nodes)


def _fingerprint(graph) -> str:
    """Everything a pass may change: structure, attributes, constant data, shapes, outputs."""
    import hashlib
    h = hashlib.sha256(graph.dump().encode())
    for n in graph.nodes:
        h.update(repr((n.name, n.op, sorted((k, repr(v)) for k, v in n.attrs.items()))).encode())
        for v in list(n.inputs) + list(n.outputs):
            if v is not None:
                h.update(repr((v.name, v.shape, str(v.dtype))).encode())
                if v.is_constant:
                    h.update(np.ascontiguousarray(v.data).tobytes())
    h.update(repr([v.name for v in graph.outputs]).encode())
    return h.hexdigest()


@pytest.mark.parametrize("target", ["tflm", "ncnn"])
def test_a_pass_reporting_no_change_changed_nothing(monkeypatch, tmp_path, target):
    """The PassManager skips verification after a pass that reports no change: hold every pass
    in the default pipelines to that, on the samples and on every parity model."""
    import onnx
    from parity_models import MODELS as PARITY
    from qcompiler.backends import registry
    from qcompiler.driver.pipeline import CompileOptions, optimize

    lying = []
    for name, info in list(PASSES.items()):
        def checked(graph, ctx, _fn=info.fn, _name=name):
            before = _fingerprint(graph)
            changed = _fn(graph, ctx)
            if not changed and _fingerprint(graph) != before:
                lying.append(_name)
            return changed
        monkeypatch.setattr(info, "fn", checked)
    paths = [MODELS / f"{m}.onnx" for m in SAMPLE_MODELS]
    for op, build in PARITY.items():
        paths.append(tmp_path / f"{op}.onnx")
        onnx.save(build(), str(paths[-1]))
    passes = list(registry.get(target).default_passes)
    for path in paths:
        optimize(load_model(path), passes, CompileOptions(target=target))
    assert not lying, f"passes changed the graph but reported no change: {sorted(set(lying))}"
