"""The models a campaign mutates: the sample models and the MLPerf Tiny set, with real calibration data."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = ROOT / "models"
MLPERF_DIR = Path(os.environ.get("QCC_MLPERF_DIR", ROOT.parent / "shared" / "models" / "mlperf_tiny"))
DIGITS = ("digits_cnn", "digits_dwsep", "digits_resnet")
# ONNX file stem -> data kind (calibration file and conversion: see the MLPerf README)
MLPERF = {"ad01_fp32": "ad", "kws_ref_model_float32": "kws", "kws_savedmodel_float": "kws",
          "pretrainedResnet": "ic", "vww_96_float": "vww"}
CALIB_SAMPLES = 64          # calibration samples kept per model (speed; the data are real)


@dataclass
class ModelSpec:
    name: str
    onnx_bytes: bytes
    calib: np.ndarray          # float32 [N, *input shape[1:]]
    input_name: str
    lo: float
    hi: float


def available_models(selection: str) -> list[str]:
    """'all' | 'digits' | 'mlperf' | comma-separated stems -> sorted stems that exist."""
    have = [m for m in DIGITS if (MODELS_DIR / f"{m}.onnx").is_file()]
    have += [m for m in MLPERF if (MLPERF_DIR / f"{m}.onnx").is_file()]
    out: list[str] = []
    for item in selection.split(","):
        item = item.strip()
        if item in ("all", "digits", "mlperf"):
            out += [m for m in have if item == "all" or (m in DIGITS) == (item == "digits")]
        elif item in have:
            out.append(item)
        elif item:
            raise SystemExit(f"fuzz: unknown or missing model {item!r} (have: {', '.join(have)})")
    return sorted(set(out))


def _calib_array(name: str) -> np.ndarray:
    if name in DIGITS:
        x = np.load(MODELS_DIR / "digits_calib.npy")
    else:
        kind = MLPERF[name]
        d = MLPERF_DIR / "data"
        if kind == "vww":
            x = np.load(d / "vww_calib_u8.npy")[:CALIB_SAMPLES].astype(np.float32) / 255.0
        elif kind == "ic":
            x = np.load(d / "ic_calib_u8.npy")[:CALIB_SAMPLES].astype(np.float32)
        else:
            x = np.load(d / f"{kind}_calib.npy")
    return np.ascontiguousarray(x[:CALIB_SAMPLES], dtype=np.float32)


def load_spec(name: str) -> ModelSpec:
    path = MODELS_DIR / f"{name}.onnx" if name in DIGITS else MLPERF_DIR / f"{name}.onnx"
    data = path.read_bytes()
    m = onnx.load_from_string(data)
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits][0].name
    x = _calib_array(name)
    return ModelSpec(name, data, x, inp, float(x.min()), float(x.max()))
