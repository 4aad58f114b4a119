"""The compile pipeline: ONNX -> IR -> passes -> calibrate -> int8 IR -> backend.

Artifacts are written to a temporary sibling directory and moved into place
only when everything succeeded, so a failure never leaves partial output.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qcompiler.backends import registry
from qcompiler.backends.base import Compilation, make_options
from qcompiler.driver.options import CompileOptions
from qcompiler.errors import QccError
from qcompiler.frontend.onnx_import import load_model
from qcompiler.ir import Graph
from qcompiler.ir.serialize import save_graph
from qcompiler.passes import PassContext, PassManager
from qcompiler.quant.calibration import FloatRunner, iterate_samples, load_samples
from qcompiler.quant.scheme import TFLITE_INT8, QuantScheme
from qcompiler.util.blas import one_blas_thread

MERGE_VETO_SAMPLES = 16  # calibration samples the horizontal-merge veto looks at


def targets() -> tuple[str, ...]:
    """The registered target names (`--target` choices)."""
    return registry.names()


def default_pipeline(target: str) -> list[str]:
    """The pass pipeline `target` runs by default (a fresh list: extend it freely)."""
    return list(registry.get(target).default_passes)


def target_options(backend, options: CompileOptions):
    """The backend's options dataclass built from `options.target_options`."""
    return make_options(backend.options_class, dict(options.target_options), backend.name)


@dataclass
class CompileResult:
    outdir: Path
    float_graph: Graph
    quant_graph: Graph
    report: dict
    pass_records: list = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pass_list(options: "CompileOptions") -> list[str]:
    """The pipeline a compilation runs: the target's default or --passes, minus --disable-pass."""
    from qcompiler.passes import PASSES
    passes = list(options.passes) if options.passes is not None else default_pipeline(options.target)
    if options.passes is None and options.activations == "int16" and "fuse_hard_swish" in passes:
        # TFLM has no int16 HARD_SWISH: write HardSwish out of ADD / MUL, which have int16 kernels
        passes.insert(passes.index("fuse_hard_swish") + 1, "decompose_hard_swish")
    if getattr(options, "split_weights", "off") != "off" and "split_weights" not in passes:
        passes.append("split_weights")  # last: horizontal_merge would join the halves again
    unknown = [p for p in options.disable_passes if p not in PASSES]
    if unknown:
        raise QccError(f"--disable-pass names unknown pass(es) {unknown}; see `qcc passes`")
    return [p for p in passes if p not in options.disable_passes]


def _dumper(dump_dir: str | None):
    def dump(pass_name: str, graph: Graph) -> None:
        from qcompiler.frontend.onnx_export import graph_to_onnx
        d = Path(dump_dir or ".")
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{graph.name}.after_{pass_name}.txt").write_text(graph.dump() + "\n")
        import onnx
        onnx.save(graph_to_onnx(graph), str(d / f"{graph.name}.after_{pass_name}.onnx"))
    return dump


def optimize(graph: Graph, passes: list[str], options: "CompileOptions | None" = None) -> tuple[Graph, list]:
    """Run `passes` over `graph` (in place) with verification after each; returns the pass records."""
    opts = {}
    dump_after: set[str] = set()
    dump = None
    if options is not None:
        opts["outputs"] = list(options.outputs)
        opts["split_weights"] = options.split_weights if options.split_weights != "off" else None
        if options.calib is not None and ("horizontal_merge" in passes or "split_channel_ranges" in passes):
            samples = load_samples(options.calib, graph, options.max_memory_mb << 20)
            opts["calibration_feeds"] = list(iterate_samples(samples, graph, MERGE_VETO_SAMPLES))
            opts["float_runner"] = FloatRunner
        dump_after = set(options.dump_after)
        dump = _dumper(options.dump_dir)
    pm = PassManager(passes, dump_after=dump_after, dump=dump)
    ctx = PassContext(options=opts)
    pm.run(graph, ctx)
    graph.meta["pass_log"] = list(ctx.log)
    return graph, pm.records


