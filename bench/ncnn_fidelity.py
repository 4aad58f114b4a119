"""ncnn int8 exports: fidelity against float (SQNR, top-1 agreement) and agreement with qcc's
ncnn-scheme simulation, next to the TFLite Micro numbers of the same calibration."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import models, table


def _sqnr(ref, got):
    err = np.sum((ref - got) ** 2)
    return float(10 * np.log10(np.sum(ref ** 2) / err)) if err > 0 else float("inf")


def measure(name, onnx_path, calib, evals, workdir: Path) -> dict:
    from qcompiler.backends.ncnn.check import NcnnRunner
    from qcompiler.quant.calibration import float_reference
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.ir.serialize import load_graph
    from qcompiler.driver.verify import verify_outdir
    np.save(workdir / "calib.npy", calib)
    np.save(workdir / "eval.npy", evals)
    out = workdir / f"{name}_ncnn"
    compile_model(onnx_path, out, CompileOptions(target="ncnn", calib=str(workdir / "calib.npy")))
    res = verify_outdir(out, workdir / "eval.npy")
    report = json.loads((out / "report.json").read_text())
    nr = report["ncnn"]
    graph = load_graph(out / nr["float_ir_file"])
    runner, reference = NcnnRunner(out, nr), float_reference(graph)
    inp, outp = graph.inputs[0], graph.outputs[0]
    refs, gots = [], []
    for i in range(len(evals)):
        feed = {inp.name: evals[i:i + 1].reshape(inp.shape)}
        refs.append(reference(feed)[outp.name])
        gots.append(runner(feed)[outp.name])
    ref, got = np.concatenate(refs), np.concatenate(gots)
    o = next(iter(res["ncnn"]["outputs"].values()))
    return {"model": name, "sqnr_db": _sqnr(ref, got),
            "top1_agreement": float(np.mean(ref.reshape(len(evals), -1).argmax(-1)
                                            == got.reshape(len(evals), -1).argmax(-1))),
            "within_one_step": o["within_one_step"],
            "max_diff_steps": o["max_diff_steps"], "verify_ok": res["ok"]}


def run(quick: bool = False):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, evals, _, _ in models(quick):
            rows.append(measure(name, path, calib, evals[:50] if quick else evals, Path(tmp)))
    md = table(["model", "ncnn int8 SQNR vs float (dB)", "top-1 agreement", "within 1 step of simulation",
                "max diff (steps)", "verify ok"],
               [[r["model"], r["sqnr_db"], r["top1_agreement"], r["within_one_step"], r["max_diff_steps"],
                 r["verify_ok"]] for r in rows])
    return md, rows


if __name__ == "__main__":
    print(run("--quick" in sys.argv)[0])
