"""SVG building blocks for report.html: escaping, fixed number formatting, the SQNR colors.

Everything returns strings; coordinates are written with at most one decimal so that
the same inputs always give the same bytes. Text is measured by a fixed advance per
character (names use a monospace font), which is all the layout needs.
"""
from __future__ import annotations

import html

CHAR_W = 7.3  # advance of one character of the 12 px monospace font (names)

# SQNR bands (dB lower bound, fill, legend label), best first; unmeasured tensors are grey
SQNR_BANDS = [(40.0, "#1a9850", "≥ 40 dB"), (30.0, "#91cf60", "30–40 dB"), (20.0, "#fee08b", "20–30 dB"),
              (10.0, "#fc8d59", "10–20 dB"), (float("-inf"), "#d73027", "< 10 dB")]
NOT_MEASURED = "#bdbdbd"


def esc(s) -> str:
    """Text or attribute value, escaped for both HTML and XML."""
    return html.escape(str(s), quote=True)


def n(v: float) -> str:
    """A coordinate: one decimal, no trailing ".0", no "-0"."""
    s = f"{v:.1f}"
    s = s[:-2] if s.endswith(".0") else s
    return "0" if s == "-0" else s


def sqnr_color(db: float | None) -> str:
    if db is None:
        return NOT_MEASURED
    return next(color for lo, color, _ in SQNR_BANDS if db >= lo)


def short(name: str, width: int = 28) -> str:
    """A long tensor name shortened for a label: its first ';' part, then its tail."""
    s = name.split(";")[0]
    return s if len(s) <= width else "…" + s[-(width - 1):]


def svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{n(width)}" height="{n(height)}" '
            f'viewBox="0 0 {n(width)} {n(height)}" role="img" aria-label="{esc(label)}">\n'
            + "\n".join(body) + "\n</svg>")


def title(text: str) -> str:
    return f"<title>{esc(text)}</title>"


def rect(x: float, y: float, w: float, h: float, fill: str, tip: str | None = None, extra: str = "") -> str:
    attrs = f'x="{n(x)}" y="{n(y)}" width="{n(max(w, 0))}" height="{n(max(h, 0))}" fill="{fill}"{extra}'
    return f"<rect {attrs}>{title(tip)}</rect>" if tip else f"<rect {attrs}/>"


def text(x: float, y: float, s: str, anchor: str = "start", cls: str = "", tip: str | None = None,
         extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    a = f' text-anchor="{anchor}"' if anchor != "start" else ""
    return f'<text x="{n(x)}" y="{n(y)}"{a}{c}{extra}>{title(tip) if tip else ""}{esc(s)}</text>'


def line(x1: float, y1: float, x2: float, y2: float, cls: str = "grid") -> str:
    return f'<line x1="{n(x1)}" y1="{n(y1)}" x2="{n(x2)}" y2="{n(y2)}" class="{cls}"/>'


def legend(x: float, y: float) -> list[str]:
    """The SQNR color key in one row starting at (x, y)."""
    out = []
    for _, color, label in SQNR_BANDS + [(None, NOT_MEASURED, "not measured")]:
        out.append(rect(x, y - 10, 12, 12, color))
        out.append(text(x + 16, y, label, cls="small"))
        x += 22 + 7 * len(label)
    return out
