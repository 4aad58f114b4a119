"""Quantization fidelity: qcc's calibration / CLE / bias-correction settings vs ONNX Runtime
quantize_static vs the official int8 .tflite files, all measured in one run on the same data.

    python bench/fidelity.py [--quick]      -> bench/fidelity.md, bench/fidelity.json (not in git)
    python -m bench                         -> this section inside bench/results.md (committed)

Per model (sample models, MLPerf Tiny): output SQNR (dB) and top-1 agreement of the int8
model vs the float ONNX model (onnxruntime) on the evaluation set, plus accuracy where
labels exist (digits, KWS) and, for the AD autoencoder, the relative error of the anomaly
score mean((x - y)^2) (its argmax "top-1" means nothing). qcc's int8 outputs come from the
integer reference interpreter (bit-exact with TFLite Micro, see tests/test_e2e_tflm.py);
ORT's QDQ models run in onnxruntime; official files in the tflite-micro interpreter.
Also: calibration peak RSS at 100 vs 1000 samples (child processes) and compile time of
qcc vs ORT quantize_static MinMax on VWW.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `qcompiler` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.common import SHARED, mlperf_data, models, table  # noqa: E402

# (label, CompileOptions fields); the first one is qcc's default (target tflm: FC weights per channel
# only within the arena budget), the second the same for targets without an arena (TVM)
QCC_CONFIGS = [
    ("qcc default: percentile 99.99 + BC", {}),
    ("qcc default, target tvm (no FC arena budget)", {"target": "tvm"}),
    ("qcc default without activation equalization", {"act_eq": False}),
    ("qcc minmax + BC", {"calib_method": "minmax"}),
    ("qcc mse + BC", {"calib_method": "mse"}),
    ("qcc kl + BC", {"calib_method": "kl"}),
    ("qcc minmax, no BC", {"calib_method": "minmax", "bias_correction": "off"}),
    ("qcc percentile, no BC", {"bias_correction": "off"}),
    ("qcc percentile + CLE + BC", {"cle": True}),
    ("qcc per-tensor, no CLE/BC", {"per_tensor": True, "bias_correction": "off"}),
    ("qcc per-tensor + CLE", {"per_tensor": True, "cle": True, "bias_correction": "off"}),
    ("qcc per-tensor + BC", {"per_tensor": True}),
    ("qcc per-tensor + CLE + BC", {"per_tensor": True, "cle": True}),
]
DATA_FREE = ("qcc data-free (BN stats, input range 0..1)", {"input_range": (0.0, 1.0)})
ORT_METHODS = ("MinMax", "Entropy", "Percentile")


# ---- metrics ---------------------------------------------------------------------------

def metrics(ref: np.ndarray, out: np.ndarray, labels, x: np.ndarray | None = None) -> dict:
    ref, out = ref.astype(np.float64), out.astype(np.float64)
    r = {"sqnr_db": float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - out) ** 2), 1e-30))),
         "top1_agree": float(np.mean(ref.argmax(-1) == out.argmax(-1)))}
    if labels is not None:
        r["acc"] = float(np.mean(out.argmax(-1) == labels))
        r["float_acc"] = float(np.mean(ref.argmax(-1) == labels))
    if x is not None and ref.shape == x.reshape(len(x), -1).shape:  # autoencoder: anomaly score
        r["top1_agree"] = None  # the argmax over 640 reconstructed features is not a class
        xf = x.reshape(len(x), -1).astype(np.float64)
        s_ref, s_out = np.mean((xf - ref) ** 2, axis=1), np.mean((xf - out) ** 2, axis=1)
        r["score_rel_err"] = float(np.mean(np.abs(s_out - s_ref) / s_ref))
    return r


def float_outputs(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


# ---- qcc ---------------------------------------------------------------------------------

def qcc_quantize(onnx_path: Path, calib_file: str | None, **fields):
    """(int8 graph, summary, seconds) through the same steps as compile_model."""
    from qcompiler.frontend.onnx_import import load_model
    from qcompiler.driver.pipeline import CompileOptions, optimize, pass_list, quantize
    opts = CompileOptions(calib=calib_file, **fields)
    t = time.perf_counter()
    graph = load_model(onnx_path, opts.input_shapes)
    graph, _ = optimize(graph, pass_list(opts), opts)
    q, summary, _ = quantize(graph, calib_file, opts)
    return q, summary, time.perf_counter() - t


def int8_outputs(q, x: np.ndarray) -> np.ndarray:
    from qcompiler.interp import INT_KERNELS, Interpreter
    interp, vin, vout = Interpreter(q, INT_KERNELS), q.inputs[0], q.outputs[0]
    outs = [interp.run({vin.name: vin.quant.quantize(x[i:i + 1])})[vout.name] for i in range(len(x))]
    return vout.quant.dequantize(np.concatenate(outs))


# ---- ONNX Runtime quantize_static and the official int8 files -------------------------------

class _Reader:
    def __init__(self, name: str, x: np.ndarray):
        self.it = iter([{name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self.it, None)


def ort_quantize(onnx_path: Path, calib: np.ndarray, method: str, workdir: Path) -> tuple[Path, float, float]:
    """QDQ, per-channel, int8 activations and weights: (model, seconds quantize_static, seconds pre-process)."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = workdir / f"{onnx_path.stem}_pre.onnx"
    t = time.perf_counter()
    quant_pre_process(str(onnx_path), str(pre))
    t_pre = time.perf_counter() - t
    name = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    out = workdir / f"{onnx_path.stem}_{method}.onnx"
    t, cpu = time.perf_counter(), time.process_time()
    quantize_static(str(pre), str(out), _Reader(name, calib), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    ort_quantize.last_cpu_s = time.process_time() - cpu  # CPU seconds of all threads (compile_times)
    return out, time.perf_counter() - t, t_pre


def tflite_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    from qcompiler.backends.tflite.runtime import TflmRunner
    run = TflmRunner(path.read_bytes())
    qi = run.interp.get_input_details(0)["quantization_parameters"]
    qo = run.interp.get_output_details(0)["quantization_parameters"]
    xs = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x  # NCHW -> NHWC
    outs = []
    for i in range(len(xs)):
        q = np.clip(np.round(xs[i:i + 1] / qi["scales"][0]) + qi["zero_points"][0], -128, 127).astype(np.int8)
        y = run([q])[0].astype(np.float64)
        outs.append((y - qo["zero_points"][0]) * qo["scales"][0])
    return np.concatenate(outs)


# ---- one model ----------------------------------------------------------------------------

def measure_model(name, onnx_path, calib, evals, labels, official, workdir: Path, quick: bool) -> list[dict]:
    np.save(workdir / f"{name}_calib.npy", calib)
    calib_file = str(workdir / f"{name}_calib.npy")
    ref = float_outputs(onnx_path, evals)
    ae = evals if ref.shape[-1] == int(np.prod(evals.shape[1:])) else None
    rows, agree = [], {}

    def add(label, out, seconds=None, **extra):
        rows.append({"model": name, "config": label, **metrics(ref, out, labels, ae),
                     **({"seconds": seconds} if seconds is not None else {}), **extra})
        if ae is None:  # per-sample top-1 agreement, for the paired comparison (not written to JSON)
            agree[label] = ref.reshape(len(ref), -1).argmax(-1) == out.reshape(len(out), -1).argmax(-1)
        print(f"fidelity: {name:22} {label:45} SQNR {rows[-1]['sqnr_db']:6.2f}", file=sys.stderr, flush=True)

    configs = QCC_CONFIGS[:2] if quick else list(QCC_CONFIGS)
    if name.startswith("digits"):
        configs.append(DATA_FREE)
    for label, fields in configs:
        q, summary, secs = qcc_quantize(onnx_path, None if "input_range" in fields else calib_file, **fields)
        add(label, int8_outputs(q, evals), secs, worst_layer=(summary["worst_layers"] or [{}])[0].get("tensor"))
    for method in ORT_METHODS[:1] if quick else ORT_METHODS:
        model, secs, _ = ort_quantize(onnx_path, calib, method, workdir)
        add(f"ORT quantize_static QDQ per-channel {method}", float_outputs(model, evals), secs)
    if official is not None:
        add(f"official int8 {official.name} (TFLM)", tflite_outputs(official, evals))
    if agree:
        rows[0]["paired_top1"] = paired_top1(agree, QCC_CONFIGS[0][0])
    return rows


def paired_top1(agree: dict, ours: str) -> dict:
    """Top-1 agreement of `ours` vs each other quantizer on the same samples (McNemar).

    only_ours / only_other: samples where exactly one of the two agrees with float; p: the
    exact two-sided binomial test of those discordant samples (p > 0.05: the difference
    in top-1 agreement is within what resampling the evaluation set would give).
    """
    from math import comb
    out = {}
    a = agree[ours]
    for label, b in agree.items():
        if label == ours:
            continue
        n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
        n = n01 + n10
        tail = sum(comb(n, k) for k in range(0, min(n01, n10) + 1)) / 2 ** n if n else 1.0
        out[label] = {"only_ours": n01, "only_other": n10, "p": min(1.0, 2 * tail)}
    return out


# ---- memory and compile time ----------------------------------------------------------------

# VmHWM (this process's peak RSS) rather than ru_maxrss, which on Linux keeps the parent's peak
# across fork + exec and would report the benchmark process's own size
_RSS_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
from qcompiler.frontend.onnx_import import load_model
from qcompiler.driver.pipeline import CompileOptions, optimize, quantize
from qcompiler.passes import COMMON_PIPELINE
g = optimize(load_model({model!r}), COMMON_PIPELINE)[0]
base = hwm()
quantize(g, {calib!r}, CompileOptions(calib={calib!r}))
print(json.dumps({{"base_kb": base, "peak_kb": hwm()}}))
"""


def augmented(x: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n samples from x: tiled, every copy after the first flipped / brightness-jittered."""
    rng = np.random.default_rng(seed)
    reps = [x]
    while sum(len(r) for r in reps) < n:
        y = x[:, :, :, ::-1] if rng.random() < 0.5 else x.copy()
        reps.append(np.clip(y * rng.uniform(0.8, 1.2) + rng.uniform(-0.05, 0.05), 0, 1).astype(x.dtype))
    return np.concatenate(reps)[:n]


def calibration_rss(workdir: Path) -> list[dict]:
    root = str(Path(__file__).resolve().parents[1])
    model = str(SHARED / "vww_96_float.onnx")
    big = augmented(mlperf_data("vww", "calib"), 1000)
    rows = []
    for n in (100, 1000):
        f = workdir / f"vww_calib_{n}.npy"
        np.save(f, big[:n])
        code = _RSS_CHILD.format(root=root, model=model, calib=str(f))
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"samples": n, "file_mb": f.stat().st_size / 2 ** 20, "peak_rss_mb": r["peak_kb"] / 1024,
                     "growth_mb": (r["peak_kb"] - r["base_kb"]) / 1024, "seconds": time.perf_counter() - t})
    return rows


