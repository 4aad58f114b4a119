"""Deterministic TFLM latency: instructions executed inside MicroInterpreter::Invoke.

Wall-clock on a shared 2-core machine varies by +-30 % between runs of the same file;
the instruction count under valgrind's callgrind (collection switched on only inside
the interpreter's Invoke) is identical run after run, and for a microcontroller
without caches it is the closer proxy of latency anyway. One invoke on an all-zero
input (the count is linear in the number of invokes: measured 51,016,730 x 3 =
153,050,190 on KWS).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys
from qcompiler.backends.tflite.runtime import TflmRunner
run = TflmRunner(open(sys.argv[1], "rb").read())
run(run.zero_inputs())
"""


def available() -> bool:
    return shutil.which("valgrind") is not None


def tflm_invoke_instructions(tflite: Path) -> int | None:
    """Instructions one TFLM invoke of `tflite` executes (None without valgrind)."""
    if not available():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        res = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              "--toggle-collect=*MicroInterpreter::Invoke*",
                              sys.executable, "-c", CHILD, str(tflite)],
                             capture_output=True, text=True, check=True)
        m = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
        if m is None:
            raise RuntimeError(f"callgrind wrote no totals for {tflite}: {res.stderr[-500:]}")
        return int(m.group(1))
