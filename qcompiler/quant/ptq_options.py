"""The settings `run_ptq` follows, resolved from the compile options: weight granularity,
CLE, bias correction, activation widths (--activations, --recurrent, --int8-outputs) and
weight rounding (--weight-rounding, and which layers round bounded)."""
from __future__ import annotations

from qcompiler.errors import CalibrationError
from qcompiler.ir import Graph
from qcompiler.quant.fc_weights import FC_PER_CHANNEL_GAIN_DB
from qcompiler.quant.precision import recurrent_head, recurrent_nodes
from qcompiler.quant.scheme import QuantScheme

BIAS_CORRECTION_MODES = ("off", "empirical", "analytic")


def weights_summary(options, scheme: QuantScheme) -> str:
    """report.json's calibration "weights": the weight granularity this compilation used."""
    if options.per_tensor:
        return "per-tensor"
    if options.per_channel_fc is True:
        return "per-channel"
    if options.per_channel_fc is False:
        return "per-channel (conv), per-tensor (fc)"
    budget = (f" (while their per-channel parameters, kept in the runtime's RAM, fit in "
              f"{100 * scheme.per_channel_param_share:g}% of the activation memory)"
              if scheme.per_channel_param_bytes and scheme.per_channel_param_share is not None else "")
    return f"per-channel (conv), fc per-channel where it gains >= {FC_PER_CHANNEL_GAIN_DB:g} dB weight SQNR{budget}"


def resolved_cle(options) -> bool:
    """--cle / --no-cle (default off: with bias correction on, CLE did not pay on the MLPerf models)."""
    return bool(options.cle)


def resolved_bias_correction(options) -> str:
    """--bias-correction, or by default: empirical with calibration data, else analytic."""
    mode = options.bias_correction
    if mode == "auto":
        return "empirical" if options.calib is not None else "analytic"
    if mode not in BIAS_CORRECTION_MODES:
        raise CalibrationError(f"--bias-correction {mode!r}: choose one of auto, {', '.join(BIAS_CORRECTION_MODES)}")
    if mode == "empirical" and options.calib is None:
        raise CalibrationError("--bias-correction empirical needs calibration data (--calib FILE); "
                               "use --bias-correction analytic in data-free mode")
    return mode


def _check_options(options) -> None:
    from qcompiler.quant.calibration import METHODS
    if options.calib_method not in METHODS:
        raise CalibrationError(f"calibration method {options.calib_method!r} is not available "
                               f"(choose {', '.join(METHODS)})")
    if not 50.0 < float(options.percentile) <= 100.0:
        raise CalibrationError(f"--percentile {options.percentile}: give a value in (50, 100], e.g. 99.99")
    mode = activations_mode(options)
    given = [flag for flag, value in (("--min-sqnr", getattr(options, "min_sqnr", None)),
                                      ("--max-arena", getattr(options, "max_arena", None)),
                                      ("--int16-nodes", getattr(options, "int16_nodes", ()) or None))
             if value is not None]
    if given and mode != "auto":
        raise CalibrationError(f"{', '.join(given)} choose(s) layer widths: use it with --activations auto")
    if getattr(options, "split_weights", "off") != "off" and (mode != "int16" or options.per_tensor):
        raise CalibrationError("--split-weights needs --activations int16 and per-channel weights (no --per-tensor): "
                               "the low half's outputs are far below an int8 activation step")
    if mode == "auto" and not given:
        raise CalibrationError("--activations auto needs a target: --min-sqnr DB and/or --max-arena BYTES "
                               "(or the layers: --int16-nodes)")


def recurrent_int16(graph: Graph, options, wide_scheme: QuantScheme | None) -> frozenset:
    """--recurrent (auto / int16 / int8) with --activations int8: the nodes of unrolled recurrent
    cells that compute in int16 (qcompiler/quant/precision.py `recurrent_nodes`); none without an
    int16 scheme (the driver refuses --recurrent int16 there) or with int16 / auto activations
    (all int16, or the search decides). With them, the cell's head (`precision.recurrent_head`:
    the layers reading only its hidden states up to the graph outputs) computes in int16 too,
    unless --int8-outputs."""
    if activations_mode(options) != "int8" or wide_scheme is None or getattr(options, "recurrent", "auto") == "int8":
        return frozenset()
    cell = recurrent_nodes(graph)
    return cell | recurrent_head(graph, cell) if _wide_outputs_on(options) else cell


