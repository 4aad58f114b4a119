"""Target name -> backend: the one place that lists the backends.

A new backend is a folder under `backends/` exposing a `Backend` instance, plus one line
here. Backends are imported on first use, so a missing optional runtime only matters
when its target is asked for.
"""
from __future__ import annotations

import importlib

from qcompiler.errors import MissingDependencyError, QccError

# target name -> "module:attribute" of its Backend instance
BACKENDS = {
    "tflm": "qcompiler.backends.tflite:TFLM",
    "tflite": "qcompiler.backends.tflite:TFLITE",
    "tvm": "qcompiler.backends.tvm:TVM",
    "ncnn": "qcompiler.backends.ncnn:NCNN",
    "c": "qcompiler.backends.c:C",
}


def names() -> tuple[str, ...]:
    """Every registered target name."""
    return tuple(BACKENDS)


def register(name: str, where: str) -> None:
    """Register a backend given as "module:attribute" (plugins and tests)."""
    BACKENDS[name] = where


def get(name: str):
    """The Backend instance for target `name`, with clear messages for unknown or missing ones."""
    if name not in BACKENDS:
        raise QccError(f"unknown target {name!r}; choose one of {', '.join(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("qcompiler"):
            raise QccError(f"target {name!r} is not available in this build of qcc ({e.name})") from None
        extra = module.split(".")[2]  # the backend's folder names its pip extra
        raise MissingDependencyError(f"target {name!r} needs the Python package {e.name!r}: "
                                     f"pip install 'qcompiler[{extra}]'") from None
