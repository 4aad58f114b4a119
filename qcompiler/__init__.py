"""qcompiler (qcc): float ONNX -> verified integer-only int8 models."""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    # One BLAS thread unless the user says otherwise: qcc's matrices are small, and on a busy
    # 2-core machine OpenBLAS's spinning threads made a 64x32x2304 float32 product 140x slower
    # (15 ms vs 0.11 ms); one thread also fixes the summation order, so calibration and bias
    # correction give the same bytes whatever the core count.
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ.setdefault(_var, "1")
from .errors import QccError
from .ir import Graph, Node, QuantParams, Value

__version__ = "0.1.0"
__all__ = ["Graph", "Node", "Value", "QuantParams", "QccError", "__version__"]
