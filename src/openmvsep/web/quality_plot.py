"""A Quality Checker entry's per-track plot, drawn on the server as SVG: one line of points per stem across the
dataset's tracks, so a model that fails on a few songs shows where a mean alone hides it.

Plain SVG elements with presentation attributes only (no `style`, no script), so the page's Content-Security-Policy
holds and the plot needs no chart library. The per-track table beside it carries the same numbers for screen
readers; the SVG has a title and a description.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

# One colour per stem, in order (distinguishable in light and dark themes, and for common colour blindness).
PALETTE = ("#1f77b4", "#d95f02", "#1b9e77", "#7570b3", "#e7298a", "#66a61e", "#a6761d", "#666666")
MARKERS = ("circle", "square", "diamond", "triangle")  # shape as well as colour tells the stems apart
WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 72


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    if high <= low:
        high = low + 1.0
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _marker(shape: str, x: float, y: float, colour: str, label: str) -> str:
    title = f"<title>{escape(label)}</title>"
    if shape == "square":
        return f'<rect x="{_fmt(x - 4)}" y="{_fmt(y - 4)}" width="8" height="8" fill="{colour}">{title}</rect>'
    if shape == "diamond":
        pts = f"{_fmt(x)},{_fmt(y - 5)} {_fmt(x + 5)},{_fmt(y)} {_fmt(x)},{_fmt(y + 5)} {_fmt(x - 5)},{_fmt(y)}"
        return f'<polygon points="{pts}" fill="{colour}">{title}</polygon>'
    if shape == "triangle":
        pts = f"{_fmt(x)},{_fmt(y - 5)} {_fmt(x + 5)},{_fmt(y + 4)} {_fmt(x - 5)},{_fmt(y + 4)}"
        return f'<polygon points="{pts}" fill="{colour}">{title}</polygon>'
    return f'<circle cx="{_fmt(x)}" cy="{_fmt(y)}" r="4" fill="{colour}">{title}</circle>'


def per_track_plot(tracks: Sequence[str], series: dict[str, Sequence[float | None]], axis_label: str) -> Markup:
    """An SVG of `series` (stem -> one value per track, None where missing) over `tracks`."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    ticks = nice_ticks(min(low, 0.0) if low >= 0 else low, high)
    y_min, y_max = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(tracks), 1)

    def x_of(i: int) -> float:
        return LEFT + plot_w * (i + 0.5) / n

    def y_of(v: float) -> float:
        return TOP + plot_h * (1 - (v - y_min) / (y_max - y_min))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT + 24 * ((len(series) + 3) // 4)}" '
        'role="img" aria-labelledby="plot-title plot-desc" class="qc-plot" id="qc-plot">',
        f'<title id="plot-title">{escape(axis_label)} per track and stem</title>',
        f'<desc id="plot-desc">{len(tracks)} tracks, stems: {escape(", ".join(series))}. '
        "The table below holds the same values.</desc>",
    ]
    for t in ticks:  # grid and y labels
        y = y_of(t)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_fmt(y)}" y2="{_fmt(y)}" stroke="currentColor" '
            'stroke-opacity="0.2"/>'
        )
        parts.append(
            f'<text x="{LEFT - 6}" y="{_fmt(y + 4)}" text-anchor="end" font-size="12" fill="currentColor">'
            f"{_fmt(t)}</text>"
        )
    parts.append(
        f'<text x="14" y="{_fmt(TOP + plot_h / 2)}" font-size="12" fill="currentColor" text-anchor="middle" '
        f'transform="rotate(-90 14 {_fmt(TOP + plot_h / 2)})">{escape(axis_label)}</text>'
    )
    for i, name in enumerate(tracks):  # x labels, slanted so long song names fit
        x, y = x_of(i), TOP + plot_h + 14
        parts.append(
            f'<text x="{_fmt(x)}" y="{_fmt(y)}" font-size="11" fill="currentColor" text-anchor="end" '
            f'transform="rotate(-35 {_fmt(x)} {_fmt(y)})">{escape(name[:24])}</text>'
        )
    for k, (stem, vs) in enumerate(series.items()):
        colour, shape = PALETTE[k % len(PALETTE)], MARKERS[k % len(MARKERS)]
        points = [(x_of(i), y_of(v), v) for i, v in enumerate(vs) if v is not None and math.isfinite(v)]
        if len(points) > 1:
            path = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
        for (x, y, v), i in zip(points, [i for i, v in enumerate(vs) if v is not None and math.isfinite(v)]):
            parts.append(_marker(shape, x, y, colour, f"{stem}, {tracks[i]}: {v:.2f}"))
        lx, ly = LEFT + (k % 4) * 160, HEIGHT + 24 * (k // 4) + 4
        parts.append(_marker(shape, lx, ly, colour, stem))
        parts.append(
            f'<text x="{lx + 10}" y="{ly + 4}" font-size="12" fill="currentColor" class="legend">{escape(stem)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
