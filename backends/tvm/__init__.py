"""TVM backend: the quantized IR as an integer-only Relax module, compiled and verified.

    qcc MODEL.onnx --target tvm -o OUTDIR --calib FILE

writes into OUTDIR:

    <name>.so           the compiled Relax VM executable (constants embedded), llvm target
    <name>.py           the module as TVMScript (parameters as arguments), runnable Python
    <name>_params.npz   the parameter arrays of <name>.py (weights, multipliers, tables)

Only integer tensor ops are used (int8 data, int32 accumulation, int64 fixed-point
requantization); `build.float_dtypes` checks the Relax module and the TIR after
legalization on every compile. Data stays NCHW. `verify` runs the .so in the Relax
VirtualMachine and requires bit-exact equality with the integer reference interpreter.
TVM is imported lazily so that a missing install gives a MissingDependencyError.
"""
from __future__ import annotations

from pathlib import Path

from qcompiler.errors import BackendError, MissingDependencyError

TARGETS = ("tvm",)
DEFAULT_TVM_TARGET = "llvm"


def _require_tvm():
    try:
        import tvm  # noqa: F401
        from tvm import relax  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"target 'tvm' needs Apache TVM (Python package 'apache-tvm', import name 'tvm'): "
            f"pip install 'qcompiler[tvm]' ({e})") from None
    return tvm


def check_supported(graph) -> None:
    """Every op without a TVM lowering in one error (the pipeline calls it before calibration)."""
    _require_tvm()
    from qcompiler.backends.tvm.lower import check_supported as check
    check(graph)


def _why(e: Exception) -> str:
    """An exception as one line (TVM errors carry multi-line tracebacks)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"


def tvm_target(options) -> str:
    """The TVM target string: CompileOptions.tvm_target when the field exists, else llvm."""
    return getattr(options, "tvm_target", None) or DEFAULT_TVM_TARGET


def _io_info(values) -> list[dict]:
    """Name, shape, dtype, layout and quantization of graph inputs / outputs (VM argument order)."""
    out = []
    for v in values:
        out.append({"name": v.name, "shape": list(v.shape), "dtype": v.dtype.name,
                    "layout": "NCHW" if len(v.shape) == 4 else "same",
                    "scale": float(v.quant.scale[0]), "zero_point": int(v.quant.zero_point[0])})
    return out


def emit(comp, outdir: Path) -> dict:
    """Lower, check integer-only, build and write `<name>.so/.py/_params.npz`; report entries."""
    tvm = _require_tvm()
    from qcompiler.backends.tvm.build import (build, float_dtypes, legalize, parse_target, relax_op_counts, script_text,
                        write_params)
    from qcompiler.backends.tvm.lower import bind_params, lower_graph

    graph, name, target = comp.quant_graph, comp.name, tvm_target(comp.options)
    try:
        parse_target(target)
    except Exception as e:  # noqa: BLE001 - TVM's parser raises several types
        raise BackendError(f"--tvm-target {target!r} is not a TVM target: give a kind name such as "
                           "llvm or a JSON dict like '{\"kind\": \"llvm\", \"mcpu\": \"skylake\"}' "
                           f"(TVM 0.27 no longer parses 'llvm -mcpu=...'); {_why(e)}") from None
    lowered = lower_graph(graph)
    bound = bind_params(lowered)
    floats = float_dtypes(lowered.mod) + float_dtypes(legalize(bound))
    if floats:  # a lowering bug, never a user error: refuse to ship a float op
        raise BackendError(f"the TVM module for {name} is not integer-only: {', '.join(floats[:8])}")
    try:
        executable = build(bound, target)
    except Exception as e:  # noqa: BLE001 - TVM raises many types; name the target
        raise BackendError(f"TVM build of {name} for target {target!r} failed: {_why(e)}") from e
    so, script, params = f"{name}.so", f"{name}.py", f"{name}_params.npz"
    executable.export_library(str(outdir / so))
    (outdir / script).write_text(script_text(lowered.mod, comp.header, params, lowered.input_vars))
    constant_bytes = write_params(outdir / params, lowered.params)
    return {
        "files": sorted([so, script, params]),
        "ops": dict(sorted(lowered.ops.items())),
        "relax_ops": relax_op_counts(lowered.mod),
        "constant_bytes": constant_bytes,
        "parameters": len(lowered.params),
        "tvm_target": target,
        "tvm_version": str(tvm.__version__),
        "integer_only": True,
        "io_layout": "NCHW",
        "inputs": _io_info(graph.inputs),
        "outputs": _io_info(graph.outputs),
    }


def verify(outdir: Path, report: dict, samples, limit: int | None = None, **kw) -> dict:
    """The .so in the Relax VM vs the integer reference interpreter: bit-exact required.

    Options of other backends' verify (e.g. `with_litert` from `qcc verify --no-litert`)
    are accepted and ignored.
    """
    _require_tvm()
    from qcompiler.quant.calibration import iterate_samples
    from qcompiler.interp import INT_KERNELS, Interpreter
    from qcompiler.ir.serialize import load_graph
    from qcompiler.driver.verify import LsbDiff, float_view, quantize_feed

    from qcompiler.backends.tvm.build import load_vm, run_vm

    outdir = Path(outdir)
    graph = load_graph(outdir / report["ir_file"])
    try:
        vm = load_vm(outdir / f"{report['name']}.so")
    except Exception as e:  # noqa: BLE001 - e.g. a .so built for another --tvm-target
        raise BackendError(f"cannot load {report['name']}.so (built for {report.get('tvm_target')}) "
                           f"on this host: {_why(e)}") from e
    reference = Interpreter(graph, INT_KERNELS)
    diff, count = LsbDiff(), 0
    for feed in iterate_samples(samples, float_view(graph), limit):  # float samples stay float
        qfeed = quantize_feed(graph, feed)
        ref = reference.run(qfeed)
        got = run_vm(vm, [qfeed[v.name] for v in graph.inputs])
        for v, g in zip(graph.outputs, got, strict=True):
            r = ref[v.name]
            if g.shape != r.shape or g.dtype != r.dtype:
                raise BackendError(f"TVM output {v.name}: {g.dtype}{list(g.shape)}, reference "
                                   f"{r.dtype}{list(r.shape)}")
            diff.add(r, g)
        count += 1
    summary = diff.summary()
    return {"samples": count, "oracle": "qcc integer reference interpreter", "tvm": summary,
            "ok": summary["bit_exact"] and count > 0}
