"""The model graph for report.html: boxes colored by SQNR, in a layered layout computed here.

`graph_view(graph)` flattens the quantized graph into plain rows (graph inputs first,
then the nodes in order; each with its predecessors' indices). `graph_svg` places them:

- rank of a node = 1 + the largest rank of its predecessors (inputs: 0), one row per rank;
- an edge spanning several ranks passes each of them as a narrow virtual item (Sugiyama's
  dummy nodes), so a skip connection runs beside the nodes it skips, not through them;
- within a row, items sorted by the mean position of their predecessors (one top-down
  barycenter sweep; ties keep graph order), which keeps chains straight and branches apart;
- rows wrap into side-by-side columns of at most ROWS_PER_COLUMN ranks (an edge into the
  next column runs down the gap between them);
- above MAX_NODES nodes, chains (a node whose single predecessor has it as single
  successor) are drawn as one box naming how many nodes it holds, colored by their worst SQNR.
"""
from __future__ import annotations

import math

from qcompiler.ir import Graph
from qcompiler.quant.report_svg import n, rect, short, sqnr_color, svg, text, title

MAX_NODES = 150
ROWS_PER_COLUMN = 30
BOX_W, BOX_H, SLOT_W, ROW_H, COL_GAP, PAD = 170, 32, 184, 50, 40, 12
VIRTUAL_W = 0.2  # slots taken by an edge passing a rank


def _op_label(node) -> str:
    group = int(node.attrs.get("group", 1))
    if node.op == "Conv" and group > 1:
        x = node.input(0)
        depthwise = x is not None and x.shape is not None and len(x.shape) > 1 and x.shape[1] == group
        return "DepthwiseConv" if depthwise else f"Conv (group {group})"
    return node.op


def graph_view(graph: Graph) -> list[dict]:
    """[{"name", "op", "tensors": output names, "preds": indices into this list}], inputs first."""
    rows = [{"name": v.name, "op": "input", "tensors": [v.name], "preds": []} for v in graph.inputs]
    index = {v.name: i for i, v in enumerate(graph.inputs)}
    for node in graph.nodes:
        preds: list[int] = []
        for v in node.inputs:
            if v is not None and not v.is_constant and v.name in index and index[v.name] not in preds:
                preds.append(index[v.name])
        for v in node.outputs:
            index[v.name] = len(rows)
        rows.append({"name": node.name, "op": _op_label(node), "tensors": [v.name for v in node.outputs],
                     "preds": preds})
    return rows


def _compress(view: list[dict]) -> list[dict]:
    """Chains merged into one row each: {"members": [rows], "preds": group indices}."""
    succs = [0] * len(view)
    for row in view:
        for p in row["preds"]:
            succs[p] += 1
    group_of: list[int] = []
    groups: list[dict] = []
    for i, row in enumerate(view):
        p = row["preds"][0] if len(row["preds"]) == 1 else None
        if p is not None and succs[p] == 1 and view[p]["op"] != "input":
            group_of.append(group_of[p])
            groups[group_of[p]]["members"].append(row)
            continue
        group_of.append(len(groups))
        groups.append({"members": [row], "preds": sorted({group_of[q] for q in row["preds"]})})
    return groups


def _layout(groups: list[dict]) -> dict:
    """Ranks and row positions. An edge spanning several ranks gets a narrow virtual item in
    every rank it passes, so that it runs beside the nodes of those ranks, not through them.
    Returns {"rank", "pos" (centered, in slots), "width" (per rank, in slots) per item;
    "chains": item paths of every edge}; items 0..len(groups)-1 are the groups."""
    rank: list[int] = []
    for g in groups:
        rank.append(1 + max((rank[p] for p in g["preds"]), default=-1))
    width = [1.0] * len(groups)
    preds: list[list[int]] = [[] for _ in groups]
    chains = []
    for i, g in enumerate(groups):
        for p in g["preds"]:
            chain = [p]
            for r in range(rank[p] + 1, rank[i]):
                rank.append(r)
                width.append(VIRTUAL_W)
                preds.append([chain[-1]])
                chain.append(len(rank) - 1)
            preds[i].append(chain[-1])
            chains.append(chain + [i])
    pos = [0.0] * len(rank)
    by_rank: dict[int, list[int]] = {}
    for i, r in enumerate(rank):
        by_rank.setdefault(r, []).append(i)
    row_width = {}
    for r in sorted(by_rank):
        members = by_rank[r]
        members.sort(key=lambda i: (sum(pos[p] for p in preds[i]) / len(preds[i]) if preds[i] else 0.0, i))
        total = sum(width[i] for i in members)
        x = -total / 2
        for i in members:
            pos[i] = x + width[i] / 2
            x += width[i]
        row_width[r] = total
    return {"rank": rank, "pos": pos, "row_width": row_width, "chains": chains}


