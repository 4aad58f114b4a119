"""TFLM arena: offline tensor placement and the exact arena size a model needs.

- `offline_plan(model)`: tensor lifetimes over the operator list (TFLM's own
  scoping: graph inputs live from scope 0, op i's outputs are created and its
  inputs last used at scope i+1, graph outputs live to the end), RESHAPE /
  SQUEEZE outputs aliased onto their input (TFLM skips the copy when both share
  memory), then the best of several greedy orders (`qcompiler.memory_planner`).
- `memory_plan(model, offline)`: the chosen placement as plain data for the report.
- `with_offline_plan(model, offsets)`: the model with TFLM's
  `OfflineMemoryAllocation` metadata ([version 0, 1 subgraph, n, offset per tensor
  or -1]).
- `min_arena(model_bytes)`: the smallest arena with which TFLM's interpreter
  runs the model, found by bisection; each try runs in a forked child because
  TFLM can crash, not fail cleanly, when the arena is too small. Measured on the
  host (64-bit structs), so it is an upper bound for 32-bit microcontrollers.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np

from qcompiler.errors import BackendError

from qcompiler.ir.memory import Buffer, best_plan, plan

from qcompiler.backends.tflite.flatbuffer import TflModel

ALIASING_OPS = {"RESHAPE", "SQUEEZE"}
OFFLINE_METADATA = "OfflineMemoryAllocation"


def _nbytes(t) -> int:
    return math.prod(t.shape) * np.dtype(t.dtype).itemsize


def _activations(model: TflModel) -> list[int]:
    return [i for i, t in enumerate(model.tensors) if t.data is None and _nbytes(t) > 0]


def buffers(model: TflModel, alias: bool = True) -> tuple[list[Buffer], dict[int, int]]:
    """Planner buffers and the tensor -> representative tensor map (aliases share one buffer)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in model.inputs:
        first[i], last[i] = 0, 0
    for k, op in enumerate(model.operators, start=1):
        for o in op.outputs:
            first.setdefault(o, k)
            last[o] = max(last.get(o, k), k)
        for i in op.inputs:
            if i >= 0:
                last[i] = max(last.get(i, k), k)
    for o in model.outputs:
        last[o] = len(model.operators)
    root = {i: i for i in _activations(model)}
    if alias:
        for op in model.operators:
            src, dst = op.inputs[0], op.outputs[0]
            if op.opcode in ALIASING_OPS and src in root and dst in root \
                    and dst not in model.inputs and _nbytes(model.tensors[src]) == _nbytes(model.tensors[dst]):
                root[dst] = root[src]
    groups: dict[int, list[int]] = {}
    for t in root:
        r = t
        while root[r] != r:
            r = root[r]
        root[t] = r
        groups.setdefault(r, []).append(t)
    bufs = [Buffer(str(r), _nbytes(model.tensors[r]), min(first.get(t, 0) for t in members),
                   max(last.get(t, 0) for t in members)) for r, members in groups.items()]
    return bufs, root


def offline_plan(model: TflModel) -> tuple[list[int], int, str]:
    """(offset per tensor, -1 for constants; planned head bytes; strategy name)."""
    bufs, root = buffers(model, alias=True)
    offsets, head, strategy = best_plan(bufs)
    per_tensor = [offsets[str(root[i])] if i in root else -1 for i in range(len(model.tensors))]
    return per_tensor, head, strategy


def memory_plan(model: TflModel, offline: bool) -> dict:
    """The chosen placement for report.json's generic "memory_plan" entry: every activation
    buffer (tensors sharing memory listed together) with its size, first/last step (step 0:
    graph inputs, step k: operator k) and offset. With `offline` our plan as embedded in the
    model; otherwise TFLM's own planner decides at runtime and this is qcc's simulation of it
    (largest first, no aliasing), whose offsets the runtime's may differ from."""
    bufs, root = buffers(model, alias=offline)
    if offline:
        offsets, head, strategy = best_plan(bufs)
        source = f"qcc's offline plan ({strategy} order), embedded in the model"
    else:
        offsets, head = plan(bufs)
        source = "TFLM's own planner at runtime; offsets from qcc's simulation of it"
    members: dict[int, list[str]] = {}
    for t in sorted(root):
        members.setdefault(root[t], []).append(model.tensors[t].name)
    entries = [{"tensors": members[int(b.name)], "size": b.size, "first": b.first, "last": b.last,
                "offset": offsets[b.name]} for b in bufs]
    entries.sort(key=lambda b: (b["first"], b["offset"], b["tensors"]))
    return {"source": source, "planned_bytes": head, "ops": [op.opcode for op in model.operators],
            "buffers": entries}


def online_head_estimate(model: TflModel) -> int:
    """What TFLM's own greedy planner (largest first, no aliasing) would need for the tensors."""
    return plan(buffers(model, alias=False)[0])[1]


def with_offline_plan(model: TflModel, offsets: list[int]) -> TflModel:
    data = np.array([0, 1, len(offsets)] + list(offsets), dtype="<i4").tobytes()
    return replace(model, metadata={**model.metadata, OFFLINE_METADATA: data})


