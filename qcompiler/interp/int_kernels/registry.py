"""The integer kernel table: op name -> `fn(node, inputs) -> [outputs]` (TFLM-exact integer maths)."""
from __future__ import annotations

from typing import Callable

Kernel = Callable[[object, list], list]
INT_KERNELS: dict[str, Kernel] = {}


def int_kernel(*ops: str):
    """Register an integer (TFLM-exact) reference kernel for one or more op names."""
    def deco(fn: Kernel) -> Kernel:
        for op in ops:
            INT_KERNELS[op] = fn
        return fn
    return deco
