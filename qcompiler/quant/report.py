"""Per-layer quantization report: SQNR, parameters and clipping of every int8 tensor.

The integer reference (the quantized graph in the interpreter with the integer
kernels, the oracle every backend matches bit for bit) and the float graph run
on the same samples; a hook dequantizes every int8 activation and compares it
with the float tensor of the same name. Only running sums are kept, plus two
histograms per tensor on its int8 grid (bounded: 256 bins + 2 out of range) of
which the worst layers' are kept for report.html.

`write_report_files` adds `report.md` (a table, for terminals) and `report.html`
(one self-contained page of inline SVG: `report_html.py`).
"""
from __future__ import annotations

import math
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


HISTOGRAM_LAYERS = 4  # the worst layers whose float and int8 histograms report.html draws
WEIGHTED_OPS = ("Conv", "Gemm", "ConvTranspose")


class _Acc:
    def __init__(self, v=None):
        self.signal = self.noise = 0.0
        self.clipped = self.count = 0
        self.qhist = None
        if v is not None and v.quant.dtype == np.int8:  # histograms on the tensor's int8 grid, float
            self.qmin, levels = v.quant.qmin, v.quant.qmax - v.quant.qmin + 1  # side one bin beyond each end
            self.qhist = np.zeros(levels, np.int64)
            self.fhist = np.zeros(levels + 2, np.int64)
            self.fmin, self.fmax = math.inf, -math.inf


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
        if w is None or not w.is_constant or w.quant is None or f is None or q.op not in WEIGHTED_OPS:
            continue
        fw = f.input(1)
        if fw is None or fw.data is None or fw.data.shape != w.data.shape:
            continue
        wf = fw.data.astype(np.float64)
        err = wf - w.quant.dequantize(w.data).astype(np.float64)
        out[q.name] = _sqnr_db(float(np.sum(wf * wf)), float(np.sum(err * err)))
    return out


def layer_report(float_graph: Graph, qgraph: Graph, feeds, runner: FloatRunner | None = None
                 ) -> tuple[list[dict], int, dict[str, dict]]:
    """([per-tensor entry in graph order], samples used, {tensor: histograms} of the
    HISTOGRAM_LAYERS worst). `feeds` are float input feeds; `runner` runs `float_graph`
    (one is made when not given)."""
    acts = _report_tensors(qgraph)
    accs = {v.name: _Acc(v) for v in acts}
    # inputs of Sigmoid / Tanh only (quantize.saturation_bounds): their range stops where the readers
    # saturate, so the error
    # that matters is against the float values clipped there (the clipped % still counts them)
    bounds = {v.name: v.meta["saturation_bound"] for v in acts if "saturation_bound" in v.meta}
    runner = runner or FloatRunner(float_graph)
    current: dict[str, np.ndarray] = {}

    def compare(v, q_arr):
        ref = current.get(v.meta.get("float_name", v.name))
        if ref is None or v.name not in accs:
            return
        a = accs[v.name]
        ref = ref.astype(np.float64)
        err = ref - v.quant.dequantize(q_arr).astype(np.float64)
        lo = (v.quant.qmin - int(v.quant.zero_point[0])) * float(v.quant.scale[0])
        hi = (v.quant.qmax - int(v.quant.zero_point[0])) * float(v.quant.scale[0])
        a.clipped += int(np.count_nonzero((ref < lo - 0.5 * float(v.quant.scale[0]))
                                          | (ref > hi + 0.5 * float(v.quant.scale[0]))))
        if v.name in bounds:  # both sides: a shared group's range may reach past this tensor's bound
            b = bounds[v.name]
            ref = np.clip(ref, -b, b)
            err = ref - np.clip(v.quant.dequantize(q_arr).astype(np.float64), -b, b)
        a.signal += float(np.sum(ref * ref))
        a.noise += float(np.sum(err * err))
        a.count += ref.size
        if a.qhist is not None:
            _histogram(a, v.quant, ref, q_arr)

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
    entries = _entries(qgraph, acts, accs, _weight_sqnr(qgraph, float_graph))
    worst = [e for e in worst_layers(entries, len(entries)) if accs[e["tensor"]].qhist is not None]
    return entries, n, {e["tensor"]: _histogram_entry(accs[e["tensor"]], e) for e in worst[:HISTOGRAM_LAYERS]}


def _report_tensors(qgraph: Graph) -> list:
    """The activations the report measures: int8 and int16 tensors (histograms: int8 only)."""
    return [v for v in qgraph.values() if not v.is_constant and v.quant is not None
            and v.quant.dtype in (np.int8, np.int16)]


