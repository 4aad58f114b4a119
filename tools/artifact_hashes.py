"""Compile every sample and MLPerf Tiny model for every target and print the sha256 of each file.

    python tools/artifact_hashes.py OUT.json [--targets tflm,tvm,ncnn]

A refactoring check: run it before and after a change that must not alter behaviour and
compare the two JSON files (`python tools/artifact_hashes.py --compare A.json B.json`).
Drives the `qcc` command line, so it works across internal reorganisations.
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _calib_files(tmp: Path) -> list[tuple[str, Path, Path]]:
    from bench.common import MLPERF, MODELS, SAMPLES, SHARED, mlperf_data
    out = [(s, MODELS / f"{s}.onnx", MODELS / "digits_calib.npy") for s in SAMPLES]
    if SHARED.is_dir():
        for name, (onnx_file, kind, _) in MLPERF.items():
            calib = tmp / f"{kind}_calib.npy"
            if not calib.exists():
                np.save(calib, mlperf_data(kind, "calib"))
            out.append((name, SHARED / onnx_file, calib))
    return out


def hashes(targets: list[str]) -> dict:
    from qcompiler.driver.cli import main as qcc
    result = {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, model, calib in _calib_files(tmp):
            for target in targets:
                out = tmp / f"{name}_{target}"
                rc = qcc([str(model), "--target", target, "--calib", str(calib), "-o", str(out)])
                key = f"{name}/{target}"
                if rc != 0:
                    result[key] = {"exit": rc}
                    continue
                result[key] = {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16]
                               for f in sorted(out.iterdir())}
                print(key, "ok", file=sys.stderr)
    return result


def compare(a: dict, b: dict) -> int:
    bad = 0
    for key in sorted(set(a) | set(b)):
        fa, fb = a.get(key, {}), b.get(key, {})
        for f in sorted(set(fa) | set(fb)):
            if fa.get(f) != fb.get(f):
                print(f"DIFFERS {key}/{f}: {fa.get(f)} vs {fb.get(f)}")
                bad += 1
    print(f"{bad} differing file(s) over {len(set(a) | set(b))} compilations")
    return 1 if bad else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--compare":
        sys.exit(compare(json.loads(Path(args[1]).read_text()), json.loads(Path(args[2]).read_text())))
    targets = ["tflm", "tvm", "ncnn"]
    if "--targets" in args:
        targets = args[args.index("--targets") + 1].split(",")
    Path(args[0]).write_text(json.dumps(hashes(targets), indent=1, sort_keys=True) + "\n")