def target_support(graph: Graph, backend) -> list[str]:
    """Every op problem compiling the optimized `graph` for `backend` would report: ops the
    backend cannot lower and, for schemes with an integer IR, ops without an integer
    reference kernel (`qcc inspect --target` prints them before any calibration)."""
    from qcompiler.errors import UnsupportedOpError
    from qcompiler.quant.quantize import check_quantizable
    checks = [backend.check_supported] + ([check_quantizable] if backend.scheme.integer_ir else [])
    problems: list[str] = []
    for check in checks:
        try:
            check(graph)
        except UnsupportedOpError as e:
            problems += [p for p in e.problems if p not in problems]
    return problems


def quantize(graph: Graph, calib_path: str | None, options: CompileOptions,
             scheme: QuantScheme = TFLITE_INT8, defer_report: bool = False,
             wide_scheme: QuantScheme | None = None, cost=None, activation_arena=None,
             output_scheme: QuantScheme | None = None) -> tuple[Graph | None, dict, dict]:
    """(int8 graph, calibration summary, ranges); see qcompiler/quant/ptq.py for the steps.

    `calib_path` None means data-free mode (needs options.input_range). The
    summary holds "layers" (per-tensor report) and "worst_layers" (five lowest SQNR).
    With CLE on, `graph` is equalized in place (float function unchanged).
    Softmaxes over more than 511 classes, marked by the quantizer, become explicit int16
    nodes here (after bias correction, which pairs float and quantized nodes one to one).
    """
    from qcompiler.quant.wide_softmax import expand_wide_softmax
    from qcompiler.quant.ptq import run_ptq
    qgraph, summary, ranges = run_ptq(graph, calib_path, options, scheme=scheme, defer_report=defer_report,
                                      wide_scheme=wide_scheme, cost=cost, activation_arena=activation_arena,
                                      output_scheme=output_scheme)
    if qgraph is not None:
        expand_wide_softmax(qgraph)
    return qgraph, summary, ranges


def file_stem(name: str) -> str:
    """The base name of every emitted file: `name` sanitized like an identifier (letters,
    digits, _; at most 64 characters), so that no --name can place a file outside -o."""
    stem = re.sub(r"[^A-Za-z0-9_]", "_", str(name)).strip("_")[:64].strip("_")
    if not stem:
        raise QccError(f"--name {name!r} leaves no usable file name: use letters, digits and _")
    return stem


def _check_output(outdir: Path) -> None:
    """Fail before any work if `outdir` cannot become the output directory."""
    try:
        dangling = outdir.is_symlink() and not outdir.exists()
        not_a_dir = outdir.exists() and not outdir.is_dir()
    except OSError as e:  # e.g. a name longer than the file system allows
        raise QccError(f"output path {str(outdir)[:80]}...: {e.strerror or e}") from None
    if dangling:
        raise QccError(f"output path {outdir} is a dangling symbolic link")
    if not_a_dir:
        raise QccError(f"output path {outdir} exists and is not a directory")


