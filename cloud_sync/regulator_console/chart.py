"""A server-rendered SVG chart of a quantity around an event (no JavaScript).

Minute values as a line with their min–max band, the limit as a dashed red line and the
event's span shaded. Pure: numbers in, markup out (every text is escaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 30


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def chart_svg(
    points: Sequence[tuple[int, float, float, float, str]],
    *,
    start: float,
    end: float | None,
    limits: Sequence[float] = (),
    unit: str = "",
    label: str = "",
) -> str:
    """SVG markup for minute ``points`` (minute, value, min, max, flags); "" without points."""
    if not points:
        return ""
    end = start if end is None else end
    t0 = min(points[0][0], start) - 60.0
    t1 = max(points[-1][0] + 60.0, end) + 60.0
    lows = [p[2] for p in points] + list(limits)
    highs = [p[3] for p in points] + list(limits)
    y0, y1 = min(lows), max(highs)
    pad = (y1 - y0) * 0.1 or abs(y1) * 0.1 or 1.0
    y0, y1 = y0 - pad, y1 + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return TOP + (y1 - v) / (y1 - y0) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart"'
        f' role="img" aria-label="{escape(label)}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fff"'
        ' stroke="#dde3e8"/>',
        f'<rect class="event-span" x="{x(start):.1f}" y="{TOP}"'
        f' width="{max(2.0, x(end) - x(start)):.1f}" height="{plot_h}" fill="#fdecea"/>',
    ]
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11"'
            f' fill="#6a737d">{_fmt(v)}</text>'
        )
    band = [f"{x(m + 30):.1f},{y(hi):.1f}" for m, _, _, hi, _ in points]
    band += [f"{x(m + 30):.1f},{y(lo):.1f}" for m, _, lo, _, _ in reversed(points)]
    parts.append(f'<polygon points="{" ".join(band)}" fill="#cfe2f3" opacity="0.7"/>')
    line = " ".join(f"{x(m + 30):.1f},{y(v):.1f}" for m, v, _, _, _ in points)
    parts.append(f'<polyline class="values" points="{line}" fill="none" stroke="#1f3a4d"'
                 ' stroke-width="1.5"/>')  # fmt: skip
    for m, v, _, _, flags in points:
        if flags.strip("NT"):
            parts.append(
                f'<circle cx="{x(m + 30):.1f}" cy="{y(v):.1f}" r="3" fill="#b26a00">'
                f"<title>flags {escape(flags)}</title></circle>"
            )
    for limit in limits:
        parts.append(
            f'<line class="limit" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(limit):.1f}"'
            f' y2="{y(limit):.1f}" stroke="#b42318" stroke-dasharray="6 4"/>'
            f'<text x="{WIDTH - RIGHT - 4}" y="{y(limit) - 4:.1f}" text-anchor="end"'
            f' font-size="11" fill="#b42318">limit {_fmt(limit)} {escape(unit)}</text>'
        )
    for t in (t0 + 60, (t0 + t1) / 2, t1 - 60):
        stamp = datetime.fromtimestamp(t).astimezone().strftime("%H:%M")
        parts.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11"'
            f' fill="#6a737d">{stamp}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
