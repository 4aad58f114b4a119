"""Built-in graph passes; importing this package registers them all by name."""
from . import (  # noqa: F401
    canonicalize,
    bias_correction,
    dead_code,
    decompose_lrn,
    equalize,
    fold_affine,
    fold_batchnorm,
    fold_constants,
    fuse_activation,
    horizontal_merge,
    normalize_gemm,
    simplify,
)