def _wide_outputs_on(options) -> bool:
    """The mixed-range output rule (quant/wide_outputs.py) applies unless --int8-outputs."""
    return not getattr(options, "int8_outputs", False)


def activations_mode(options) -> str:
    """--activations: int8 (default), int16 or auto."""
    return getattr(options, "activations", "int8")


# calibration samples whose layer inputs make GPTQ's H = X^T X
GPTQ_SAMPLES = 32


WEIGHT_ROUNDING_MODES = ("nearest", "gptq", "bounded")


def weight_rounding(options) -> str:
    """--weight-rounding: "nearest", "gptq" or "bounded" (GPTQ choosing only between each
    weight's two neighbours on the grid: qcompiler/quant/gptq.py); "auto" is gptq with int16
    activations (then the weights are the main error left; bounded where H is rank-poor) and,
    with int8, bounded for the layers with per-tensor weights (`bounded_scope`), nearest for
    the others."""
    mode = getattr(options, "weight_rounding", "auto")
    if mode == "auto":
        if getattr(options, "calib", None) is None:
            return "nearest"
        return "bounded" if activations_mode(options) == "int8" else "gptq"
    if mode not in WEIGHT_ROUNDING_MODES:
        raise CalibrationError(f"--weight-rounding {mode!r}: choose one of auto, {', '.join(WEIGHT_ROUNDING_MODES)}")
    return mode


def bounded_scope(graph: Graph, options, scheme: QuantScheme) -> set[str]:
    """The layers `--weight-rounding auto` rounds bounded (qcompiler/quant/gptq.py): in an int8
    model all of them, with int16 / auto activations those GPTQ leaves out for a rank-poor H
    (else rounded to nearest). They are the layers with per-tensor weights whose rows differ so much in range that per-channel
    scales would raise the weight SQNR by >= FC_PER_CHANNEL_GAIN_DB (the FC layers the arena
    budget keeps per tensor; with --per-tensor, such convs too). There a row of small weights
    spans a few grid steps and the choice of neighbour matters: MLPerf AD (rows using a median
    of 11-71 of the 127 steps) 33.65 -> 37.83 dB. The other layers keep nearest: bounded on every
    layer measured -0.86 dB on digits_dwsep, -0.06 dB on VWW (its FC head's rows span 124-126
    steps), on KWS's rank-poor FC head in int16 -0.11 dB.

    With `--activations int16` the weights are the main error left, and the scope is every
    Conv / Gemm: GPTQ still rounds the layers with a full-rank H, those with a rank-poor H get
    bounded instead of nearest rounding (each row checked against nearest on held-out samples).
    int16 evaluation SQNR, nearest -> bounded for the rank-poor layers (dB): AD (all ten FC
    layers, batch 1) 40.94 -> 47.49, IC 32.20 -> 35.46, digits_cnn 49.85 -> 51.62,
    digits_resnet 47.93 -> 49.06, digits_dwsep 49.00 -> 49.22; KWS 39.90 -> 39.81, its
    SavedModel twin 41.38 -> 41.03, VWW 46.44 -> 46.40 (bounded on every layer instead: AD
    47.54, IC 35.31, KWS 40.23, VWW 46.04)."""
    from qcompiler.quant.fc_weights import weight_sqnr_db
    if activations_mode(options) == "int16":
        return {n.name for n in graph.nodes if n.op in ("Conv", "Gemm")}
    fc = set() if options.per_tensor else _auto_fc(graph, options, scheme)
    out = set()
    for n in graph.nodes:
        w = n.input(1) if n.op in ("Conv", "Gemm") else None
        if w is None or not w.is_constant or w.data.ndim < 2 or n.name in fc or (n.op == "Conv" and not options.per_tensor):
            continue
        if weight_sqnr_db(w.data, 0) - weight_sqnr_db(w.data, None) >= FC_PER_CHANNEL_GAIN_DB:
            out.add(n.name)
    return out


def _auto_fc(graph: Graph, options, scheme: QuantScheme) -> set[str]:
    from qcompiler.quant.fc_weights import per_channel_fc_layers
    return set() if options.per_tensor else per_channel_fc_layers(graph, options.per_channel_fc, scheme)
