"""report.html: one self-contained page (inline SVG and CSS, no scripts, nothing fetched) that
shows where a model lost accuracy in quantization.

Sections: a header (model, target, the options line, sizes, the worst layer); the per-layer
SQNR of the integer reference against the float model as bars, with op types, weight SQNR
and clipped fraction; float vs int8 histograms of the worst layers on their int8 grid; the
memory plan over time when the target reports one (report.json "memory_plan": buffers with
size, first/last step and offset, drawn as offset x time rectangles above the live bytes per
op); and the graph with every node colored by its SQNR (`report_graph.py`).

Deterministic: no timestamps, rows in graph order, numbers with fixed formats.
"""
from __future__ import annotations

import math

from qcompiler.quant.report import DATA_FREE, facts, worst_layers
from qcompiler.quant.report_graph import graph_svg
from qcompiler.quant.report_svg import (CHAR_W, esc, legend, line, n, rect, short, sqnr_color, svg, text,
                                        title)

CSS = """body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
background:#fff}
h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 6px;border-bottom:1px solid #ddd}
p.note{color:#555;max-width:70em;margin:4px 0 10px}
table.facts{border-collapse:collapse}table.facts th{text-align:left;padding:2px 14px 2px 0;
vertical-align:top;color:#555;font-weight:600}table.facts td{padding:2px 0;word-break:break-all}
.warn{background:#fde0dd;border:1px solid #d73027;padding:8px 12px;font-weight:600;max-width:70em}
.worst{color:#b2182b;font-weight:600}
nav a{margin-right:14px}
.hists{display:flex;flex-wrap:wrap;gap:12px}
.scroll{overflow-x:auto}
svg text{font-size:12px;fill:#222}svg text.small{font-size:11px}svg text.b{font-weight:600}
svg text.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace}svg text.red{fill:#b2182b}
svg .grid{stroke:#e3e3e3;stroke-width:1}svg .axis{stroke:#444;stroke-width:1}
svg .edge{stroke:#999;stroke-width:1.2;fill:none}svg .tick{stroke:#111;stroke-width:2}
"""

ROW, BAR_W = 18, 400
X_IDX, X_NAME, X_OP = 30, 38, 38 + 32 * CHAR_W
X_BAR = X_OP + 118
X_VAL, X_WSQ, X_CLIP = X_BAR + BAR_W + 44, X_BAR + BAR_W + 100, X_BAR + BAR_W + 178
HIST_LAYERS_NOTE = ("bins are the int8 codes (width = scale); the float values fall in the bin of "
                    "their nearest code, and those beyond the int8 range in the red outer bins (clipped)")
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7"]


def _db(v: float | None) -> str:
    return "n/a" if v is None else ("exact" if v >= 99 else f"{v:.2f}")


def _pct(fraction: float | None) -> str:
    return "n/a" if fraction is None else ("0" if fraction == 0 else f"{100 * fraction:.4f}")


def report_html(report: dict, view: list[dict], histograms: dict[str, dict]) -> str:
    """The page for `report` (report.json's content, with "layers"), the graph rows of
    `report_graph.graph_view` and the worst layers' histograms from the per-layer report."""
    layers = report.get("layers", [])
    op_of = {t: row["op"] for row in view for t in row["tensors"]}
    worst = worst_layers(layers)
    parts = [_header(report, worst),
             _sqnr_section(report, layers, op_of, worst)]
    if histograms:
        parts.append(_histogram_section(histograms, layers))
    if report.get("memory_plan", {}).get("buffers"):
        parts.append(_memory_section(report["memory_plan"]))
    parts.append(_graph_section(view, layers, worst))
    name = esc(report.get("name", "model"))
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>qcc quantization report: {name}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")


