"""Thin wrappers over the real runtimes, with clear messages when one is missing."""
from __future__ import annotations

import numpy as np

from qcompiler.errors import BackendError, MissingDependencyError


def litert_interpreter_class():
    """LiteRT's Interpreter (ai_edge_litert first, then tflite_runtime)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter
    except ImportError:
        raise MissingDependencyError("LiteRT is not installed: pip install 'qcompiler[tflite]' "
                                     "(ai-edge-litert or tflite-runtime)") from None


def tflm_runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
        return runtime
    except ImportError:
        raise MissingDependencyError("the tflite-micro interpreter is not installed: "
                                     "pip install 'qcompiler[tflite]'") from None


DEFAULT_ARENA = 16 << 20


class TflmRunner:
    """Runs a .tflite in TFLite Micro's reference kernels (the tflite-micro Python package)."""

    def __init__(self, model: bytes, arena_size: int = DEFAULT_ARENA):
        rt = tflm_runtime()
        try:
            self.interp = rt.Interpreter.from_bytes(bytes(model), arena_size=arena_size)
        except Exception as e:
            raise BackendError(f"TFLite Micro refused the model: {e}") from None
        from tflite.Model import Model
        subgraph = Model.GetRootAs(bytes(model), 0).Subgraphs(0)
        self.num_inputs, self.num_outputs = subgraph.InputsLength(), subgraph.OutputsLength()

    def zero_inputs(self) -> list[np.ndarray]:
        """An all-zero array per model input (a feed for arena and instruction measurements)."""
        return [np.zeros(d["shape"], d["dtype"])
                for d in (self.interp.get_input_details(i) for i in range(self.num_inputs))]

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self.interp.set_input(x, i)
        self.interp.invoke()
        return [np.array(self.interp.get_output(i)) for i in range(self.num_outputs)]


class LiteRTRunner:
    """Runs a .tflite in LiteRT / tflite-runtime with one thread, no delegates."""

    def __init__(self, model: bytes):
        cls = litert_interpreter_class()
        try:
            self.interp = cls(model_content=bytes(model), num_threads=1)
            self.interp.allocate_tensors()
        except Exception as e:
            raise BackendError(f"LiteRT refused the model: {e}") from None
        self.inputs = self.interp.get_input_details()
        self.outputs = self.interp.get_output_details()

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for d, x in zip(self.inputs, inputs):
            self.interp.set_tensor(d["index"], x)
        self.interp.invoke()
        return [np.array(self.interp.get_tensor(d["index"])) for d in self.outputs]


def tflm_allocations(model: bytes, arena_size: int = DEFAULT_ARENA, parts: bool = False) -> dict:
    """Arena bytes TFLM's recording allocator reports once the interpreter is built: total,
    head, tail (and with `parts`, its tail's itemized allocations: {what: {bytes, count}}). Every arena allocation happens in AllocateTensors (kernels' Init / Prepare);
    Invoke takes nothing from the arena, so no invoke is needed (same three numbers with and
    without one on all 8 sample / MLPerf models and a 3 MB detector, whose invoke took 8 s).

    The interpreter prints them to stderr (C++), so fd 2 is redirected to a file meanwhile.
    """
    import os
    import re
    import sys
    import tempfile

    runner = TflmRunner(model, arena_size)
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            runner.interp.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    found = {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", text)}
    if set(found) != {"total", "head", "tail"}:
        raise BackendError(f"could not read TFLM's arena usage (got {text[:200]!r})")
    if parts:
        found["parts"] = {name: {"bytes": int(used), "count": int(n)} for name, used, n in re.findall(
            r"'([^']+)' used (\d+) bytes with alignment overhead \(requested \d+ bytes for (\d+)", text)}
    return found
