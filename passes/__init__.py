"""Built-in graph passes (`Graph -> Graph`, registered by name); importing this package
registers them all. The pass infrastructure itself lives in `qcompiler.ir.pass_manager` and is
re-exported here for user pipelines."""
from qcompiler.ir.pass_manager import PASSES, PassContext, PassManager, register_pass
from qcompiler.passes import (  # noqa: F401  (each module registers its passes)
    canonicalize,
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

__all__ = ["PASSES", "PassContext", "PassManager", "register_pass"]
