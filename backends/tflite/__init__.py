"""TFLite / TFLite Micro backend: int8 .tflite flatbuffer plus the TFLM firmware bundle."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from qcompiler.ir import Graph
from qcompiler.memory_planner import Buffer, plan

from .c_bundle import write_c_bundle
from .flatbuffer import TflModel, write_model
from .lower import lower_graph

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
                    "scale": t.scale[0] if t.scale else 0.0, "zero_point": t.zero_point[0] if t.zero_point else 0})
    return out


def emit(comp, outdir: Path) -> dict:
    """Write `<name>.tflite` (and for tflm the C bundle) into outdir; return report entries."""
    graph, name, header, target = comp.quant_graph, comp.name, comp.header, comp.options.target
    model = lower_graph(graph, description=f"qcc: {header}")
    data = write_model(model)
    (outdir / f"{name}.tflite").write_bytes(data)
    arena = arena_estimate(model)
    files = [f"{name}.tflite"]
    opcodes = [op.opcode for op in model.operators]
    if target == "tflm":
        paths = write_c_bundle(outdir, name, data, header, _io_info(model, model.inputs),
                               _io_info(model, model.outputs), opcodes, arena["arena_bytes"])
        files += [p.name for p in paths]
    layouts = {v.name: ("NHWC" if v.shape is not None and len(v.shape) == 4 else "same")
               for v in graph.inputs + graph.outputs}
    return {
        "files": sorted(files),
        "ops": {op: opcodes.count(op) for op in sorted(set(opcodes))},
        "tensors": len(model.tensors),
        "flash_bytes": len(data),
        "arena": arena,
        "io_layout": layouts,
        "inputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                   for d in _io_info(model, model.inputs)],
        "outputs": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
                    for d in _io_info(model, model.outputs)],
    }


def verify(outdir: Path, report: dict, samples, limit: int | None = None, with_litert: bool = True) -> dict:
    """TFLM vs the integer reference (bit-exact required); LiteRT's difference reported."""
    from qcompiler.verify import verify_tflite
    return verify_tflite(outdir, report, samples, limit, with_litert)
