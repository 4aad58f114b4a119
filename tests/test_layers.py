"""The layering rule of README "How the code is laid out", checked on every import statement
(module level and inside functions) of the installed package's sources.

    errors, util < ir < numerics < interp < passes < frontend < quant < backends < driver

A module may import its own layer and the layers below it. Backends are independent of one
another (each may import only `backends.base` / `backends.registry` besides its own folder),
and the driver reaches a backend only through `backends.registry` (and the `backends.base`
contract). `qcompiler/__init__.py` and `__main__.py` are the facade on top.

The integer reference kernels are private to `qcompiler/interp/`: everything else (backends
above all) uses the public kernel table and Interpreter from `qcompiler.interp` and takes
per-op parameters from `qcompiler.numerics.qops`, never a module of `interp.int_kernels`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["errors", "util", "ir", "numerics", "interp", "passes", "frontend", "quant", "backends", "driver"]
RANK = {name: (0 if name in ("errors", "util") else LAYERS.index(name) - 1) for name in LAYERS}
BACKEND_CONTRACT = {"qcompiler.backends", "qcompiler.backends.base", "qcompiler.backends.registry"}


def _sources():
    for folder, package in (("qcompiler", "qcompiler"), ("passes", "qcompiler.passes"),
                            ("backends", "qcompiler.backends")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([package, *parts]), path.name == "__init__.py"


def _imports(path: Path, module: str, is_package: bool):
    tree = ast.parse(path.read_text())
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            if base == "qcompiler":  # `from qcompiler import passes` imports a module
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "qcompiler" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in RANK else None


def _violations():
    for path, module, is_package in _sources():
        mine = _layer(module)
        if mine is None:  # the facade (qcompiler/__init__.py, __main__.py)
            continue
        for line, target in _imports(path, module, is_package):
            theirs = _layer(target)
            if theirs is None:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if RANK[theirs] > RANK[mine]:
                yield f"{where}: layer {mine} may not import the higher layer {theirs}"
            elif theirs == "backends" and mine != "backends" and target not in BACKEND_CONTRACT:
                yield f"{where}: only backends.registry / backends.base are visible outside backends/"
            elif theirs == "backends" and mine == "backends":
                own = ".".join(module.split(".")[:3])
                if not (target.startswith(own + ".") or target == own or target in BACKEND_CONTRACT):
                    yield f"{where}: a backend may not import another backend"


INT_KERNELS_PACKAGE = "qcompiler.interp.int_kernels"


def _private_kernel_imports():
    for path, module, is_package in _sources():
        if module == "qcompiler.interp" or module.startswith("qcompiler.interp."):
            continue
        for line, target in _imports(path, module, is_package):
            if target == INT_KERNELS_PACKAGE or target.startswith(INT_KERNELS_PACKAGE + "."):
                yield (f"{path.relative_to(ROOT)}:{line} imports {target}: the integer kernels are "
                       "private to qcompiler/interp; use qcompiler.interp (INT_KERNELS, Interpreter) "
                       "and qcompiler.numerics.qops (per-op parameters)")


def test_no_import_of_the_integer_kernels_outside_interp():
    bad = list(_private_kernel_imports())
    assert not bad, "\n".join(bad)


def test_every_import_respects_the_layers():
    bad = list(_violations())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["qcompiler.ir", "qcompiler.numerics", "qcompiler.interp"])
def test_the_rule_checker_sees_upward_imports(module, tmp_path):
    """The checker itself: an upward import in a low layer is reported."""
    assert _layer("qcompiler.driver.cli") == "driver"
    assert RANK[_layer(module)] < RANK["driver"]


def test_the_kernel_rule_sees_a_private_import(tmp_path):
    """The checker itself: a backend importing a reference-kernel module is reported."""
    src = tmp_path / "lower.py"
    src.write_text("def f():\n    from qcompiler.interp.int_kernels.pool import _out_size\n"
                   "from ...interp.int_kernels import util\n")
    targets = [t for _, t in _imports(src, "qcompiler.backends.tvm.lower", False)]
    assert "qcompiler.interp.int_kernels.pool" in targets
    assert "qcompiler.interp.int_kernels" in targets
