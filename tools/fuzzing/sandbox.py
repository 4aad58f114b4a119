"""The sandbox a case runs in: materialize its files, snapshot the tree before and after, run
with a timeout and an address-space limit, clean up; normalize() makes output comparable."""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import onnx

from .case import Case
from .models import ROOT


def _fill_base(model: onnx.ModelProto, base: Path) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        for e in t.external_data:
            e.value = e.value.replace("{BASE}", str(base))
    return m.SerializeToString()


def materialize(case: Case, base: Path) -> list[Path]:
    """Create the sandbox: w/ (cwd, model, calibration), home/, tmp/, outside/; returns locked dirs."""
    for d in ("w", "home", "tmp", "outside"):
        (base / d).mkdir(parents=True, exist_ok=True)
    locked = []
    for op in case.setup:
        kind, p = op[0], base / op[1]
        if kind != "readonly":
            p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            p.write_bytes(op[2])
        elif kind == "dir":
            p.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            os.symlink(op[2].replace("{BASE}", str(base)), p)
        elif kind == "fifo":
            os.mkfifo(p)
        elif kind == "onnx":
            p.write_bytes(_fill_base(op[2], base))
        elif kind == "readonly":
            locked.append(p)
    for p in locked:
        os.chmod(p, 0o555)
    _chattr(locked, "+i")  # root ignores permission bits
    return locked


def _chattr(paths: list[Path], flag: str) -> None:
    if paths and os.geteuid() == 0 and shutil.which("chattr"):
        for p in paths:
            subprocess.run(["chattr", flag, str(p)], capture_output=True)


def unlock(locked: list[Path]) -> None:
    """Undo materialize's immutable flag (as root) on the read-only folders."""
    _chattr(locked, "-i")


def cleanup(base: Path, locked: list[Path]) -> None:
    unlock(locked)
    for dirpath, dirnames, _ in os.walk(base):
        for d in dirnames:
            try:
                q = os.path.join(dirpath, d)
                if not os.path.islink(q):
                    os.chmod(q, 0o755)
            except OSError:
                pass
    shutil.rmtree(base, ignore_errors=True)
    if base.exists():  # paths longer than PATH_MAX: remove level by level
        subprocess.run(["rm", "-rf", "--", str(base)], capture_output=True)


def snapshot(base: Path) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            snap[os.path.relpath(p, base)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns, st.st_ino, link)
    return snap


def run_limited(cmd: list[str], cwd: Path, env: dict, timeout: float, mem_bytes: int) -> dict:
    def limits():
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))

    t0 = time.monotonic()
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=limits, start_new_session=True)
    timed_out = False
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
    return {"rc": p.returncode, "stdout": out.decode("utf-8", "replace"), "stderr": err.decode("utf-8", "replace"),
            "timed_out": timed_out, "seconds": round(time.monotonic() - t0, 2)}


def child_env(base: Path) -> dict:
    env = dict(os.environ)
    env.update(HOME=str(base / "home"), TMPDIR=str(base / "tmp"), PYTHONFAULTHANDLER="1",
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    return env


def normalize(text: str, base: Path | None = None) -> str:
    if base is not None:
        text = text.replace(str(base), "<sandbox>")
    text = re.sub(r"/\S*/(site|dist)-packages/", "", text)
    text = text.replace(str(ROOT) + "/", "")
    text = re.sub(r"/tmp/\S+", "<tmp>", text)
    text = re.sub(r"0x[0-9a-fA-F]+", "0x_", text)
    text = re.sub(r"\d+(\.\d+)?(e[+-]?\d+)?", "N", text)
    text = re.sub(r"'[^']{40,}'", "'...'", text)
    return text.strip()[:160]
