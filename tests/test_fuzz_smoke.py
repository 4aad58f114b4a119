"""A small seeded batch of the hostile-input fuzzer (tools/fuzz.py, issue 17).

18 cases on the sample models (30-40 s on a quiet machine): each mutates one input of `qcc`
(ONNX bytes or fields, calibration file, CLI option, output path, external data) and must end as
`ok` or `clean-error`.
Reproduce one case: python tools/fuzz.py --seed 15 --models digits --case N --keep DIR
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED, CASES = 15, 18

_spec = importlib.util.spec_from_file_location("qcc_fuzz", ROOT / "tools" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["qcc_fuzz"] = fuzz  # dataclasses look their module up by name
_spec.loader.exec_module(fuzz)

@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    opts = fuzz.parse_args(["--seed", str(SEED), "--cases", str(CASES), "--models", "digits", "--quiet",
                            "--tmp", str(tmp_path_factory.mktemp("fuzz"))])
    fuzz.prepare(opts)
    return fuzz.run_batch(opts)


def test_batch_is_reproducible_from_seed():
    specs = [fuzz.load_spec(m) for m in fuzz.available_models("digits")]
    a = [fuzz.build_case(SEED, i, specs) for i in range(CASES)]
    b = [fuzz.build_case(SEED, i, specs) for i in range(CASES)]
    assert [(c.model, c.kind, c.desc, c.argv) for c in a] == [(c.model, c.kind, c.desc, c.argv) for c in b]
    assert [[op[:2] + tuple(x for x in op[2:] if isinstance(x, (bytes, str))) for op in c.setup] for c in a] == \
           [[op[:2] + tuple(x for x in op[2:] if isinstance(x, (bytes, str))) for op in c.setup] for c in b]


def test_every_case_is_classified(batch):
    assert len(batch) == CASES
    assert {r["class"] for r in batch} <= set(fuzz.CLASSES)
    assert any(r["class"] == "ok" for r in batch)  # the harness itself compiles and checks models


@pytest.mark.parametrize("cls", fuzz.BAD_CLASSES)
def test_no_bad_class(batch, cls):
    hits = [r for r in batch if r["class"] == cls]
    assert not hits, "\n".join(f"case {r['case']}: {r['cause']} ({'; '.join(r['mutation'])}) -- "
                               f"{r['repro']}" for r in hits)
