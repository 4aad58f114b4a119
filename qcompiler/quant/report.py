"""Per-layer quantization report: SQNR, parameters and clipping of every int8 tensor.

The integer reference (the quantized graph in the interpreter with the integer
kernels, the oracle every backend matches bit for bit) and the float graph run
on the same samples; a hook dequantizes every int8 activation and compares it
with the float tensor of the same name. Only running sums are kept.

`write_report_files` adds `report.md` with a table and `layer_sqnr.png`, a bar
chart drawn by a tiny pure-numpy PNG writer (no plotting dependency; bytes are
deterministic).
"""
from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from qcompiler.quant.calibration import FloatRunner, samples_in_memory, samples_within
from qcompiler.interp import INT_KERNELS, Interpreter
from qcompiler.ir import Graph

REPORT_SAMPLES = 8  # samples the per-layer report runs (spread over the calibration set) ...
# ... unless that is more than REPORT_VALUES activation values: the integer reference costs
# ~1 ms per 30k values, and 4 samples of a large model (VWW: 4 x 0.26 M values, every tensor
# >= 9k values) measure each layer's SQNR as well as 8
REPORT_VALUES = 1_000_000
REPORT_MIN_SAMPLES = 4


def report_samples(graph: Graph) -> int:
    """How many calibration samples the per-layer report runs for `graph` (it holds every
    activation of each of them at once: a big model gets fewer, see samples_in_memory)."""
    return min(samples_within(graph, REPORT_VALUES, REPORT_MIN_SAMPLES, REPORT_SAMPLES), samples_in_memory(graph))


class _Acc:
    def __init__(self):
        self.signal = self.noise = 0.0
        self.clipped = self.count = 0


def _sqnr_db(signal: float, noise: float) -> float | None:
    if signal <= 0:
        return None
    return 99.0 if noise <= signal * 1e-10 else round(10 * math.log10(signal / noise), 2)


def _weight_sqnr(qgraph: Graph, float_graph: Graph) -> dict[str, float | None]:
    """SQNR of each layer's dequantized int8 weights vs its float weights (by node name)."""
    fnodes = {n.name: n for n in float_graph.nodes}
    out = {}
    for q in qgraph.nodes:
        w = q.input(1) if len(q.inputs) > 1 else None
        f = fnodes.get(q.name)
        if w is None or not w.is_constant or w.quant is None or f is None or q.op not in ("Conv", "Gemm"):
            continue
        wf = f.input(1).data.astype(np.float64)
        err = wf - w.quant.dequantize(w.data).astype(np.float64)
        out[q.name] = _sqnr_db(float(np.sum(wf * wf)), float(np.sum(err * err)))
    return out


def layer_report(float_graph: Graph, qgraph: Graph, feeds, runner: FloatRunner | None = None) -> tuple[list[dict], int]:
    """([per-tensor entry in graph order], samples used). `feeds` are float input feeds;
    `runner` runs `float_graph` (one is made when not given)."""
    acts = [v for v in qgraph.values() if not v.is_constant and v.quant is not None and v.quant.dtype == np.int8]
    accs = {v.name: _Acc() for v in acts}
    runner = runner or FloatRunner(float_graph)
    current: dict[str, np.ndarray] = {}

    def compare(v, q_arr):
        ref = current.get(v.name)
        if ref is None or v.name not in accs:
            return
        a = accs[v.name]
        ref = ref.astype(np.float64)
        err = ref - v.quant.dequantize(q_arr).astype(np.float64)
        lo = (v.quant.qmin - int(v.quant.zero_point[0])) * float(v.quant.scale[0])
        hi = (v.quant.qmax - int(v.quant.zero_point[0])) * float(v.quant.scale[0])
        a.signal += float(np.sum(ref * ref))
        a.noise += float(np.sum(err * err))
        a.clipped += int(np.count_nonzero((ref < lo - 0.5 * float(v.quant.scale[0]))
                                          | (ref > hi + 0.5 * float(v.quant.scale[0]))))
        a.count += ref.size

    def hook(node, outs):
        for v, arr in zip(node.outputs, outs):
            compare(v, arr)

    interp = Interpreter(qgraph, INT_KERNELS, hook=hook)
    n = 0
    for feed in feeds:
        current = runner.run(feed)
        qfeed = {}
        for v in qgraph.inputs:
            qfeed[v.name] = v.quant.quantize(feed[v.name]) if v.quant is not None else feed[v.name]
            compare(v, qfeed[v.name])
        interp.run(qfeed)
        n += 1
    return _entries(qgraph, acts, accs, _weight_sqnr(qgraph, float_graph)), n


def _entries(qgraph: Graph, acts, accs, wsqnr) -> list[dict]:
    out = []
    for v in acts:
        a = accs[v.name]
        producer = v.producer
        entry = {"tensor": v.name, "op": producer.op if producer is not None else "input",
                 "node": producer.name if producer is not None else None,
                 "scale": float(v.quant.scale[0]), "zero_point": int(v.quant.zero_point[0]),
                 "sqnr_db": _sqnr_db(a.signal, a.noise) if a.count else None,
                 "clipped_fraction": round(a.clipped / a.count, 6) if a.count else None}
        if producer is not None and producer.name in wsqnr:
            entry["weight_sqnr_db"] = wsqnr[producer.name]
        out.append(entry)
    return out


def parameters_only(qgraph: Graph) -> list[dict]:
    """Entries without measurements (data-free mode: there is nothing to measure on)."""
    acts = [v for v in qgraph.values() if not v.is_constant and v.quant is not None and v.quant.dtype == np.int8]
    return _entries(qgraph, acts, {v.name: _Acc() for v in acts}, {})


