"""The scratch buffer's static plan: every intermediate buffer of the schedule gets an offset.

Lifetimes come from the kernel calls (`Lowering.calls`): a buffer lives from the first call
that writes it to the last call that reads it (step 0 = before the first call, step k =
call k). Values sharing memory (reshape views, in-place outputs, slices) are one buffer.
Graph inputs and outputs live in the caller's arrays and are not planned. The offsets are
the best of `qcompiler.ir.memory`'s greedy orders, then, while that is above the bound, of
up to RANDOM_ORDERS seeded random orders (a greedy order can strand a small buffer between two
big ones: MLPerf AD's 8-value bottleneck cost 16 bytes over the bound); `live_bytes` is the
bound no plan of this schedule can beat (the peak of simultaneously live bytes, 16-byte aligned).
"""
from __future__ import annotations

from dataclasses import dataclass

import random

from qcompiler.ir.memory import Buffer, best_plan, lower_bound, plan

from qcompiler.backends.c.lower import Lowering, Storage


RANDOM_ORDERS = 200


@dataclass
class MemoryPlan:
    offsets: dict[int, int]          # id(Storage) -> byte offset in the scratch buffer
    scratch_bytes: int
    live_bytes: int
    strategy: str
    buffers: list[tuple[Storage, Buffer]]


def plan_scratch(ctx: Lowering, io_in_scratch: bool = False) -> MemoryPlan:
    """With `io_in_scratch` the graph inputs (live from step 0) and outputs (live to the end)
    get places in the scratch buffer too: a caller that writes its inputs there and reads its
    outputs there needs no other RAM (the kernels still take the pointers it passes)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    storages: dict[int, Storage] = {}
    for step, call in enumerate(ctx.calls, start=1):
        for buf in call.writes:
            first.setdefault(id(buf), step)
            last[id(buf)] = max(last.get(id(buf), step), step)
            storages[id(buf)] = buf
        for buf in call.reads:
            first.setdefault(id(buf), step)   # (never: a read before any write)
            last[id(buf)] = max(last.get(id(buf), step), step)
            storages[id(buf)] = buf
    planned = ("scratch", "input", "output") if io_in_scratch else ("scratch",)
    for v in ctx.graph.inputs:
        buf = ctx.placed[v.name].buf
        storages[id(buf)], first[id(buf)] = buf, 0
        last.setdefault(id(buf), 0)
    for buf in ctx.output_bufs.values():
        last[id(buf)] = len(ctx.calls)      # to the last step (report.json: steps 0..len(ops))
    # buffers are named by their place in schedule order, not by id(): ties between equal
    # plans are broken by name, and ids differ from run to run (the bytes must not)
    keyed = [(k, s) for k, s in storages.items() if s.kind in planned]
    bufs = [(s, Buffer(str(i), s.nbytes, first[k], last[k])) for i, (k, s) in enumerate(keyed)]
    if not bufs:
        return MemoryPlan({}, 0, 0, "none", [])
    flat = [b for _, b in bufs]
    offsets, head, strategy = best_plan(flat)
    bound = lower_bound(flat)
    rng = random.Random(0)
    for _ in range(RANDOM_ORDERS if head > bound else 0):
        keys = {b.name: rng.random() for b in flat}
        cand, size = plan(flat, lambda b: (keys[b.name],))
        if size < head:
            offsets, head, strategy = cand, size, "random"
        if head <= bound:
            break
    return MemoryPlan({k: offsets[b.name] for (k, _), (_, b) in zip(keyed, bufs)}, head, bound, strategy, bufs)


def report_plan(ctx: Lowering, plan: MemoryPlan) -> dict:
    """report.json's generic "memory_plan": buffers (values sharing memory listed together)
    with size, first / last step and offset, the step list, the planned bytes."""
    entries = [{"tensors": list(s.values) or [s.name], "size": b.size, "first": b.first, "last": b.last,
                "offset": plan.offsets[id(s)]} for s, b in plan.buffers]
    entries.sort(key=lambda e: (e["first"], e["offset"], e["tensors"]))
    io = any(s.kind != "scratch" for s, _ in plan.buffers)
    return {"source": f"qcc's static plan of the C scratch buffer ({plan.strategy} order); graph inputs and "
                      + ("outputs have places in it (--c-io scratch)" if io else "outputs live in the caller's arrays"),
            "planned_bytes": plan.scratch_bytes, "live_bytes": plan.live_bytes,
            "ops": [c.fn.removeprefix("qcc_") for c in ctx.calls], "buffers": entries}