def _runs_with(model_bytes: bytes, arena: int) -> bool:
    """Does TFLM allocate the model's tensors in `arena` bytes? (in a forked child)

    Allocation is the whole question: the interpreter allocates (and prepares every kernel,
    scratch buffers included) when it is built, and Invoke takes nothing from the arena.
    Tests invoke every model with exactly the arena found here."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            import faulthandler
            faulthandler.disable()  # a crash here is an expected answer ("too small"), not a bug report
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)  # TFLM explains each failed try on stderr; the parent needs no noise
            os.dup2(devnull, 1)
            from qcompiler.backends.tflite.runtime import TflmRunner
            TflmRunner(model_bytes, arena)  # raises when the tensors do not fit
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def min_arena(model_bytes: bytes, hint: int | None = None, granularity: int = 16) -> int:
    """Smallest arena (multiple of `granularity`) with which TFLM runs the model."""
    hi = max(hint or 4096, granularity)
    while not _runs_with(model_bytes, hi):
        hi *= 2
        if hi > 1 << 31:
            raise RuntimeError("TFLM does not run this model with any arena size")
    lo = 0  # known not to work (or trivially too small)
    while hi - lo > granularity:
        mid = (lo + hi) // 2 // granularity * granularity
        if mid <= lo:
            break
        if _runs_with(model_bytes, mid):
            hi = mid
        else:
            lo = mid
    return hi


def recorded_arena(model_bytes: bytes) -> int:
    """Arena bytes TFLM's recording allocator reports (16-byte multiple), measured in a forked
    child: a model TFLM refuses (its C++ can abort or divide by zero) becomes a clear error."""
    from qcompiler.backends.tflite.runtime import tflm_allocations
    from qcompiler.util.forked import ChildFailed, isolated
    try:
        total = isolated(lambda: tflm_allocations(model_bytes)["total"])
    except ChildFailed as e:
        raise BackendError(f"TFLite Micro cannot allocate the emitted model ({e}); this is a qcc bug "
                           "unless the model itself is malformed") from None
    return -(-total // 16) * 16


def needed_arena(model_bytes: bytes, recorded: int | None = None) -> int:
    """The arena TFLM needs: the recorded total, checked by one run with exactly that arena.

    The recorded total is the minimum for every model of ours measured so far; when the
    check fails (Prepare can use temporary memory beyond the final total; the official AD
    file needs 656 bytes more) the minimum is bisected instead (`min_arena`, forked runs).
    """
    total = recorded if recorded is not None else recorded_arena(model_bytes)
    if _runs_with(model_bytes, total):
        return total
    return min_arena(model_bytes, hint=2 * total)


def plan_arena(model: TflModel) -> tuple[TflModel, dict, bytes]:
    """Pick TFLM's own placement or our offline plan, whichever needs the smaller arena:
    (chosen model, report entries, its flatbuffer bytes).

    With tflite-micro installed both variants are measured (TFLM's recorded arena use,
    the chosen one checked by a run with exactly that arena: `needed_arena`); without it, the
    offline plan is used when it beats our simulation of TFLM's greedy planner and
    the arena size is an estimate.
    """

    from qcompiler.backends.tflite.flatbuffer import write_model

    offsets, head, strategy = offline_plan(model)
    greedy = online_head_estimate(model)
    planned = with_offline_plan(model, offsets)
    info = {"planned_head_bytes": head, "plan_strategy": strategy, "greedy_head_estimate": greedy}
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        use_plan = head < greedy
        info.update(offline_plan=use_plan, arena_source="estimate (tflite-micro not installed)",
                    arena_bytes=None)
        chosen_model = planned if use_plan else model
        return chosen_model, info, write_model(chosen_model)
    variants = {"offline_plan": planned, "tflm_planner": model}
    data: dict[str, bytes] = {}

    def flatbuffer(key: str) -> bytes:  # built on first use: ~20 ms each on VWW
        if key not in data:
            data[key] = write_model(variants[key])
        return data[key]

    if head < greedy:  # our plan beats our model of TFLM's planner: only the plan is measured
        recorded = {"offline_plan": recorded_arena(flatbuffer("offline_plan"))}
        recorded["tflm_planner"] = recorded["offline_plan"] - head + greedy  # estimate, for the report
    else:
        recorded = {key: recorded_arena(flatbuffer(key)) for key in variants}
    use_plan = recorded["offline_plan"] < recorded["tflm_planner"]
    chosen = "offline_plan" if use_plan else "tflm_planner"
    arena = needed_arena(flatbuffer(chosen), recorded[chosen])
    if arena != recorded[chosen]:  # the recorded totals were not the minima: measure both
        sizes = {key: needed_arena(flatbuffer(key)) for key in variants}
        use_plan = sizes["offline_plan"] < sizes["tflm_planner"]
        chosen = "offline_plan" if use_plan else "tflm_planner"
        arena, recorded = sizes[chosen], sizes
    info.update(offline_plan=use_plan, arena_bytes=arena,
                arena_bytes_with_tflm_planner=recorded["tflm_planner"],
                tflm_planner_arena_source="measured" if head >= greedy else "estimate (plan head - greedy head)",
                arena_source="measured: smallest arena the tflite-micro interpreter runs this model with "
                             "(on this 64-bit host; 32-bit targets have smaller runtime structs)")
    if not use_plan:
        del info["plan_strategy"]
    return variants[chosen], info, flatbuffer(chosen)


def quick_arena(model: TflModel) -> tuple[TflModel, dict, bytes]:
    """As plan_arena, with TFLM's recorded total of the variant our plans prefer (one forked
    run; Prepare's temporary memory beyond it is not measured)."""
    from qcompiler.backends.tflite.flatbuffer import write_model
    offsets, head, _ = offline_plan(model)
    chosen = with_offline_plan(model, offsets) if head < online_head_estimate(model) else model
    data = write_model(chosen)
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        return chosen, {"arena_bytes": None}, data
    return chosen, {"arena_bytes": recorded_arena(data)}, data
