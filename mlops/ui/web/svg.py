"""Server-rendered SVG charts for the dashboard: no script, no library, nothing fetched.

Every text in the drawing (title, axis labels, point labels) is XML-escaped here, so a
chart may be put into a page as it is. Colours and strokes are presentation attributes
(or classes styled by the dashboard's CSS), never ``style`` attributes, which a strict
Content-Security-Policy refuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

__all__ = ["PALETTE", "Point", "bar_chart", "heatmap", "line_chart", "lines_chart"]

_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 64, 16, 28, 44


@dataclass(frozen=True)
class Point:
    """One value of a series: when (a time or a number), what, and an optional label
    (shown as the point's tooltip, e.g. a version number)."""

    x: datetime | float
    y: float
    label: str = ""


def _num(x: datetime | float) -> float:
    return x.timestamp() if isinstance(x, datetime) else float(x)


def _x_text(x: datetime | float) -> str:
    if isinstance(x, datetime):
        return x.strftime("%Y-%m-%d %H:%M")
    return f"{x:.4g}"


def _y_text(y: float) -> str:
    return f"{y:.4g}"


def _frame(title: str, width: int, height: int, plot_w: float, plot_h: float,
           x_label: str | None, y_label: str) -> list[str]:
    """The opening of a chart: the ``<svg>`` element, its title, the plot's frame and the
    axis labels (no x label for charts that label each category instead)."""
    x0, y0 = _PAD_LEFT, _PAD_TOP
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'aria-label="{escape(title)}">', f"<title>{escape(title)}</title>",
             f'<text class="chart-title" x="{x0}" y="16">{escape(title)}</text>',
             f'<rect class="chart-frame" x="{x0}" y="{y0}" width="{plot_w}" height="{plot_h}" '
             'fill="none" stroke="#c4cbd4"/>']
    if x_label is not None:
        parts.append(f'<text class="chart-axis" x="{x0 + plot_w / 2:.1f}" y="{height - 6}" '
                     f'text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text class="chart-axis" x="14" y="{y0 + plot_h / 2:.1f}" '
                 f'text-anchor="middle" transform="rotate(-90 14 {y0 + plot_h / 2:.1f})">'
                 f"{escape(y_label)}</text>")
    return parts