def _settle() -> None:
    """Start each timed run on a quiet machine: collect garbage (the previous run's sessions)
    and give onnxruntime's spinning worker threads from the previous run time to park;
    without this whichever tool runs right after onnxruntime measured ~15 % slower."""
    import gc
    gc.collect()
    time.sleep(0.5)


def compile_times(workdir: Path, repeats: int = 5) -> dict:
    """Best of `repeats` for each, interleaved, in this process (imports already done): wall
    seconds and CPU seconds (all threads; robust to other load on the machine)."""
    import shutil

    from qcompiler.driver.pipeline import CompileOptions, compile_model
    calib = mlperf_data("vww", "calib")
    np.save(workdir / "vww_time_calib.npy", calib)
    onnx_path = SHARED / "vww_96_float.onnx"
    runs: dict[str, list[tuple[float, float]]] = {"full": [], "quant": [], "ort": []}
    ort_pre = []

    def cpu_s() -> float:  # this process's threads and its finished children (qcc forks for TFLM)
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def timed(key, fn):
        _settle()
        t, cpu = time.perf_counter(), cpu_s()
        fn()
        runs[key].append((time.perf_counter() - t, cpu_s() - cpu))

    for _ in range(repeats):
        shutil.rmtree(workdir / "vww_tflm", ignore_errors=True)
        timed("full", lambda: compile_model(onnx_path, workdir / "vww_tflm",
                                            CompileOptions(calib=str(workdir / "vww_time_calib.npy"))))
        timed("quant", lambda: qcc_quantize(onnx_path, str(workdir / "vww_time_calib.npy")))
        _settle()
        _, secs, pre = ort_quantize(onnx_path, calib, "MinMax", workdir)
        runs["ort"].append((secs, ort_quantize.last_cpu_s))
        ort_pre.append(pre)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    return {"qcc_compile_model_s": best["full"][0], "qcc_quantize_only_s": best["quant"][0],
            "ort_quantize_static_minmax_s": best["ort"][0], "ort_pre_process_s": min(ort_pre),
            "qcc_compile_model_cpu_s": best["full"][1], "qcc_quantize_only_cpu_s": best["quant"][1],
            "ort_quantize_static_minmax_cpu_s": best["ort"][1],
            "calib_samples": len(calib), "repeats": repeats}


