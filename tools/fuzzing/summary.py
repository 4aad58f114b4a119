"""summary.md of a campaign: class counts, an example per class, distinct causes."""
from __future__ import annotations

import shlex
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import onnx

from .classify import BAD_CLASSES, CLASSES
from .models import DIGITS, MLPERF, ROOT


def models_arg(opts) -> str:
    for key, names in (("all", DIGITS + tuple(MLPERF)), ("digits", DIGITS), ("mlperf", tuple(MLPERF))):
        if opts.model_names == sorted(names):
            return key
    return ",".join(opts.model_names)


def repro_command(opts, index: int, keep: str | None = None) -> str:
    cmd = f"python tools/fuzz.py --seed {opts.seed} --models {models_arg(opts)} --case {index}"
    if opts.family:
        cmd += f" --family {opts.family}"
    return cmd + f" --keep {keep}" if keep else cmd


def show_argv(argv: list[str]) -> str:
    return "qcc " + " ".join(shlex.quote(a if len(a) <= 80 else a[:40] + f"...<{len(a)} chars>") for a in argv)


def summarize(records: list[dict], opts, seconds: float) -> str:
    by_class = Counter(r["class"] for r in records)
    lines = [f"# qcc fuzz campaign: seed {opts.seed}, {len(records)} cases", "",
             f"Command: `nice python tools/fuzz.py --seed {opts.seed} --cases {len(records)} "
             f"--models {models_arg(opts)}{' --family ' + opts.family if opts.family else ''} --jobs {opts.jobs}` "
             f"({seconds / 60:.1f} min wall clock, {opts.jobs} job(s); timeout {opts.timeout:g} s, "
             f"address space {opts.mem_bytes >> 20} MiB per run).", "",
             f"Versions: python {sys.version.split()[0]}, numpy {np.__version__}, onnx {onnx.__version__}, "
             f"onnxruntime {_ort_version()}; qcc at {_git_head()}.", "",
             f"Models: {', '.join(opts.model_names)}. Families: "
             + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['family'] for r in records).items())) + ".", "",
             "Reproduce one case: `python tools/fuzz.py --seed S --models M --case N --keep DIR` "
             "(prints the qcc command; DIR keeps the sandbox).", "",
             "| class | cases | distinct causes | example case | example mutation | example command |",
             "|---|---|---|---|---|---|"]
    groups: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["class"]][r["cause"]].append(r)
    for cls in CLASSES:
        if not by_class.get(cls):
            continue
        ex = min((rs[0] for rs in groups[cls].values()), key=lambda r: r["case"])
        lines.append(f"| {cls} | {by_class[cls]} | {len(groups[cls])} | {ex['case']} | "
                     f"{_md(ex['mutation'][-1] if ex['mutation'] else '')} | `{_md(show_argv(ex['argv']))}` |")
    lines += ["", f"Bad classes (must be 0): {sum(by_class.get(c, 0) for c in BAD_CLASSES)} cases.", ""]
    secondary = Counter((k, r["class"]) for r in records for k in ("outside-write", "leftover")
                        if k in r["flags"] and r["class"] != k)
    if secondary:
        lines += ["Also flagged in cases counted under a worse class: " + ", ".join(
            f"{k} in {v} {cls} case(s)" for (k, cls), v in sorted(secondary.items())) + ".", ""]
    for cls in CLASSES:
        if not groups.get(cls) or cls == "ok":
            continue
        lines += [f"## {cls}: {by_class[cls]} cases, {len(groups[cls])} distinct causes", ""]
        rows = sorted(groups[cls].items(), key=lambda kv: (-len(kv[1]), kv[0]))
        if cls == "clean-error":  # the expected outcome: exit codes, then the most frequent messages
            codes = Counter(r["rc"] for r in records if r["class"] == cls)
            lines += ["By exit code: " + ", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) + ".", "",
                      f"The {min(len(rows), 20)} most frequent messages:", ""]
            rows = rows[:20]
        lines += ["| cases | cause | example case (model) | mutation | message |", "|---|---|---|---|---|"]
        for cause, rs in rows:
            r = rs[0]
            msg = r["flags"].get("message") or (r["stderr_tail"][-1] if r["stderr_tail"] else "")
            lines.append(f"| {len(rs)} | {_md(cause)} | {r['case']} ({r['model']}) | "
                         f"{_md('; '.join(r['mutation']))[:200]} | {_md(msg)[:160]} |")
        lines.append("")
    ok = [r for r in records if r["class"] in ("ok", "noisy") and r["check"]]
    checked = Counter(("pass" if r["check"]["status"] == "pass" else r["check"]["status"].split(":")[0])
                      for r in ok)
    lines += ["## checks of exit-0 runs", "", ", ".join(f"{k}: {v}" for k, v in sorted(checked.items())), ""]
    unchecked = Counter(r["check"]["status"] for r in ok if r["check"]["status"] != "pass")
    if unchecked:
        lines += ["| unchecked because | cases |", "|---|---|"] + \
                 [f"| {_md(k)} | {v} |" for k, v in unchecked.most_common(12)] + [""]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "\\n").replace("\t", "\\t").replace("`", "'")


def _ort_version() -> str:
    try:
        import onnxruntime
        return onnxruntime.__version__
    except ImportError:
        return "absent"


def _git_head() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "?"
    except OSError:
        return "?"
