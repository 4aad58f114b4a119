"""The C backend (`--target c`): the quantized graph as plain C99 with no interpreter, no heap
and no runtime library, verified bit for bit against qcc's integer reference on the host.

    <name>.h / <name>.c   int <name>_invoke(inputs..., outputs..., void *scratch), the scratch
                          size, I/O shapes, layouts and quantization, quantize helpers; the
                          weights, biases, per-channel multipliers and tables as const arrays
    qcc_kernels.h / .c    the kernels (the same files for every model)
    main.c, Makefile      an example program; host and Cortex-M builds (QEMU: startup_mps2.c, mps2.ld)

Activations are int8 (TFLite's int8 scheme) or, with `--activations int16 / auto`, int16 in
TFLite's 16x8 scheme (the *_s16 kernels; int8 and int16 tensors meet at QUANTIZE ops).

Pipeline: `lower.lower` walks the graph through the emitter table (emit_*.py), `memory`
plans the scratch buffer, `cgen` / `example` write the files, `build` compiles them for
`qcc verify`. Per-channel parameters live in flash, so the scheme is TFLite's int8 with no
RAM cost per channel: fully connected layers take per-channel weights wherever they gain.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcompiler.errors import BackendError, QccError
from qcompiler.interp import INT_KERNELS, Interpreter
from qcompiler.ir.serialize import load_graph
from qcompiler.numerics.compare import LsbDiff
from qcompiler.passes import DECOMPOSED_PIPELINE
from qcompiler.quant.scheme import TFLITE_INT8, TFLITE_INT16

from qcompiler.backends.base import Artifact, Backend, Check, option
from qcompiler.backends.c import emit_conv, emit_eltwise, emit_pool, emit_shape  # noqa: F401 (fill EMITTERS)
from qcompiler.backends.c.build import HostModel
from qcompiler.backends.c.cgen import c_identifier, flash_bytes, header_text, io_info, source_text
from qcompiler.backends.c.example import write_support_files
from qcompiler.backends.c.layout import Layout
from qcompiler.backends.c.lower import EMITTERS, check_supported, lower
from qcompiler.backends.c.memory import plan_scratch, report_plan


IO_MODES = ("caller", "scratch")


@dataclass(frozen=True)
class COptions:
    c_io: str = option("caller", "--c-io", "where the graph inputs and outputs live: the caller's own arrays, or "
                     "places in the scratch buffer (<NAME>_INPUT0_OFFSET ...: the model then needs no other RAM)",
                     IO_MODES)

    def __post_init__(self):
        if self.c_io not in IO_MODES:
            raise QccError(f"--c-io {self.c_io!r}: choose one of {', '.join(IO_MODES)}")

    def describe(self) -> list[str]:
        return [f"--c-io {self.c_io}"] if self.c_io != "caller" else []


def _check_io(graph) -> None:
    for v in list(graph.inputs) + list(graph.outputs):
        if np.dtype(v.dtype) not in (np.int8, np.int16) or v.quant is None or v.quant.scale.size != 1:
            raise BackendError(f"graph input/output {v.name}: the C backend takes per-tensor int8 or int16 I/O "
                               f"(got {np.dtype(v.dtype).name})")


def emit(comp, outdir: Path) -> dict:
    graph = comp.quant_graph
    _check_io(graph)
    ctx = lower(graph)
    in_scratch = comp.target_options.c_io == "scratch"
    plan = plan_scratch(ctx, in_scratch)
    ident = c_identifier(comp.name)
    inputs, outputs = io_info(ctx, plan if in_scratch else None)
    flash = flash_bytes(ctx)
    (outdir / f"{ident}.h").write_text(header_text(ident, comp.header, inputs, outputs, plan, flash))
    (outdir / f"{ident}.c").write_text(source_text(ident, comp.header, ctx, plan, inputs, outputs))
    files = [f"{ident}.h", f"{ident}.c"] + write_support_files(outdir, ident, comp.header, inputs, outputs)
    kernels = Counter(c.fn.removeprefix("qcc_") for c in ctx.calls)
    io_bytes = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in inputs + outputs)
    return {
        "files": sorted(files),
        "ops": dict(sorted(kernels.items())),
        "c": {"ident": ident, "io": comp.target_options.c_io, "scratch_bytes": plan.scratch_bytes,
              "live_bytes": plan.live_bytes,
              "io_bytes": io_bytes, "flash_data_bytes": flash, "kernel_calls": len(ctx.calls)},
        "flash_bytes": flash,
        "memory_plan": report_plan(ctx, plan),
        "io_layout": {d["name"]: d["layout"] for d in inputs + outputs},
        "inputs": inputs, "outputs": outputs,
    }


def _io_offsets(report: dict):
    """(input offsets, output offsets) in the scratch buffer with --c-io scratch, else None."""
    if report["c"].get("io") != "scratch":
        return None
    return [d["offset"] for d in report["inputs"]], [d["offset"] for d in report["outputs"]]


class CBackend(Backend):
    name = "c"
    description = "plain C99: no interpreter, no heap, static memory plan (verified on the host)"
    options_class = COptions
    scheme = TFLITE_INT8            # per-channel multipliers live in flash: no RAM per channel
    int16_scheme = TFLITE_INT16     # 16x8: the *_s16 kernels (int64 biases and accumulators)
    default_passes = tuple(DECOMPOSED_PIPELINE)

    def check_supported(self, graph) -> None:
        check_supported(graph)

    def cost(self, qgraph, exact: bool = True) -> int | None:
        """RAM bytes of a candidate integer graph for the --activations auto search (--max-arena):
        lowered and planned as emit plans it, with the graph inputs and outputs placed in the
        scratch buffer too (--c-io scratch: everything the model needs besides the stack)."""
        from qcompiler.quant.wide_softmax import expand_wide_softmax
        q = qgraph.copy()
        expand_wide_softmax(q)
        return plan_scratch(lower(q), io_in_scratch=True).scratch_bytes

    def activation_arena(self, qgraph) -> int | None:
        """The same planned scratch bytes: computed, never measured (quant/wide_tails.py)."""
        return self.cost(qgraph)

    def supported_ops(self) -> set[str]:
        return set(EMITTERS)

    def unsupported_reason(self, op: str) -> str | None:
        from qcompiler.backends.c.lower import why_unsupported
        return why_unsupported(op)

    def emit(self, comp, outdir: Path) -> dict:
        return emit(comp, outdir)

    def load(self, outdir: Path, report: dict, cc: str | None = None, cflags=()) -> Artifact:
        """Compile the emitted C for the host (`cc`, default $CC / cc) and load it."""
        outdir = Path(outdir)
        graph = load_graph(outdir / report["ir_file"])
        c = report["c"]
        layouts = {d["name"]: Layout.transposed(d["onnx_shape"], d["perm"])
                   for d in report["inputs"] + report["outputs"]}
        model = HostModel(outdir, c["ident"], [int(np.prod(d["shape"])) for d in report["inputs"]],
                          [int(np.prod(d["shape"])) for d in report["outputs"]], c["scratch_bytes"], cflags, cc,
                          io_offsets=_io_offsets(report), in_dtypes=[d["dtype"] for d in report["inputs"]],
                          out_dtypes=[d["dtype"] for d in report["outputs"]])
        return Artifact(outdir, report, graph, "qcc integer reference interpreter", [Check("c", LsbDiff)],
                        info={"scratch_bytes": c["scratch_bytes"]},
                        state={"model": model, "layouts": layouts, "reference": Interpreter(graph, INT_KERNELS)})

    def _feed(self, art: Artifact, feed: dict) -> dict:
        return {v.name: v.quant.quantize(np.asarray(feed[v.name], np.float32)) for v in art.graph.inputs}

    def expected(self, art: Artifact, feed: dict) -> dict:
        ref = art.state["reference"].run(self._feed(art, feed))
        return {v.name: ref[v.name] for v in art.graph.outputs}

    def run(self, art: Artifact, feed: dict, runtime: str) -> dict:
        q, lay = self._feed(art, feed), art.state["layouts"]
        outs = art.state["model"].run([lay[v.name].store(q[v.name]) for v in art.graph.inputs])
        return {v.name: lay[v.name].load(o, v.shape) for v, o in zip(art.graph.outputs, outs)}


C = CBackend()
