"""Latency of the TVM module vs the same int8 model in LiteRT (1 thread) and the float model in
onnxruntime (1 thread), as ratios measured in one run (median of repeated single-sample runs)."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import best_time, models, table


def measure(name, onnx_path, calib, evals, workdir: Path) -> dict:
    import onnxruntime as ort

    from qcompiler.backends.tvm.build import load_vm, run_vm
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.backends.tflite.runtime import LiteRTRunner
    np.save(workdir / "calib.npy", calib)
    opts = dict(calib=str(workdir / "calib.npy"))
    tvm_out = compile_model(onnx_path, workdir / f"{name}_tvm", CompileOptions(target="tvm", **opts))
    tfl_out = compile_model(onnx_path, workdir / f"{name}_tfl", CompileOptions(target="tflite", **opts))
    stem = onnx_path.stem
    q = tvm_out.quant_graph
    x = evals[:1].reshape(q.inputs[0].shape)
    xq = q.inputs[0].quant.quantize(x)
    vm = load_vm(tvm_out.outdir / f"{stem}.so")
    t_tvm = best_time(lambda: run_vm(vm, [xq]), 30)
    lite = LiteRTRunner((tfl_out.outdir / f"{stem}.tflite").read_bytes())
    xl = np.ascontiguousarray(xq.transpose(0, 2, 3, 1)) if xq.ndim == 4 else xq
    t_lite = best_time(lambda: lite([xl]), 30)
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.astype(np.float32)}
    t_ort = best_time(lambda: sess.run(None, feed), 30)
    return {"model": name, "tvm_ms": t_tvm * 1e3, "litert_int8_ms": t_lite * 1e3, "ort_float_ms": t_ort * 1e3}


def run(quick: bool = False):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, evals, _, _ in models(quick):
            rows.append(measure(name, path, calib, evals, Path(tmp)))
    md = table(["model", "TVM int8 ms", "LiteRT int8 ms (1 thread)", "ORT float ms (1 thread)",
                "TVM / LiteRT", "TVM / ORT float"],
               [[r["model"], r["tvm_ms"], r["litert_int8_ms"], r["ort_float_ms"],
                 r["tvm_ms"] / r["litert_int8_ms"], r["tvm_ms"] / r["ort_float_ms"]] for r in rows])
    return md, rows


if __name__ == "__main__":
    print(run("--quick" in sys.argv)[0])