def worst_layers(layers: list[dict], k: int = 5) -> list[dict]:
    """The k measured tensors with the lowest SQNR (graph inputs excluded), worst first."""
    measured = [e for e in layers if e["sqnr_db"] is not None and e["op"] != "input"]
    return sorted(measured, key=lambda e: (e["sqnr_db"], e["tensor"]))[:k]


# ---- report.md and the PNG chart ----------------------------------------------------

_DIGITS = ["111101101101111", "010110010010111", "111001111100111", "111001111001111", "101101111001001",
           "111100111001111", "111100111101111", "111001001001001", "111101111101111", "111101111001111"]


def _text(img: np.ndarray, x: int, y: int, s: str, color) -> None:
    """Draw digits (3x5 font, scale 2) with the top-left corner at (x, y)."""
    for ch in s:
        if ch.isdigit():
            bits = np.array([int(b) for b in _DIGITS[int(ch)]], bool).reshape(5, 3)
            big = np.kron(bits, np.ones((2, 2), bool))
            region = img[y:y + 10, x:x + 6]
            region[big[:region.shape[0], :region.shape[1]]] = color
        x += 8


def sqnr_chart(values: list[float | None], highlight: set[int], height: int = 220) -> np.ndarray:
    """RGB image: one bar per tensor, gridlines (labelled) every 10 dB; highlighted bars red."""
    top = max(10.0, math.ceil(max([v for v in values if v is not None] + [10.0]) / 10.0) * 10.0)
    bar, left, pad = 8, 30, 10
    width = left + pad + bar * max(len(values), 1)
    img = np.full((height + 2 * pad, width, 3), 255, np.uint8)
    y_of = lambda db: pad + int(round((1 - min(max(db, 0.0), top) / top) * height))  # noqa: E731
    for db in range(0, int(top) + 1, 10):
        img[y_of(db), left:width - pad // 2] = (200, 200, 200)
        _text(img, 2, max(y_of(db) - 5, 0), str(db), (90, 90, 90))
    for i, v in enumerate(values):
        if v is None:
            continue
        x0 = left + i * bar + 1
        color = (214, 39, 40) if i in highlight else (31, 119, 180)
        img[y_of(v):y_of(0) + 1, x0:x0 + bar - 2] = color
    img[pad:y_of(0) + 1, left - 1] = 0
    img[y_of(0), left - 1:width - pad // 2] = 0
    return img


def png_bytes(img: np.ndarray) -> bytes:
    """Encode an RGB uint8 image as PNG (zlib, level 9: deterministic)."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def fc_tradeoff(summary: dict) -> str | None:
    """One sentence on the FULLY_CONNECTED layers kept per tensor for the arena's sake, if any."""
    kept = summary.get("fc_kept_per_tensor_for_arena")
    if not kept:
        return None
    lo, hi = kept["weight_sqnr_gain_db"]
    gain = f"{lo:.1f} dB" if lo == hi else f"{lo:.1f}-{hi:.1f} dB"
    return (f"{len(kept['layers'])} FULLY_CONNECTED layer(s) keep per-tensor weights to save arena; "
            f"--per-channel-fc would raise their weight SQNR by {gain} for at least "
            f"{kept['arena_bytes']:,} more arena bytes (their per-channel multipliers)")


def report_markdown(name: str, summary: dict, layers: list[dict], png_name: str) -> str:
    lines = [f"# Quantization report: {name}", ""]
    tradeoff = fc_tradeoff(summary)
    if summary.get("data_free"):
        lines += ["**DATA-FREE MODE: no calibration data was given.** Activation ranges come from "
                  "BatchNorm statistics (mean ± k·std propagated through the layers), not from data; "
                  "no SQNR could be measured. Compile with `--calib FILE` for measured ranges.", ""]
    lines += [f"- calibration: {summary.get('method')} on {summary.get('samples', 0)} samples "
              f"({summary.get('file') or 'no file'})",
              f"- weights: {summary.get('weights')}; cross-layer equalization: {summary.get('cle')}; "
              f"bias correction: {summary.get('bias_correction')}",
              *([f"- {tradeoff}"] if tradeoff else []),
              f"- per-layer SQNR measured on {summary.get('report_samples', 0)} samples: integer "
              "reference (dequantized) vs float, per tensor; red bars are the five worst", "",
              f"![per-layer SQNR (dB), gridlines every 10 dB]({png_name})", "",
              "| # | tensor | op | scale | zero point | SQNR dB | clipped % | weight SQNR dB |",
              "|---|---|---|---|---|---|---|---|"]
    for i, e in enumerate(layers):
        clipped = None if e["clipped_fraction"] is None else 100 * e["clipped_fraction"]
        lines.append(f"| {i} | `{e['tensor']}` | {e['op']} | {e['scale']:.6g} | {e['zero_point']} | "
                     f"{_fmt(e['sqnr_db'], '.2f')} | {_fmt(clipped, '.4f')} | "
                     f"{_fmt(e.get('weight_sqnr_db'), '.2f')} |")
    return "\n".join(lines) + "\n"


def write_report_files(outdir: Path, name: str, summary: dict, layers: list[dict]) -> list[str]:
    """Write report.md and layer_sqnr.png into `outdir`; returns the file names."""
    worst = {id(e) for e in worst_layers(layers)}
    chart = sqnr_chart([e["sqnr_db"] for e in layers], {i for i, e in enumerate(layers) if id(e) in worst})
    (Path(outdir) / "layer_sqnr.png").write_bytes(png_bytes(chart))
    (Path(outdir) / "report.md").write_text(report_markdown(name, summary, layers, "layer_sqnr.png"))
    return ["layer_sqnr.png", "report.md"]
