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


def _compile_parser() -> argparse.ArgumentParser:
    from qcompiler.driver.pipeline import targets
    TARGETS = targets()
    p = argparse.ArgumentParser(prog="qcc", description="Compile a float ONNX model to a verified int8 model. "
                                f"Other commands: {', '.join(SUBCOMMANDS)} (qcc COMMAND -h).")
    p.add_argument("model", help="float ONNX model")
    p.add_argument("--target", default="tflm", choices=TARGETS)
    p.add_argument("-o", "--output", help="output directory (default: ./<model name>_<target>)")
    p.add_argument("--calib", help=".npy (one input, samples on axis 0) or .npz keyed by input name")
    p.add_argument("--calib-method", default="percentile", choices=["minmax", "percentile", "kl", "mse"],
                   help="range rule for hidden activations (graph inputs and logits always use min-max)")
    p.add_argument("--percentile", type=float, default=99.99, help="with --calib-method percentile")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights for every Conv/Gemm")
    p.add_argument("--cle", action=argparse.BooleanOptionalAction, default=False,
                   help="cross-layer equalization (+ high-bias absorption from BN statistics)")
    p.add_argument("--act-eq", action=argparse.BooleanOptionalAction, default=True,
                   help="activation equalization: scale conv output channels feeding a depthwise conv to "
                        "the full int8 range (with --calib; float function and integer weights unchanged)")
    p.add_argument("--bias-correction", default="auto", choices=["auto", "off", "empirical", "analytic"],
                   help="auto: empirical with --calib, analytic without")
    p.add_argument("--input-range", metavar="LO,HI",
                   help="value range of every float input; required without --calib (data-free mode)")
    p.add_argument("--max-calib-samples", type=int)
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix dynamic input dims (batch defaults to 1); repeatable")
    p.add_argument("--passes", help="comma-separated pass pipeline replacing the target's default")
    p.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                   help="drop a pass from the pipeline (repeatable or comma-separated)")
    p.add_argument("--outputs", help="comma-separated tensor names to keep as graph outputs; the rest is pruned")
    p.add_argument("--dump-after", action="append", default=[], metavar="PASS",
                   help="write the IR (text + ONNX) after this pass into --dump-dir (repeatable)")
    p.add_argument("--dump-dir", help="where --dump-after writes (default: the current directory)")
    p.add_argument("--explain", action="store_true", help="print the pass pipeline this target runs and exit")
    fc = p.add_mutually_exclusive_group()
    fc.add_argument("--per-tensor-fc", action="store_true",
                    help="per-tensor FULLY_CONNECTED weights everywhere (the TFLite spec's form; least arena)")
    fc.add_argument("--per-channel-fc", action="store_true",
                    help="per-channel FULLY_CONNECTED weights everywhere (TFLM keeps 8 arena bytes per output "
                         "channel); default: per channel only for layers where it gains >= 3 dB weight SQNR")
    p.add_argument("--name", help="base name of the emitted files (default: model file stem)")
    for flag, (name, f, owners) in _target_option_flags().items():
        kind = type(f.default) if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) else str
        p.add_argument(flag, dest=f"target_option_{name}", default=None, choices=f.metadata["choices"], type=kind,
                       metavar=None if f.metadata["choices"] else name.upper(),
                       help=f"{f.metadata['help']} (target {', '.join(owners)}; default {f.default})")
    return p


def cmd_compile(argv: list[str]) -> int:
    from pathlib import Path

    from qcompiler.frontend.onnx_import import parse_input_shapes
    from qcompiler.driver.pipeline import CompileOptions, compile_model
    from qcompiler.quant.report import fc_tradeoff

    a = _compile_parser().parse_args(argv)
    split = lambda items: tuple(x for item in items for x in item.split(",") if x)  # noqa: E731
    try:
        input_range = tuple(float(v) for v in a.input_range.split(",")) if a.input_range else None
    except ValueError:
        raise QccError(f"bad --input-range {a.input_range!r}: expected LO,HI e.g. 0,1") from None
    opts = CompileOptions(calib_method=a.calib_method, percentile=a.percentile, per_tensor=a.per_tensor,
                          cle=a.cle, act_eq=a.act_eq, bias_correction=a.bias_correction, input_range=input_range,
                          disable_passes=split(a.disable_pass), outputs=split([a.outputs or ""]),
                          dump_after=split(a.dump_after), dump_dir=a.dump_dir,
                          target=a.target, calib=a.calib,
                          max_calib_samples=a.max_calib_samples,
                          input_shapes=parse_input_shapes(";".join(a.input_shape)),
                          passes=tuple(a.passes.split(",")) if a.passes else None,
                          per_channel_fc=_fc_mode(a), name=a.name, target_options=_given_target_options(a))
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
    r = res.report
    print(f"qcc: wrote {len(r['files'])} files to {out}: {', '.join(r['files'])}")
    if "ops" in r:
        print(f"qcc: {r['nodes']['onnx']} ONNX nodes -> {sum(r['ops'].values())} {a.target} ops "
              f"({', '.join(f'{k} x{v}' for k, v in r['ops'].items())})")
    worst = r.get("calibration", {}).get("worst_layers", [])
    if worst:
        print("qcc: lowest per-layer SQNR (int8 reference vs float): " + ", ".join(
            f"{w['tensor']} ({w['op']}) {w['sqnr_db']:.1f} dB" for w in worst))
    tradeoff = fc_tradeoff(r.get("calibration", {}))
    if tradeoff:
        print(f"qcc: {tradeoff}")
    if "arena" in r:
        kind = "measured" if r["arena"].get("arena_source", "").startswith("measured") else "estimated"
        print(f"qcc: flash {r['flash_bytes']} bytes, tensor arena {r['arena']['arena_bytes']} bytes ({kind})")
    return 0


def cmd_inspect(argv: list[str]) -> int:
    from pathlib import Path

    from qcompiler.backends import registry
    from qcompiler.driver.pipeline import CompileOptions, default_pipeline, optimize, target_support
    from qcompiler.errors import UnsupportedOpError
    from qcompiler.frontend.onnx_import import load_onnx, onnx_to_graph, parse_input_shapes

    p = argparse.ArgumentParser(prog="qcc inspect", description="Show a model's ops, shapes and parameters, and "
                                "which ops each target (or --target) cannot compile.")
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

    p = argparse.ArgumentParser(prog="qcc verify",
                                description="Run an artifact in its runtime and in the integer reference.")
    p.add_argument("outdir")
    p.add_argument("--data", required=True, help="evaluation inputs (.npy / .npz, float)")
    p.add_argument("--limit", type=int, help="use at most this many samples")
    p.add_argument("--no-litert", action="store_true", help="skip the LiteRT comparison (TFLite targets)")
    a = p.parse_args(argv)
    kw = {"with_litert": False} if a.no_litert else {}
    result = verify_outdir(a.outdir, a.data, a.limit, **kw)
    print(json.dumps(result, indent=2))
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handlers = {"inspect": cmd_inspect, "verify": cmd_verify, "passes": cmd_passes}
    try:
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
