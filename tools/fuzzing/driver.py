"""The command line: parse options, run cases (in parallel), write cases.jsonl and summary.md."""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .build import FAMILIES, build_case
from .classify import BAD_CLASSES, classify, noise_kind
from .models import available_models, load_spec
from .sandbox import child_env, cleanup, materialize, normalize, run_limited, snapshot, unlock
from .summary import repro_command, show_argv, summarize

DESCRIPTION = sys.modules[__package__].__doc__.split("\n\n")[0]


def run_case(index: int, opts) -> dict:
    case = build_case(opts.seed, index, opts.specs, opts.family)
    keep = opts.keep
    base = Path(keep).resolve() if keep else Path(tempfile.mkdtemp(prefix=f"qccfuzz-{opts.seed}-{index}-",
                                                                  dir=opts.tmp))
    if keep:
        if base.exists() and any(base.iterdir()):
            raise SystemExit(f"fuzz: --keep {base} exists and is not empty")
        base.mkdir(parents=True, exist_ok=True)
    locked: list[Path] = []
    try:
        locked = materialize(case, base)
        before = snapshot(base)
        argv = [a.replace("{BASE}", str(base)) for a in case.argv]
        run = run_limited([sys.executable, "-m", "qcompiler", *argv], base / "w", child_env(base),
                          opts.timeout, opts.mem_bytes)
        after = snapshot(base)
        verdict = classify(case, base, run, before, after, opts)
    finally:
        if not keep:
            cleanup(base, locked)
        else:
            unlock(locked)
    err_lines = [l for l in run["stderr"].splitlines() if l.strip()]
    rec = {"seed": opts.seed, "case": index, "model": case.model, "family": case.family, "kind": case.kind,
           "mutation": case.desc, "argv": case.argv, "class": verdict["class"], "cause": verdict["cause"],
           "rc": run["rc"], "seconds": run["seconds"], "flags": verdict["flags"], "check": verdict["check"],
           "stderr_tail": [normalize(l, base) if len(l) > 300 else l.replace(str(base), "<sandbox>")
                           for l in err_lines[-4:]],
           "repro": repro_command(opts, index, "/tmp/qccfuzz-case")}
    if keep:
        print(f"sandbox kept in {base}; from {base / 'w'} run:\n  {sys.executable} -m qcompiler "
              + shlex.join(argv))
    return rec


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=100, help="cases 0..N-1")
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--case", type=int, action="append", help="run only this case index (repeatable)")
    p.add_argument("--out", help="write cases.jsonl and summary.md here")
    p.add_argument("--models", default="all", help="all | digits | mlperf | comma-separated model stems")
    p.add_argument("--family", choices=[f[0] for f in FAMILIES],
                   help="only this mutation family (part of a case's identity, like --seed)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per qcc run")
    p.add_argument("--mem-mb", type=int, default=2048, help="address-space limit per run (MiB)")
    p.add_argument("--keep", help="with one --case: keep its sandbox in this (new or empty) folder")
    p.add_argument("--tmp", help="where sandboxes are made (default: the system temp folder)")
    p.add_argument("--list", action="store_true", help="print the cases' mutations without running qcc")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--summary-from", metavar="JSONL",
                   help="only rewrite summary.md (in --out) from a cases.jsonl; with --wall-minutes")
    p.add_argument("--wall-minutes", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def prepare(opts) -> None:
    opts.model_names = available_models(opts.models)
    if not opts.model_names:
        raise SystemExit("fuzz: no models found")
    opts.specs = [load_spec(n) for n in opts.model_names]
    opts.specs_by_name = {s.name: s for s in opts.specs}
    opts.mem_bytes = opts.mem_mb << 20
    opts.cc = shutil.which("cc") or shutil.which("gcc")
    if opts.keep and (not opts.case or len(opts.case) != 1):
        raise SystemExit("fuzz: --keep needs exactly one --case")


def run_batch(opts, progress=None) -> list[dict]:
    indices = opts.case or list(range(opts.start, opts.start + opts.cases))
    with ThreadPoolExecutor(max_workers=max(opts.jobs, 1)) as pool:
        records = []
        for rec in pool.map(lambda i: run_case(i, opts), indices):
            records.append(rec)
            if progress:
                progress(rec)
    return records


def main(argv=None) -> int:
    opts = parse_args(argv)
    prepare(opts)
    if opts.list:
        for i in opts.case or range(opts.start, opts.start + opts.cases):
            c = build_case(opts.seed, i, opts.specs, opts.family)
            print(f"{i:5} {c.model:24} {c.kind:16} {'; '.join(c.desc)[:110]}\n      {show_argv(c.argv)}")
        return 0
    out = Path(opts.out) if opts.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    if opts.summary_from:
        records = [json.loads(line) for line in open(opts.summary_from)]
        for r in records:  # causes are re-normalized: the rules may have changed since the run
            if r["class"] in ("unclear", "noisy"):
                r["cause"] = "; ".join(noise_kind(normalize(p.replace("foreign line: ", "")))
                                       if p.startswith("foreign line") else p for p in r["cause"].split("; "))
            elif r["class"] != "ok":
                r["cause"] = normalize(r["cause"])
        opts.seed = records[0]["seed"]
        summary = summarize(records, opts, opts.wall_minutes * 60)
        (out / "summary.md" if out else Path("/dev/stdout")).write_text(summary)
        return 0
    jsonl = open(out / "cases.jsonl", "w") if out else None
    t0 = time.monotonic()

    def progress(rec):
        if jsonl:
            jsonl.write(json.dumps(rec, sort_keys=True, default=str) + "\n")
            jsonl.flush()
        if not opts.quiet:
            print(f"{rec['case']:5} {rec['model']:22} {rec['kind']:15} {rec['class']:14} {rec['seconds']:6.1f}s "
                  f"{rec['cause'][:70]}", flush=True)
            if rec["class"] in BAD_CLASSES:
                print(f"      {'; '.join(rec['mutation'])[:150]}\n      repro: {rec['repro']}", flush=True)

    records = run_batch(opts, progress)
    seconds = time.monotonic() - t0
    if jsonl:
        jsonl.close()
    summary = summarize(records, opts, seconds)
    if out:
        (out / "summary.md").write_text(summary)
    if not opts.quiet or not out:
        print(summary.split("\n## ")[0])
    return 0
