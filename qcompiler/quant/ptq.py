"""Post-training quantization flow behind `pipeline.quantize()`.

    equalize (CLE)  ->  ranges: calibrate | data-free  ->  quantize_graph
        ->  bias correction  ->  per-layer report

Each step is a function elsewhere (passes/equalize.py, calibration.py,
moments.py, qcompiler/quant/quantize.py, qcompiler/quant/bias_correction.py, quant_report.py);
this module picks the settings and records what was done in the summary that
goes into report.json.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from qcompiler.util.blas import one_blas_thread
from qcompiler.quant.calibration import (LARGEST_ACTIVATION, FloatRunner, source_name, choose_ranges, collect_statistics, iterate_samples, load_samples,
                          minmax_tensors, sample_count, samples_within, spread_indices)
from qcompiler.errors import CalibrationError
from qcompiler.ir import Graph
from qcompiler.quant.moments import DATA_FREE_SIGMAS, Moments, data_free_estimate, propagate
from qcompiler.quant.precision import INT8, INT16, Precision, clamp_keeps_int8, precision_summary
from qcompiler.quant.scheme import TFLITE_INT8, QuantScheme
from qcompiler.quant.arena_estimate import activation_bytes
from qcompiler.quant.ptq_options import (GPTQ_SAMPLES, _auto_fc, _check_options, _wide_outputs_on, activations_mode,
                                         bounded_scope, recurrent_int16, resolved_bias_correction,
                                         resolved_cle, weight_rounding, weights_summary)
from qcompiler.quant.wide_tails import ARENA_SLACK, TAIL_RATIO, fit_arena, heavy_tail_nodes, region_of
from qcompiler.quant.report import layer_report, parameters_only, report_samples, worst_layers




# Empirical bias correction simulates the quantized network on a fixed budget of activation
# values (its cost): VWW gets 32 samples, smaller models more (digits: all 200; with 32 digits_dwsep
# lost 1.5 dB to the noisier mean estimate), never fewer than BIAS_CORRECTION_MIN_SAMPLES.
BIAS_CORRECTION_ELEMENTS = 7_500_000
BIAS_CORRECTION_MIN_SAMPLES = 32


def bias_correction_samples(graph: Graph) -> int:
    return samples_within(graph, BIAS_CORRECTION_ELEMENTS, BIAS_CORRECTION_MIN_SAMPLES)


DATA_FREE_WARNING = ("qcc: warning: DATA-FREE quantization (no --calib): activation ranges are estimated "
                     "from BatchNorm statistics, not measured on data; expect lower accuracy than with "
                     "calibration samples")


def _input_range_override(graph: Graph, options) -> dict[str, tuple[float, float]]:
    if options.input_range is None:
        return {}
    lo, hi = (float(x) for x in options.input_range)
    if not lo < hi:
        raise CalibrationError(f"--input-range {lo},{hi}: the low end must be below the high end")
    return {v.name: (lo, hi) for v in graph.inputs}


def _calibrated(graph: Graph, calib_path: str, options, summary: dict, runner: FloatRunner, bc: str,
                act_eq: bool, scheme: QuantScheme, wide_scheme: QuantScheme | None = None):
    """Ranges from data (and, with `wide_scheme`, the int16 tensors' ranges by its rules), plus what
    later steps need: the samples, input moments and what the same float pass collected for them
    (`_taps`: {"input_sums": ..., "extremes": ...}, both optional)."""
    samples = load_samples(calib_path, graph, options.max_memory_mb << 20)
    total = sample_count(samples, graph, options.max_calib_samples)
    taps = _taps(graph, total, bc, act_eq)
    sums, extremes = taps.get("input_sums"), taps.get("extremes")
    # tensors activation equalization will rescale get their range from the scaled per-channel
    # extremes later (min-max until then): they need no histogram either
    equalized = extremes.names if extremes else set()
    obs, count, engine = collect_statistics(graph, iterate_samples(samples, graph, options.max_calib_samples),
                                            total, runner, tap=sums.add if sums is not None else None,
                                            watches=[extremes] if extremes else [],
                                            range_only=minmax_tensors(graph, options.calib_method, equalized,
                                                                       scheme.minmax_roles))
    ranges = choose_ranges(graph, obs, options.calib_method, options.percentile, also=equalized,
                           minmax_roles=scheme.minmax_roles)
    ranges.update(_input_range_override(graph, options))
    wide = ranges
    if wide_scheme is not None:
        wide = choose_ranges(graph, obs, options.calib_method, options.percentile, also=equalized,
                             minmax_roles=wide_scheme.minmax_roles)
        wide.update(_input_range_override(graph, options))
    moments = {}
    for v in graph.inputs:
        o, c = obs[v.name], int(v.shape[1]) if len(v.shape) >= 2 else 1
        moments[v.name] = Moments(np.full(c, o.mean), np.full(c, o.std ** 2), support=(o.min, o.max),
                                  source="input")
    summary.update({"file": source_name(calib_path), "samples": count, "engine": engine})
    return ranges, wide, samples, total, moments, taps


def with_headroom(ranges: dict[str, tuple[float, float]], factor: float) -> dict[str, tuple[float, float]]:
    """`ranges` widened about zero by `factor` (QuantScheme.range_headroom)."""
    if factor == 1.0:
        return ranges
    return {name: (lo * factor, hi * factor) for name, (lo, hi) in ranges.items()}


def _data_free(graph: Graph, options, summary: dict):
    inputs = _input_range_override(graph, options)
    if not inputs:
        raise CalibrationError("no calibration data: pass --calib FILE (.npy with samples on axis 0, or .npz "
                               "keyed by input name), or, for data-free quantization from BatchNorm "
                               "statistics, the input value range with --input-range LO,HI")
    ranges, sources = data_free_estimate(graph, inputs)
    for name, (lo, hi) in ranges.items():
        if not (np.isfinite(lo) and np.isfinite(hi)) or max(abs(lo), abs(hi)) >= LARGEST_ACTIVATION:
            raise CalibrationError(f"activation {name}: the data-free estimate of its range is [{lo:.3g}, {hi:.3g}], "
                                   "beyond what int8 quantization can represent; check the model's weights and "
                                   "BatchNorm statistics for extreme values")
    print(DATA_FREE_WARNING, file=sys.stderr)
    summary.update({"file": None, "samples": 0, "data_free": True, "sigmas": DATA_FREE_SIGMAS,
                    "statistics_from": sources,
                    "warning": "DATA-FREE: ranges from BatchNorm statistics, nothing was measured"})
    return ranges


def _taps(graph: Graph, total: int, bc: str, act_eq: bool) -> dict:
    """What calibration's float pass also collects: bias correction's float side, and the
    per-channel extremes activation equalization needs."""
    from qcompiler.quant.act_eq import ChannelExtremes, equalizable_pairs
    from qcompiler.quant.bias_correction import LayerInputSums
    taps: dict = {}
    if bc == "empirical":
        taps["input_sums"] = LayerInputSums(graph, _bias_correction_indices(graph, total))
    pairs = equalizable_pairs(graph) if act_eq else []
    if pairs:
        taps["extremes"] = ChannelExtremes(a.outputs[0].name for a, _ in pairs)
    return taps


def _equalize_activations(graph: Graph, extremes, ranges: dict, input_sums, wide_ranges: dict) -> dict:
    """Rescale the equalizable pairs in place and keep ranges and bias-correction sums in step;
    returns {tensor: channel gains}."""
    from qcompiler.quant.act_eq import equalize_activations
    done = equalize_activations(graph, extremes)
    values = {v.name: v for v in graph.values()}
    for name, (gain, rng) in done.items():
        ranges[name] = wide_ranges[name] = rng
        if input_sums is not None:
            input_sums.scale_input(values[name].consumers[0].name, gain)
    return {name: gain for name, (gain, _) in done.items()}


class _ScaledRunner:
    """The float session of the graph before activation equalization, with the equalized
    tensors multiplied by their channel gains: the activations of the equalized graph (up to
    float rounding), without building a second session."""

    def __init__(self, runner: FloatRunner, gains: dict[str, np.ndarray]):
        self.runner, self.gains = runner, gains
        self.engine, self.names = runner.engine, runner.names

    def run(self, feed: dict) -> dict:
        acts = self.runner.run(feed)
        for name, gain in self.gains.items():
            x = acts[name]
            acts[name] = x * gain.reshape((1, -1) + (1,) * (x.ndim - 2)).astype(x.dtype)
        return acts


def _bias_correction_indices(graph: Graph, total: int) -> list[int]:
    return spread_indices(total, bias_correction_samples(graph))


def _correct_biases(graph: Graph, qgraph: Graph, mode: str, samples, total: int, moments,
                    runner: FloatRunner | None, input_sums=None) -> dict:
    from qcompiler.quant.bias_correction import analytic_bias_correction, empirical_bias_correction
    if mode == "empirical":
        feeds = list(iterate_samples(samples, graph, indices=_bias_correction_indices(graph, total)))
        return {**empirical_bias_correction(graph, qgraph, feeds, runner, input_sums), "samples": len(feeds)}
    _, post = propagate(graph, {}, moments)
    return analytic_bias_correction(graph, qgraph, post)


@one_blas_thread()
def run_ptq(graph: Graph, calib_path: str | None, options, scheme: QuantScheme = TFLITE_INT8,
            defer_report: bool = False, wide_scheme: QuantScheme | None = None,
            cost=None, output_scheme: QuantScheme | None = None,
            activation_arena=None) -> tuple[Graph | None, dict, dict]:
    """Quantize `graph` per `options`: (integer graph, summary for report.json, ranges).

    `wide_scheme`: the int16 scheme, for --activations int16 / auto; `cost(qgraph, exact) -> int
    | None`, the backend's arena bytes of a candidate for the auto search (Backend.cost);
    `output_scheme`: the target's int16 scheme (None: it has none), for int8 models whose graph
    outputs join values of very different ranges (qcompiler/quant/wide_outputs.py);
    `activation_arena(qgraph) -> int | None`, the target's planned activation bytes of a
    candidate (Backend.activation_arena), for the heavy-tails rule (quant/wide_tails.py).

    With CLE on, `graph` is equalized in place (its float function is unchanged),
    so the float graph, the ranges and the int8 graph describe the same tensors.
    Schemes without an integer IR (`scheme.integer_ir` False: the backend quantizes, e.g. ncnn)
    get only the ranges: no integer graph, bias correction or per-layer report (returns None).
    With defer_report, the per-layer report is computed in the background: call
    `finish_report(summary)` (or `cancel_report`) before reading summary["layers"].
    """
    from qcompiler.passes.equalize import equalize
    from qcompiler.quant.fc_weights import kept_per_tensor_for_arena, ram_budget
    from qcompiler.quant.quantize import check_finite, check_quantizable, quantize_graph
    check_finite(graph)  # fail on bad weights and unsupported ops before the (slow) calibration
    if scheme.integer_ir:
        check_quantizable(graph)
    _check_options(options)
    mode = activations_mode(options)
    if mode != "int8" and wide_scheme is None:
        raise CalibrationError(f"--activations {mode} needs an int16 scheme, which this target does not have")
    cle, bc = resolved_cle(options), resolved_bias_correction(options)
    recurrent = recurrent_int16(graph, options, wide_scheme)
    summary: dict = {"method": options.calib_method,
                     "weights": weights_summary(options, wide_scheme if mode == "int16" else scheme),
                     "cle": equalize(graph) if cle else "off", "bias_correction": bc}
    if options.calib_method == "percentile":
        summary["percentile"] = options.percentile
    samples, total, moments, runner, input_sums = None, 0, {}, None, None
    if calib_path is not None:
        runner = FloatRunner(graph)  # one float session for calibration, bias correction and the report
        act_eq = scheme.activation_equalization and options.act_eq and not options.per_tensor
        wide_for = (wide_scheme if mode != "int8" or recurrent
                    else output_scheme if _wide_outputs_on(options) else None)
        ranges, wide_ranges, samples, total, moments, taps = _calibrated(
            graph, calib_path, options, summary, runner, bc, act_eq, scheme, wide_for)
        input_sums = taps.get("input_sums")
        if "extremes" in taps:
            gains = _equalize_activations(graph, taps["extremes"], ranges, input_sums, wide_ranges)
            summary["activation_equalization"] = {
                "tensors": len(gains), "max_gain": float(max((g.max() for g in gains.values()), default=1.0))}
            if gains:  # the float graph changed (not its function): its activations are the old ones, scaled
                runner = _ScaledRunner(runner, gains)
        if mode != "int8":
            wide_ranges = with_headroom(wide_ranges, wide_scheme.range_headroom)
            summary["int16_range_headroom"] = wide_scheme.range_headroom
    else:
        ranges = wide_ranges = _data_free(graph, options, summary)
        moments = {v.name: _uniform(v, r) for v in graph.inputs for r in [ranges[v.name]]}
    summary["input_ranges"] = {v.name: list(ranges[v.name]) for v in graph.inputs}
    if not scheme.integer_ir:
        summary["bias_correction"] = "not applicable (the target quantizes with its own scheme)"
        return None, summary, ranges
    precision, fc_scheme, per_channel_fc, search, searched = INT8, scheme, options.per_channel_fc, None, None
    hessians, fitted = None, []
    rounding = weight_rounding(options)
    if rounding != "nearest":
        if samples is None:
            raise CalibrationError(f"--weight-rounding {rounding} needs calibration data (--calib)")
        from qcompiler.quant.gptq import hessians as layer_hessians
        auto = getattr(options, "weight_rounding", "auto") == "auto"
        scope = bounded_scope(graph, options, wide_scheme if mode == "int16" else scheme) if auto else None
        only = scope if rounding == "bounded" else None   # int8 auto: only the scope needs H
        if only is None or only:
            fitted = spread_indices(total, GPTQ_SAMPLES)
            feeds = list(iterate_samples(samples, graph, indices=fitted))
            rest = [i for i in range(total) if i not in set(fitted)]
            held = [rest[i] for i in spread_indices(len(rest), GPTQ_SAMPLES)] if rest else []
            hessians = layer_hessians(graph, feeds, runner, bounded=rounding == "bounded", only=only,
                                      rescue=scope or set(),
                                      held_out=list(iterate_samples(samples, graph, indices=held)))
            summary["weight_rounding"] = {"method": rounding, "layers": len(hessians), "samples": len(feeds),
                                          **({"scope": "layers with per-tensor weights"} if only is not None else {}),
                                          **({"bounded_layers": sorted(hessians.bounded)}
                                             if rounding == "gptq" and hessians.bounded else {})}
    if mode == "int16":
        precision, fc_scheme = INT16, wide_scheme
    elif recurrent:
        precision = Precision(wide=recurrent)
    elif mode == "auto" and getattr(options, "int16_nodes", ()):
        names = {n.name for n in graph.nodes}
        unknown = [n for n in options.int16_nodes if n not in names]
        if unknown:
            raise CalibrationError(f"--int16-nodes: no node named {', '.join(unknown[:3])} in the graph "
                                   "(`qcc MODEL --dump-after PASS` shows the IR names)")
        precision = Precision(wide=frozenset(options.int16_nodes))
    elif mode == "auto":
        if samples is None:
            raise CalibrationError("--activations auto measures candidates on calibration data: pass --calib")
        config, search, searched = _search_precision(graph, ranges, wide_ranges, options, scheme, bc, samples,
                                                     total, moments, runner, input_sums, cost, hessians, fitted)
        precision = config.precision
        per_channel_fc = _auto_fc(graph, options, scheme) | config.fc
    mixed, kept_int8 = [], None
    if mode == "int8" and _wide_outputs_on(options):
        from qcompiler.quant.wide_outputs import wide_output_nodes
        wide_nodes, mixed = wide_output_nodes(graph, ranges)
        if mixed and output_scheme is None:
            kept_int8 = "the target has no int16 activation scheme"
        elif wide_nodes:  # with the recurrent cells' int16 nodes, if any
            precision = Precision(wide=frozenset(wide_nodes) | recurrent, inputs8=True)
    tails = []
    if mode == "int8" and precision.wide and samples is not None:
        def arena_of(wide: frozenset) -> int:
            q = quantize_graph(graph, ranges, per_channel_fc=per_channel_fc, per_tensor=options.per_tensor,
                               scheme=fc_scheme, precision=replace(precision, wide=wide), wide_ranges=wide_ranges)
            size = activation_arena(q) if activation_arena is not None else None
            return size if size is not None else activation_bytes(q)
        tails = fit_arena(precision.wide, heavy_tail_nodes(graph, ranges, wide_ranges, precision,
                                                           keep8=lambda n: clamp_keeps_int8(scheme, n)), arena_of)
        precision = replace(precision, wide=precision.wide | region_of(tails))
    if searched is not None:   # built as below, bias correction included
        qgraph = searched
    else:
        qgraph = quantize_graph(graph, ranges, per_channel_fc=per_channel_fc, per_tensor=options.per_tensor,
                                scheme=fc_scheme, precision=precision, wide_ranges=wide_ranges, hessians=hessians)
    if mixed:
        from qcompiler.quant import wide_outputs
        summary["outputs"] = wide_outputs.summary(qgraph, mixed, kept_int8)
        if kept_int8 is None:
            summary["outputs"]["conversions"] = precision_summary(graph, qgraph, precision)["conversions"]
    if tails:
        summary["heavy_tails"] = {
            "rule": f"int8 model with int16 layers: a tensor whose min-max span is >= {TAIL_RATIO:g}x its int8 "
                    "span computes in int16 with its producer and readers, while the target's planned "
                    f"activation arena grows by at most {ARENA_SLACK:.0%}",
            "tensors": tails}
    if mode != "int8" or recurrent:
        summary["activations"] = precision_summary(graph, qgraph, precision)
        if recurrent:
            summary["activations"]["mode"] = "recurrent"
        if search is not None:
            summary["activations"].update(mode="auto", **search)
    summary["fc_arena_budget_bytes"] = ram_budget(graph, fc_scheme)
    if options.per_channel_fc == "auto" and not options.per_tensor:
        given_up = kept_per_tensor_for_arena(graph, fc_scheme)
        if given_up and search is not None:  # the search weighed them: only those it left per tensor
            chosen = {e["node"] for e in search["per_channel_fc_layers"]}
            given_up = None if set(given_up["layers"]) <= chosen else given_up
        if given_up:
            summary["fc_kept_per_tensor_for_arena"] = given_up
    summary["fc_per_channel"] = [n.name for n in qgraph.nodes
                                 if n.op == "Gemm" and n.input(1) is not None and n.input(1).quant is not None
                                 and n.input(1).quant.axis is not None]
    if bc != "off":
        summary["bias_correction"] = qgraph.meta.pop("bias_correction", None) if searched is not None else \
            _correct_biases(graph, qgraph, bc, samples, total, moments, runner, input_sums)
    _add_layer_report(graph, qgraph, samples, total, summary, runner, defer=defer_report)
    return qgraph, summary, ranges


def _search_precision(graph: Graph, ranges: dict, wide_ranges: dict, options, scheme: QuantScheme, bc: str,
                      samples, total: int, moments, runner, input_sums, cost, hessians=None, fitted=()):
    """--activations auto: (mixed.Config, report entry, its integer graph); qcompiler/quant/mixed.py."""
    from qcompiler.quant import mixed
    from qcompiler.quant.fc_weights import kept_per_tensor_for_arena
    from qcompiler.quant.quantize import quantize_graph
    auto_fc = _auto_fc(graph, options, scheme)
    fc_candidates = []
    if options.per_channel_fc == "auto" and not options.per_tensor:
        fc_candidates = (kept_per_tensor_for_arena(graph, scheme) or {}).get("layers", [])

    def build(config, corrected: bool) -> Graph:
        q = quantize_graph(graph, ranges, per_channel_fc=auto_fc | config.fc, per_tensor=options.per_tensor,
                           scheme=scheme, precision=config.precision, wide_ranges=wide_ranges, hessians=hessians)
        if corrected and bc != "off":
            q.meta["bias_correction"] = _correct_biases(graph, q, bc, samples, total, moments, runner, input_sums)
        return q

    # measured on samples GPTQ did not fit the weights to (on those, VWW's int8 model read 44 dB
    # against 36.8 on the evaluation set)
    count = samples_within(graph, mixed.SEARCH_VALUES, mixed.SEARCH_MIN_SAMPLES, mixed.SEARCH_MAX_SAMPLES)
    free = [i for i in range(total) if i not in set(fitted)] or list(range(total))
    feeds = list(iterate_samples(samples, graph, indices=[free[i] for i in spread_indices(len(free), count)]))
    names = [v.name for v in graph.outputs]
    refs = [{k: runner.run(f)[k] for k in names} for f in feeds]
    knobs = mixed.knobs(graph, lambda n: clamp_keeps_int8(scheme, n), fc_candidates)
    def arena(q: Graph, exact: bool) -> int:
        size = cost(q, exact) if cost is not None else None
        return size if size is not None else mixed.activation_bytes(q)

    return mixed.search(knobs, build, mixed.Scorer(refs, feeds), arena, mixed.activation_bytes,
                        options.min_sqnr, options.max_arena)


class _Replay:
    """A float runner that hands back activations computed earlier, in order."""

    def __init__(self, acts: list[dict]):
        self.acts = iter(acts)

    def run(self, feed: dict) -> dict:
        return next(self.acts)


def _add_layer_report(graph: Graph, qgraph: Graph, samples, total: int, summary: dict,
                      runner: FloatRunner | None, defer: bool = False) -> None:
    """summary["layers"]: per-tensor report (measured when there are samples); "worst_layers": 5 lowest;
    "histograms": float and int8 histograms of the worst layers (for report.html).

    defer: the integer side runs in a forked child (`finish_report` collects it), so that it
    overlaps with the backend's work; the float activations are computed here first.
    """
    if samples is None:
        _set_report(summary, parameters_only(qgraph), 0)
        return
    feeds = list(iterate_samples(samples, graph, indices=spread_indices(total, report_samples(graph))))
    acts = [runner.run(f) for f in feeds]

    def job():
        return layer_report(graph, qgraph, feeds, _Replay(acts))
    if defer:
        from qcompiler.util.forked import Forked
        summary["_pending_report"] = Forked(job)
    else:
        _set_report(summary, *job())


@one_blas_thread()
def finish_report(summary: dict) -> None:
    """Wait for a deferred per-layer report and put it into `summary`."""
    pending = summary.pop("_pending_report", None)
    if pending is not None:
        _set_report(summary, *pending.result())


def cancel_report(summary: dict) -> None:
    pending = summary.pop("_pending_report", None)
    if pending is not None:
        pending.cancel()


def _set_report(summary: dict, layers: list, samples: int, histograms: dict | None = None) -> None:
    summary["layers"], summary["report_samples"] = layers, samples
    summary["histograms"] = histograms or {}
    summary["worst_layers"] = [{"tensor": e["tensor"], "op": e["op"], "sqnr_db": e["sqnr_db"]}
                               for e in worst_layers(layers)]


def _uniform(v, r) -> Moments:
    c = int(v.shape[1]) if len(v.shape) >= 2 else 1
    lo, hi = r
    return Moments(np.full(c, (lo + hi) / 2), np.full(c, (hi - lo) ** 2 / 12), support=(lo, hi), source="input")
