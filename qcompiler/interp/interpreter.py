"""Graph interpreters: one run loop, two kernel tables (float and integer).

A kernel is `fn(node, inputs) -> list[np.ndarray]`, registered by op name with
`@float_kernel("Conv")` / `@int_kernel("Conv")`. The float table runs the float
IR (checked against onnxruntime); the integer table runs the quantized IR with
integer arithmetic only and is the oracle every backend must match bit for bit.

A `hook(node, outputs)` sees every node's outputs: calibration observers and
per-layer reports are built on it.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from qcompiler.errors import CalibrationError, GraphError, QccError, require_ops
from qcompiler.interp.float_kernels.registry import FLOAT_KERNELS
from qcompiler.ir import Graph, Node
from qcompiler.ir.activation import clamp_of

Kernel = Callable[[Node, list], list]

class Interpreter:
    """Runs a Graph node by node with a kernel table."""

    def __init__(self, graph: Graph, kernels: dict[str, Kernel],
                 hook: Callable[[Node, list], None] | None = None):
        self.graph = graph
        self.kernels = kernels
        self.hook = hook
        require_ops(graph.nodes, kernels, f"graph {graph.name} (interpreter)")

    def run(self, feeds: dict[str, np.ndarray], keep: Iterable[str] = ()) -> dict[str, np.ndarray]:
        """Execute once; returns graph outputs (plus any values named in `keep`)."""
        env: dict[int, np.ndarray] = {}
        for v in self.graph.inputs:
            if v.name not in feeds:
                raise CalibrationError(f"no data for graph input {v.name!r} "
                                       f"(given: {sorted(feeds)})")
            arr = np.asarray(feeds[v.name])
            if v.shape is not None and tuple(arr.shape) != v.shape:
                raise CalibrationError(f"input {v.name!r} expects shape {v.shape}, got {arr.shape}")
            env[id(v)] = arr.astype(v.dtype, copy=False)
        keep = set(keep)
        kept: dict[str, np.ndarray] = {}
        uses = {}
        for n in self.graph.nodes:
            for v in n.inputs:
                if v is not None:
                    uses[id(v)] = uses.get(id(v), 0) + 1
        pinned = {id(v) for v in self.graph.outputs}
        for node in self.graph.nodes:
            args = []
            for v in node.inputs:
                if v is None:
                    args.append(None)
                elif v.is_constant:
                    args.append(v.data)
                else:
                    try:
                        args.append(env[id(v)])
                    except KeyError:
                        raise GraphError(f"node {node.name} ({node.op}): input {v.name} was not computed") from None
            try:
                outs = self.kernels[node.op](node, args)
            except QccError:
                raise
            except Exception as e:  # a kernel bug or unsupported attribute: name the node
                raise GraphError(f"while executing node {node.name} ({node.op}): "
                                 f"{type(e).__name__}: {e}") from e
            clamp = clamp_of(node) if self.kernels is FLOAT_KERNELS else None
            if clamp is not None:  # integer kernels clamp through their output range
                outs = [np.clip(outs[0], *clamp).astype(outs[0].dtype)] + list(outs[1:])
            if self.hook is not None:
                self.hook(node, outs)
            for v, arr in zip(node.outputs, outs):
                env[id(v)] = arr
                if v.name in keep:
                    kept[v.name] = arr
            # free what no later node reads, to bound memory on big models
            for v in node.inputs:
                if v is not None and not v.is_constant and id(v) in uses:
                    uses[id(v)] -= 1
                    if uses[id(v)] == 0 and id(v) not in pinned and v.producer is not None:
                        env.pop(id(v), None)
        result = {}
        for v in self.graph.outputs:
            result[v.name] = v.data if v.is_constant else env[id(v)]
        result.update(kept)
        return result

