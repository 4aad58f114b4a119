"""Shared fixtures: sample models, the ../shared MLPerf Tiny set, and compile helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import qcompiler  # noqa: F401  (first: it sets one BLAS thread before numpy loads)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
sys.path.insert(0, str(ROOT))
from bench.common import SHARED, mlperf_data  # noqa: E402  (one definition of the data conversion)

SAMPLE_MODELS = ["digits_cnn", "digits_dwsep", "digits_resnet"]


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


def corpus_files(key: str):
    """(model, calibration, evaluation) paths of a corpus model (bench/corpus.py), or skip
    saying why it cannot be had (offline, image libraries missing)."""
    from bench import corpus
    try:
        return corpus.model_path(key), corpus.data_path(key, "calib"), corpus.data_path(key, "eval")
    except (corpus.CorpusUnavailable, corpus.ImageLibsMissing) as e:
        pytest.skip(f"corpus model {key} unavailable: {e}")
