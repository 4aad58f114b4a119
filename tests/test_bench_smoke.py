"""Keeps the benchmark script alive: `python -m bench --quick` on one tiny sample model."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_bench_quick_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    written = tmp_path / "results_quick.md"
    text = written.read_text() if written.is_file() else ""
    failed = [part for part in text.split("\n## ") if "FAILED" in part]  # a section's traceback, if any
    assert proc.returncode == 0 and not failed, "\n".join(failed)[-3000:] or proc.stderr[-3000:]
    for section in ("Fidelity against the float model", "TFLite Micro deployment", "TVM latency", "ncnn",
                    "Backend parity: verify on every target"):
        assert f"## {section}" in text
    assert "digits_cnn" in text


def test_bench_creates_its_output_folder(tmp_path):
    """--out names a folder that does not exist yet: it is made before any section runs."""
    from bench.__main__ import output_dir
    target = tmp_path / "new" / "deeper"
    assert output_dir(["--out", str(target)]) == target and target.is_dir()