def _staging_dir(outdir: Path) -> Path:
    """An empty private folder beside `outdir` (same file system, so publishing is renames)."""
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".qcc-", dir=outdir.parent))
    except OSError as e:
        raise QccError(f"cannot create the output directory {outdir}: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the published directory should not be
    return tmp


def _publish(tmp: Path, outdir: Path) -> None:
    """Move the finished files into `outdir`; anything in the way is found before a file moves."""
    _check_output(outdir)
    try:
        if not outdir.exists():
            os.replace(tmp, outdir)
            return
        blocked = [f.name for f in sorted(tmp.iterdir())
                   if (outdir / f.name).exists() and (outdir / f.name).is_dir()]
        if blocked:
            raise QccError(f"{outdir} holds folder(s) named like output files: {', '.join(blocked)}; "
                           "move them or choose another -o")
        for f in sorted(tmp.iterdir()):
            os.replace(f, outdir / f.name)
        tmp.rmdir()
    except OSError as e:
        raise QccError(f"cannot write the output directory {outdir}: {e.strerror or e}") from None


def schemes(backend, options: CompileOptions):
    """(int8 scheme, int16 scheme or None): `backend.schemes` refuses --activations int16 / auto
    where there is no int16 scheme; with int8 activations the int16 scheme comes along for the
    unrolled recurrent cells (--recurrent auto / int16; qcompiler/quant/precision.py)."""
    scheme, wide = backend.schemes(options.activations)
    if wide is None and options.activations == "int8" and options.recurrent != "int8":
        wide = backend.int16_scheme
        if wide is None and options.recurrent == "int16":
            raise QccError(f"--recurrent int16: target {options.target!r} has no int16 activation scheme "
                           f"({backend.no_int16_reason}); use --recurrent int8 (or auto: int16 where the target can)")
    if options.recurrent not in ("auto", "int16", "int8"):
        raise QccError(f"--recurrent {options.recurrent!r}: choose auto, int16 or int8")
    return scheme, wide


@one_blas_thread()
def compile_model(model_path: str | os.PathLike, outdir: str | os.PathLike,
                  options: CompileOptions = CompileOptions()) -> CompileResult:
    """Compile one ONNX model for `options.target` into `outdir`."""
    backend = registry.get(options.target)
    topts = target_options(backend, options)
    scheme, wide_scheme = schemes(backend, options)
    model_path, outdir = Path(model_path), Path(outdir)
    _check_output(outdir)
    graph = load_model(model_path, options.input_shapes, options.max_memory_mb << 20)
    name = file_stem(options.name or graph.name)
    nodes_in = len(graph.nodes)
    graph, records = optimize(graph, pass_list(options), options)
    backend.check_supported(graph)  # every op the target cannot run, before the (slow) calibration
    from qcompiler.quant.ptq import cancel_report, finish_report
    # no calib: data-free; the per-layer report overlaps with the backend (finish_report below)
    qgraph, calib_summary, ranges = quantize(graph, options.calib, options, scheme=scheme, defer_report=True,
                                             wide_scheme=wide_scheme, cost=backend.cost,
                                             activation_arena=backend.activation_arena,
                                             output_scheme=backend.int16_scheme)
    tmp = None
    try:
        header = f"from {model_path.name} (sha256 {_sha256(model_path)[:16]}) with {options.describe(topts)}"
        comp = Compilation(graph, qgraph, ranges, options, topts, name, header)
        tmp = _staging_dir(outdir)
        backend_report = backend.emit(comp, tmp)
        if "arena" in backend_report:
            from qcompiler.quant.arena_estimate import settle_arena
            settle_arena(calib_summary, backend_report["arena"].get("arena_bytes"))
        ir_files = {"float_ir_file": f"{name}.float.qir"}  # the float model: qcc verify's fidelity
        save_graph(graph, tmp / ir_files["float_ir_file"])
        if qgraph is not None:
            ir_files["ir_file"] = f"{name}.qir"  # the integer IR: the oracle
            save_graph(qgraph, tmp / ir_files["ir_file"])
        else:  # the backend's own scheme: its checks start from the float graph
            ir_files["ir_file"] = ir_files["float_ir_file"]
        from qcompiler.quant.report import write_report_files
        finish_report(calib_summary)
        layers = calib_summary.pop("layers", [])
        histograms = calib_summary.pop("histograms", {})
        report = {
            "generated_by": f"generated by qcc {header}",
            "name": name, "target": options.target, "source_model": model_path.name,
            "passes": [{"name": r.name, "changed": r.changed, "nodes_before": r.nodes_before,
                        "nodes_after": r.nodes_after} for r in records],
            "nodes": {"onnx": nodes_in, "optimized": len(graph.nodes)},
            "pass_log": graph.meta.get("pass_log", []),
            "calibration": calib_summary,
            **ir_files,
            "layers": layers,
            **backend_report,
        }
        report_files = write_report_files(tmp, report, qgraph, histograms) if layers else []
        report["files"] = sorted(set(report["files"]) | set(ir_files.values()) | {"report.json"} | set(report_files))
        (tmp / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        _publish(tmp, outdir)
    finally:
        cancel_report(calib_summary)  # only still pending when something above failed
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return CompileResult(outdir, graph, qgraph, report, records)
