"""TFLite Micro deployment numbers, ours vs the official int8 .tflite, measured in one run.

Per MLPerf Tiny model: arena bytes (smallest arena the tflite-micro interpreter runs
with, by bisection), qcc's kTensorArenaSize and its ratio to that minimum, flash
(file bytes), TFLM latency as instructions per invoke (callgrind, deterministic; see
bench/instructions.py) and as fastest-of-N wall-clock, and LiteRT (1 thread) wall-clock,
as ratios ours / official.
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import models, best_time, table
from bench.instructions import tflm_invoke_instructions


def _runners(data: bytes):
    from qcompiler.backends.tflite.runtime import LiteRTRunner, TflmRunner
    tflm = TflmRunner(data)
    feeds = tflm.zero_inputs()
    return (lambda: tflm(feeds)), (lambda r=LiteRTRunner(data): r(feeds))


def measure(name, onnx_path, calib, official: Path | None, workdir: Path) -> dict:
    from qcompiler.backends.tflite.memory import min_arena
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    np.save(workdir / "calib.npy", calib)
    out = workdir / name
    compile_model(onnx_path, out, CompileOptions(calib=str(workdir / "calib.npy")))
    ours = (out / f"{onnx_path.stem}.tflite").read_bytes()
    header = (out / f"{onnx_path.stem}_model_data.h").read_text()
    declared = int(re.search(r"TENSOR_ARENA_SIZE\s+\(?(\d+)", header).group(1))
    row = {"model": name, "arena_min": min_arena(ours), "arena_declared": declared, "flash": len(ours),
           "tflm_instructions": tflm_invoke_instructions(out / f"{onnx_path.stem}.tflite")}
    t_tflm, t_lite = _runners(ours)
    row["tflm_ms"] = best_time(t_tflm, 30) * 1e3
    row["litert_ms"] = best_time(t_lite, 20) * 1e3
    if official is not None:
        off = official.read_bytes()
        row.update(official_arena=min_arena(off), official_flash=len(off),
                   official_tflm_instructions=tflm_invoke_instructions(official))
        o_tflm, o_lite = _runners(off)
        row["official_tflm_ms"] = best_time(o_tflm, 30) * 1e3
        row["official_litert_ms"] = best_time(o_lite, 20) * 1e3
    return row


def _ratio(a, b):
    """'ours / official = ratio' with five decimals (the counts differ in the last digits)."""
    return f"{a:,} / {b:,} = {a / b:.5f}" if a is not None and b else (f"{a:,}" if a is not None else None)


def run(quick: bool = False) -> tuple[str, list[dict]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, path, calib, _, _, official in models(quick):
            rows.append(measure(name, path, calib, official, Path(tmp)))
    body = []
    for r in rows:
        off = r.get("official_arena")
        body.append([r["model"], r["arena_min"], off, r["arena_declared"], r["arena_declared"] / r["arena_min"],
                     r["flash"], r.get("official_flash"),
                     _ratio(r["tflm_instructions"], r.get("official_tflm_instructions")),
                     r["tflm_ms"], r["tflm_ms"] / r["official_tflm_ms"] if off else None,
                     r["litert_ms"], r["litert_ms"] / r["official_litert_ms"] if off else None])
    md = table(["model", "arena (ours, min)", "arena (official, min)", "kTensorArenaSize", "declared/min",
                "flash (ours)", "flash (official)", "TFLM instructions ours/official", "TFLM ms", "TFLM ours/official", "LiteRT ms",
                "LiteRT ours/official"], body)
    return md, rows


if __name__ == "__main__":
    md, rows = run(quick="--quick" in sys.argv)
    print(md)
    print(json.dumps(rows, indent=1))
