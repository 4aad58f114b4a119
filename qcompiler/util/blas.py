"""One BLAS thread for qcc's float numerics, wherever numpy was first imported.

`import qcompiler` asks for one BLAS thread through the environment, which only works
while numpy is not loaded yet. A script that imports numpy first gets OpenBLAS with one
thread per core, and a multi-threaded float32 product can round differently (measured:
MLPerf IC's bias-corrected biases differ by 1 in 71 entries between 1 and 2 threads, and
with 2 threads even between runs with a different history in the process). The numeric
entry points (`run_ptq`, `finish_report`) therefore run under `one_blas_thread()`.
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def one_blas_thread():
    """Limit BLAS to one thread for the duration (also usable as a decorator)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the environment variables set on import are all there is
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
