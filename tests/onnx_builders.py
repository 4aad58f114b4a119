"""Tiny helpers to build ONNX test graphs and compare the optimized IR with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from qcompiler.interp import run_float
from qcompiler.frontend.onnx_import import load_model
from qcompiler.ir.pass_manager import PassContext, PassManager

RNG = np.random.default_rng(1234)


def const(name: str, shape, scale: float = 0.5, positive: bool = False) -> onnx.TensorProto:
    data = RNG.normal(size=shape).astype(np.float32) * scale
    return numpy_helper.from_array(np.abs(data) + 0.1 if positive else data, name)


def save_model(path, nodes, inputs: dict, outputs: dict, initializers=(), opset: int = 13):
    """inputs/outputs: {name: shape}; returns path."""
    g = helper.make_graph(nodes, "test", [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s))
                                          for k, s in inputs.items()],
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(s) if s else None)
                           for k, s in outputs.items()], list(initializers))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def run_passes(path, passes, **options):
    g = load_model(path)
    ctx = PassContext(options=options)
    PassManager(passes).run(g, ctx)
    return g, ctx


def assert_matches_onnxruntime(path, graph, samples: int = 3, tol: float = 1e-4):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for _ in range(samples):
        feeds = {v.name: RNG.normal(size=v.shape).astype(np.float32) for v in graph.inputs}
        ref = sess.run(None, feeds)
        ours = run_float(graph, feeds)
        for v, r in zip(graph.outputs, ref):
            err = np.max(np.abs(ours[v.name] - r)) / max(1.0, float(np.max(np.abs(r))))
            assert err <= tol, (v.name, err)


def ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]
