"""The float kernel table: op name -> `fn(node, inputs) -> [outputs]` (numpy, ONNX semantics)."""
from __future__ import annotations

from typing import Callable

Kernel = Callable[[object, list], list]
FLOAT_KERNELS: dict[str, Kernel] = {}


def float_kernel(*ops: str):
    """Register a float reference kernel for one or more op names."""
    def deco(fn: Kernel) -> Kernel:
        for op in ops:
            FLOAT_KERNELS[op] = fn
        return fn
    return deco
