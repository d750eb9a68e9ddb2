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

__all__ = ["Point", "line_chart"]

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
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<text class="chart-title" x="{x0}" y="16">{escape(title)}</text>',
             f'<rect class="chart-frame" x="{x0}" y="{y0}" width="{plot_w}" height="{plot_h}" '
             'fill="none" stroke="#c4cbd4"/>',
             f'<text class="chart-axis" x="{x0 + plot_w / 2:.1f}" y="{height - 6}" '
             f'text-anchor="middle">{escape(x_label)}</text>',
             f'<text class="chart-axis" x="14" y="{y0 + plot_h / 2:.1f}" text-anchor="middle" '
             f'transform="rotate(-90 14 {y0 + plot_h / 2:.1f})">{escape(y_label)}</text>']
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
