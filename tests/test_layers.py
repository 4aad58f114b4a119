"""The layering rule of README "How the code is laid out", checked on every import statement
(module level and inside functions) of the installed package's sources.

    errors, util < ir < numerics < interp < passes < frontend < quant < backends < driver

A module may import its own layer and the layers below it. Backends are independent of one
another (each may import only `backends.base` / `backends.registry` besides its own folder),
and the driver reaches a backend only through `backends.registry` (and the `backends.base`
contract). `qcompiler/__init__.py` and `__main__.py` are the facade on top.
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


def test_every_import_respects_the_layers():
    bad = list(_violations())
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["qcompiler.ir", "qcompiler.numerics", "qcompiler.interp"])
def test_the_rule_checker_sees_upward_imports(module, tmp_path):
    """The checker itself: an upward import in a low layer is reported."""
    assert _layer("qcompiler.driver.cli") == "driver"
    assert RANK[_layer(module)] < RANK["driver"]
