"""Shared pieces of the benchmarks: model list, data conversion, timing, markdown tables."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"

# name -> (onnx path, data kind, official int8 .tflite or None)
MLPERF = {
    "kws": ("kws_ref_model_float32.onnx", "kws", "kws_ref_model.tflite"),
    "vww": ("vww_96_float.onnx", "vww", "vww_96_int8.tflite"),
    "ic": ("pretrainedResnet.onnx", "ic", "pretrainedResnet_quant.tflite"),
    "ad": ("ad01_fp32.onnx", "ad", "ad01_int8.tflite"),
    "kws_sm": ("kws_savedmodel_float.onnx", "kws", None),
}
SAMPLES = ["digits_cnn", "digits_dwsep", "digits_resnet"]


def mlperf_data(kind: str, split: str) -> np.ndarray:
    """Inputs in the ONNX layout, converted as ../shared/models/mlperf_tiny/README.md states."""
    d = SHARED / "data"
    if kind == "vww":
        return np.load(d / f"vww_{split}_u8.npy").astype(np.float32) / 255.0
    if kind == "ic":
        return np.load(d / f"ic_{split}_u8.npy").astype(np.float32)
    return np.load(d / f"{kind}_{split}.npy").astype(np.float32)


def models(quick: bool = False):
    """(name, onnx path, calib array, eval array, labels or None, official tflite or None)."""
    out = []
    for s in SAMPLES[:1] if quick else SAMPLES:
        out.append((s, MODELS / f"{s}.onnx", np.load(MODELS / "digits_calib.npy"),
                    np.load(MODELS / "digits_eval.npy"), np.load(MODELS / "digits_eval_labels.npy"), None))
    if quick or not SHARED.is_dir():
        return out
    for name, (onnx_file, kind, official) in MLPERF.items():
        labels = SHARED / "data" / f"{kind}_eval_labels.npy"
        out.append((name, SHARED / onnx_file, mlperf_data(kind, "calib"), mlperf_data(kind, "eval"),
                    np.load(labels) if labels.is_file() else None, SHARED / official if official else None))
    return out


def best_time(fn, repeats: int = 20, warmup: int = 2) -> float:
    """Fastest of `repeats` runs: for deterministic CPU-bound code the minimum is the estimate
    least disturbed by other processes (medians moved by 30% between runs on this 2-core box)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def table(headers: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return f"{x:.2f}"
        return "—" if x is None else str(x)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def machine() -> str:
    import importlib.metadata as md
    versions = []
    for pkg in ("qcompiler", "numpy", "onnx", "onnxruntime", "tflite-micro", "ai-edge-litert", "apache-tvm", "ncnn"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    import os
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
            f"{platform.system()} {platform.release()}; " + ", ".join(versions))