def _node_sqnr(members: list[dict], sqnr: dict[str, float | None]) -> float | None:
    values = [sqnr[t] for m in members for t in m["tensors"] if sqnr.get(t) is not None]
    return min(values) if values else None


def _box(g: dict, x: float, y: float, db: float | None, worst: bool) -> str:
    members = g["members"]
    first = members[0]
    if len(members) == 1:
        head, name = first["op"], first["name"]
        tip = f"{first['name']}\n{first['op']}; output {', '.join(first['tensors'])}"
    else:
        ops: dict[str, int] = {}
        for m in members:
            ops[m["op"]] = ops.get(m["op"], 0) + 1
        head = f"{len(members)} nodes"
        name = ", ".join(f"{k}×{v}" if v > 1 else k for k, v in ops.items())
        tip = f"a chain of {len(members)} nodes, {first['name']} … {members[-1]['name']}\n{name}"
    label = "not measured" if db is None else f"{db:.1f} dB"
    tip += f"\nSQNR {label}" + (" (worst of the chain)" if len(members) > 1 and db is not None else "")
    stroke = ' stroke="#b2182b" stroke-width="3"' if worst else ' stroke="#555" stroke-width="1"'
    body = [rect(x, y, BOX_W, BOX_H, sqnr_color(db), extra=f' rx="4"{stroke}'),
            text(x + 6, y + 13, head[:18], cls="small b"),
            text(x + BOX_W - 5, y + 13, label if db is not None else "", anchor="end", cls="small"),
            text(x + 6, y + 27, short(name, 24), cls="mono small")]
    return f"<g>{title(tip)}" + "".join(body) + "</g>"


def _edge_path(points: list[tuple[float, float, int, bool]], gap_x: list[float]) -> str:
    """One edge through its items: (x, y top, column, virtual) each; bends between ranks,
    a route through the gap right of the column where it wraps into the next column."""
    x, y = points[0][0], points[0][1] + BOX_H
    d = [f"M{n(x)},{n(y)}"]
    for (x0, _, c0, _), (x1, y1, c1, virtual) in zip(points, points[1:]):
        if c0 == c1:
            dy = (y1 - y) / 2
            d.append(f"C{n(x)},{n(y + dy)} {n(x1)},{n(y1 - dy)} {n(x1)},{n(y1)}")
        else:
            g = gap_x[c0]
            d.append(f"L{n(x)},{n(y + 8)}L{n(g)},{n(y + 8)}L{n(g)},{n(y1 - 8)}L{n(x1)},{n(y1 - 8)}L{n(x1)},{n(y1)}")
        x, y = x1, y1
        if virtual:
            y += BOX_H
            d.append(f"L{n(x)},{n(y)}")
    return f'<path d="{"".join(d)}" class="edge" marker-end="url(#arrow)"/>'


def graph_svg(view: list[dict], sqnr: dict[str, float | None], worst_tensor: str | None) -> tuple[str, bool]:
    """(the SVG, whether chains were compressed). `sqnr`: tensor name -> dB (None: not measured)."""
    compressed = len(view) > MAX_NODES
    groups = _compress(view) if compressed else [{"members": [r], "preds": list(r["preds"])} for r in view]
    lay = _layout(groups)
    rank, pos = lay["rank"], lay["pos"]
    ranks = max(rank, default=0) + 1
    columns = math.ceil(ranks / ROWS_PER_COLUMN)
    rows_per_col = math.ceil(ranks / columns)
    widest = [0.0] * columns
    for r, w in lay["row_width"].items():
        widest[r // rows_per_col] = max(widest[r // rows_per_col], w)
    col_x, x = [], PAD
    for w in widest:
        col_x.append(x)
        x += w * SLOT_W + COL_GAP
    width, height = x - COL_GAP + PAD, rows_per_col * ROW_H + 2 * PAD
    gap_x = [cx + w * SLOT_W + COL_GAP / 2 for cx, w in zip(col_x, widest)]

    def place(i: int) -> tuple[float, float, int, bool]:
        """(center x, top y, column, virtual) of item i."""
        c = rank[i] // rows_per_col
        return (col_x[c] + widest[c] * SLOT_W / 2 + pos[i] * SLOT_W, PAD + (rank[i] % rows_per_col) * ROW_H, c,
                i >= len(groups))

    xy = [place(i) for i in range(len(rank))]
    body = ['<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="6" markerHeight="6" '
            'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>']
    body += [_edge_path([xy[i] for i in chain], gap_x) for chain in lay["chains"]]
    for i, g in enumerate(groups):
        db = _node_sqnr(g["members"], sqnr)
        worst = worst_tensor is not None and any(worst_tensor in m["tensors"] for m in g["members"])
        body.append(_box(g, xy[i][0] - BOX_W / 2, xy[i][1], db, worst))
    label = f"model graph, {len(view)} nodes" + (f" drawn as {len(groups)} boxes" if compressed else "")
    return svg(width, height, body, label), compressed
