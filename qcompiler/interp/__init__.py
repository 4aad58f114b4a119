"""Reference interpreters: one run loop (`Interpreter`) over two kernel tables.

FLOAT_KERNELS run the float IR (checked against onnxruntime); INT_KERNELS run the quantized
IR with integer arithmetic only and are the oracle every backend must match bit for bit.
"""
from __future__ import annotations

import numpy as np

from qcompiler.interp.float_kernels import FLOAT_KERNELS, float_kernel
from qcompiler.interp.int_kernels import INT_KERNELS, int_kernel
from qcompiler.interp.int_kernels.missing import WHY_NO_INT_KERNEL
from qcompiler.interp.interpreter import Interpreter
from qcompiler.ir import Graph

__all__ = ["FLOAT_KERNELS", "INT_KERNELS", "WHY_NO_INT_KERNEL", "Interpreter", "float_kernel", "int_kernel",
           "run_float", "run_int"]


def run_float(graph: Graph, feeds: dict[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """Run the float graph once; returns its outputs by name."""
    return Interpreter(graph, FLOAT_KERNELS, **kw).run(feeds)


def run_int(graph: Graph, feeds: dict[str, np.ndarray], **kw) -> dict[str, np.ndarray]:
    """Run the quantized graph once in the integer reference; returns its outputs by name."""
    return Interpreter(graph, INT_KERNELS, **kw).run(feeds)
