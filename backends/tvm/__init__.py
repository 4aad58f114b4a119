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

from dataclasses import dataclass
from pathlib import Path

from qcompiler.errors import BackendError, MissingDependencyError
from qcompiler.passes import DECOMPOSED_PIPELINE
from qcompiler.quant.scheme import TFLITE_INT8, TFLITE_INT16

from qcompiler.backends.base import Artifact, Backend, Check, option

DEFAULT_TVM_TARGET = "llvm"


@dataclass(frozen=True)
class TvmOptions:
    """The TVM target the module is built for."""

    tvm_target: str = option(DEFAULT_TVM_TARGET, "--tvm-target",
                             "TVM target: a kind name (llvm) or a JSON dict, e.g. "
                             "'{\"kind\":\"llvm\",\"mcpu\":\"skylake\"}'")

    def describe(self) -> list[str]:
        return [f"--tvm-target {self.tvm_target}"]


def _require_tvm():
    try:
        import tvm  # noqa: F401
        from tvm import relax  # noqa: F401
    except ImportError as e:
        raise MissingDependencyError(
            f"target 'tvm' needs Apache TVM (Python package 'apache-tvm', import name 'tvm'): "
            f"pip install 'qcompiler[tvm]' ({e})") from None
    return tvm


def _why(e: Exception) -> str:
    """An exception as one line (TVM errors carry multi-line tracebacks)."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first}"


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

    graph, name, target = comp.quant_graph, comp.name, comp.target_options.tvm_target
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


class TvmBackend(Backend):
    """Integer-only Relax module built with llvm, run in the Relax VM."""

    name = "tvm"
    description = "integer-only Relax module (.so) built with TVM"
    extra = "tvm"
    options_class = TvmOptions
    scheme = TFLITE_INT8  # TVM keeps no per-channel parameters in RAM
    int16_scheme = TFLITE_INT16
    default_passes = tuple(DECOMPOSED_PIPELINE)

    def check_supported(self, graph) -> None:
        """Every op without a TVM lowering in one error (the pipeline calls it before calibration)."""
        _require_tvm()
        from qcompiler.backends.tvm.lower import check_supported as check
        check(graph)

    def supported_ops(self) -> set[str]:
        from qcompiler.backends.tvm.lower import LOWERINGS
        return set(LOWERINGS)

    def unsupported_reason(self, op: str) -> str | None:
        from qcompiler.backends.tvm.lower import LOWERINGS, WHY_UNSUPPORTED
        if op in LOWERINGS or (op == "LRN" and "decompose_lrn" in self.default_passes):
            return None
        return WHY_UNSUPPORTED.get(op)

    def emit(self, comp, outdir: Path) -> dict:
        return emit(comp, outdir)

    def load(self, outdir: Path, report: dict, **_) -> Artifact:
        """The .so in the Relax VM vs the integer reference interpreter: bit-exact required."""
        _require_tvm()
        from qcompiler.interp import INT_KERNELS, Interpreter
        from qcompiler.ir.serialize import load_graph
        from qcompiler.numerics.compare import LsbDiff

        from qcompiler.backends.tvm.build import load_vm
        outdir = Path(outdir)
        graph = load_graph(outdir / report["ir_file"])
        try:
            vm = load_vm(outdir / f"{report['name']}.so")
        except Exception as e:  # noqa: BLE001 - e.g. a .so built for another --tvm-target
            raise BackendError(f"cannot load {report['name']}.so (built for {report.get('tvm_target')}) "
                               f"on this host: {_why(e)}") from e
        return Artifact(outdir, report, graph, "qcc integer reference interpreter", [Check("tvm", LsbDiff)],
                        state={"vm": vm, "reference": Interpreter(graph, INT_KERNELS)})

    def expected(self, art: Artifact, feed: dict) -> dict:
        ref = art.state["reference"].run(_quantize_feed(art.graph, feed))
        return {v.name: ref[v.name] for v in art.graph.outputs}

    def run(self, art: Artifact, feed: dict, runtime: str) -> dict:
        from qcompiler.backends.tvm.build import run_vm
        qfeed = _quantize_feed(art.graph, feed)
        got = run_vm(art.state["vm"], [qfeed[v.name] for v in art.graph.inputs])
        out = {}
        for v, g in zip(art.graph.outputs, got, strict=True):
            if g.shape != v.shape or g.dtype != v.dtype:
                raise BackendError(f"TVM output {v.name}: {g.dtype}{list(g.shape)}, reference "
                                   f"{v.dtype}{list(v.shape)}")
            out[v.name] = g
        return out


def _quantize_feed(graph, feed: dict) -> dict:
    """Float samples -> integer graph inputs with the inputs' quantization parameters."""
    import numpy as np
    return {v.name: v.quant.quantize(np.asarray(feed[v.name], np.float32)) for v in graph.inputs}


TVM = TvmBackend()
