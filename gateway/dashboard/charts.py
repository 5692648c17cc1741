"""Inline SVG charts rendered on the server (dashboard.md: no build step, works without JavaScript).

Each channel has one colour everywhere (charts, tables, timelines), so a reader who learned that paid search is
blue never has to check a legend again. Charts return markup that Jinja marks safe; every text they contain
is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from markupsafe import Markup, escape

from core.channels.classify import CHANNELS

__all__ = ["CHANNEL_COLOURS", "bar_chart", "channel_colour", "line_chart"]

_PALETTE = ("#2563eb", "#16a34a", "#db2777", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4f46e5",
            "#dc2626", "#059669", "#64748b", "#a16207")
CHANNEL_COLOURS = dict(zip(CHANNELS, _PALETTE, strict=True))


def channel_colour(channel: str) -> str:
    return CHANNEL_COLOURS.get(channel, "#94a3b8")


def bar_chart(bars: Sequence[tuple[str, Decimal | int, str]], width: int = 640, label: str = "") -> Markup:
    """Horizontal bars: (channel, value, value as displayed)."""
    if not bars:
        return Markup("")
    row, gap, left = 26, 6, 140
    top = max((Decimal(v) for _, v, _ in bars), default=Decimal(0)) or Decimal(1)
    height = len(bars) * (row + gap)
    parts = [f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
             f'width="100%" preserveAspectRatio="xMinYMin meet">']
    for i, (channel, value, shown) in enumerate(bars):
        y = i * (row + gap)
        length = int((width - left - 90) * (Decimal(value) / top)) if top else 0
        parts.append(f'<text x="{left - 8}" y="{y + row * 0.7:.0f}" text-anchor="end">{escape(channel)}</text>'
                     f'<rect x="{left}" y="{y}" width="{max(length, 1)}" height="{row}" rx="3" '
                     f'fill="{channel_colour(channel)}"><title>{escape(channel)}: {escape(shown)}</title></rect>'
                     f'<text x="{left + max(length, 1) + 6}" y="{y + row * 0.7:.0f}">{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def line_chart(points: Sequence[tuple[str, Decimal | int]], width: int = 640, height: int = 160,
               label: str = "", colour: str = "#2563eb") -> Markup:
    """One daily series: (day label, value); the first and last day are labelled under the axis."""
    if not points:
        return Markup("")
    pad = 24
    top = max((Decimal(v) for _, v in points), default=Decimal(0)) or Decimal(1)
    step = (width - 2 * pad) / max(len(points) - 1, 1)
    coords = [(pad + i * step, height - pad - float(Decimal(v) / top) * (height - 2 * pad))
              for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}"><title>{escape(day)}: {escape(str(v))}'
                   f'</title></circle>' for (x, y), (day, v) in zip(coords, points, strict=True))
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" width="100%">'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#cbd5e1"/>'
        f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>{dots}'
        f'<text x="{pad}" y="{height - 6}">{escape(points[0][0])}</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{escape(points[-1][0])}</text>'
        f'<text x="{pad}" y="14">max {escape(str(top))}</text></svg>')
