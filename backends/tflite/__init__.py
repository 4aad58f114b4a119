"""The TFLite backends: `tflm` (int8 .tflite + the TFLite Micro C bundle) and `tflite` (the
.tflite alone), verified in the tflite-micro interpreter bit for bit (LiteRT reported)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from qcompiler.errors import QccError
from qcompiler.interp import INT_KERNELS, Interpreter
from qcompiler.ir import Graph
from qcompiler.ir.memory import Buffer, plan
from qcompiler.ir.serialize import load_graph
from qcompiler.numerics.compare import FloatDiff, LsbDiff
from qcompiler.numerics.fixed_point import round_half_away
from qcompiler.passes import DECOMPOSED_PIPELINE
from qcompiler.quant.scheme import TFLITE_INT8, TFLITE_INT16

from qcompiler.backends.base import Artifact, Backend, Check, option
from qcompiler.backends.tflite.c_bundle import write_c_bundle
from qcompiler.backends.tflite.flatbuffer import TflModel
from qcompiler.backends.tflite.lower import (INPUT_DTYPES, IO_MODES, LOWERINGS, WHY_UNSUPPORTED, check_supported,
                                             lower)
from qcompiler.backends.tflite.lower_core import FUSED_ACTIVATIONS
from qcompiler.backends.tflite.memory import memory_plan, offline_plan, plan_arena, quick_arena
# TFLM keeps per-tensor runtime structs and per-op data (e.g. per-channel multipliers) in the arena
TFLM_BYTES_PER_TENSOR = 64
TFLM_BYTES_PER_CHANNEL = 8
TFLM_FIXED_OVERHEAD = 1024


def _nbytes(t) -> int:
    return int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize


def arena_estimate(model: TflModel) -> dict:
    """Planned activation bytes plus TFLM's runtime overheads (an upper estimate)."""
    first, last = {}, {}
    for i in model.inputs:
        first[i] = -1
    for k, op in enumerate(model.operators):
        for i in op.inputs:
            if i >= 0 and model.tensors[i].data is None:
                first.setdefault(i, k)
                last[i] = k
        for o in op.outputs:
            first.setdefault(o, k)
            last.setdefault(o, k)
    for o in model.outputs:
        last[o] = len(model.operators)
    buffers = [Buffer(str(i), _nbytes(model.tensors[i]), first[i], last.get(i, first[i])) for i in first]
    _, head = plan(buffers)
    channels = sum(len(model.tensors[op.inputs[1]].scale or []) for op in model.operators
                   if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"))
    overhead = (TFLM_FIXED_OVERHEAD + TFLM_BYTES_PER_TENSOR * len(model.tensors)
                + TFLM_BYTES_PER_CHANNEL * channels)
    return {"planned_activation_bytes": head, "overhead_bytes": overhead,
            "arena_bytes": (head + overhead + 15) // 16 * 16}


def _io_info(model: TflModel, indices, layouts: dict) -> list[dict]:
    out = []
    for i in indices:
        t = model.tensors[i]
        out.append({"name": t.name, "shape": tuple(t.shape), "dtype": t.dtype,
                    "scale": t.scale[0] if t.scale else 0.0,
                    "zero_point": t.zero_point[0] if t.zero_point else 0,
                    "layout": layouts.get(t.name, "same")})
    return out


def _arena_note(arena: dict) -> str:
    """Where the header's arena size comes from, for the comment above it."""
    if arena.get("arena_source", "").startswith("measured"):
        import importlib.metadata as md
        return (f"measured at compile time, the smallest arena tflite-micro {md.version('tflite-micro')} "
                "runs it with on a 64-bit host (32-bit targets need a little less: smaller runtime structs)")
    return ("estimated by qcc, tflite-micro was not installed at compile time (planned activation bytes plus "
            "TFLM's runtime overheads: an upper estimate)")


@dataclass(frozen=True)
class TfliteOptions:
    """Graph I/O of the .tflite (targets tflm and tflite)."""

    io: str = option("int8", "--io", "int8 graph inputs/outputs (the C header has quantize/dequantize "
                     "helpers) or float32 ones converted inside the model", IO_MODES)
    input_dtype: str = option("int8", "--input-dtype", "with --io int8: uint8 inputs (e.g. camera pixels), "
                              "same scale, zero point + 128, converted to int8 inside the model", INPUT_DTYPES)

    def __post_init__(self):
        if self.io not in IO_MODES:
            raise QccError(f"--io {self.io!r}: choose one of {', '.join(IO_MODES)}")
        if self.input_dtype not in INPUT_DTYPES:
            raise QccError(f"--input-dtype {self.input_dtype!r}: choose one of {', '.join(INPUT_DTYPES)}")
        if self.io == "float" and self.input_dtype != "int8":
            raise QccError("--input-dtype uint8 needs --io int8 (with --io float the input is float32)")

    def describe(self) -> list[str]:
        return ([f"--io {self.io}"] if self.io != "int8" else []) + \
            ([f"--input-dtype {self.input_dtype}"] if self.input_dtype != "int8" else [])


def emit(comp, outdir: Path, c_bundle: bool) -> dict:
    """Write `<name>.tflite` (and with c_bundle the TFLM C files) into outdir; return report entries."""
    graph, name, header = comp.quant_graph, comp.name, comp.header
    io = {"mode": comp.target_options.io, "input_dtype": comp.target_options.input_dtype}
    lowered = lower(graph, description=f"qcc: {header}", io=io["mode"], input_dtype=io["input_dtype"])
    model, arena, data = plan_arena(lowered.model)
    if arena["arena_bytes"] is None:  # tflite-micro not installed: no measurement possible
        arena["arena_bytes"] = arena_estimate(model)["arena_bytes"]
    (outdir / f"{name}.tflite").write_bytes(data)
    files = [f"{name}.tflite"]
    opcodes = [op.opcode for op in model.operators]
    if c_bundle:
        paths = write_c_bundle(outdir, name, data, header, _io_info(model, model.inputs, lowered.io_layouts),
                               _io_info(model, model.outputs, lowered.io_layouts), opcodes, arena["arena_bytes"],
                               _arena_note(arena))
        files += [p.name for p in paths]
    return {
        "files": sorted(files),
        "ops": {op: opcodes.count(op) for op in sorted(set(opcodes))},
        "tensors": len(model.tensors),
        "flash_bytes": len(data),
        "arena": arena,
        "memory_plan": memory_plan(model, arena["offline_plan"]),
        "io": io,
        "io_layout": lowered.io_layouts,
        "inputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                   for d in _io_info(model, model.inputs, lowered.io_layouts)],
        "outputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                    for d in _io_info(model, model.outputs, lowered.io_layouts)],
    }


# ---- verification ------------------------------------------------------------------------

LAYOUT_PERMS = {"NHWC": (0, 2, 3, 1), "NWC": (0, 2, 1)}


def to_layout(arr: np.ndarray, layout: str | None) -> np.ndarray:
    """An ONNX-ordered array in the TFLite I/O layout named in report.json."""
    if layout in (None, "same"):
        return arr
    perm = LAYOUT_PERMS.get(layout) or tuple(int(c) for c in layout[len("perm"):])
    return np.ascontiguousarray(arr.transpose(perm))


def tflm_quantize(x: np.ndarray, q) -> np.ndarray:
    """float -> int8 exactly as TFLM's QUANTIZE: float32 x / scale, rounded half away from
    zero (TfLiteRound), plus the zero point, clamped. (QuantParams.quantize rounds half to
    even in float64, which differs on ties.)"""
    v = (np.asarray(x, np.float32) / np.float32(q.scale[0])).astype(np.float64)
    v = np.clip(round_half_away(v), -2.0 ** 31, 2.0 ** 31 - 1)
    return np.clip(v + int(q.zero_point[0]), q.qmin, q.qmax).astype(q.dtype)


def _runtime_feed(graph: Graph, feed: dict, io: dict, layouts: dict):
    """(int8 feed for the reference, input arrays for the runtime) of one float sample."""
    qfeed, rt_in = {}, []
    for v in graph.inputs:
        x = np.asarray(feed[v.name], np.float32)
        if io["mode"] == "float":
            qfeed[v.name] = tflm_quantize(x, v.quant)
            rt_in.append(to_layout(x, layouts.get(v.name)))
            continue
        qfeed[v.name] = v.quant.quantize(x)
        raw = to_layout(qfeed[v.name], layouts.get(v.name))
        if io["input_dtype"] == "uint8":  # same scale, zero point + 128
            raw = (raw.astype(np.int16) + 128).astype(np.uint8)
        rt_in.append(raw)
    return qfeed, rt_in


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def from_layout(arr: np.ndarray, layout: str | None) -> np.ndarray:
    """A TFLite I/O array back in the ONNX order (the inverse of `to_layout`)."""
    if layout in (None, "same"):
        return arr
    perm = LAYOUT_PERMS.get(layout) or tuple(int(c) for c in layout[len("perm"):])
    return np.ascontiguousarray(arr.transpose(_inverse(perm)))


def _lowered_candidate(qgraph: Graph) -> TflModel:
    """A candidate integer graph as emit would lower it (wide Softmaxes expanded on a copy)."""
    from qcompiler.quant.wide_softmax import expand_wide_softmax
    q = qgraph.copy()
    expand_wide_softmax(q)
    return lower(q).model


class TfliteBackend(Backend):
    """int8 .tflite for TFLite Micro (with the C bundle) or LiteRT (without)."""

    extra = "tflite"
    options_class = TfliteOptions
    default_passes = tuple(DECOMPOSED_PIPELINE)

    def __init__(self, name: str, c_bundle: bool, description: str):
        self.name, self.c_bundle, self.description = name, c_bundle, description
        # TFLM keeps an int32 multiplier and an int32 shift per output channel in its arena;
        # clamps without a fused activation are realized by the output's int8 range
        fused = frozenset(c for c in FUSED_ACTIVATIONS if c is not None)
        self.scheme = replace(TFLITE_INT8, per_channel_param_bytes=TFLM_BYTES_PER_CHANNEL,
                              fused_clamps=fused)
        self.int16_scheme = replace(TFLITE_INT16, per_channel_param_bytes=TFLM_BYTES_PER_CHANNEL,
                                    fused_clamps=fused)

    def check_supported(self, graph) -> None:
        check_supported(graph)

    def cost(self, qgraph, exact: bool = True) -> int | None:
        """Arena bytes of a candidate integer graph (the --activations auto search): lowered and
        measured in the tflite-micro interpreter as emit does (`exact`), or only TFLM's recorded
        total of the variant emit would pick (one run instead of a bisection); an estimate
        without tflite-micro."""
        model, arena, _ = (plan_arena if exact else quick_arena)(_lowered_candidate(qgraph))
        return arena["arena_bytes"] if arena["arena_bytes"] is not None else arena_estimate(model)["arena_bytes"]

    def activation_arena(self, qgraph) -> int | None:
        """The planned head of the offline memory plan of the lowered graph (what emit records)."""
        return offline_plan(_lowered_candidate(qgraph))[1]

    def supported_ops(self) -> set[str]:
        return set(LOWERINGS)

    def unsupported_reason(self, op: str) -> str | None:
        if op in LOWERINGS or (op == "LRN" and "decompose_lrn" in self.default_passes):
            return None
        return WHY_UNSUPPORTED.get(op)

    def emit(self, comp, outdir: Path) -> dict:
        return emit(comp, outdir, self.c_bundle)

    def load(self, outdir: Path, report: dict, with_litert: bool = True) -> Artifact:
        """TFLM (bit-exact required) and LiteRT (difference reported) vs the integer reference.

        Feeds and compares in the model's I/O mode (report["io"]): int8 / uint8 inputs
        quantized from the float samples, or the float samples themselves with the
        reference fed TFLM's own quantization of them; float outputs are compared with
        the dequantized reference outputs."""
        from qcompiler.backends.tflite.runtime import LiteRTRunner, TflmRunner
        outdir = Path(outdir)
        graph = load_graph(outdir / report["ir_file"])
        io = report.get("io") or {"mode": "int8", "input_dtype": "int8"}
        model = (outdir / f"{report['name']}.tflite").read_bytes()
        runners = {"tflm": TflmRunner(model)}
        if with_litert:
            runners["litert"] = LiteRTRunner(model)
        if io["mode"] == "float":
            steps = {v.name: float(v.quant.scale[0]) for v in graph.outputs}
            compare = lambda: FloatDiff(steps)  # noqa: E731
        else:
            compare = LsbDiff
        checks = [Check("tflm", compare), *([Check("litert", compare, required=False)] if with_litert else [])]
        return Artifact(outdir, report, graph, "qcc integer reference interpreter", checks, info={"io": io},
                        state={"runners": runners, "io": io, "layouts": report.get("io_layout", {}),
                               "reference": Interpreter(graph, INT_KERNELS)})

    def expected(self, art: Artifact, feed: dict) -> dict:
        qfeed, _ = _runtime_feed(art.graph, feed, art.state["io"], art.state["layouts"])
        ref = art.state["reference"].run(qfeed)
        if art.state["io"]["mode"] == "float":
            return {v.name: v.quant.dequantize(ref[v.name]) for v in art.graph.outputs}
        return {v.name: ref[v.name] for v in art.graph.outputs}

    def run(self, art: Artifact, feed: dict, runtime: str) -> dict:
        _, rt_in = _runtime_feed(art.graph, feed, art.state["io"], art.state["layouts"])
        outs = art.state["runners"][runtime](rt_in)
        result = {}
        for v, got in zip(art.graph.outputs, outs):
            layout = art.state["layouts"].get(v.name)
            shape = to_layout(np.zeros(v.shape, np.int8), layout).shape
            result[v.name] = from_layout(got.reshape(shape), layout)
        return result


TFLM = TfliteBackend("tflm", True, "int8 .tflite + C arrays/headers for TensorFlow Lite Micro")
TFLITE = TfliteBackend("tflite", False, "int8 .tflite for LiteRT / TFLite")
