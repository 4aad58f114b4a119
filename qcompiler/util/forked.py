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
