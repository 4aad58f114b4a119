"""The `qcc` command line.

    qcc MODEL.onnx --target tflm -o OUTDIR --calib FILE   compile
    qcc inspect MODEL.onnx                                ops, shapes, parameters
    qcc verify OUTDIR --data FILE                         runtime vs integer reference
    qcc passes                                            list registered passes

User mistakes end with one line on stderr and a non-zero exit code (the
QccError subclass decides which); only internal bugs print a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from collections import Counter

import numpy as np

from qcompiler.errors import QccError

SUBCOMMANDS = ("inspect", "verify", "passes")


def _target_option_flags() -> dict[str, tuple[str, object, list[str]]]:
    """{flag: (field name, dataclass field, targets having it)} over every loadable backend."""
    from dataclasses import fields

    from qcompiler.backends import registry
    flags: dict[str, tuple[str, object, list[str]]] = {}
    for target in registry.names():
        try:
            backend = registry.get(target)
        except QccError:  # its module cannot load here: it has no options to offer
            continue
        for f in fields(backend.options_class):
            flag = f.metadata["flag"]
            flags.setdefault(flag, (f.name, f, []))[2].append(target)
    return flags


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and the exit code of other user mistakes."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} -h)")


class UsageError(QccError):
    exit_code = 2


class _Help(argparse.HelpFormatter):
    """Shows an option's default where it has a meaningful one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return _Parser(prog=prog, description=description, formatter_class=_Help)


def _compile_parser() -> argparse.ArgumentParser:
    from qcompiler.driver.pipeline import targets
    p = _parser("qcc", "Compile a float ONNX model to a verified integer-only model. Other commands: "
                f"{', '.join(SUBCOMMANDS)} (qcc COMMAND -h).")
    p.add_argument("model", help="float ONNX model")
    p.add_argument("--version", action="version", version=f"qcc {_version()}")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("-v", "--verbose", action="store_true", help="print every file, every op, the five weakest "
                   "layers and what each pass changed")

    g = p.add_argument_group("input")
    g.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix dynamic input dims (batch defaults to 1); repeatable")
    g.add_argument("--outputs", help="comma-separated tensor names to keep as graph outputs; the rest is pruned")

    g = p.add_argument_group("calibration")
    g.add_argument("--calib", help=".npy (one input, samples on axis 0) or .npz keyed by input name")
    g.add_argument("--calib-method", default="percentile", choices=["minmax", "percentile", "kl", "mse"],
                   help="range rule for hidden activations (graph inputs and logits always use min-max)")
    g.add_argument("--percentile", type=float, default=99.99, help="with --calib-method percentile")
    g.add_argument("--max-calib-samples", type=int, help="use at most this many calibration samples")
    g.add_argument("--max-memory", type=int, default=4096, metavar="MB",
                   help="largest array a calibration file or a graph input may make qcc allocate")
    g.add_argument("--input-range", metavar="LO,HI",
                   help="value range of every float input; required without --calib (data-free mode)")

    g = p.add_argument_group("quantization")
    g.add_argument("--per-tensor", action="store_true", help="per-tensor weights for every Conv/Gemm")
    fc = g.add_mutually_exclusive_group()
    fc.add_argument("--per-tensor-fc", action="store_true",
                    help="per-tensor fully connected weights everywhere (the TFLite spec's form; least RAM)")
    fc.add_argument("--per-channel-fc", action="store_true",
                    help="per-channel fully connected weights everywhere; default: per channel only for layers "
                         "where it gains >= 3 dB weight SQNR (and, where the runtime keeps per-channel "
                         "multipliers in RAM, while they fit in 5%% of the activation memory)")
    g.add_argument("--cle", action=argparse.BooleanOptionalAction, default=False,
                   help="cross-layer equalization (+ high-bias absorption from BN statistics)")
    g.add_argument("--act-eq", action=argparse.BooleanOptionalAction, default=True,
                   help="activation equalization: scale conv output channels feeding a depthwise conv to "
                        "the full int8 range (with --calib; float function and integer weights unchanged)")
    g.add_argument("--bias-correction", default="auto", choices=["auto", "off", "empirical", "analytic"],
                   help="auto: empirical with --calib, analytic without")
    g.add_argument("--activations", default="int8", choices=["int8", "int16", "auto"],
                   help="activation width: int8, int16 (TFLite's 16x8 scheme: symmetric int16 activations, int8 "
                        "weights, int64 biases) or auto (int16 only for the layers that need it to reach "
                        "--min-sqnr, QUANTIZE at the borders)")
    g.add_argument("--recurrent", default="auto", choices=["auto", "int16", "int8"],
                   help="with --activations int8: width of unrolled recurrent cells (LSTM): int16 as TFLite's LSTM "
                        "quantization (int16 cell state and gates, int8 weights; QUANTIZE where the sequence "
                        "enters and leaves), int8, or auto: int16 where the target has the 16x8 scheme")
    g.add_argument("--min-sqnr", type=float, metavar="DB",
                   help="with --activations auto: output SQNR (dB vs the float model) to reach with the smallest "
                        "change from all-int8, estimated on the calibration data as if its hardest inputs were "
                        "twice as common (+ 1 dB margin)")
    g.add_argument("--max-arena", type=int, metavar="BYTES",
                   help="with --activations auto: the largest runtime arena a choice may need")
    g.add_argument("--weight-rounding", default="auto", choices=["auto", "nearest", "gptq", "bounded"],
                   help="int8 weights rounded to nearest, or by GPTQ (error-compensating, on the calibration "
                        "data's layer inputs), or bounded (GPTQ choosing only between each weight's two "
                        "neighbours on the grid); auto: gptq with --activations int16 / auto, nearest with int8")
    g.add_argument("--split-weights", nargs="?", const="fc", default="off", metavar="fc|all|NODES",
                   help="with --activations int16: every fully connected layer (all: and convolution; or the "
                        "comma-separated IR nodes named) as two int8 "
                        "weight halves (the weight's int8 grid value and the residual on its own finer grid) "
                        "joined by an int16 ADD: ~15-bit weights on the runtime's 16x8 kernels, for twice the "
                        "weight flash, more arena and MACs")
    g.add_argument("--int8-outputs", action="store_true",
                   help="keep every graph output int8; by default an output whose Concat joins values of very "
                        "different ranges (box pixels and class scores) is int16 with its producers")
    g.add_argument("--int16-nodes", metavar="NODES",
                   help="with --activations auto: compute these nodes (comma-separated IR names) in int16, no search")

    g = p.add_argument_group("target")
    g.add_argument("--target", default="tflm", choices=targets(), help="the runtime to compile for")
    for flag, (name, f, owners) in _target_option_flags().items():
        kind = type(f.default) if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) else str
        g.add_argument(flag, dest=f"target_option_{name}", default=None, choices=f.metadata["choices"], type=kind,
                       metavar=None if f.metadata["choices"] else name.upper(),
                       help=f"{f.metadata['help']} (target {', '.join(owners)}; default {f.default})".replace(
                           "%", "%%"))
    g.add_argument("--passes", help="comma-separated pass pipeline replacing the target's default")
    g.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                   help="drop a pass from the pipeline (repeatable or comma-separated)")
    g.add_argument("--explain", action="store_true", help="print the pass pipeline this target runs and exit")

    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", help="output directory (default: ./<model name>_<target>)")
    g.add_argument("--name", help="base name of the emitted files (default: model file stem)")
    g.add_argument("--dump-after", action="append", default=[], metavar="PASS",
                   help="write the IR (text + ONNX) after this pass into --dump-dir (repeatable)")
    g.add_argument("--dump-dir", help="where --dump-after writes (default: the current directory)")
    return p


