"""Backend parity on real models (issue 20): every sample, MLPerf Tiny and corpus model
compiled for tflm, tvm and ncnn and checked with `qcc verify`.

Per model and target: verify's result (TFLM / TVM bit-exact against the integer reference;
ncnn: the share of output elements within one int8 step of its scheme simulation, 99.9 %
required) and the fidelity entry (SQNR of the runtime's outputs against the float model,
the worst output). Corpus models (bench/corpus.py, from the local cache) are first checked
with `qcc inspect --target` (driver.pipeline.target_support): a model a target refuses is
listed with the first reason instead of being calibrated. `--quick`: one sample model.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import models, table

TARGETS = ("tflm", "tvm", "ncnn")
EVAL_SAMPLES = 50          # per model and target (the sample / MLPerf eval sets)
CORPUS_CALIB, CORPUS_EVAL = 8, 3   # corpus models are large: a few samples each


def _row(name: str, target: str, res: dict, seconds: float) -> dict:
    fid = res.get("fidelity", {}).get(target) or next(iter(res.get("fidelity", {}).values()), {})
    sqnrs = [o["sqnr_db"] for o in fid.values() if o.get("sqnr_db") is not None]
    check = res.get(target, {})
    row = {"model": name, "target": target, "ok": bool(res["ok"]), "samples": res["samples"],
           "fidelity_sqnr_db": min(sqnrs) if sqnrs else None, "seconds": round(seconds, 1)}
    if target == "ncnn":
        outs = check.get("outputs", {}).values()
        row["within_one_step"] = min((o["within_one_step"] for o in outs), default=None)
    else:
        row["bit_exact"] = bool(check.get("bit_exact"))
    return row


def measure(name: str, onnx_path, calib, evals, target: str, workdir: Path, input_shapes=None,
            max_calib: int | None = None) -> dict:
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    from qcompiler.errors import QccError
    out = workdir / f"{name}_{target}"
    opts = CompileOptions(target=target, calib=calib, input_shapes=input_shapes or {},
                          max_calib_samples=max_calib)
    t0 = time.time()
    try:
        compile_model(onnx_path, out, opts)
        res = verify_outdir(out, evals)
    except QccError as e:
        return {"model": name, "target": target, "ok": False, "error": str(e).splitlines()[0][:160],
                "seconds": round(time.time() - t0, 1)}
    return _row(name, target, res, time.time() - t0)


def refusal(onnx_path, target: str, input_shapes) -> str | None:
    """What `qcc inspect --target` reports against the model (None: it would compile)."""
    from qcompiler.backends import registry
    from qcompiler.driver.pipeline import CompileOptions, optimize, pass_list, target_support
    from qcompiler.errors import QccError
    from qcompiler.frontend.onnx_import import load_model
    opts = CompileOptions(target=target, input_shapes=input_shapes)
    try:
        graph, _ = optimize(load_model(onnx_path, input_shapes), pass_list(opts), opts)
    except QccError as e:  # e.g. an op no target takes (LSTM): the frontend says so
        return str(e).splitlines()[0]
    problems = target_support(graph, registry.get(target))
    return "; ".join(problems[:2]) if problems else None


def corpus_rows(workdir: Path) -> list[dict]:
    try:
        from bench import corpus
    except ImportError as e:  # the image libraries of the corpus extra
        return [{"model": "corpus", "target": "-", "skipped": f"bench.corpus unavailable: {e}"}]
    rows = []
    for key, m in corpus.MODELS.items():
        try:
            path = corpus.model_path(key)
            calib, evals = corpus.data_path(key, "calib"), corpus.load_data(key, "eval")[0][:CORPUS_EVAL]
        except Exception as e:  # noqa: BLE001 - offline, checksum, image libraries: the reason is the row
            rows += [{"model": key, "target": t, "skipped": f"{type(e).__name__}: {e}"} for t in TARGETS]
            continue
        shapes = {m.input_name: tuple(m.input_shape)}
        for target in TARGETS:
            why = refusal(path, target, shapes)
            if why:
                rows.append({"model": key, "target": target, "skipped": why})
                continue
            rows.append(measure(key, path, str(calib), {m.input_name: evals}, target, workdir, shapes,
                                CORPUS_CALIB))
    return rows


def _cell(r: dict) -> str:
    if "skipped" in r:
        return f"refused: {r['skipped']}"
    if "error" in r:
        return f"FAILS: {r['error']}"
    sqnr = f"{r['fidelity_sqnr_db']:.1f} dB" if r.get("fidelity_sqnr_db") is not None else "-"
    if r["target"] == "ncnn":
        return f"{'ok' if r['ok'] else 'FAIL'}, {r['within_one_step']:.2%} within 1 step, {sqnr}"
    return f"{'bit-exact' if r.get('bit_exact') else 'NOT bit-exact'}, {sqnr}"


def run(quick: bool = False):
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, path, calib, evals, _, _ in models(quick):
            for target in TARGETS:
                rows.append(measure(name, path, np.asarray(calib), evals[:5 if quick else EVAL_SAMPLES],
                                    target, work))
        if not quick:
            rows += corpus_rows(work)
    names = list(dict.fromkeys(r["model"] for r in rows))
    cells = {(r["model"], r["target"]): _cell(r) for r in rows}
    md = table(["model"] + list(TARGETS), [[n] + [cells.get((n, t), "-") for t in TARGETS] for n in names])
    md += ("\n\nEach cell: `qcc verify` of the compiled model (TFLM, TVM: bit-exact against the integer "
           "reference; ncnn: share of output elements within one int8 step of its scheme simulation, "
           ">= 99.9 % required) and the fidelity against the float model (SQNR, worst output). "
           f"{EVAL_SAMPLES} eval samples per sample / MLPerf model; corpus models: {CORPUS_CALIB} "
           f"calibration and {CORPUS_EVAL} eval samples, skipped with `qcc inspect --target`'s "
           "first reason when a target refuses them.")
    return md, rows
