"""Small helpers with no qcompiler dependencies (BLAS thread limits, forked workers)."""