def _version() -> str:
    from qcompiler import __version__
    return __version__


def _short(name: str, width: int = 48) -> str:
    """A tensor name cut to `width` characters (the middle elided): TF exports join 5-10 names."""
    return name if len(name) <= width else name[:width // 2 - 1] + "..." + name[-(width // 2 - 2):]


def cmd_compile(argv: list[str]) -> int:
    from pathlib import Path

    from qcompiler.frontend.onnx_import import parse_input_shapes
    from qcompiler.driver.pipeline import CompileOptions, compile_model

    a = _compile_parser().parse_args(argv)
    split = lambda items: tuple(x for item in items for x in item.split(",") if x)  # noqa: E731
    try:
        input_range = tuple(float(v) for v in a.input_range.split(",")) if a.input_range else None
        if input_range is not None and (len(input_range) != 2 or not all(abs(v) < 3.4e38 for v in input_range)):
            raise ValueError
    except ValueError:
        raise QccError(f"bad --input-range {a.input_range!r}: expected LO,HI e.g. 0,1") from None
    if a.max_memory <= 0:
        raise QccError(f"--max-memory {a.max_memory}: give a positive number of MB")
    opts = CompileOptions(calib_method=a.calib_method, percentile=a.percentile, per_tensor=a.per_tensor,
                          cle=a.cle, act_eq=a.act_eq, bias_correction=a.bias_correction, input_range=input_range,
                          disable_passes=split(a.disable_pass), outputs=split([a.outputs or ""]),
                          dump_after=split(a.dump_after), dump_dir=a.dump_dir,
                          target=a.target, calib=a.calib,
                          max_calib_samples=a.max_calib_samples, max_memory_mb=a.max_memory,
                          input_shapes=parse_input_shapes(";".join(a.input_shape)),
                          passes=tuple(a.passes.split(",")) if a.passes else None,
                          per_channel_fc=_fc_mode(a), name=a.name, target_options=_given_target_options(a),
                          activations=a.activations, min_sqnr=a.min_sqnr, max_arena=a.max_arena,
                          int16_nodes=tuple(a.int16_nodes.split(",")) if a.int16_nodes else (),
                          weight_rounding=a.weight_rounding, recurrent=a.recurrent,
                          int8_outputs=a.int8_outputs, split_weights=a.split_weights)
    if a.explain:
        from qcompiler.ir.pass_manager import PASSES
        from qcompiler.driver.pipeline import pass_list
        print(f"qcc: target {a.target} runs these passes:")
        for i, name in enumerate(pass_list(opts), 1):
            print(f"  {i:2}. {name:22} {PASSES[name].description}")
        print("  then: calibrate -> quantize (int8) -> backend " + a.target)
        return 0
    out = a.output or f"{Path(a.model).stem}_{a.target}"
    res = compile_model(a.model, out, opts)
    if not a.quiet:
        _print_summary(res.report, out, a.target, a.verbose)
    return 0


def _print_summary(r: dict, out: str, target: str, verbose: bool) -> None:
    """A few lines by default: what was written, the size, the weakest layer, trade-offs."""
    from qcompiler.quant.report import activations_line, fc_tradeoff, outputs_line
    ops = r.get("ops", {})
    size = [f"flash {r['flash_bytes']:,} B"] if "flash_bytes" in r else []
    if "arena" in r:
        kind = "measured" if r["arena"].get("arena_source", "").startswith("measured") else "estimated"
        size.append(f"arena {r['arena']['arena_bytes']:,} B ({kind})")
    elif "memory_plan" in r:
        size.append(f"planned memory {r['memory_plan']['planned_bytes']:,} B")
    print(f"qcc: {r['source_model']} -> {out} ({target}): {sum(ops.values())} ops from {r['nodes']['onnx']} "
          f"ONNX nodes" + (f", {', '.join(size)}" if size else ""))
    worst = r.get("calibration", {}).get("worst_layers", [])
    if worst:
        w = worst[0]
        report = " (report.html, report.md, report.json)" if "report.html" in r["files"] else ""
        print(f"qcc: lowest per-layer SQNR {w['sqnr_db']:.1f} dB at {_short(w['tensor'])} ({w['op']}){report}")
    tradeoff = fc_tradeoff(r.get("calibration", {}))
    if tradeoff:
        print(f"qcc: {tradeoff}")
    widths = activations_line(r.get("calibration", {}))
    if widths:
        print(f"qcc: {widths}")
    outputs = outputs_line(r.get("calibration", {}))
    if outputs:
        print(f"qcc: note: {outputs}")
    if verbose:
        print(f"qcc: files: {', '.join(r['files'])}")
        print(f"qcc: ops: {', '.join(f'{k} x{v}' for k, v in ops.items())}")
        for w in worst:
            print(f"qcc:   {w['sqnr_db']:6.1f} dB  {w['tensor']} ({w['op']})")
        for rec in r.get("passes", []):
            print(f"qcc:   pass {rec['name']:20} {'changed' if rec['changed'] else '-':8} "
                  f"{rec['nodes_before']} -> {rec['nodes_after']} nodes")
        if "memory_plan" in r:
            _print_plan(r["memory_plan"])


def _print_plan(plan: dict) -> None:
    """report.json's memory_plan as a table: one line per buffer, by first step."""
    print(f"qcc: memory plan, {plan['planned_bytes']:,} bytes: {plan['source']}")
    print(f"qcc:   steps: {', '.join(f'{k} {op}' for k, op in enumerate(plan['ops'], 1))}")
    print(f"qcc:   {'offset':>8} {'bytes':>8}  steps    tensors")
    for b in plan["buffers"]:
        names = ", ".join(_short(t) for t in b["tensors"][:3]) + (", ..." if len(b["tensors"]) > 3 else "")
        print(f"qcc:   {b['offset']:8,} {b['size']:8,}  {b['first']:>3}-{b['last']:<4} {names}")


def cmd_inspect(argv: list[str]) -> int:
    from pathlib import Path

    from qcompiler.backends import registry
    from qcompiler.driver.pipeline import CompileOptions, default_pipeline, optimize, target_support
    from qcompiler.errors import UnsupportedOpError
    from qcompiler.frontend.onnx_import import load_onnx, onnx_to_graph, parse_input_shapes

    p = _parser("qcc inspect", "Show a model's ops, shapes and parameters, and which ops each target "
                "(or --target) cannot compile.")
    p.add_argument("model")
    p.add_argument("--target", choices=registry.names(), help="check this target only (default: every target "
                   "whose backend is installed)")
    p.add_argument("--input-shape", action="append", default=[])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    a = p.parse_args(argv)
    model = load_onnx(a.model)
    ops = Counter(n.op_type for n in model.graph.node)
    info = {"model": a.model, "opset": max((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")),
                                           default=None),
            "ops": dict(sorted(ops.items())), "unsupported_ops": []}
    shapes = parse_input_shapes(";".join(a.input_shape))
    try:
        g = onnx_to_graph(model, Path(a.model).stem, shapes)
    except UnsupportedOpError as e:
        info["unsupported_ops"] = e.problems
    else:
        info["inputs"] = {v.name: [v.dtype.name, list(v.shape)] for v in g.inputs}
        info["outputs"] = {v.name: [v.dtype.name, list(v.shape)] for v in g.outputs}
        info["parameters"] = int(sum(v.size for v in g.constants() if np.issubdtype(v.dtype, np.floating)))
        info["targets"] = {}
        for target in [a.target] if a.target else registry.names():
            try:
                backend = registry.get(target)
                graph = optimize(onnx_to_graph(model, Path(a.model).stem, shapes), default_pipeline(target),
                                 CompileOptions(target=target))[0]
                problems = target_support(graph, backend)
            except QccError as e:  # e.g. the target's runtime is not installed
                if a.target:
                    raise
                info["targets"][target] = f"not checked: {e}"
                continue
            info["targets"][target] = problems or "supported"
            if a.target:
                info["unsupported_ops"] = problems
    if a.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            if k == "targets":
                for target, problems in v.items():
                    print(f"{'target ' + target:>20}: {problems if isinstance(problems, str) else '; '.join(problems)}")
            else:
                print(f"{k:>20}: {v}")
    return 3 if info["unsupported_ops"] else 0


def cmd_verify(argv: list[str]) -> int:
    from qcompiler.driver.verify import verify_outdir

    p = _parser("qcc verify", "Run an artifact in its runtime and compare it with the oracle (qcc's integer "
                "reference, or ncnn's scheme simulation) and with the float model.")
    p.add_argument("outdir")
    p.add_argument("--data", required=True, help="evaluation inputs (.npy / .npz, float)")
    p.add_argument("--limit", type=int, help="use at most this many samples")
    p.add_argument("--no-litert", action="store_true", help="skip the LiteRT comparison (TFLite targets)")
    a = p.parse_args(argv)
    kw = {"with_litert": False} if a.no_litert else {}
    result = verify_outdir(a.outdir, a.data, a.limit, **kw)
    print(json.dumps(result, indent=2))
    for warning in result["warnings"]:
        print(f"qcc: warning: {warning}", file=sys.stderr)
    return 0 if result["ok"] else 9


def cmd_passes(argv: list[str]) -> int:
    from qcompiler.passes import PASSES
    for name in sorted(PASSES):
        print(f"{name:24} {PASSES[name].description}")
    return 0


def _given_target_options(a) -> dict:
    """The target options given on the command line; one meant for another target is an error."""
    given = {}
    for flag, (name, _, owners) in _target_option_flags().items():
        value = getattr(a, f"target_option_{name}")
        if value is None:
            continue
        if a.target not in owners:
            raise QccError(f"{flag} applies to target{'s' if len(owners) > 1 else ''} "
                           f"{' and '.join(owners)}, not {a.target}")
        given[name] = value
    return given


def _fc_mode(a) -> bool | str:
    return False if a.per_tensor_fc else (True if a.per_channel_fc else "auto")


USAGE = """usage: qcc MODEL.onnx [--target {targets}] [--calib FILE] [-o OUTDIR] [options]   compile
       qcc inspect MODEL.onnx [--target T]       ops, shapes, what each target cannot compile
       qcc verify OUTDIR --data FILE             run the artifact in its runtime against the oracle
       qcc passes                                list the graph passes
       qcc --version | qcc -h (all options) | qcc COMMAND -h"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {"inspect": cmd_inspect, "verify": cmd_verify, "passes": cmd_passes}
    # numpy's overflow / invalid-value warnings: every result that matters is checked for finite
    # values and reported with the tensor's name, so the raw warnings are only noise here
    warnings.simplefilter("ignore", RuntimeWarning)
    np.seterr(all="ignore")
    try:
        if not argv:
            from qcompiler.backends import registry
            print(USAGE.format(targets=",".join(registry.names())), file=sys.stderr)
            return 2
        if argv and argv[0] in handlers:
            return handlers[argv[0]](argv[1:])
        return cmd_compile(argv)
    except QccError as e:
        print(f"qcc: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("qcc: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("qcc: internal error (a bug in qcc, not in your input): please report it with the "
              "traceback above", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
