"""TFLite / TFLite Micro backend: int8 .tflite flatbuffer plus the TFLM firmware bundle."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qcompiler.ir import Graph
from qcompiler.ir.memory import Buffer, plan

from qcompiler.backends.tflite.c_bundle import write_c_bundle
from qcompiler.backends.tflite.flatbuffer import TflModel, write_model
from qcompiler.backends.tflite.lower import check_supported, lower
from qcompiler.backends.tflite.memory import plan_arena

# check_supported(graph): every op without a TFLite lowering in one error, callable before calibration
__all__ = ["TARGETS", "arena_estimate", "check_supported", "emit", "verify"]

TARGETS = ("tflm", "tflite")
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


def _io_info(model: TflModel, indices) -> list[dict]:
    out = []
    for i in indices:
        t = model.tensors[i]
        out.append({"name": t.name, "shape": tuple(t.shape), "dtype": t.dtype,
                    "scale": t.scale[0] if t.scale else 0.0,
                    "zero_point": t.zero_point[0] if t.zero_point else 0})
    return out


def io_options(options) -> dict:
    """The I/O mode of a compilation (report.json's "io"; `verify` reads it back)."""
    return {"mode": getattr(options, "io", "int8"), "input_dtype": getattr(options, "input_dtype", "int8")}


def emit(comp, outdir: Path) -> dict:
    """Write `<name>.tflite` (and for tflm the C bundle) into outdir; return report entries."""
    graph, name, header, target = comp.quant_graph, comp.name, comp.header, comp.options.target
    io = io_options(comp.options)
    lowered = lower(graph, description=f"qcc: {header}", io=io["mode"], input_dtype=io["input_dtype"])
    model, arena, data = plan_arena(lowered.model)
    if arena["arena_bytes"] is None:  # tflite-micro not installed: no measurement possible
        arena["arena_bytes"] = arena_estimate(model)["arena_bytes"]
    (outdir / f"{name}.tflite").write_bytes(data)
    files = [f"{name}.tflite"]
    opcodes = [op.opcode for op in model.operators]
    if target == "tflm":
        paths = write_c_bundle(outdir, name, data, header, _io_info(model, model.inputs),
                               _io_info(model, model.outputs), opcodes, arena["arena_bytes"])
        files += [p.name for p in paths]
    return {
        "files": sorted(files),
        "ops": {op: opcodes.count(op) for op in sorted(set(opcodes))},
        "tensors": len(model.tensors),
        "flash_bytes": len(data),
        "arena": arena,
        "io": io,
        "io_layout": lowered.io_layouts,
        "inputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                   for d in _io_info(model, model.inputs)],
        "outputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                    for d in _io_info(model, model.outputs)],
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
    v = np.clip(np.sign(v) * np.floor(np.abs(v) + 0.5), -2.0 ** 31, 2.0 ** 31 - 1)
    return np.clip(v + int(q.zero_point[0]), q.qmin, q.qmax).astype(q.dtype)


class FloatDiff:
    """Float output differences (io float): exact equality required, LSBs for reading."""

    def __init__(self):
        self.max_abs = 0.0
        self.max_lsb = 0
        self.mismatched = 0
        self.total = 0

    def add(self, ref: np.ndarray, got: np.ndarray, scale: float) -> None:
        d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
        self.max_abs = max(self.max_abs, float(d.max(initial=0.0)))
        self.max_lsb = max(self.max_lsb, int(np.round(d.max(initial=0.0) / scale)))
        self.mismatched += int(np.count_nonzero(ref != got))
        self.total += d.size

    def summary(self) -> dict:
        return {"max_abs_diff": self.max_abs, "max_abs_diff_lsb": self.max_lsb,
                "mismatched_elements": self.mismatched, "elements": self.total,
                "bit_exact": self.mismatched == 0}


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


def verify(outdir: Path, report: dict, samples, limit: int | None = None, with_litert: bool = True) -> dict:
    """TFLM vs the integer reference (bit-exact required); LiteRT's difference reported.

    Feeds and compares in the model's I/O mode (report["io"]): int8 / uint8
    inputs quantized from the float samples, or the float samples themselves
    with the reference fed TFLM's own quantization of them; float outputs are
    compared with the dequantized reference outputs.
    """
    from qcompiler.quant.calibration import iterate_samples
    from qcompiler.interp import INT_KERNELS, Interpreter
    from qcompiler.backends.tflite.runtime import LiteRTRunner, TflmRunner
    from qcompiler.ir.serialize import load_graph
    from qcompiler.driver.verify import LsbDiff, float_view

    outdir = Path(outdir)
    graph = load_graph(outdir / report["ir_file"])
    io = report.get("io") or {"mode": "int8", "input_dtype": "int8"}
    layouts = report.get("io_layout", {})
    model = (outdir / f"{report['name']}.tflite").read_bytes()
    reference = Interpreter(graph, INT_KERNELS)
    runners = {"tflm": TflmRunner(model)}
    if with_litert:
        runners["litert"] = LiteRTRunner(model)
    as_float = io["mode"] == "float"
    diffs = {k: FloatDiff() if as_float else LsbDiff() for k in runners}
    count = 0
    for feed in iterate_samples(samples, float_view(graph), limit):  # float samples stay float
        qfeed, rt_in = _runtime_feed(graph, feed, io, layouts)
        ref = reference.run(qfeed)
        for key, runner in runners.items():
            for v, got in zip(graph.outputs, runner(rt_in)):
                r = to_layout(ref[v.name], layouts.get(v.name))
                if as_float:
                    diffs[key].add(v.quant.dequantize(r), got.reshape(r.shape), float(v.quant.scale[0]))
                else:
                    diffs[key].add(r, got.reshape(r.shape))
        count += 1
    result = {"samples": count, "io": io, "oracle": "qcc integer reference interpreter",
              **{k: d.summary() for k, d in diffs.items()}}
    result["ok"] = result["tflm"]["bit_exact"]
    return result
