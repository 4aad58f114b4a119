"""Case construction: the mutation families and their weights, and build_case(seed, index),
which makes every case reproducible from (seed, case index, model list, family)."""
from __future__ import annotations

import math
import random

from .case import Case, Ctx, npy_bytes
from .models import DIGITS, ModelSpec
from .mutate_cli import CLI_MUTATORS, baseline, e_external, p_out
from .mutate_files import BYTE_MUTATORS, CALIB_MUTATORS
from .mutate_graph import PROTO_MUTATORS


FAMILIES = [("proto", 40, PROTO_MUTATORS), ("bytes", 10, BYTE_MUTATORS), ("calib", 17, CALIB_MUTATORS),
            ("cli", 16, CLI_MUTATORS), ("out", 9, [(p_out, 1)]), ("ext", 5, [(e_external, 1)]),
            ("baseline", 3, [(baseline, 1)])]
BASE_OPTIONS = [["--per-tensor"], ["--cle"], ["--calib-method", "minmax"], ["--calib-method", "kl"],
                ["--calib-method", "mse"], ["--bias-correction", "analytic"], ["--io", "float"],
                ["--input-dtype", "uint8"], ["--per-channel-fc"], ["--no-act-eq"], ["--per-tensor-fc"]]


def _weighted(rng: random.Random, items):
    total = sum(w for _, w, *rest in items)
    r = rng.random() * total
    for it in items:
        r -= it[1]
        if r < 0:
            return it
    return items[-1]


def build_case(seed: int, index: int, specs: list[ModelSpec], only: str | None = None) -> Case:
    rng = random.Random(f"qcc-fuzz/{seed}/{index}")
    spec = specs[rng.randrange(len(specs))]
    case = Case(seed, index, spec.name)
    c = Ctx(case, spec, specs, rng)
    # data-free mode needs BatchNorm statistics: only the sample models keep BatchNorm nodes
    c.data_free = rng.random() < (0.25 if spec.name in DIGITS else 0.0)
    if rng.random() < 0.15:
        c.extra += rng.choice(BASE_OPTIONS)
    family, _, mutators = _weighted(rng, [f for f in FAMILIES if only in (None, f[0])])
    if family == "calib":
        c.data_free = False
    else:
        case.calib_array = spec.calib
    mut, _ = _weighted(rng, mutators)
    case.family, case.kind = family, mut.__name__
    if c.extra:
        c.note(f"base options {c.extra}")
    mut(c)
    if c.model_file is not None:
        data = c.model_bytes if c.model_bytes is not None else c.model.SerializeToString()
        case.setup.insert(0, ("file", c.model_file, data))
    if c.calib_file is None and c.write_calib:
        c.calib_file = npy_bytes(spec.calib)
    if c.calib_file is not None:
        case.setup.insert(0, ("file", f"w/{c.calib_arg or 'calib.npy'}", c.calib_file))
    argv = [c.model_arg]
    if c.data_free:
        argv += [f"--input-range={c.range_arg}"] if c.range_arg[:1] == "-" and not c.range_sep else \
                ["--input-range", c.range_arg]
        case.input_range = _parse_range(c.range_arg)
        case.calib_array = None
    else:
        argv += ["--calib", c.calib_arg]
    if case.out_arg is not None:
        argv += ["-o", case.out_arg]
    if c.target != "tflm":
        argv += ["--target", c.target]
    case.argv = argv + c.extra
    return case


def _parse_range(text: str):
    try:
        lo, hi = (float(v) for v in text.split(","))
        return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo < hi else None
    except ValueError:
        return None
