"""Backend parity on real models (issue 20): every sample, MLPerf Tiny and corpus model
compiled for tflm, tvm, ncnn and c and checked with `qcc verify`.

Per model and target: verify's result (TFLM / TVM / C bit-exact against the integer
reference; ncnn: the share of output elements within one int8 step of its scheme simulation,
99.9 % required) and the fidelity entry (SQNR of the runtime's outputs against the float
model, the worst output). Corpus models (bench/corpus.py, from the local cache) are first
checked with `qcc inspect --target` (driver.pipeline.target_support): a model a target
refuses is listed with the first reason instead of being calibrated.

Results are cached in bench/parity.json (one entry per model and target, with the commit and
date it was measured at) so that bench/parity.md can be regenerated without recompiling the
large corpus models:

    nice python -m bench.parity [--models a,b] [--targets tflm,c] [--refresh] [--render]

measures the selected entries missing from the cache (all of them with --refresh), stores
them and rewrites bench/parity.md; --render only rewrites the markdown. `run(quick)` (the
`python -m bench` section) measures the sample and MLPerf models afresh and takes the corpus
entries from the cache (measuring those missing); `--quick`: one sample model, no cache.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, models, table  # noqa: E402

TARGETS = ("tflm", "tvm", "ncnn", "c")
EVAL_SAMPLES = 50          # per model and target (the sample / MLPerf eval sets)
CORPUS_CALIB, CORPUS_EVAL = 8, 3   # corpus models are large: a few samples each
CACHE = Path(__file__).resolve().parent / "parity.json"
NOT_CLASSIFIERS = {"ad"}  # an argmax over its 640-value reconstruction means nothing
MARKDOWN = CACHE.with_suffix(".md")


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _row(name: str, target: str, res: dict, seconds: float) -> dict:
    fid = res.get("fidelity", {}).get(target) or next(iter(res.get("fidelity", {}).values()), {})
    sqnrs = [o["sqnr_db"] for o in fid.values() if o.get("sqnr_db") is not None]
    top1 = [o["top1_agreement"] for o in fid.values() if o.get("top1_agreement") is not None]
    check = res.get(target, {})
    row = {"model": name, "target": target, "ok": bool(res["ok"]), "samples": res["samples"],
           "fidelity_sqnr_db": min(sqnrs) if sqnrs else None, "top1_agreement": min(top1) if top1 else None,
           "fidelity_by_output": {k: o.get("sqnr_db") for k, o in fid.items()}, "seconds": round(seconds, 1)}
    if target == "ncnn":
        outs = check.get("outputs", {}).values()
        row["within_one_step"] = min((o["within_one_step"] for o in outs), default=None)
        row["max_diff_steps"] = max((o["max_diff_steps"] for o in outs), default=None)
        if "intermediates" in check:
            row["intermediates"] = check["intermediates"]
    else:
        row["bit_exact"] = bool(check.get("bit_exact"))
        row["max_abs_diff_lsb"] = check.get("max_abs_diff_lsb")
    return row


def measure(name: str, onnx_path, calib, evals, target: str, workdir: Path, input_shapes=None,
            max_calib: int | None = None, activations: str = "int8") -> dict:
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.driver.verify import verify_outdir
    from qcompiler.errors import QccError
    out = workdir / f"{name}_{target}"
    opts = CompileOptions(target=target, calib=calib, input_shapes=input_shapes or {},
                          max_calib_samples=max_calib, activations=activations)
    t0 = time.time()
    try:
        compile_model(onnx_path, out, opts)
        res = verify_outdir(out, evals)
    except QccError as e:
        return {"model": name, "target": target, "ok": False, "error": str(e).splitlines()[0][:200],
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


def corpus_rows(workdir: Path, keys=None, targets=TARGETS, skip=lambda model, target: False,
                activations: str = "int8"):
    """Yields one row per corpus model and target (not skipped)."""
    try:
        from bench import corpus
    except ImportError as e:  # the image libraries of the corpus extra
        yield {"model": "corpus", "target": "-", "skipped": f"bench.corpus unavailable: {e}"}
        return
    for key, m in corpus.MODELS.items():
        if (keys is not None and key not in keys) or all(skip(key, t) for t in targets):
            continue
        try:
            path = corpus.model_path(key)
            calib, evals = corpus.data_path(key, "calib"), corpus.load_data(key, "eval")[0][:CORPUS_EVAL]
        except Exception as e:  # noqa: BLE001 - offline, checksum, image libraries: the reason is the row
            yield from ({"model": key, "target": t, "skipped": f"{type(e).__name__}: {e}"} for t in targets)
            continue
        shapes = {m.input_name: tuple(m.input_shape)}
        for target in targets:
            if skip(key, target):
                continue
            print(f"parity: {key} / {target}", file=sys.stderr, flush=True)
            why = refusal(path, target, shapes)
            if why:
                yield {"model": key, "target": target, "skipped": why}
                continue
            yield measure(key, path, str(calib), {m.input_name: evals}, target, workdir, shapes, CORPUS_CALIB,
                          activations)


def model_rows(workdir: Path, quick: bool = False, names=None, targets=TARGETS,
               skip=lambda model, target: False):
    """Yields one row per sample / MLPerf model and target (not skipped)."""
    for name, path, calib, evals, _, _ in models(quick):
        if names is not None and name not in names:
            continue
        for target in targets:
            if skip(name, target):
                continue
            print(f"parity: {name} / {target}", file=sys.stderr, flush=True)
            yield measure(name, path, np.asarray(calib), evals[:5 if quick else EVAL_SAMPLES], target, workdir)


def _cell(r: dict) -> str:
    if "skipped" in r:
        return f"refused: {r['skipped']}"
    if "error" in r:
        return f"FAILS: {r['error']}"
    sqnr = f"{r['fidelity_sqnr_db']:.1f} dB" if r.get("fidelity_sqnr_db") is not None else "-"
    if r["target"] == "ncnn":
        return (f"{'ok' if r['ok'] else 'FAIL'}, {r['within_one_step']:.2%} within 1 step "
                f"(max {r.get('max_diff_steps') or 0:.2g}), {sqnr}")
    return f"{'bit-exact' if r.get('bit_exact') else 'NOT bit-exact'}, {sqnr}"


def _fmt_db(x) -> str:
    return "-" if x is None else f"{x:.1f}"


def _fmt_pct(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def render(rows: list[dict], cached: bool = False, eval_samples: int = EVAL_SAMPLES) -> str:
    names = list(dict.fromkeys(r["model"] for r in rows))
    cells = {(r["model"], r["target"]): _cell(r) for r in rows}
    cells_rows = {(r["model"], r["target"]): r for r in rows}
    md = table(["model"] + list(TARGETS), [[n] + [cells.get((n, t), "-") for t in TARGETS] for n in names])
    md += ("\n\nEach cell: `qcc verify` of the compiled model (TFLM, TVM, C: bit-exact against the integer "
           "reference; ncnn: share of output elements within one int8 step of its scheme simulation, "
           ">= 99.9 % required, and the largest difference in steps) and the fidelity of that runtime's "
           "outputs against the float model (SQNR, worst output). "
           f"{eval_samples} eval samples per sample / MLPerf model (MLPerf image sets converted as "
           "../shared/models/mlperf_tiny/README.md states: VWW u8 / 255, IC u8 as float); corpus models "
           f"(bench/corpus.py): {CORPUS_CALIB} calibration and the first {CORPUS_EVAL} eval samples, "
           "skipped with `qcc inspect --target`'s first reason when a target refuses them.")
    fid = [[n] + [_fmt_db((cells_rows.get((n, t)) or {}).get("fidelity_sqnr_db")) for t in TARGETS]
           + [_fmt_pct((cells_rows.get((n, "ncnn")) or {}).get("top1_agreement") if n not in NOT_CLASSIFIERS else None),
              _fmt_pct((cells_rows.get((n, "tflm")) or {}).get("top1_agreement") if n not in NOT_CLASSIFIERS else None)]
           for n in names if any("fidelity_sqnr_db" in (cells_rows.get((n, t)) or {}) for t in TARGETS)]
    md += ("\n\nFidelity against the float model (SQNR of the runtime's outputs, worst output; top-1 agreement "
           "for classifiers). TVM and C run the integer reference that TFLM matches; they differ from TFLM only "
           "where the quantizer decides per target (AD: per-channel fully connected weights, which TFLM's "
           "arena budget declines). ncnn has its own scheme (symmetric per-tensor activations, float between "
           "its int8 layers). Corpus numbers come from 3 samples: indicative only.\n\n")
    md += table(["model"] + [f"{t} dB" for t in TARGETS] + ["ncnn top-1", "tflm top-1"], fid)
    if cached:
        when = sorted({f"{r.get('commit', '?')} ({r.get('date', '?')})" for r in rows if "commit" in r})
        md += f"\n\nMeasured at: {', '.join(when)}; cache bench/parity.json (`python -m bench.parity --render`)."
    return md


def load_cache(path: Path | None = None) -> dict:
    path = path or CACHE
    return json.loads(path.read_text()) if path.is_file() else {}


def store(cache: dict, rows, echo: bool = False, path: Path | None = None) -> None:
    """Adds each row to the cache and rewrites the cache file after each (long runs keep what
    they did), merged with what is on disk then (another run may have added entries)."""
    path = path or CACHE
    stamp = {"commit": _commit(), "date": time.strftime("%Y-%m-%d")}
    for r in rows:
        cache.update({k: v for k, v in load_cache(path).items() if k not in cache})
        cache[f"{r['model']}/{r['target']}"] = {**r, **stamp}
        path.write_text(json.dumps(cache, indent=1, default=float) + "\n")
        if echo:
            print(f"{r['model']:>18} {r['target']:>5}: {_cell(r)}", file=sys.stderr, flush=True)


def ordered(cache: dict) -> list[dict]:
    """Cache entries in the order of the table: samples, MLPerf, corpus; targets as TARGETS."""
    from bench.common import MLPERF, SAMPLES
    try:
        from bench.corpus import MODELS as CORPUS
    except ImportError:
        CORPUS = {}
    order = [*SAMPLES, *MLPERF, *CORPUS]
    rank = {n: i for i, n in enumerate(order)}
    return sorted(cache.values(), key=lambda r: (rank.get(r["model"], len(order)), TARGETS.index(r["target"])
                                                 if r["target"] in TARGETS else 9))


def run(quick: bool = False):
    with tempfile.TemporaryDirectory() as tmp:
        if quick:
            rows = list(model_rows(Path(tmp), quick=True))
            return render(rows, eval_samples=5), rows
        cache = load_cache()
        store(cache, model_rows(Path(tmp)))
        store(cache, corpus_rows(Path(tmp), skip=lambda m, t: f"{m}/{t}" in cache))
    rows = ordered(cache)
    MARKDOWN.write_text("# Backend parity: verify on every target\n\n" + render(rows, cached=True) + "\n")
    return render(rows, cached=True), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model names (default: all)")
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--refresh", action="store_true", help="measure even the entries already cached")
    ap.add_argument("--render", action="store_true", help="only rewrite bench/parity.md from the cache")
    ap.add_argument("--cache", type=Path, default=CACHE, help="the cache file (default: %(default)s)")
    args = ap.parse_args(argv)
    cache = load_cache(args.cache)
    if not args.render:
        names = set(args.models.split(",")) if args.models else None
        targets = tuple(t for t in args.targets.split(",") if t)

        def skip(model, target):
            return not args.refresh and f"{model}/{target}" in cache
        with tempfile.TemporaryDirectory() as tmp:
            for rows_of in (model_rows, corpus_rows):
                kw = {"names": names} if rows_of is model_rows else {"keys": names}
                store(cache, rows_of(Path(tmp), targets=targets, skip=skip, **kw), echo=True, path=args.cache)
    rows = ordered(cache)
    MARKDOWN.write_text("# Backend parity: verify on every target\n\n" + render(rows, cached=True) + "\n")
    print(f"parity: wrote {MARKDOWN}", file=sys.stderr)
    return 0 if all(r.get("ok") or "skipped" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
