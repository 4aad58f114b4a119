"""`qcc verify`: run an emitted artifact in its real runtime and in the integer reference.

The integer reference interpreter (on the quantized IR saved next to the
artifact) is the oracle. Each backend module implements
`verify(outdir, report, samples, limit, ...) -> dict` with an `ok` entry; this
module holds the shared pieces and the TFLite one: TFLite Micro must match the
reference bit for bit; LiteRT is run too and its largest difference is
reported, not required to be zero (its optimized kernels round differently).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qcompiler.quant.calibration import load_samples
from qcompiler.errors import QccError
from qcompiler.ir.serialize import load_graph


def quantize_feed(graph, feed: dict) -> dict:
    """Float samples -> int8 graph inputs with the inputs' quantization parameters."""
    return {v.name: v.quant.quantize(feed[v.name].astype(np.float32)) for v in graph.inputs}


def float_view(graph):
    """A copy with float inputs, so files of float samples load and check against it."""
    view = graph.copy()
    for v in view.inputs:
        v.dtype = np.dtype(np.float32)
    return view


class LsbDiff:
    """Accumulates integer output differences over samples."""

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


def verify_outdir(outdir: str | Path, data: str | Path, limit: int | None = None, **kw) -> dict:
    """Load the output directory's report and IR, then run its backend's verification."""
    from qcompiler.driver.pipeline import backend_module

    outdir = Path(outdir)
    report_path = outdir / "report.json"
    if not report_path.is_file():
        raise QccError(f"{outdir} has no report.json: is it a qcc output directory?")
    report = json.loads(report_path.read_text())
    graph = load_graph(outdir / report["ir_file"])
    samples = load_samples(data, float_view(graph))
    result = backend_module(report["target"]).verify(outdir, report, samples, limit, **kw)
    return {"outdir": str(outdir), "target": report["target"], "data": Path(data).name, **result}
