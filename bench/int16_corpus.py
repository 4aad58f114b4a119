"""`--activations int16` on the real-model corpus (issue 16 item 1): TFLite Micro and TVM.

    nice python -m bench.int16_corpus [--models a,b] [--targets tflm,tvm]
        -> bench/int16_corpus.md (+ .json)

Per corpus model (bench/corpus.py) and target: the model compiled with `--activations int16`
on the parity bench's few samples (bench/parity.py: 8 calibration, the first 3 evaluation
samples; the models are large), `qcc verify` (bit-exact against the integer reference), the
SQNR against the float model beside the int8 entry of bench/parity.json (same samples), the
TFLM arena, and the nodes kept int8 because TFLite Micro has no int16 kernel for them, counted
by op with qcc's reason (report.json `calibration.activations.int8_nodes`).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import parity  # noqa: E402
from bench.common import table  # noqa: E402

OUT = Path(__file__).resolve().parent / "int16_corpus"
TARGETS = ("tflm", "tvm")


def kept_int8(outdir: Path) -> dict[str, int]:
    """{qcc's reason: node count} for the nodes the int16 model keeps int8."""
    report = json.loads((outdir / "report.json").read_text())
    reasons = (report.get("calibration", {}).get("activations", {}).get("int8_nodes") or {}).values()
    return dict(sorted(collections.Counter(reasons).items()))


def rows(models=None, targets=TARGETS):
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for row in parity.corpus_rows(work, models, targets, activations="int16"):
            outdir = work / f"{row['model']}_{row['target']}"
            if (outdir / "report.json").is_file():
                row["kept_int8"] = kept_int8(outdir)
                report = json.loads((outdir / "report.json").read_text())
                row["int16_nodes"] = report.get("calibration", {}).get("activations", {}).get("int16_nodes")
                row["arena_bytes"] = (report.get("arena") or {}).get("arena_bytes")
            print(f"int16 corpus: {row}", file=sys.stderr, flush=True)
            yield row


def render(results: list[dict]) -> str:
    int8 = {(r["model"], r["target"]): r for r in parity.load_cache().values()} if parity.CACHE.is_file() else {}
    body = []
    for r in results:
        base = int8.get((r["model"], r["target"]), {})
        if "skipped" in r or "error" in r:
            body.append([r["model"], r["target"], r.get("skipped") or r.get("error"), "", "", "", "", "", ""])
            continue
        kept = "; ".join(f"{n} x {why}" for why, n in r.get("kept_int8", {}).items()) or "none"
        body.append([r["model"], r["target"], "bit-exact" if r.get("bit_exact") else "NOT bit-exact",
                     parity._fmt_db(r.get("fidelity_sqnr_db")), parity._fmt_db(base.get("fidelity_sqnr_db")),
                     r.get("int16_nodes"), kept, r.get("arena_bytes"), r.get("seconds")])
    return table(["model", "target", "verify (int16)", "int16 dB", "int8 dB (parity.json)", "int16 nodes",
                  "kept int8 (why)", "TFLM arena B", "s"], body)


def merged(fresh: list[dict], kept: list[dict]) -> list[dict]:
    """`kept` (the previous results) with the rows `fresh` re-measured replaced in place, new
    ones appended: `--models` re-runs some models without dropping the others' rows."""
    new = {(r["model"], r["target"]): r for r in fresh}
    out = [new.pop((r["model"], r["target"]), r) for r in kept]
    return out + list(new.values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated corpus keys (default: all)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    a = ap.parse_args(argv)
    fresh = list(rows(a.models.split(",") if a.models else None, tuple(a.targets.split(","))))
    cache = OUT.with_suffix(".json")
    results = merged(fresh, json.loads(cache.read_text()) if a.models and cache.is_file() else [])
    md = ("# `--activations int16` on the real-model corpus\n\n" + render(results) + "\n\n"
          f"{parity.CORPUS_CALIB} calibration samples and the first {parity.CORPUS_EVAL} evaluation samples per "
          "model (bench/parity.py); SQNR: worst output against the float model; int8 column: the default "
          "compile on the same samples (bench/parity.json).\n")
    OUT.with_suffix(".md").write_text(md)
    OUT.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
