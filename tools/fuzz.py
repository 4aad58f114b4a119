#!/usr/bin/env python3
"""Fuzz the `qcc` command line with hostile inputs and classify every run (issue 17).

The fuzzer is the package tools/fuzzing/ (its docstring lists the classes and its modules);
this file is its command:

    python tools/fuzz.py --seed 1 --cases 1500 --out /tmp/fuzz        # a campaign
    python tools/fuzz.py --seed 1 --case 17 --keep /tmp/case17        # one case, kept
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