def line_chart(points: Sequence[Point], *, title: str, x_label: str, y_label: str,
               width: int = 640, height: int = 240) -> str:
    """An ``<svg>`` line chart of ``points`` (sorted by x; non-finite values are left out)
    with a title, both axis labels, the y range and the first and last x. An empty series
    draws the frame with "no data"."""
    series = sorted((p for p in points if math.isfinite(p.y) and math.isfinite(_num(p.x))),
                    key=lambda p: _num(p.x))
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM
    x0, y0 = _PAD_LEFT, _PAD_TOP
    parts = _frame(title, width, height, plot_w, plot_h, x_label, y_label)
    if not series:
        parts.append(f'<text class="chart-empty" x="{x0 + plot_w / 2:.1f}" '
                     f'y="{y0 + plot_h / 2:.1f}" text-anchor="middle">no data</text>')
        parts.append("</svg>")
        return "".join(parts)
    xs = [_num(p.x) for p in series]
    ys = [p.y for p in series]
    lo_x, hi_x = xs[0], xs[-1]
    lo_y, hi_y = min(ys), max(ys)
    if hi_y == lo_y:  # a flat series: centre it
        lo_y, hi_y = lo_y - (abs(lo_y) or 1.0) * 0.05, hi_y + (abs(hi_y) or 1.0) * 0.05

    def px(x: float) -> float:
        return x0 + (plot_w / 2 if hi_x == lo_x else (x - lo_x) / (hi_x - lo_x) * plot_w)

    def py(y: float) -> float:
        return y0 + plot_h - (y - lo_y) / (hi_y - lo_y) * plot_h

    coords = [(px(x), py(y)) for x, y in zip(xs, ys, strict=True)]
    parts += [f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + 4}" text-anchor="end">'
              f"{escape(_y_text(hi_y))}</text>",
              f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + plot_h}" text-anchor="end">'
              f"{escape(_y_text(lo_y))}</text>",
              f'<text class="chart-tick" x="{x0}" y="{y0 + plot_h + 16}" text-anchor="start">'
              f"{escape(_x_text(series[0].x))}</text>"]
    if len(series) > 1:
        parts.append(f'<text class="chart-tick" x="{x0 + plot_w}" y="{y0 + plot_h + 16}" '
                     f'text-anchor="end">{escape(_x_text(series[-1].x))}</text>')
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline class="chart-line" points="{path}" fill="none" '
                     'stroke="#2f6fb3" stroke-width="2"/>')
    for (cx, cy), point in zip(coords, series, strict=True):
        tip = f"{point.label + ': ' if point.label else ''}{_y_text(point.y)} at " \
              f"{_x_text(point.x)}"
        parts.append(f'<circle class="chart-point" cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" '
                     f'fill="#2f6fb3"><title>{escape(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


#: the colours of successive series (lines, bars)
PALETTE = ("#2f6fb3", "#c8553d", "#17693a", "#8a5a00")


def lines_chart(series: Sequence[tuple[str, Sequence[Point]]], *, title: str, x_label: str,
                y_label: str, width: int = 640, height: int = 240) -> str:
    """Several named series on shared axes (a legend names each, in :data:`PALETTE`
    order); with one series it is :func:`line_chart`. Non-finite values are left out."""
    if len(series) <= 1:
        name, points = series[0] if series else ("", [])
        return line_chart(points, title=title, x_label=x_label, y_label=y_label,
                          width=width, height=height)
    kept = [(name, sorted((p for p in pts if math.isfinite(p.y) and math.isfinite(_num(p.x))),
                          key=lambda p: _num(p.x))) for name, pts in series]
    every = [p for _, pts in kept for p in pts]
    if not every:
        return line_chart([], title=title, x_label=x_label, y_label=y_label, width=width,
                          height=height)
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM
    x0, y0 = _PAD_LEFT, _PAD_TOP
    lo_x, hi_x = min(_num(p.x) for p in every), max(_num(p.x) for p in every)
    lo_y, hi_y = min(p.y for p in every), max(p.y for p in every)
    if hi_y == lo_y:
        lo_y, hi_y = lo_y - (abs(lo_y) or 1.0) * 0.05, hi_y + (abs(hi_y) or 1.0) * 0.05
    first = min(every, key=lambda p: _num(p.x))
    last = max(every, key=lambda p: _num(p.x))

    def px(x: float) -> float:
        return x0 + (plot_w / 2 if hi_x == lo_x else (x - lo_x) / (hi_x - lo_x) * plot_w)

    def py(y: float) -> float:
        return y0 + plot_h - (y - lo_y) / (hi_y - lo_y) * plot_h

    parts = [*_frame(title, width, height, plot_w, plot_h, x_label, y_label),
             f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + 4}" text-anchor="end">'
             f"{escape(_y_text(hi_y))}</text>",
             f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + plot_h}" text-anchor="end">'
             f"{escape(_y_text(lo_y))}</text>",
             f'<text class="chart-tick" x="{x0}" y="{y0 + plot_h + 16}" text-anchor="start">'
             f"{escape(_x_text(first.x))}</text>",
             f'<text class="chart-tick" x="{x0 + plot_w}" y="{y0 + plot_h + 16}" '
             f'text-anchor="end">{escape(_x_text(last.x))}</text>']
    parts += _legend([name for name, _ in kept], x0 + plot_w)
    for i, (name, pts) in enumerate(kept):
        colour = PALETTE[i % len(PALETTE)]
        coords = [(px(_num(p.x)), py(p.y)) for p in pts]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline class="chart-line" data-series="{escape(name)}" '
                         f'points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (cx, cy), point in zip(coords, pts, strict=True):
            tip = f"{name}: {_y_text(point.y)} at {_x_text(point.x)}"
            parts.append(f'<circle class="chart-point" data-series="{escape(name)}" '
                         f'cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}">'
                         f"<title>{escape(tip)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: Sequence[str], right: float) -> list[str]:
    """Series names right-aligned at ``right`` on the title line, in palette colours (an
    estimated 7 px per character keeps them apart)."""
    out, x = [], right
    for i in reversed(range(len(names))):
        out.append(f'<text class="chart-legend" x="{x:.1f}" y="16" text-anchor="end" '
                   f'fill="{PALETTE[i % len(PALETTE)]}">{escape(names[i])}</text>')
        x -= 7 * len(names[i]) + 14
    return out


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
              title: str, y_label: str, width: int = 640, height: int = 240) -> str:
    """Grouped bars: one group per label, one bar per series (e.g. a reference and a
    current distribution over the same bins), with a legend."""
    plot_w = width - _PAD_LEFT - _PAD_RIGHT
    plot_h = height - _PAD_TOP - _PAD_BOTTOM - 16
    x0, y0 = _PAD_LEFT, _PAD_TOP
    values = [v for _, vs in series for v in vs if math.isfinite(v)]
    top = max(values, default=0.0) or 1.0
    parts = [*_frame(title, width, height, plot_w, plot_h, None, y_label),
             f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + 4}" text-anchor="end">'
             f"{escape(_y_text(top))}</text>",
             f'<text class="chart-tick" x="{x0 - 6}" y="{y0 + plot_h}" text-anchor="end">0</text>']
    if not labels or not series:
        parts.append(f'<text class="chart-empty" x="{x0 + plot_w / 2:.1f}" '
                     f'y="{y0 + plot_h / 2:.1f}" text-anchor="middle">no data</text></svg>')
        return "".join(parts)
    group = plot_w / len(labels)
    bar = group * 0.8 / len(series)
    parts += _legend([name for name, _ in series], x0 + plot_w)
    for j, label in enumerate(labels):
        gx = x0 + j * group + group * 0.1
        for i, (name, vs) in enumerate(series):
            v = vs[j] if j < len(vs) and math.isfinite(vs[j]) else 0.0
            h = v / top * plot_h
            parts.append(f'<rect class="chart-bar" data-series="{escape(name)}" '
                         f'x="{gx + i * bar:.1f}" y="{y0 + plot_h - h:.1f}" width="{bar:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                         f"<title>{escape(f'{name}, {label}: {_y_text(v)}')}</title></rect>")
        if len(labels) <= 12 or j % max(1, len(labels) // 12) == 0:
            parts.append(f'<text class="chart-tick" x="{gx + group * 0.4:.1f}" '
                         f'y="{y0 + plot_h + 14}" text-anchor="middle">'
                         f"{escape(label[:14])}</text>")
    parts.append("</svg>")
    return "".join(parts)


def heatmap(rows: Sequence[str], columns: Sequence[datetime | float],
            cells: Sequence[Sequence[float | None]], *, title: str, x_label: str,
            width: int = 640, cell_h: int = 18, legend: tuple[str, str] = ("no", "yes")
            ) -> str:
    """A grid of ``rows`` x ``columns`` (e.g. features x windows); a cell of 0 is drawn
    light, 1 dark, values between shaded, ``None`` (not measured) hatched grey. Each cell's
    tooltip names its row, column and value."""
    pad_left = min(160, 16 + 7 * max((len(r) for r in rows), default=4))
    plot_w = max(1, width - pad_left - _PAD_RIGHT)
    height = _PAD_TOP + cell_h * max(1, len(rows)) + 40
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heatmap" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'aria-label="{escape(title)}">', f"<title>{escape(title)}</title>",
             f'<text class="chart-title" x="{pad_left}" y="16">{escape(title)}</text>',
             f'<text class="chart-axis" x="{pad_left + plot_w / 2:.1f}" y="{height - 6}" '
             f'text-anchor="middle">{escape(x_label)}</text>']
    if not rows or not columns:
        parts.append(f'<text class="chart-empty" x="{pad_left + plot_w / 2:.1f}" '
                     f'y="{_PAD_TOP + cell_h / 2 + 4:.1f}" text-anchor="middle">no data</text>'
                     "</svg>")
        return "".join(parts)
    cw = plot_w / len(columns)
    for i, row in enumerate(rows):
        y = _PAD_TOP + i * cell_h
        parts.append(f'<text class="chart-tick" x="{pad_left - 6}" y="{y + cell_h * 0.7:.1f}" '
                     f'text-anchor="end">{escape(row)}</text>')
        for j, col in enumerate(columns):
            value = cells[i][j] if j < len(cells[i]) else None
            if value is None or not math.isfinite(value):
                fill, text = "#eceff2", "not tested"
            else:
                v = min(1.0, max(0.0, value))
                shade = int(235 - v * 90), int(243 - v * 200), int(247 - v * 200)
                fill = "#{:02x}{:02x}{:02x}".format(*shade)
                text = legend[1] if v >= 0.5 else legend[0]
            tip = f"{row} at {_x_text(col)}: {text}"
            parts.append(f'<rect class="heat-cell" data-row="{escape(row)}" data-col="{j}" '
                         f'data-value="{"" if value is None else f"{value:g}"}" '
                         f'x="{pad_left + j * cw:.1f}" y="{y}" width="{max(cw - 1, 1):.1f}" '
                         f'height="{cell_h - 2}" fill="{fill}"><title>{escape(tip)}</title></rect>')
    bottom = _PAD_TOP + len(rows) * cell_h + 14
    parts.append(f'<text class="chart-tick" x="{pad_left}" y="{bottom}" text-anchor="start">'
                 f"{escape(_x_text(columns[0]))}</text>")
    if len(columns) > 1:
        parts.append(f'<text class="chart-tick" x="{pad_left + plot_w}" y="{bottom}" '
                     f'text-anchor="end">{escape(_x_text(columns[-1]))}</text>')
    parts.append("</svg>")
    return "".join(parts)
