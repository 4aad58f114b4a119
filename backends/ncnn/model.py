"""ncnn's two model files, written from a list of layers.

`.param` (text): line 1 the magic 7767517, line 2 `<layer count> <blob count>`, then
one line per layer `<type> <name> <n in> <n out> <in blobs> <out blobs> <id=value ...>`.
ncnn's parser (`src/paramdict.cpp`) reads each value into 15 characters, treats a
value containing '.' or 'e' as float and anything else as int, and parses the
digits after the decimal point into a 32-bit unsigned integer -- so floats are
written in their shortest round-trip form with at most 9 fraction digits, and
arrays in the `-23300-id=count,v1,...` form.

`.bin`: each layer's weights in the order its `load_model` reads them. Blobs read
with `mb.load(n, 0)` start with a 4-byte tag (0 = fp32, 0x000D4B38 = int8, data
padded to 4 bytes); blobs read with `mb.load(n, 1)` (bias, scales, MemoryData)
are raw fp32 without a tag (`src/modelbin.cpp`).
"""
from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field

import numpy as np

MAGIC = 7767517
TAG_FP32 = 0
TAG_INT8 = 0x000D4B38
_NAME_BAD = re.compile(r"[^\x21-\x7e]")  # ncnn scans names with %255s: no whitespace
MAX_NAME = 64  # ncnn reads at most 255; longer ONNX names (TF exports) get a hash tail


@dataclass
class Weight:
    """One `.bin` blob: `tag` None = raw fp32 (load type 1), else a tagged type-0 blob."""

    data: np.ndarray
    tag: int | None = None

    def to_bytes(self) -> bytes:
        if self.tag is None:
            return np.ascontiguousarray(self.data, "<f4").tobytes()
        if self.tag == TAG_INT8:
            raw = np.ascontiguousarray(self.data, np.int8).tobytes()
            return struct.pack("<I", TAG_INT8) + raw + b"\0" * (-len(raw) % 4)
        return struct.pack("<I", TAG_FP32) + np.ascontiguousarray(self.data, "<f4").tobytes()


@dataclass
class Layer:
    """An ncnn layer line plus its weights; `meta` is for reports, never written."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, object] = field(default_factory=dict)
    weights: list[Weight] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def sanitize(name: str) -> str:
    """A name ncnn can read back: printable, no whitespace, at most MAX_NAME characters."""
    name = _NAME_BAD.sub("_", name) or "_"
    if len(name) <= MAX_NAME:
        return name
    return name[:MAX_NAME - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


def _parse_ncnn_float(s: str) -> float:
    """Python port of ncnn's `vstr_to_float`: checks that what we write reads back exactly."""
    m = re.fullmatch(r"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?)(\d+))?", s)
    if m is None:
        raise ValueError(s)
    sign, ip, fp, esign, exp = m.groups()
    v = float(int(ip or "0"))
    if fp:
        v += int(fp) / float(10 ** len(fp))
    if exp:
        e, scale = int(exp), 1.0
        while e >= 8:  # the same double multiplications as ncnn
            scale, e = scale * 1e8, e - 8
        while e > 0:
            scale, e = scale * 10.0, e - 1
        v = v / scale if esign == "-" else v * scale
    return float(np.float32(-v if sign == "-" else v))


def format_float(x: float) -> str:
    """Shortest text of float32 `x` that ncnn parses back bit-exactly (<= 15 chars, has '.' or 'e')."""
    f = np.float32(x)
    if not np.isfinite(f):
        raise ValueError(f"ncnn .param cannot hold the non-finite float {x}")
    candidates = [np.format_float_positional(f, unique=True, trim="0"),
                  np.format_float_scientific(f, unique=True, trim="0")]
    for s in candidates:
        frac = s.split(".", 1)[1].split("e")[0] if "." in s else ""
        if len(s) <= 15 and len(frac) <= 9 and _parse_ncnn_float(s) == float(f):
            return s
    raise ValueError(f"cannot write float {x!r} exactly in ncnn's param syntax")


def _format_scalar(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return format_float(float(v))


def format_param(key: int, value) -> str:
    """`key=value` for scalars, `-233xx=count,v,...` for lists (ints or floats, not mixed)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(np.asarray(value).reshape(-1).tolist()) if isinstance(value, np.ndarray) else list(value)
        if any(isinstance(v, float) for v in items):
            items = [float(v) for v in items]  # one element type per array
        return f"{-23300 - key}={len(items)}" + "".join("," + _format_scalar(v) for v in items)
    return f"{key}={_format_scalar(value)}"


def insert_splits(layers: list[Layer]) -> list[Layer]:
    """ncnn feeds each blob to exactly one consumer: add a Split after producers of shared blobs.

    Consumers take `<blob>_splitncnn_<k>` in layer order (the naming ncnn's own
    converters use); graph outputs keep the original name, which stays extractable.
    """
    uses: dict[str, int] = {}
    for layer in layers:
        for b in layer.bottoms:
            uses[b] = uses.get(b, 0) + 1
    shared = {b for b, n in uses.items() if n > 1}
    if not shared:
        return layers
    taken: dict[str, int] = {b: 0 for b in shared}
    out: list[Layer] = []
    count = 0
    for layer in layers:
        new_bottoms = []
        for b in layer.bottoms:
            if b in shared:
                new_bottoms.append(f"{b}_splitncnn_{taken[b]}")
                taken[b] += 1
            else:
                new_bottoms.append(b)
        layer.bottoms = new_bottoms
        out.append(layer)
        for t in layer.tops:
            if t in shared:
                tops = [f"{t}_splitncnn_{k}" for k in range(uses[t])]
                out.append(Layer("Split", f"splitncnn_{count}", [t], tops, meta={"split_of": t}))
                count += 1
    return out


def blob_names(layers: list[Layer]) -> list[str]:
    """Every blob, in order of first appearance as a layer output."""
    seen: dict[str, None] = {}
    for layer in layers:
        for t in layer.tops:
            seen.setdefault(t, None)
    return list(seen)


def check_model(layers: list[Layer]) -> None:
    """The invariants ncnn's loader relies on (unique names, produced-before-used, one consumer)."""
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise ValueError("duplicate ncnn layer names")
    produced: set[str] = set()
    consumed: set[str] = set()
    for layer in layers:
        for b in layer.bottoms:
            if b not in produced:
                raise ValueError(f"layer {layer.name} reads blob {b} before it is produced")
            if b in consumed:
                raise ValueError(f"blob {b} has more than one consumer (missing Split)")
            consumed.add(b)
        for t in layer.tops:
            if t in produced:
                raise ValueError(f"blob {t} is produced twice")
            produced.add(t)


def param_text(layers: list[Layer]) -> str:
    """The `.param` file contents (ncnn's plain-text form)."""
    lines = [str(MAGIC), f"{len(layers)} {len(blob_names(layers))}"]
    for layer in layers:
        head = [f"{layer.type:<24}", f"{layer.name:<24}", str(len(layer.bottoms)), str(len(layer.tops)),
                *layer.bottoms, *layer.tops]
        params = [format_param(k, layer.params[k]) for k in sorted(layer.params)]
        lines.append(" ".join(head + params))
    return "\n".join(lines) + "\n"


def bin_bytes(layers: list[Layer]) -> bytes:
    """The `.bin` file contents: every layer's weights, in layer order."""
    return b"".join(w.to_bytes() for layer in layers for w in layer.weights)
