"""A complete backend in a few lines: the Backend protocol of qcompiler/backends/base.py.

Its "runtime" is a plain-numpy program that replays the integer reference kernels from a
`.npz` of the quantized graph's arrays and a JSON list of ops, i.e. what any new target
needs: options, a scheme, a pipeline, an op check, files out, and a way to run them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from qcompiler.backends.base import Artifact, Backend, Check, option
from qcompiler.errors import require_ops
from qcompiler.interp import INT_KERNELS, Interpreter
from qcompiler.ir.serialize import load_graph
from qcompiler.numerics.compare import LsbDiff
from qcompiler.passes import COMMON_PIPELINE
from qcompiler.quant.scheme import TFLITE_INT8

OPS = {"Conv", "Gemm", "MaxPool", "Relu", "Reshape", "Flatten", "Add"}


@dataclass(frozen=True)
class ToyOptions:
    toy_indent: int = option(0, "--toy-indent", "indentation of the emitted op list")

    def describe(self) -> list[str]:
        return [f"--toy-indent {self.toy_indent}"] if self.toy_indent else []


class ToyBackend(Backend):
    name = "toy"
    description = "op list + arrays, run by numpy"
    options_class = ToyOptions
    scheme = TFLITE_INT8
    default_passes = COMMON_PIPELINE

    def supported_ops(self) -> set[str]:
        return set(OPS)

    def check_supported(self, graph) -> None:
        require_ops(graph.nodes, OPS, "the model (toy backend)")

    def emit(self, comp, outdir: Path) -> dict:
        g = comp.quant_graph
        ops = [{"op": n.op, "name": n.name} for n in g.nodes]
        (outdir / f"{comp.name}.ops.json").write_text(json.dumps(ops, indent=comp.target_options.toy_indent or None))
        np.savez(outdir / f"{comp.name}.arrays.npz", **{f"c{i}": v.data for i, v in enumerate(g.constants())})
        return {"files": [f"{comp.name}.ops.json", f"{comp.name}.arrays.npz"], "ops": {o["op"]: 1 for o in ops}}

    def load(self, outdir: Path, report: dict, **_) -> Artifact:
        graph = load_graph(Path(outdir) / report["ir_file"])
        arrays = np.load(Path(outdir) / f"{report['name']}.arrays.npz")
        for i, v in enumerate(graph.constants()):  # the runtime's weights come from its own file
            v.data = arrays[f"c{i}"]
        return Artifact(Path(outdir), report, graph, "qcc integer reference interpreter", [Check("numpy", LsbDiff)],
                        state={"runtime": Interpreter(graph, INT_KERNELS),
                               "oracle": Interpreter(load_graph(Path(outdir) / report["ir_file"]), INT_KERNELS)})

    def _feed(self, art: Artifact, feed: dict) -> dict:
        return {v.name: v.quant.quantize(np.asarray(feed[v.name], np.float32)) for v in art.graph.inputs}

    def expected(self, art: Artifact, feed: dict) -> dict:
        return art.state["oracle"].run(self._feed(art, feed))

    def run(self, art: Artifact, feed: dict, runtime: str) -> dict:
        return art.state["runtime"].run(self._feed(art, feed))


TOY = ToyBackend()
