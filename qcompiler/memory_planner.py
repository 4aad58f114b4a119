"""Arena planning: buffers with (size, first use, last use) -> offsets + arena size.

Greedy by size, largest first, each buffer placed at the lowest offset that
does not overlap a buffer alive at the same time (the strategy of TFLM's
GreedyMemoryPlanner, so our estimate tracks what the runtime will need).
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 16


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int  # index of the op that writes it (-1 = graph input)
    last: int   # index of the last op that reads it


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(buffers: list[Buffer]) -> tuple[dict[str, int], int]:
    """Return ({buffer name: offset}, arena bytes)."""
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: dict[str, int] = {}
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.name))
    for buf in order:
        live = sorted((o, e) for o, e, other in placed if other.first <= buf.last and buf.first <= other.last)
        offset = 0
        for o, e in live:
            if offset + _align(buf.size) <= o:
                break
            offset = max(offset, e)
        offsets[buf.name] = offset
        placed.append((offset, offset + _align(buf.size), buf))
    return offsets, max((e for _, e, _ in placed), default=0)