def _header(report: dict, worst: list[dict]) -> str:
    out = [f"<h1>Quantization report: {esc(report.get('name', 'model'))}</h1>"]
    if report.get("calibration", {}).get("data_free"):
        out.append(f'<p class="warn">{esc(DATA_FREE)}</p>')
    rows = []
    for label, value in facts(report):
        cls = ' class="worst"' if label == "worst layer" else ""
        rows.append(f"<tr><th>{esc(label)}</th><td{cls}>{esc(value)}</td></tr>")
    out.append('<table class="facts">\n' + "\n".join(rows) + "\n</table>")
    links = [("sqnr", "per-layer SQNR"), ("histograms", "histograms of the worst layers"),
             ("memory", "memory plan"), ("graph", "graph")]
    if not report.get("memory_plan", {}).get("buffers"):
        links.remove(("memory", "memory plan"))
    out.append("<nav>" + "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in links) + "</nav>")
    return "\n".join(out)


# ---- per-layer SQNR ----------------------------------------------------------------------

def _sqnr_section(report: dict, layers: list[dict], op_of: dict, worst: list[dict]) -> str:
    measured = [e["sqnr_db"] for e in layers if e["sqnr_db"] is not None]
    measured += [e["weight_sqnr_db"] for e in layers if e.get("weight_sqnr_db") is not None]
    top = min(100.0, max(50.0, 10 * math.ceil(max(measured, default=0) / 10)))
    x_of = lambda db: X_BAR + min(max(db, 0.0), top) / top * BAR_W  # noqa: E731
    worst_names = {e["tensor"]: k for k, e in enumerate(worst)}
    y0 = 44
    height = y0 + ROW * len(layers) + 12
    body = [text(X_IDX, 16, "#", anchor="end", cls="b"), text(X_NAME, 16, "tensor", cls="b"),
            text(X_OP, 16, "op", cls="b"), text(X_BAR, 16, "SQNR vs float, dB (bar); weight SQNR (black tick)",
                                                   cls="b"),
            text(X_VAL, 16, "SQNR", anchor="end", cls="b"), text(X_WSQ, 16, "weight", anchor="end", cls="b"),
            text(X_CLIP, 16, "clipped %", anchor="end", cls="b")]
    for db in range(0, int(top) + 1, 10):
        body.append(line(x_of(db), y0 - 8, x_of(db), height - 8))
        body.append(text(x_of(db), y0 - 12, str(db), anchor="middle", cls="small"))
    for i, e in enumerate(layers):
        y = y0 + i * ROW
        op = op_of.get(e["tensor"], e["op"])
        clipped = e.get("clipped_fraction")
        tip = (f"#{i} {e['tensor']}\nop {op}; SQNR {_db(e['sqnr_db'])} dB; weight SQNR "
               f"{_db(e.get('weight_sqnr_db'))} dB; clipped {_pct(clipped)} %; scale {e['scale']:.6g}, "
               f"zero point {e['zero_point']}")
        rank = worst_names.get(e["tensor"])
        if rank is not None:
            tip += f"\nworst layer #{rank + 1}"
        cls = "mono b red" if rank is not None else "mono"
        row = [title(tip), text(X_IDX, y + 10, str(i), anchor="end", cls="small"),
               text(X_NAME, y + 10, short(e["tensor"], 30), cls=cls), text(X_OP, y + 10, op[:16], cls="small")]
        if e["sqnr_db"] is not None:
            stroke = ' stroke="#b2182b" stroke-width="2"' if rank is not None else ""
            row.append(rect(X_BAR, y, x_of(e["sqnr_db"]) - X_BAR, ROW - 5, sqnr_color(e["sqnr_db"]), extra=stroke))
        if e.get("weight_sqnr_db") is not None:
            xw = x_of(e["weight_sqnr_db"])
            row.append(line(xw, y - 2, xw, y + ROW - 3, cls="tick"))
        row += [text(X_VAL, y + 10, _db(e["sqnr_db"]), anchor="end"),
                text(X_WSQ, y + 10, _db(e.get("weight_sqnr_db")) if "weight_sqnr_db" in e else "",
                     anchor="end"),
                text(X_CLIP, y + 10, _pct(clipped), anchor="end", cls="red" if clipped else "")]
        body.append("<g>" + "".join(row) + "</g>")
    samples = report.get("calibration", {}).get("report_samples", 0)
    note = (f"Integer reference (the oracle the target matches bit for bit), dequantized, against the float "
            f"model on {samples} calibration samples, per int8 tensor in graph order. Red names and outlines: "
            "the five worst. Clipped: float values outside the tensor's int8 range.")
    return (f'<h2 id="sqnr">Per-layer SQNR</h2>\n<p class="note">{esc(note)}</p>\n'
            + svg(X_CLIP + 10, 24, legend(X_NAME, 16), "SQNR colors") + "\n<div class=\"scroll\">"
            + svg(X_CLIP + 10, height, body, "per-layer SQNR") + "</div>")


# ---- histograms -------------------------------------------------------------------------

def _step_path(xs: list[float], ys: list[float], base: float) -> str:
    """A closed step outline: bin k spans xs[k]..xs[k+1] at height ys[k]; equal runs merged."""
    pts = [f"M{n(xs[0])},{n(base)}"]
    for k, y in enumerate(ys):
        if k == 0 or y != ys[k - 1]:
            pts.append(f"L{n(xs[k])},{n(ys[k - 1] if k else base)}L{n(xs[k])},{n(y)}")
    pts.append(f"L{n(xs[-1])},{n(ys[-1])}L{n(xs[-1])},{n(base)}Z")
    return "".join(pts)


def _histogram_svg(tensor: str, h: dict, entry: dict | None) -> str:
    W, H, x0, x1, y0, y1 = 560, 236, 58, 548, 44, 176
    fl, q = h["float"], h["int8"]
    bins = len(fl)
    bw = (x1 - x0) / bins
    xs = [x0 + k * bw for k in range(bins + 1)]
    cmax = max(max(fl), max(q), 1)
    y_of = lambda c: y1 - math.log10(1 + c) / math.log10(1 + cmax) * (y1 - y0)  # noqa: E731
    scale, zp, qmin = h["scale"], h["zero_point"], h["qmin"]
    real = lambda code: (code - zp) * scale  # noqa: E731
    sq = entry["sqnr_db"] if entry else None
    clipped = entry.get("clipped_fraction") if entry else None
    body = [text(x0, 16, short(tensor, 44), cls="mono b", tip=tensor),
            text(x0, 32, f"SQNR {_db(sq)} dB, clipped {_pct(clipped)} %, scale {scale:.4g}, zero point {zp}",
                 cls="small")]
    for c in [10 ** k for k in range(0, int(math.log10(cmax)) + 1)]:
        body += [line(x0, y_of(c), x1, y_of(c)), text(x0 - 4, y_of(c) + 4, f"{c:,}", anchor="end", cls="small")]
    body.append(f'<path d="{_step_path(xs, [y_of(c) for c in fl], y1)}" fill="#4575b4" fill-opacity="0.35" '
                f'stroke="#4575b4" stroke-width="1"><title>float values per int8 bin</title></path>')
    body.append(f'<path d="{_step_path(xs[1:-1], [y_of(c) for c in q], y1)}" fill="none" stroke="#f46d43" '
                f'stroke-width="1.5"><title>int8 codes</title></path>')
    for k, side in ((0, "below"), (bins - 1, "above")):
        if fl[k]:
            body.append(rect(xs[k] - 2, y_of(fl[k]), bw + 4, y1 - y_of(fl[k]), "#d73027",
                             tip=f"{fl[k]:,} float values {side} the int8 range (clipped)"))
    body.append(line(x0, y1, x1, y1, cls="axis"))
    codes = [qmin, qmin + bins - 3] + ([zp] if qmin + 20 < zp < qmin + bins - 23 else [])
    for code in sorted(codes):
        xc = xs[code - qmin + 1] + bw / 2
        body += [line(xc, y1, xc, y1 + 4, cls="axis"), text(xc, y1 + 16, f"{real(code):.4g}", anchor="middle",
                                                             cls="small")]
    body.append(text(x0, y1 + 34, f"float range [{h['float_min']:.4g}, {h['float_max']:.4g}]; int8 range "
                                  f"[{real(qmin):.4g}, {real(qmin + bins - 3):.4g}]", cls="small"))
    body += [rect(x1 - 170, y1 + 24, 10, 10, "#4575b4", extra=' fill-opacity="0.5"'),
             text(x1 - 156, y1 + 33, "float", cls="small"), rect(x1 - 118, y1 + 28, 12, 2, "#f46d43"),
             text(x1 - 102, y1 + 33, "int8", cls="small"), rect(x1 - 68, y1 + 24, 10, 10, "#d73027"),
             text(x1 - 54, y1 + 33, "clipped", cls="small")]
    return svg(W, H, body, f"float vs int8 histogram of {tensor}")


def _histogram_section(histograms: dict[str, dict], layers: list[dict]) -> str:
    by_name = {e["tensor"]: e for e in layers}
    order = sorted(histograms, key=lambda t: (by_name.get(t, {}).get("sqnr_db") or 0.0, t))
    svgs = [_histogram_svg(t, histograms[t], by_name.get(t)) for t in order]
    return (f'<h2 id="histograms">Activations of the {len(svgs)} worst layers: float vs int8</h2>\n'
            f'<p class="note">Counts on a log scale over the report\'s samples; {esc(HIST_LAYERS_NOTE)}. A narrow '
            "float histogram in a wide int8 range means few codes in use (a range stretched by outliers); red "
            "outer bins mean clipping; an int8 shape unlike the float one means error carried in from earlier "
            'layers.</p>\n<div class="hists">' + "\n".join(svgs) + "</div>")


# ---- memory plan ------------------------------------------------------------------------

def _live_bytes(plan: dict) -> list[tuple[int, int]]:
    """(live bytes, live buffers) per step."""
    live = [[0, 0] for _ in range(len(plan["ops"]) + 1)]
    for b in plan["buffers"]:
        for t in range(b["first"], b["last"] + 1):
            live[t][0] += b["size"]
            live[t][1] += 1
    return [(a, c) for a, c in live]


def _memory_section(plan: dict) -> str:
    ops, bufs = plan["ops"], plan["buffers"]
    steps = len(ops) + 1
    x0, plot_w = 96, min(1100, max(420, steps * 26))
    sw = plot_w / steps
    y0, y1, y2, y3 = 16, 296, 326, 426
    top = max([plan["planned_bytes"]] + [b["offset"] + b["size"] for b in bufs] + [1])
    y_of = lambda b: y1 - b / top * (y1 - y0)  # noqa: E731
    step_name = lambda t: "graph inputs" if t == 0 else f"op {t} {ops[t - 1]}"  # noqa: E731
    body = []
    for frac in (0, 0.25, 0.5, 0.75, 1):
        v = int(round(top * frac))
        body += [line(x0, y_of(v), x0 + plot_w, y_of(v)), text(x0 - 6, y_of(v) + 4, f"{v:,} B", anchor="end",
                                                               cls="small")]
    for i, b in enumerate(bufs):
        names = b["tensors"]
        who = names[0] + (f" (+{len(names) - 1} sharing it)" if len(names) > 1 else "")
        tip = (f"{who}\n{b['size']:,} B at offset {b['offset']:,}; live from {step_name(b['first'])} to "
               f"{step_name(b['last'])}")
        body.append(rect(x0 + b["first"] * sw, y_of(b["offset"] + b["size"]), (b["last"] - b["first"] + 1) * sw - 1,
                         max(b["size"] / top * (y1 - y0), 1), PALETTE[i % len(PALETTE)], tip=tip,
                         extra=' stroke="#fff" stroke-width="0.5"'))
    body.append(line(x0, y1, x0 + plot_w, y1, cls="axis"))
    live = _live_bytes(plan)
    peak = max(a for a, _ in live) or 1
    body += [text(x0 - 6, y2 + 10, f"{peak:,} B", anchor="end", cls="small"),
             text(x0 - 6, y3, "live", anchor="end", cls="small")]
    for t, (a, c) in enumerate(live):
        h = a / peak * (y3 - y2)
        color = "#b2182b" if a == peak else "#6a51a3"
        body.append(rect(x0 + t * sw, y3 - h, sw - 1, h, color,
                         tip=f"{step_name(t)}: {a:,} B live in {c} buffer(s)"))
    body.append(line(x0, y3, x0 + plot_w, y3, cls="axis"))
    every = max(1, math.ceil(steps / 60))
    for t in range(0, steps, every):
        xc = x0 + (t + 0.5) * sw
        label = "in" if t == 0 else f"{t} {ops[t - 1]}"
        body.append(text(xc, y3 + 12, label[:22], cls="small", extra=f' transform="rotate(55 {n(xc)},{n(y3 + 12)})"'))
    note = (f"{plan['source']}. Each rectangle is a tensor buffer: horizontally the ops during which it is "
            f"live, vertically its place in the arena ({plan['planned_bytes']:,} B planned for tensors; the "
            "arena in the header also holds the runtime's own data). Below: the bytes live at each op "
            "(red: the most). Hover for names and sizes.")
    return (f'<h2 id="memory">Memory plan over time</h2>\n<p class="note">{esc(note)}</p>\n<div class="scroll">'
            + svg(x0 + plot_w + 20, y3 + 150, body, "memory plan") + "</div>")


# ---- graph ------------------------------------------------------------------------------

def _graph_section(view: list[dict], layers: list[dict], worst: list[dict]) -> str:
    sqnr = {e["tensor"]: e["sqnr_db"] for e in layers}
    drawing, compressed = graph_svg(view, sqnr, worst[0]["tensor"] if worst else None)
    note = ("Each node colored by the SQNR of its output (the integer reference against the float model); "
            "the worst layer has a red border. Hover a node for its full name.")
    if compressed:
        note += " Chains of nodes are drawn as one box, colored by the worst SQNR in the chain."
    return (f'<h2 id="graph">Graph</h2>\n<p class="note">{esc(note)}</p>\n'
            + svg(760, 24, legend(4, 16), "SQNR colors") + '\n<div class="scroll">' + drawing + "</div>")
