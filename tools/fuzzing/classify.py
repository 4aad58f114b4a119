"""One run -> its class (worst first, see CLASSES) and a cause that groups runs alike."""
from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

from .case import Case
from .check import check_output
from .models import ROOT
from .sandbox import normalize

CLASSES = ("outside-write", "signal", "memory", "timeout", "silently-wrong", "outside-read",
           "traceback", "leftover", "unclear", "warned", "noisy", "clean-error", "ok")
BAD_CLASSES = CLASSES[:9]
DATA_FREE_WARNING = "warning: DATA-FREE quantization"
TRACEBACK = "Traceback (most recent call last):"
RUNTIME_STATE = {"tmp/.ses"}
MEMORY = re.compile(r"MemoryError|Unable to allocate|bad_alloc|Cannot allocate memory|out of memory", re.I)
ANSI = re.compile(r"\x1b\[")
FRAME = re.compile(r'^\s*File "(.+?)", line (\d+), in (.+)$')


def short_path(path: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    stdlib = os.path.dirname(os.__file__) + "/"
    if path.startswith(stdlib):
        return "<stdlib>/" + path[len(stdlib):]
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except (ValueError, OSError):
        return path


def parse_traceback(err: str) -> tuple[str, str]:
    """(last frame 'file:function', exception line) of the last traceback in `err`; when the
    last frame is outside qcc, the last qcc frame comes first: 'qcc frame (in last frame)'."""
    block = err[err.rindex(TRACEBACK):].splitlines()[1:]
    frame, own, exc = "?", None, "?"
    for i, line in enumerate(block):
        m = FRAME.match(line)
        if m:
            frame = f"{short_path(m.group(1))}:{m.group(3).strip()}"
            if _is_qcc(m.group(1)):
                own = frame
            continue
        if line and not line.startswith((" ", "\t", "^", "~")) and frame != "?":
            exc = line.strip()
            break
    return (frame if own in (None, frame) else f"{own} (in {frame})"), exc


def _is_qcc(path: str) -> bool:
    try:
        rel = Path(path).resolve().relative_to(ROOT)
    except (ValueError, OSError):
        return False
    return rel.parts[0] in ("qcompiler", "passes", "backends")


def faulthandler_frame(err: str) -> str:
    lines = err.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("Current thread", "Thread 0x")) and "most recent call first" in line:
            for nxt in lines[i + 1:]:
                m = re.match(r'\s*File "(.+?)", line (\d+) in (.+)$', nxt)
                if m:
                    return f"{short_path(m.group(1))}:{m.group(3).strip()}"
    return "no Python frame"


def stderr_noise(err: str, out: str) -> list[str]:
    """Why stderr is not just qcc's own lines."""
    issues = []
    if ANSI.search(err) or ANSI.search(out):
        issues.append("ANSI colour codes")
    lines = [l for l in err.splitlines() if l.strip()]
    if any(l.startswith("usage:") for l in lines):
        issues.append(f"usage dump ({len(lines)} lines)")
    if "allow_pickle" in err:
        issues.append("'allow_pickle' advice")
    foreign = [l for l in lines if not l.startswith(("qcc:", "usage:")) and not l.startswith(" ")]
    if foreign and not any(i.startswith("usage") for i in issues):
        issues.append(noise_kind(normalize(ANSI.sub("", foreign[0]))))
    return issues


def noise_kind(line: str) -> str:
    """A foreign stderr line -> what printed it (also applied to stored causes: idempotent)."""
    m = re.search(r"\[([EWIV]):onnxruntime:[^\]]*?(\w+\.cc):N ([^\]]+)\]", line)
    if m:
        return f"onnxruntime log line [{m.group(1)}] {m.group(2)} {m.group(3)}"
    m = re.search(r"tensorflow/lite/micro/\S*?(\w+\.cc):N (.{0,40})", line)
    if m:
        return f"TFLM log line {m.group(1)}: {m.group(2)}"
    m = re.search(r"(\S+\.py):N: (\w+Warning): (.{0,50})", line)
    if m:
        return f"{m.group(2)} from {m.group(1)}: {m.group(3)}"
    return line if line.startswith(("onnxruntime log", "TFLM log", "foreign line")) or "Warning from" in line \
        else "foreign line: " + line[:100]


