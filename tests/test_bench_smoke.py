"""Keeps the benchmark script alive: `python -m bench --quick` on one tiny sample model."""
from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_bench_quick_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (tmp_path / "results_quick.md").read_text()
    for section in ("Fidelity against the float model", "TFLite Micro deployment", "TVM latency", "ncnn"):
        assert f"## {section}" in text
    assert "FAILED" not in text and "digits_cnn" in text
