"""Benchmarks: `python -m bench` (see __main__.py)."""

import os as _os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # as qcompiler/__init__ does
    _os.environ.setdefault(_var, "1")
