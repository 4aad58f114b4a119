"""A small seeded batch of the hostile-input fuzzer (tools/fuzz.py -> tools/fuzzing/, issue 17).

18 cases on the sample models (30-40 s on a quiet machine): each mutates one input of `qcc`
(ONNX bytes or fields, calibration file, CLI option, output path, external data) and must end as
`ok` or `clean-error`.
Reproduce one case: python tools/fuzz.py --seed 15 --models digits --case N --keep DIR
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED, CASES = 15, 18

sys.path.insert(0, str(ROOT / "tools"))
from fuzzing import build, driver, models  # noqa: E402  (tools/fuzzing/: the fuzzer's package)
from fuzzing.classify import BAD_CLASSES, CLASSES  # noqa: E402


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    opts = driver.parse_args(["--seed", str(SEED), "--cases", str(CASES), "--models", "digits", "--quiet",
                              "--tmp", str(tmp_path_factory.mktemp("fuzz"))])
    driver.prepare(opts)
    return driver.run_batch(opts)


def test_command_lists_cases():
    """`python tools/fuzz.py` is the documented command; --list builds cases without running qcc."""
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "fuzz.py"), "--seed", str(SEED), "--models",
                           "digits", "--cases", "3", "--list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()[::2]] == ["0", "1", "2"]


def test_batch_is_reproducible_from_seed():
    specs = [models.load_spec(m) for m in models.available_models("digits")]
    a = [build.build_case(SEED, i, specs) for i in range(CASES)]
    b = [build.build_case(SEED, i, specs) for i in range(CASES)]
    assert [(c.model, c.kind, c.desc, c.argv) for c in a] == [(c.model, c.kind, c.desc, c.argv) for c in b]
    assert [[op[:2] + tuple(x for x in op[2:] if isinstance(x, (bytes, str))) for op in c.setup] for c in a] == \
           [[op[:2] + tuple(x for x in op[2:] if isinstance(x, (bytes, str))) for op in c.setup] for c in b]


def test_every_case_is_classified(batch):
    assert len(batch) == CASES
    assert {r["class"] for r in batch} <= set(CLASSES)
    assert any(r["class"] == "ok" for r in batch)  # the harness itself compiles and checks models


@pytest.mark.parametrize("cls", BAD_CLASSES)
def test_no_bad_class(batch, cls):
    hits = [r for r in batch if r["class"] == cls]
    assert not hits, "\n".join(f"case {r['case']}: {r['cause']} ({'; '.join(r['mutation'])}) -- "
                               f"{r['repro']}" for r in hits)
