"""Run a pure computation in a forked child while this process does something else.

Used for the per-layer report, which needs nothing but numpy and overlaps with the
backend's emission (lowering, flatbuffer, TFLM arena measurement) on a second core.
The result comes back pickled through a pipe. Wherever that cannot happen (no fork,
one core, the child failed) `result()` computes the value here instead, so the answer
never depends on how it was obtained.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Callable


def available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class Forked:
    """`fn()` computed in a child process (started now); `result()` waits for it."""

    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.pid: int | None = None
        self.fd: int | None = None
        if not hasattr(os, "fork") or available_cores() < 2:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                os.close(read_fd)
                data = pickle.dumps(fn(), protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as f:
                    f.write(data)
                code = 0
            except BaseException:  # noqa: BLE001 - any failure: the parent computes it itself
                pass
            finally:
                os._exit(code)
        os.close(write_fd)
        self.pid, self.fd = pid, read_fd

    def result(self):
        if self.pid is None:
            return self.fn()
        with os.fdopen(self.fd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(self.pid, 0)
        self.pid = None
        if os.waitstatus_to_exitcode(status) == 0 and data:
            try:
                return pickle.loads(data)
            except Exception:  # noqa: BLE001 - a truncated message: compute it here
                pass
        return self.fn()

    def cancel(self) -> None:
        """Stop the child (when the result is no longer wanted)."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.pid = None


class ChildFailed(Exception):
    """`isolated(fn)` did not return: the child crashed (signal) or raised."""

    def __init__(self, how: str, log: str):
        self.how, self.log = how, log
        last = [line.strip() for line in log.splitlines() if line.strip()]
        super().__init__(f"{how}" + (f": {last[-1]}" if last else ""))


def isolated(fn: Callable[[], object]):
    """`fn()` computed in a forked child with its stderr captured, so that a crash of native code
    (a signal in a runtime's C++) or its log noise cannot reach this process: returns the result,
    or raises ChildFailed saying how the child ended and the last line it printed. Without fork
    (not POSIX) it runs here."""
    import signal as signals
    import tempfile
    if not hasattr(os, "fork"):
        return fn()
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as log:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                import faulthandler
                faulthandler.disable()  # a crash is an answer here, not something to dump
                os.close(read_fd)
                os.dup2(log.fileno(), 2)
                os.dup2(log.fileno(), 1)
                try:
                    payload = ("ok", fn())
                except BaseException as e:  # noqa: BLE001 - reported to the parent
                    payload = ("raised", f"{type(e).__name__}: {e}")
                data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
                with os.fdopen(write_fd, "wb") as f:
                    f.write(data)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if os.WIFSIGNALED(status):
        raise ChildFailed(f"crashed with {signals.Signals(os.WTERMSIG(status)).name}", text)
    try:
        kind, value = pickle.loads(data)
    except Exception:  # noqa: BLE001 - nothing (or half) came back
        raise ChildFailed(f"exited with status {os.waitstatus_to_exitcode(status)}", text) from None
    if kind == "raised":
        raise ChildFailed(value, text)
    return value
