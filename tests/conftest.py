"""Shared fixtures: sample models, the ../shared MLPerf Tiny set, and compile helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED = ROOT.parent / "shared" / "models" / "mlperf_tiny"

SAMPLE_MODELS = ["digits_cnn", "digits_dwsep", "digits_resnet"]


def mlperf_data(kind: str, split: str) -> np.ndarray:
    """MLPerf Tiny inputs in the ONNX layout, converted as the shared README states."""
    d = SHARED / "data"
    if kind == "vww":
        return np.load(d / f"vww_{split}_u8.npy").astype(np.float32) / 255.0
    if kind == "ic":
        return np.load(d / f"ic_{split}_u8.npy").astype(np.float32)
    return np.load(d / f"{kind}_{split}.npy").astype(np.float32)


# (onnx file, data kind)
MLPERF_MODELS = {
    "kws_ref_model_float32": "kws",
    "kws_savedmodel_float": "kws",
    "vww_96_float": "vww",
    "pretrainedResnet": "ic",
    "ad01_fp32": "ad",
}


def require_shared():
    if not SHARED.is_dir():
        pytest.skip(f"MLPerf Tiny models not present at {SHARED} (benchmark data lives beside the repo)")
