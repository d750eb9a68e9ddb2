"""A self-contained HTML drift report: one table and one inline-SVG plot per feature.

No scripts, fonts or styles are fetched from anywhere: the file opens offline and can be
attached to a ticket. Numeric features show reference and current histograms over shared
bins (reference quantile range, 30 bins); categorical features show the share of each
category (the 20 most frequent) side by side.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops.stats.drift import DriftReport, FeatureDrift
from mlops.stats.profile import ReferenceProfile

__all__ = ["render_drift_report"]

_W, _H, _PAD = 360, 140, 24
_REF, _CUR = "#4c78a8", "#f58518"

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px;margin:0 0 4px} .sub{color:#555;margin-bottom:16px}
table{border-collapse:collapse;font-size:13px;margin-bottom:24px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} tr.drift td{background:#fdecea}
.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:380px}
.card.drift{border-color:#d62728} .card h3{font-size:14px;margin:0 0 4px}
.meta{font-size:12px;color:#555} .legend span{display:inline-block;width:10px;height:10px;
margin:0 4px 0 8px}
"""


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}"


def _bars_svg(ref: np.ndarray, cur: np.ndarray, labels: list[str]) -> str:
    """Paired bars (reference, current) of two share vectors."""
    k = len(ref)
    top = float(max(ref.max(initial=0.0), cur.max(initial=0.0))) or 1.0
    slot = (_W - 2 * _PAD) / max(k, 1)
    bar = max(slot / 2 - 1, 0.5)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 18}" '
             f'role="img">']
    for i in range(k):
        x = _PAD + i * slot
        for j, (values, colour) in enumerate(((ref, _REF), (cur, _CUR))):
            h = (_H - 2 * _PAD) * float(values[i]) / top
            parts.append(f'<rect x="{x + j * bar:.1f}" y="{_H - _PAD - h:.1f}" '
                         f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}" opacity="0.8">'
                         f'<title>{html.escape(labels[i])}: {values[i]:.3f}</title></rect>')
    parts.append(f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" '
                 'stroke="#888"/>')
    if labels:
        parts.append(f'<text x="{_PAD}" y="{_H - 6}" font-size="10">'
                     f'{html.escape(labels[0][:18])}</text>')
        parts.append(f'<text x="{_W - _PAD}" y="{_H - 6}" font-size="10" text-anchor="end">'
                     f'{html.escape(labels[-1][:18])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _numeric_plot(col: Any, values: pd.Series) -> str:
    sample = np.asarray(col.sample, dtype=float)
    current = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    current = current[np.isfinite(current)]
    if sample.size == 0 or current.size == 0:
        return "<p class='meta'>no values to plot</p>"
    lo, hi = np.quantile(sample, [0.005, 0.995])
    lo = min(lo, np.quantile(current, 0.005))
    hi = max(hi, np.quantile(current, 0.995))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, 31)
    ref = np.histogram(np.clip(sample, lo, hi), edges)[0] / sample.size
    cur = np.histogram(np.clip(current, lo, hi), edges)[0] / current.size
    return _bars_svg(ref, cur, [_fmt(float(lo), 3), *([""] * 28), _fmt(float(hi), 3)])


def _categorical_plot(col: Any, values: pd.Series) -> str:
    ref_counts = dict(zip(col.categories, np.asarray(col.counts, dtype=float), strict=True))
    cur_counts = values.dropna().astype(str).value_counts()
    names = sorted(set(ref_counts) | set(cur_counts.index),
                   key=lambda c: -(ref_counts.get(c, 0.0) + float(cur_counts.get(c, 0))))[:20]
    ref_total = sum(ref_counts.values()) or 1.0
    cur_total = float(cur_counts.sum()) or 1.0
    ref = np.array([ref_counts.get(c, 0.0) / ref_total for c in names])
    cur = np.array([float(cur_counts.get(c, 0)) / cur_total for c in names])
    return _bars_svg(ref, cur, names)


def _card(f: FeatureDrift, profile: ReferenceProfile, current: pd.DataFrame) -> str:
    col = profile.columns.get(f.feature)
    if col is None or f.feature not in current.columns:
        plot = "<p class='meta'>column missing</p>"
    elif f.kind == "numeric":
        plot = _numeric_plot(col, current[f.feature])
    else:
        plot = _categorical_plot(col, current[f.feature])
    cls = "card drift" if f.drifted else "card"
    verdict = "drifted" if f.drifted else "no drift"
    return (f'<div class="{cls}"><h3>{html.escape(f.feature)} '
            f'<span class="meta">({f.kind}, {verdict})</span></h3>{plot}'
            f'<div class="meta">{html.escape(f.method)} p={_fmt(f.p_value, 3)}, '
            f'BH p={_fmt(f.p_adjusted, 3)}, {html.escape(f.effect_metric)}='
            f'{_fmt(f.effect_size, 3)}</div></div>')


def render_drift_report(report: DriftReport, profile: ReferenceProfile,
                        current: pd.DataFrame, *, model: str = "", version: str = "",
                        title: str | None = None) -> str:
    """The report as one HTML string (write it to a file and open it anywhere)."""
    head = title or f"Data drift: {model} {version}".strip()
    rows = []
    for f in sorted(report.features, key=lambda f: (not f.drifted, f.feature)):
        cls = ' class="drift"' if f.drifted else ""
        rows.append(f"<tr{cls}><td>{html.escape(f.feature)}</td><td>{f.kind}</td>"
                    f"<td>{html.escape(f.method)}</td><td>{_fmt(f.statistic)}</td>"
                    f"<td>{_fmt(f.p_value)}</td><td>{_fmt(f.p_adjusted)}</td>"
                    f"<td>{html.escape(f.effect_metric)} {_fmt(f.effect_size)}</td>"
                    f"<td>{_fmt(f.missing_rate_reference, 3)} / "
                    f"{_fmt(f.missing_rate_current, 3)}</td>"
                    f"<td>{'yes' if f.drifted else 'no'}</td></tr>")
    cards = "".join(_card(f, profile, current) for f in
                    sorted(report.features, key=lambda f: (not f.drifted, f.feature)))
    missing = (f"<p>Columns missing from the current data: "
               f"{html.escape(', '.join(report.missing_columns))}</p>"
               if report.missing_columns else "")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(head)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(head)}</h1>"
        f"<div class='sub'>{report.n_drifted} of {report.n_features} features drifted "
        f"(Benjamini-Hochberg at FDR {report.fdr:g} and a minimum effect size); "
        f"{profile.n_rows:,} reference rows, {len(current):,} current rows; {stamp}</div>"
        f"{missing}<table><thead><tr><th>feature</th><th>kind</th><th>test</th>"
        "<th>statistic</th><th>p</th><th>p (BH)</th><th>effect</th>"
        "<th>missing ref / cur</th><th>drifted</th></tr></thead><tbody>"
        f"{''.join(rows)}</tbody></table>"
        f"<div class='legend'>reference<span style='background:{_REF}'></span>"
        f" current<span style='background:{_CUR}'></span></div>"
        f"<div class='grid'>{cards}</div></body></html>")
