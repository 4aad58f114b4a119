"""Benchmarks: `python -m bench` (see __main__.py)."""
import qcompiler  # noqa: F401  (first: it sets one BLAS thread before numpy loads)
