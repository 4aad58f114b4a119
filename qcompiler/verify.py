"""`qcc verify`: run an emitted artifact in its real runtime and in the integer reference.

The integer reference interpreter (on the quantized IR saved next to the
artifact) is the oracle; TFLite Micro must match it bit for bit. LiteRT is run
too and its largest difference is reported, not required to be zero: its
optimized kernels round differently.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .calibration import iterate_samples, load_samples
from .errors import QccError, VerificationError
from .interpreter import INT_KERNELS, Interpreter
from .serialize import load_graph


def to_runtime_layout(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr.transpose(0, 2, 3, 1)) if arr.ndim == 4 else arr


def _quantize_feed(graph, feed):
    out = {}
    for v in graph.inputs:
        x = feed[v.name]
        out[v.name] = x if x.dtype == np.int8 else v.quant.quantize(x.astype(np.float32))
    return out


class _Diff:
    def __init__(self):
        self.max_lsb = 0
        self.mismatched = 0
        self.total = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        d = np.abs(ref.astype(np.int64) - got.astype(np.int64))
        self.max_lsb = max(self.max_lsb, int(d.max(initial=0)))
        self.mismatched += int(np.count_nonzero(d))
        self.total += d.size

    def summary(self) -> dict:
        return {"max_abs_diff_lsb": self.max_lsb, "mismatched_elements": self.mismatched,
                "elements": self.total, "bit_exact": self.mismatched == 0}


def verify_outdir(outdir: str | Path, data: str | Path, limit: int | None = None,
                  with_litert: bool = True) -> dict:
    """Compare runtime outputs with the integer reference on every sample of `data`."""
    from .runtimes import LiteRTRunner, TflmRunner

    outdir = Path(outdir)
    report_path = outdir / "report.json"
    if not report_path.is_file():
        raise QccError(f"{outdir} has no report.json: is it a qcc output directory?")
    report = json.loads(report_path.read_text())
    graph = load_graph(outdir / report["ir_file"])
    model = (outdir / f"{report['name']}.tflite").read_bytes()
    samples = load_samples(data, _float_view(graph))
    reference = Interpreter(graph, INT_KERNELS)
    tflm = TflmRunner(model)
    litert = LiteRTRunner(model) if with_litert else None
    diffs = {"tflm": _Diff(), "litert": _Diff()}
    count = 0
    for feed in iterate_samples(samples, graph, limit):
        qfeed = _quantize_feed(graph, feed)
        ref = reference.run(qfeed)
        ref_outs = [to_runtime_layout(ref[v.name]) for v in graph.outputs]
        rt_in = [to_runtime_layout(qfeed[v.name]) for v in graph.inputs]
        for key, runner in (("tflm", tflm), ("litert", litert)):
            if runner is None:
                continue
            for r, g in zip(ref_outs, runner(rt_in)):
                diffs[key].add(r, g.reshape(r.shape))
        count += 1
    result = {"outdir": str(outdir), "data": Path(data).name, "samples": count,
              "oracle": "qcc integer reference interpreter",
              "tflm": diffs["tflm"].summary()}
    if litert is not None:
        result["litert"] = diffs["litert"].summary()
    result["ok"] = result["tflm"]["bit_exact"]
    return result


def _float_view(graph):
    """The graph with float inputs, so evaluation files of float samples load against it."""
    view = graph.copy()
    for v in view.inputs:
        v.dtype = np.dtype(np.float32)
    return view


def check(result: dict) -> None:
    if not result["ok"]:
        t = result["tflm"]
        raise VerificationError(f"TFLite Micro differs from the integer reference on "
                                f"{t['mismatched_elements']} of {t['elements']} output elements "
                                f"(max {t['max_abs_diff_lsb']} LSB)")
