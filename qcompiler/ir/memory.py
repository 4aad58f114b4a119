"""Arena planning: buffers with (size, first use, last use) -> offsets + arena size.

`plan()` places buffers greedily, each at the lowest offset that does not
overlap a buffer alive at the same time, in a given order. TFLM's
GreedyMemoryPlanner does this with buffers sorted by size (largest first);
`best_plan()` also tries other orders (longest-lived first, largest
size x lifetime first, creation order) and keeps the smallest arena, which is
how an offline plan can beat the runtime's own planner.

Lifetimes are closed intervals of op indices: two buffers conflict when
`a.first <= b.last and b.first <= a.last`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ALIGN = 16


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int
    first: int  # index of the op that writes it (0 = before the first op, e.g. a graph input)
    last: int   # index of the last op that reads it


def align(n: int, to: int = ALIGN) -> int:
    return (n + to - 1) // to * to


def conflicts(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def plan(buffers: list[Buffer], order: Callable[[Buffer], tuple] | None = None) -> tuple[dict[str, int], int]:
    """Return ({buffer name: offset}, arena bytes) placing buffers in `order` (default: largest first)."""
    order = order or (lambda b: (-b.size, b.first, b.name))
    placed: list[tuple[int, int, Buffer]] = []  # (offset, end, buffer)
    offsets: dict[str, int] = {}
    for buf in sorted(buffers, key=order):
        live = sorted((o, e) for o, e, other in placed if conflicts(buf, other))
        offset = 0
        for o, e in live:
            if offset + align(buf.size) <= o:
                break
            offset = max(offset, e)
        offsets[buf.name] = offset
        placed.append((offset, offset + align(buf.size), buf))
    return offsets, max((e for _, e, _ in placed), default=0)


ORDERS: dict[str, Callable[[Buffer], tuple]] = {
    "size": lambda b: (-b.size, b.first, b.name),
    "lifetime": lambda b: (-(b.last - b.first), -b.size, b.name),
    "area": lambda b: (-b.size * (b.last - b.first + 1), b.name),
    "creation": lambda b: (b.first, -b.size, b.name),
    # largest first, among equal sizes the longest-lasting first: a mixed int8 / int16 model's
    # many equal-sized int8 tensors otherwise leave a gap the int16 copies cannot use
    # (ddddocr_det with int16 at 104x104: 3.76 MB against a 3.15 MB lower bound; this order meets it)
    "size_last": lambda b: (-b.size, -b.last, b.name),
}


def best_plan(buffers: list[Buffer]) -> tuple[dict[str, int], int, str]:
    """The smallest of the ORDERS' plans: (offsets, arena bytes, order name)."""
    best = None
    for name, order in ORDERS.items():
        offsets, size = plan(buffers, order)
        if best is None or size < best[1]:
            best = (offsets, size, name)
    return best


def lower_bound(buffers: list[Buffer]) -> int:
    """No plan can be smaller than the largest set of simultaneously live bytes."""
    points = sorted({b.first for b in buffers} | {b.last for b in buffers})
    return max((sum(align(b.size) for b in buffers if b.first <= t <= b.last) for t in points), default=0)


def activation_buffers(graph, element_bytes: int | None = None) -> list[Buffer]:
    """One buffer per activation of `graph` in node order, live from its producer (0: a graph
    input) to its last reader (graph outputs to the end); sized `element_bytes` per element, or
    by the value's dtype when None."""
    import numpy as np
    index = {id(n): i + 1 for i, n in enumerate(graph.nodes)}
    buffers = []
    for v in graph.values():
        if v.is_constant or not v.shape:
            continue
        first = index.get(id(v.producer), 0) if v.producer is not None else 0
        last = max([index[id(c)] for c in v.consumers] + [first])
        if v in graph.outputs:
            last = len(graph.nodes) + 1
        size = element_bytes if element_bytes is not None else np.dtype(v.dtype).itemsize
        buffers.append(Buffer(v.name, int(np.prod(v.shape)) * size, first, last))
    return buffers