def classify(case: Case, base: Path, run: dict, before: dict, after: dict, opts) -> dict:
    rc, err, out = run["rc"], run["stderr"], run["stdout"]
    flags: dict[str, str] = {}
    # ---- filesystem
    out_abs = None
    if case.out_arg:  # qcc treats `-o ''` like no -o
        o = case.out_arg.replace("{BASE}", str(base))
        out_abs = os.path.realpath(os.path.join(base / "w", o))
    else:
        out_abs = os.path.realpath(base / "w" / f"{Path(case.argv[0]).stem}_{_target(case)}")
    allowed = [out_abs]
    if case.dump_dir:
        allowed.append(str(base / case.dump_dir))
    rbase = os.path.realpath(base)

    def inside(rel: str, roots) -> bool:
        full = os.path.realpath(os.path.join(rbase, os.path.dirname(rel)))
        full = os.path.join(full, os.path.basename(rel))
        return any(full == r or full.startswith(r.rstrip("/") + "/") for r in roots)

    def is_ancestor_dir(rel: str) -> bool:
        full = os.path.join(rbase, rel)
        return after.get(rel, (None,))[0] == stat.S_IFDIR and out_abs.startswith(full.rstrip("/") + "/")

    # created paths, and files / links whose content or identity changed (a folder's mtime
    # changes whenever an entry comes or goes: not a write of its own)
    changed = [k for k in after if k not in before or (after[k][:4] != before[k][:4]
                                                       and not (after[k][0] == before[k][0] == stat.S_IFDIR))]
    removed = [k for k in before if k not in after]
    outside = [k for k in changed if not inside(k, allowed) and not k.startswith(("home/", "tmp/"))
               and not is_ancestor_dir(k) and ".qcc-" not in k]
    if outside:
        flags["outside-write"] = ", ".join(sorted(outside)[:3])
    temps = [k for k in after if ".qcc-" in os.path.basename(k)]
    # onnxruntime (1.2x) keeps a session id in $TMPDIR/.ses and a device id under ~/.cache:
    # runtime state, not qcc's temporary files
    tmpfiles = [k for k in after if k.startswith("tmp/") and k not in RUNTIME_STATE]
    in_out = [k for k in changed + removed if inside(k, [out_abs])]
    if temps:
        flags["leftover"] = f"temp folder {normalize(temps[0])} left behind"
    elif tmpfiles:
        flags["leftover"] = f"file left in TMPDIR: {normalize(tmpfiles[0])}"
    elif rc != 0 and in_out:
        flags["leftover"] = f"partial output in -o after a failure ({len(in_out)} paths changed)"
    elif rc == 0:
        lost = [k for k in before if inside(k, [out_abs]) and (base / k).name in ("keep.txt",)
                and (k not in after or after[k][:4] != before[k][:4])]
        if lost:
            flags["leftover"] = "an unrelated file in -o was changed or removed"
    # ---- process
    cls, cause, check = None, "", None
    if run["timed_out"]:
        cls, cause = "timeout", f"timeout ({case.kind})"
    elif rc < 0 or rc in (128 + 6, 128 + 9, 128 + 11):
        sig = -rc if rc < 0 else rc - 128
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if MEMORY.search(err):
            cls, cause = "memory", f"{name} after an allocation failure at {faulthandler_frame(err)}"
        else:
            cls, cause = "signal", f"{name} at {faulthandler_frame(err)}"
    elif rc != 0:
        clean = _clean_error(err, out)
        if TRACEBACK in err:
            frame, exc = parse_traceback(err)
            kind = "memory" if MEMORY.search(exc) else "traceback"
            cls, cause = kind, f"{exc.split(':')[0]} at {frame}"
            flags["message"] = normalize(exc, base)
        elif MEMORY.search(err) and not clean:
            cls, cause = "memory", normalize(err.strip().splitlines()[-1], base)
        elif clean:
            cls, cause = "clean-error", f"exit {rc}: " + normalize(_error_line(err), base)[:90]
        else:
            noise = stderr_noise(err, out) or ["no 'qcc: error:' line"]
            cls, cause = "unclear", "; ".join(noise)
            flags["message"] = normalize(_error_line(err) or err.strip()[-200:], base)
    else:
        if case.outside_data:
            cls, cause = "outside-read", f"external data outside the model folder accepted ({case.desc[-1][:80]})"
        else:
            check = check_output(case, base, out_abs, opts)
            if check["status"] == "fail" and case.input_range is not None and DATA_FREE_WARNING in err:
                # not silent: data-free ranges are estimates and qcc said so (quality, not a lie)
                cls, cause = "warned", f"data-free, warned: {check['reason']}"
            elif check["status"] == "fail":
                cls, cause = "silently-wrong", check["reason"]
            else:
                noise = stderr_noise(err, out)
                cls, cause = ("noisy", "; ".join(noise)) if noise else ("ok", check["status"])
    # the worst class wins; the others stay in flags
    for k in ("outside-write", "leftover"):
        if k in flags and CLASSES.index(k) < CLASSES.index(cls):
            flags["process"] = f"{cls}: {cause}"
            cls, cause = k, f"{flags[k] if k == 'leftover' else 'writes ' + normalize(flags[k])} ({case.kind})"
    return {"class": cls, "cause": cause, "flags": flags, "check": check}


def _target(case: Case) -> str:
    return case.argv[case.argv.index("--target") + 1] if "--target" in case.argv else "tflm"


def _error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("qcc: error:")]
    return lines[-1][len("qcc: error:"):].strip() if lines else ""


def _clean_error(err: str, out: str) -> bool:
    lines = [l for l in err.splitlines() if l.strip()]
    return (bool(lines) and lines[-1].startswith("qcc: error:") and all(l.startswith("qcc:") for l in lines)
            and sum(l.startswith("qcc: error:") for l in lines) == 1 and not ANSI.search(err + out)
            and "allow_pickle" not in err)
