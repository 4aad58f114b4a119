"""`python -m bench [--quick] [--out DIR]`: every side-by-side measurement in one run -> bench/results.md + .json.

Sections (each a module with `run(quick) -> (markdown, rows)`): fidelity (qcc's
calibration methods vs ONNX Runtime quantize_static vs the official int8 files),
TFLite Micro deployment (arena, flash, latency vs official), the C backend (scratch vs
live-set bound vs TFLM arena, flash, stack, instructions), TVM latency, ncnn
fidelity, backend parity (verify on tflm / tvm / ncnn / c for every model), int16 activations
and the auto search (bench/int16.py), real models (the issue 14 corpus, per output; cached in
bench/real_models.json). `--quick`
runs one tiny sample model per section (CI keeps the script
alive with it). Needs ../shared/models/mlperf_tiny for the MLPerf rows.
"""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench.common import machine

SECTIONS = [("Fidelity against the float model", "bench.fidelity"),
            ("TFLite Micro deployment", "bench.tflm"),
            ("C backend (--target c) deployment", "bench.c_backend"),
            ("TVM latency", "bench.tvm_latency"),
            ("ncnn", "bench.ncnn_fidelity"),
            ("Backend parity: verify on every target", "bench.parity"),
            ("int16 activations and --activations auto", "bench.int16"),
            ("Real models (issue 14 corpus): qcc default vs ONNX Runtime vs NNCF", "bench.real_models")]


def output_dir(argv: list[str]) -> Path:
    """--out DIR (made if missing, before any section runs), else bench/."""
    out_dir = Path(argv[argv.index("--out") + 1]) if "--out" in argv else Path(__file__).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    out_dir = output_dir(argv)
    parts = [f"# qcc benchmark results\n\nMachine: {machine()}\n\nCommand: `python -m bench"
             f"{' --quick' if quick else ''}` ({time.strftime('%Y-%m-%d')})\n"]
    data = {"machine": machine(), "quick": quick}
    failed = []
    for title, module in SECTIONS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            parts.append(f"## {title}\n\nnot measured: {e}\n")
            continue
        t0 = time.time()
        try:
            md, rows = mod.run(quick)
        except Exception:
            failed.append(module)
            parts.append(f"## {title}\n\nFAILED:\n\n```\n{traceback.format_exc()}```\n")
            continue
        parts.append(f"## {title}\n\n{md}\n\n({time.time() - t0:.0f} s)\n")
        data[module] = rows
        print(f"bench: {title} done in {time.time() - t0:.0f} s", file=sys.stderr)
    name = "results_quick" if quick else "results"
    (out_dir / f"{name}.md").write_text("\n".join(parts))
    (out_dir / f"{name}.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    print(f"bench: wrote {out_dir / (name + '.md')}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
