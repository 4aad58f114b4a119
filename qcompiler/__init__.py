"""qcompiler (qcc): float ONNX -> verified integer-only models.

The Python API in one import:

    from qcompiler import CompileOptions, compile_model, load_model, PassManager, register_pass

Everything else lives in layers (see README "How the code is laid out"): `ir`, `numerics`,
`interp`, `passes`, `frontend`, `quant`, `backends`, `driver`. The names below are loaded on
first use, so `import qcompiler` stays cheap and has no side effects.
"""
from __future__ import annotations

import importlib

from qcompiler.errors import QccError
from qcompiler.ir import Graph, Node, QuantParams, Value

__version__ = "0.1.0"

_LAZY = {
    "CompileOptions": "qcompiler.driver.options",
    "compile_model": "qcompiler.driver.pipeline",
    "default_pipeline": "qcompiler.driver.pipeline",
    "verify_outdir": "qcompiler.driver.verify",
    "load_model": "qcompiler.frontend.onnx_import",
    "PassManager": "qcompiler.passes",
    "PassContext": "qcompiler.passes",
    "register_pass": "qcompiler.passes",
}
__all__ = ["Graph", "Node", "Value", "QuantParams", "QccError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qcompiler' has no attribute {name!r}")
