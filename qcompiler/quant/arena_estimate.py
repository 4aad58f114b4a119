"""Arena bytes of `--activations auto` candidates: the greedy estimate that ranks them
(`estimated_bytes`) and the chosen point's measured arena written back into report.json
(`settle_arena`)."""
from __future__ import annotations

from qcompiler.ir import Graph
from qcompiler.ir.memory import activation_buffers, best_plan

# what an int8 <-> int16 border adds to TFLM's arena besides its tensor's bytes (a
# NodeAndRegistration, the QUANTIZE op data, an eval tensor, its share of planning memory)
BORDER_BYTES = 160
PER_CHANNEL_BYTES = 8   # TFLM's multiplier and shift per output channel of per-channel weights


def settle_arena(summary: dict, arena_bytes: int | None) -> None:
    """The chosen point's arena in report.json's search entry as emit measured it (the search
    ranked it by an estimate when no --max-arena bound needed the exact number)."""
    search = summary.get("activations", {})
    for row in search.get("pareto", []) if search.get("mode") == "auto" else []:
        if row["chosen"] and row["arena"] != "exact" and arena_bytes is not None:
            row["arena_estimate_bytes"], row["arena_bytes"], row["arena"] = row["arena_bytes"], arena_bytes, "exact"
            search["search_arena_bytes"] = arena_bytes


def estimated_bytes(q: Graph) -> int:
    """Arena estimate of a candidate up to a constant: planned activation bytes, the borders'
    runtime data and the per-channel multipliers (ranks candidates where the activation
    bytes alone tie or mislead: IC's all-int16 has fewer borders than its 8-layer prefix)."""
    from qcompiler.quant.precision import is_border
    borders = sum(1 for n in q.nodes if is_border(n))
    channels = sum(int(n.input(1).quant.scale.size) for n in q.nodes
                   if n.op in ("Conv", "Gemm") and n.input(1) is not None and n.input(1).quant is not None
                   and n.input(1).quant.scale.size > 1)
    return activation_bytes(q) + BORDER_BYTES * borders + PER_CHANNEL_BYTES * channels


def activation_bytes(q: Graph) -> int:
    """Activation arena bytes of an integer graph, planned greedily (the arena's tensor part)."""
    return best_plan(activation_buffers(q))[1]