# ---- report -----------------------------------------------------------------------------------

def _fmt_rows(rows: list[dict]) -> str:
    body = []
    for r in rows:
        body.append([r["model"], r["config"], r["sqnr_db"],
                     100 * r["top1_agree"] if r["top1_agree"] is not None else None,
                     100 * r["acc"] if "acc" in r else None,
                     100 * r["score_rel_err"] if "score_rel_err" in r else None,
                     r.get("seconds")])
    return table(["model", "quantizer", "SQNR dB", "top-1 agree %", "accuracy %", "AD score err %", "seconds"],
                 body)


def run(quick: bool = False) -> tuple[str, dict]:
    rows, extra = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, path, calib, evals, labels, official in models(quick):
            rows += measure_model(name, path, calib, evals, labels, official, work, quick)
        if not quick and SHARED.is_dir():
            extra["calibration_rss"] = calibration_rss(work)
            extra["compile_time_vww"] = compile_times(work)
    md = [_fmt_rows(rows)]
    paired = [[r["model"], label, v["only_ours"], v["only_other"], v["p"]]
              for r in rows if "paired_top1" in r for label, v in r["paired_top1"].items()
              if not label.startswith("qcc")]
    if paired:
        md.append("Top-1 agreement, qcc default vs each other quantizer on the same samples (McNemar: samples "
                  "where only one of the two agrees with float; exact two-sided p):\n\n" + table(
                      ["model", "other quantizer", "only qcc agrees", "only other agrees", "p"], paired))
    floats = {r["model"]: r["float_acc"] for r in rows if "float_acc" in r}
    if floats:
        md.append("Float accuracy: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in floats.items()))
    if "calibration_rss" in extra:
        md.append("Calibration (qcc quantize() with defaults, VWW, child process) peak RSS:\n\n" + table(
            ["samples", "file MB", "peak RSS MB", "growth over model load MB", "seconds"],
            [[r["samples"], r["file_mb"], r["peak_rss_mb"], r["growth_mb"], r["seconds"]]
             for r in extra["calibration_rss"]]))
        c = extra["compile_time_vww"]
        ort, ort_cpu = c["ort_quantize_static_minmax_s"], c["ort_quantize_static_minmax_cpu_s"]
        md.append(f"Compile time on VWW ({c['calib_samples']} calibration samples, best of {c['repeats']}, "
                  "interleaved; wall seconds / CPU seconds of all threads, and the ratio to ORT's): "
                  f"qcc compile_model for TFLM (calibration, bias correction, per-layer report, .tflite + C "
                  f"bundle, arena measured) {c['qcc_compile_model_s']:.2f} s = {c['qcc_compile_model_s'] / ort:.2f}x / "
                  f"{c['qcc_compile_model_cpu_s']:.2f} s = {c['qcc_compile_model_cpu_s'] / ort_cpu:.2f}x; qcc quantize "
                  f"only (ONNX -> int8 IR, same work as ORT's) {c['qcc_quantize_only_s']:.2f} s = "
                  f"{c['qcc_quantize_only_s'] / ort:.2f}x / {c['qcc_quantize_only_cpu_s']:.2f} s = "
                  f"{c['qcc_quantize_only_cpu_s'] / ort_cpu:.2f}x; ORT quantize_static MinMax {ort:.2f} s / "
                  f"{ort_cpu:.2f} s (+ {c['ort_pre_process_s']:.2f} s quant_pre_process, not counted).")
    return "\n\n".join(md), {"rows": rows, **extra}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    md, data = run(quick)
    out = Path(__file__).resolve().parent
    stem = "fidelity_quick" if quick else "fidelity"
    (out / f"{stem}.md").write_text("# Quantization fidelity\n\n`python bench/fidelity.py" +
                                    (" --quick" if quick else "") + "`\n\n" + md + "\n")
    (out / f"{stem}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
