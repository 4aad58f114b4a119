"""Pass registry and PassManager.

A pass is a plain function `fn(graph, ctx) -> bool` (True when it changed the
graph) registered by name with `@register_pass("name", "one-line description")`.
The PassManager runs a named list, verifies the graph after each pass, records
timings and node counts, can dump the IR after a chosen pass, and reports a
failure as "in pass X after [A, B]".
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from qcompiler.errors import GraphError, QccError
from qcompiler.ir import Graph

PassFn = Callable[[Graph, "PassContext"], bool]


@dataclass
class PassInfo:
    name: str
    description: str
    fn: PassFn


PASSES: dict[str, PassInfo] = {}


def register_pass(name: str, description: str):
    """Decorator registering `fn(graph, ctx) -> changed` under `name`."""

    def deco(fn: PassFn) -> PassFn:
        if name in PASSES and PASSES[name].fn is not fn:
            raise ValueError(f"pass {name!r} is already registered")
        PASSES[name] = PassInfo(name, description, fn)
        return fn

    return deco


@dataclass
class PassContext:
    """What passes may read besides the graph: options and shared results."""

    options: dict = field(default_factory=dict)
    log: list = field(default_factory=list)  # human-readable notes (merges, vetoes, ...)


@dataclass
class PassRecord:
    name: str
    seconds: float
    changed: bool
    nodes_before: int
    nodes_after: int


class PassManager:
    """Runs passes by name; verifies the graph before the first and after each pass that
    changed it (a pass returns whether it did; tests/test_pass_manager.py holds passes to it);
    optional dump hook."""

    def __init__(self, names: list[str], verify: bool = True,
                 dump_after: set[str] | None = None, dump: Callable[[str, Graph], None] | None = None):
        unknown = [n for n in names if n not in PASSES]
        if unknown:
            hint = "" if PASSES else " (import qcompiler.passes to register the built-in passes)"
            raise QccError(f"unknown pass(es) {unknown}; known: {sorted(PASSES)}{hint}")
        self.names = list(names)
        self.verify = verify
        self.dump_after = set(dump_after or ())
        self.dump = dump
        self.records: list[PassRecord] = []

    def run(self, graph: Graph, ctx: PassContext | None = None) -> Graph:
        ctx = ctx or PassContext()
        if self.verify:
            graph.verify()
        for i, name in enumerate(self.names):
            before = len(graph.nodes)
            t0 = time.perf_counter()
            try:
                changed = bool(PASSES[name].fn(graph, ctx))
                # a pass that reports no change left the (verified) graph as it was
                if self.verify and (changed or len(graph.nodes) != before):
                    graph.verify()
            except QccError as e:
                done = self.names[:i]
                raise type(e)(f"in pass {name} after {done}: {e}") if not hasattr(e, "problems") else e
            except Exception as e:  # a bug in a pass: say where it happened
                raise GraphError(f"in pass {name} after {self.names[:i]}: {type(e).__name__}: {e}") from e
            self.records.append(PassRecord(name, time.perf_counter() - t0, changed, before, len(graph.nodes)))
            if name in self.dump_after and self.dump is not None:
                self.dump(name, graph)
        return graph
