"""The installed package is the source tree: a plain (non-editable) `pip install .` must carry
every subpackage and data file. (Once it did not: `qcompiler.numerics.qops` was missing from
pyproject's package list, so README command 1 failed on a fresh machine while every editable
test run passed.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import MODELS

ROOT = Path(__file__).resolve().parent.parent
TOP = {"qcompiler": "qcompiler", "passes": "qcompiler.passes", "backends": "qcompiler.backends"}


def _source_packages() -> set[str]:
    out = set()
    for folder, name in TOP.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            out.add(".".join((name, *rel)))
    return out


def test_every_source_package_is_declared():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() - declared == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert declared - _source_packages() == set(), "pyproject.toml lists packages that do not exist"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    # from a copy of the tracked files: setuptools reuses a stale build/ folder of the checkout
    src = tmp_path_factory.mktemp("src")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    # with build isolation, as README command 1 installs (pip fetches setuptools from PyPI)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                           str(target), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


@pytest.mark.parametrize("target", ["tflm", "c"])
def test_a_plain_install_compiles(installed, tmp_path, target):
    env = {**os.environ, "PYTHONPATH": str(installed)}
    proc = subprocess.run([sys.executable, "-m", "qcompiler", str(MODELS / "digits_cnn.onnx"), "--target", target,
                           "--calib", str(MODELS / "digits_calib.npy"), "-o", str(tmp_path / "out"), "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    where = subprocess.run([sys.executable, "-c", "import qcompiler; print(qcompiler.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True).stdout
    assert where.startswith(str(installed)), where