def _histogram(a: _Acc, q, ref: np.ndarray, q_arr: np.ndarray) -> None:
    """Add one sample to the tensor's histograms: int8 codes, and the float values binned on
    the same grid (bin = nearest code; below qmin / above qmax in the two outer bins)."""
    codes = np.rint(ref.ravel() / float(q.scale[0]))
    codes += int(q.zero_point[0]) - (q.qmin - 1)
    np.clip(codes, 0, len(a.fhist) - 1, out=codes)
    a.fhist += np.bincount(codes.astype(np.intp), minlength=len(a.fhist))
    a.qhist += np.bincount(q_arr.ravel().astype(np.intp) - q.qmin, minlength=len(a.qhist))
    if ref.size:
        a.fmin, a.fmax = min(a.fmin, float(ref.min())), max(a.fmax, float(ref.max()))


def _histogram_entry(a: _Acc, e: dict) -> dict:
    """Bin k of "int8" counts code qmin + k; "float" bin 0 is below qmin, bin k + 1 code qmin + k."""
    return {"qmin": int(a.qmin), "scale": e["scale"], "zero_point": e["zero_point"],
            "int8": [int(c) for c in a.qhist], "float": [int(c) for c in a.fhist],
            "float_min": a.fmin, "float_max": a.fmax}


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
        if v.quant.dtype != np.int8:
            entry["dtype"] = v.quant.dtype.name
        out.append(entry)
    return out


def parameters_only(qgraph: Graph) -> list[dict]:
    """Entries without measurements (data-free mode: there is nothing to measure on)."""
    acts = _report_tensors(qgraph)
    return _entries(qgraph, acts, {v.name: _Acc() for v in acts}, {})


def worst_layers(layers: list[dict], k: int = 5) -> list[dict]:
    """The k measured tensors with the lowest SQNR (graph inputs excluded), worst first."""
    measured = [e for e in layers if e["sqnr_db"] is not None and e["op"] != "input"]
    return sorted(measured, key=lambda e: (e["sqnr_db"], e["tensor"]))[:k]


# ---- report.md and report.html ------------------------------------------------------


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


def outputs_line(summary: dict) -> str | None:
    """One sentence when an output's width follows the mixed-range rule (quant/wide_outputs.py)."""
    from qcompiler.quant.wide_outputs import announce
    line = announce(summary.get("outputs") or {})
    tails = (summary.get("heavy_tails") or {}).get("tensors")
    if tails:
        line = (f"{line}; " if line else "") + (
            f"{len(tails)} heavy-tailed tensor(s) compute in int16 with their readers (the 16x8 kernels are in the "
            f"model already; min-max range over {max(t['ratio'] for t in tails):.1f}x the int8 range at most)")
    return line


def activations_line(summary: dict) -> str | None:
    """One sentence on --activations int16 / auto (None for int8)."""
    a = summary.get("activations")
    if not a:
        return None
    if a.get("mode") == "int16":
        kept = a.get("int8_nodes") or {}
        return (f"int16 activations (TFLite 16x8) on {a['int16_nodes']} nodes"
                + (f"; int8 for {len(kept)} without an int16 kernel ({', '.join(sorted(kept)[:3])})" if kept else ""))
    if a.get("mode") == "recurrent":
        return (f"int8 activations; the unrolled recurrent cells (LSTM) in int16, as TFLite's LSTM scheme "
                f"({len(a['int16_nodes'])} nodes, {len(a.get('conversions', []))} QUANTIZE at their borders; "
                "--recurrent int8 for all int8)")
    names = [e["node"] for e in a.get("int16_layers", [])]
    fc = a.get("per_channel_fc_layers", [])
    target = " and ".join(t for t in (f">= {a['min_sqnr_db']:g} dB" if a.get("min_sqnr_db") is not None else "",
                                      f"arena <= {a['max_arena_bytes']:,} B" if a.get("max_arena_bytes") else "") if t)
    head = (f"auto activations: {len(names)} layer(s) int16" + (f" ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
                                                               if names else "")
            + (f", {len(fc)} FC layer(s) per-channel" if fc else "")
            + f"; SQNR {a['search_sqnr_db']:.2f} dB on {a['search']['samples']} calibration samples"
            + (f" (estimate weighing any sample up to {a['estimate']['weight_cap']:g}x; pooled {a['search_pooled_sqnr_db']:.2f})"
               if a.get("estimate") and "search_pooled_sqnr_db" in a else "")
            + (f", arena {a['search_arena_bytes']:,} B" if a.get("search_arena_bytes") else "")
            + f" (target {target}; {len(a['pareto'])} candidates, {a['search']['seconds']:.1f} s)")
    return head if a.get("reached") else head + f"; NOT REACHED: {a.get('why_not', '')}"


