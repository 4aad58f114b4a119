"""`qcc verify`: run an emitted artifact in its real runtime and compare it with the oracle.

One loop for every backend (the Backend protocol, `qcompiler.backends.base`): the backend
loads the output directory into an `Artifact`, says which runtimes to run and how each is
compared (`Artifact.checks`), computes the oracle's outputs (`expected`: the integer
reference interpreter on the quantized IR saved next to the artifact, or ncnn's scheme
simulation) and runs the runtimes (`run`). Required checks decide the result.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qcompiler.backends import registry
from qcompiler.errors import QccError
from qcompiler.ir.serialize import load_graph
from qcompiler.numerics.compare import Fidelity
from qcompiler.quant.calibration import float_reference, iterate_samples, load_samples, source_name


def float_view(graph):
    """A copy with float inputs, so files of float samples load and check against it."""
    view = graph.copy()
    for v in view.inputs:
        v.dtype = np.dtype(np.float32)
    return view


def read_report(outdir: Path) -> dict:
    report_path = outdir / "report.json"
    if not report_path.is_file():
        raise QccError(f"{outdir} has no report.json: is it a qcc output directory?")
    return json.loads(report_path.read_text())


def verify_outdir(outdir: str | Path, data, limit: int | None = None, **verify_options) -> dict:
    """Compare the artifact in `outdir` with its oracle on the samples in `data` (a .npy/.npz
    file, an array, or a dict of arrays keyed by input name).

    `verify_options` go to the backend's `load` (e.g. with_litert=False for TFLite,
    fp16 / threads / probe for ncnn). The result has one entry per runtime (its
    comparator's summary), "fidelity" against the float model when the output directory
    keeps it, and "ok" (every required check passed on at least one sample).
    """
    outdir = Path(outdir)
    return verify_report(outdir, read_report(outdir), data, limit, **verify_options)


def verify_report(outdir: Path, report: dict, data, limit: int | None = None, **verify_options) -> dict:
    """`verify_outdir` with the report already read (`report["target"]` names the backend)."""
    backend = registry.get(report["target"])
    art = backend.load(outdir, report, **verify_options)
    view = float_view(art.graph)
    samples = load_samples(data, view)
    comparators = {c.runtime: c.comparator() for c in art.checks}
    float_graph = art.float_graph
    if float_graph is None and "float_ir_file" in report:
        float_graph = load_graph(outdir / report["float_ir_file"])
    reference = float_reference(float_graph) if float_graph is not None else None
    fidelity = {c.runtime: Fidelity() for c in art.checks} if reference is not None else {}
    coverage = InputCoverage(report.get("calibration", {}).get("input_ranges", {}))
    count = 0
    for feed in iterate_samples(samples, view, limit):  # float samples stay float
        coverage.add(feed)
        want = backend.expected(art, feed)
        ref = reference(feed) if reference is not None else None
        for check in art.checks:
            got = backend.run(art, feed, check.runtime)
            for name, expected in want.items():
                comparators[check.runtime].add(name, expected, got[name])
                if ref is not None:
                    fidelity[check.runtime].add(name, ref[name], backend.to_float(art, name, got[name]))
        count += 1
    result = {"outdir": str(outdir), "target": report["target"], "data": source_name(data), "samples": count,
              **art.info, "oracle": art.oracle, **{k: c.summary() for k, c in comparators.items()}}
    if fidelity:
        result["fidelity"] = {k: f.summary() for k, f in fidelity.items()}
    result["inputs"] = coverage.summary()
    result["warnings"] = coverage.warnings()
    result["ok"] = count > 0 and all(comparators[c.runtime].ok for c in art.checks if c.required)
    return result


class InputCoverage:
    """How the verification data sits in the calibrated input ranges: a file in the wrong
    scale (raw 0..255 pixels for a model calibrated on 0..1) passes the bit-exactness check,
    so it is measured and warned about."""

    CLIPPED = 0.01  # warn when more than 1 % of an input's values fall outside its calibrated range
    NARROW = 0.1    # ... or when the data spans less than a tenth of the calibrated range

    def __init__(self, ranges: dict):
        self.ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in ranges.items()}
        self.outside = dict.fromkeys(self.ranges, 0)
        self.total = dict.fromkeys(self.ranges, 0)
        self.lo = dict.fromkeys(self.ranges, np.inf)
        self.hi = dict.fromkeys(self.ranges, -np.inf)

    def add(self, feed: dict) -> None:
        for name, (lo, hi) in self.ranges.items():
            if name not in feed:
                continue
            x = np.asarray(feed[name], np.float64)
            self.outside[name] += int(np.count_nonzero((x < lo) | (x > hi)))
            self.total[name] += x.size
            self.lo[name] = min(self.lo[name], float(x.min(initial=np.inf)))
            self.hi[name] = max(self.hi[name], float(x.max(initial=-np.inf)))

    def summary(self) -> dict:
        return {name: {"calibrated_range": list(self.ranges[name]), "data_range": [self.lo[name], self.hi[name]],
                       "clipped_fraction": self.outside[name] / self.total[name]}
                for name in self.ranges if self.total[name]}

    def warnings(self) -> list[str]:
        out = []
        for name, s in self.summary().items():
            (lo, hi), (dlo, dhi) = s["calibrated_range"], s["data_range"]
            if s["clipped_fraction"] > self.CLIPPED:
                out.append(f"input {name!r}: {s['clipped_fraction']:.1%} of the verification values lie outside "
                           f"the calibrated range [{lo:.4g}, {hi:.4g}] (data [{dlo:.4g}, {dhi:.4g}]): is the "
                           "data in the scale the model was calibrated with?")
            elif hi > lo and (dhi - dlo) < self.NARROW * (hi - lo):
                out.append(f"input {name!r}: the verification data spans [{dlo:.4g}, {dhi:.4g}], under a tenth of "
                           f"the calibrated range [{lo:.4g}, {hi:.4g}]: is it in the same scale?")
        return out