def _sizes(report: dict) -> str:
    ops = sum(report.get("ops", {}).values())
    parts = [f"{ops} ops from {report['nodes']['onnx']} ONNX nodes"] if "nodes" in report else []
    if "flash_bytes" in report:
        parts.append(f"flash {report['flash_bytes']:,} B")
    if "constant_bytes" in report:
        parts.append(f"constants {report['constant_bytes']:,} B")
    arena = report.get("arena") or {}
    if arena.get("arena_bytes") is not None:
        kind = "measured" if str(arena.get("arena_source", "")).startswith("measured") else "estimated"
        parts.append(f"arena {arena['arena_bytes']:,} B ({kind})")
    return ", ".join(parts)


def peak_occupancy(plan: dict) -> tuple[int, int]:
    """(largest sum of live buffer bytes, the first step where it occurs) of a memory plan."""
    live = [0] * (len(plan["ops"]) + 1)
    for b in plan["buffers"]:
        for t in range(b["first"], b["last"] + 1):
            live[t] += b["size"]
    peak = max(live, default=0)
    return peak, live.index(peak) if live else 0


def facts(report: dict) -> list[tuple[str, str]]:
    """The report's headline as (label, text) rows: the same in report.md and report.html."""
    summary, layers = report.get("calibration", {}), report.get("layers", [])
    rows = [("model", f"{report.get('source_model', report.get('name'))} for target {report.get('target')}"),
            ("options", report.get("generated_by", "")),
            ("size", _sizes(report)),
            ("calibration", f"{summary.get('method')} on {summary.get('samples', 0)} samples "
                            f"({summary.get('file') or 'no file'}); weights: {summary.get('weights')}; "
                            f"cross-layer equalization: {summary.get('cle')}")]
    worst = worst_layers(layers, 1)
    if worst:
        w = worst[0]
        rows.append(("worst layer", f"{w['sqnr_db']:.2f} dB at {w['tensor']} ({w['op']}), measured on "
                                    f"{summary.get('report_samples', 0)} samples"))
    plan = report.get("memory_plan")
    if plan and plan.get("buffers"):
        peak, step = peak_occupancy(plan)
        op = plan["ops"][step - 1] if step >= 1 else "graph inputs"
        rows.append(("memory plan", f"{plan['planned_bytes']:,} B of planned tensor memory ({plan['source']}); "
                                    f"most live bytes {peak:,} at step {step} ({op})"))
    tradeoff = fc_tradeoff(summary)
    if tradeoff:
        rows.append(("trade-off", tradeoff))
    return rows


DATA_FREE = ("DATA-FREE MODE: no calibration data was given. Activation ranges come from BatchNorm "
             "statistics (mean ± k·std propagated through the layers), not from data; no SQNR could be "
             "measured. Compile with --calib FILE for measured ranges.")


def report_markdown(report: dict) -> str:
    summary, layers = report.get("calibration", {}), report.get("layers", [])
    lines = [f"# Quantization report: {report.get('name')}", ""]
    if summary.get("data_free"):
        lines += [f"**{DATA_FREE}**", ""]
    lines += [f"- {label}: {text}" for label, text in facts(report)]
    lines += [f"- bias correction: {summary.get('bias_correction')}",
              f"- per-layer SQNR measured on {summary.get('report_samples', 0)} samples: integer "
              "reference (dequantized) vs float, per tensor; * marks the five worst",
              "- report.html (open it in a browser): these numbers as charts, float vs int8 histograms "
              "of the worst layers, the memory plan over time and the graph colored by SQNR", "",
              "| # | tensor | op | scale | zero point | SQNR dB | clipped % | weight SQNR dB |",
              "|---|---|---|---|---|---|---|---|"]
    worst = {e["tensor"] for e in worst_layers(layers)}
    for i, e in enumerate(layers):
        clipped = None if e["clipped_fraction"] is None else 100 * e["clipped_fraction"]
        mark = " *" if e["tensor"] in worst else ""
        lines.append(f"| {i} | `{e['tensor']}` | {e['op']} | {e['scale']:.6g} | {e['zero_point']} | "
                     f"{_fmt(e['sqnr_db'], '.2f')}{mark} | {_fmt(clipped, '.4f')} | "
                     f"{_fmt(e.get('weight_sqnr_db'), '.2f')} |")
    return "\n".join(lines) + "\n"


def write_report_files(outdir: Path, report: dict, graph: Graph, histograms: dict | None = None) -> list[str]:
    """Write report.md and report.html into `outdir` from the compile report (report.json's
    content with "layers"), the quantized graph and the worst layers' histograms; returns
    the file names. Both are deterministic: the same inputs give the same bytes."""
    from qcompiler.quant.report_graph import graph_view
    from qcompiler.quant.report_html import report_html
    outdir = Path(outdir)
    (outdir / "report.md").write_bytes(report_markdown(report).encode())
    (outdir / "report.html").write_bytes(report_html(report, graph_view(graph), histograms or {}).encode())
    return ["report.html", "report.md"]
