"""A model card as Markdown or as one self-contained HTML page (inline CSS and SVG, no
script, nothing fetched), from :class:`~mlops.governance.card.ModelCard`."""

from __future__ import annotations

import html
import json
from typing import Any

from mlops.governance.card import REQUIRED_SECTIONS, CardSection, ModelCard, SectionStatus

__all__ = ["card_html", "card_markdown"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2rem auto;
padding:0 1rem;color:#1d232b;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
border-bottom:1px solid #d7dce2;padding-bottom:.2rem}
.meta{color:#5b6675;font-size:.9rem}.badge{display:inline-block;padding:.05rem .5rem;
border-radius:.6rem;font-size:.8rem;margin-left:.4rem;vertical-align:middle}
.present{background:#e3f4e8;color:#17693a}.missing{background:#fde8e8;color:#a12121}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #d7dce2;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}.evidence{color:#5b6675;font-size:.8rem}
.fix{background:#fff7e0;border-left:3px solid #e0a800;padding:.4rem .6rem;font-size:.9rem}
code{background:#f3f5f7;padding:0 .2rem;border-radius:.2rem}
"""


def _value(v: Any) -> str:
    if v is None or v == "" or v == [] or v == {}:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, dict | list):
        return json.dumps(v, default=str, separators=(", ", ": "))
    return str(v)


# ---------------------------------------------------------------------- business impact
_KPI_COLUMNS = ["kpi", "unit", "better", "baseline", "target", "latest", "version", "change",
                "target met"]


def _amount(value: Any) -> Any:
    """Whole amounts with thousands separators (500,000); other values as they are."""
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return f"{value:,.0f}"
    return value


def _kpi_rows(kpis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The KPI table's cells: the change with its unit and whether it is better,
    "undefined" against a baseline of 0, "none recorded" without a value."""
    rows = []
    for k in kpis:
        met = k.get("target_met")
        if k.get("latest") is None:
            change = "none recorded"
        elif k.get("change") is None:
            change = "undefined (baseline 0)"
        else:
            gain = k.get("improvement") or 0
            better = "" if not gain else " (better)" if gain > 0 else " (worse)"
            change = f"{k['change']:+.4g} {k.get('change_unit', '')}{better}"
        rows.append({"kpi": k.get("kpi"), "unit": k.get("unit"),
                     "better": k.get("direction"), "baseline": _amount(k.get("baseline")),
                     "target": _amount(k.get("target")), "latest": _amount(k.get("latest")),
                     "version": k.get("latest_version") or ("model" if k.get("latest")
                                                            is not None else None),
                     "change": change, "target met": met})
    return rows


def _money(value: Any, currency: str) -> str:
    return "not measured" if value is None else f"{value:.4g} {currency}"


def _cost_lines(cost: dict[str, Any] | None) -> list[str]:
    """The version's cost per 1,000 predictions and what it rests on, as sentences."""
    if not cost or not cost.get("predictions"):
        return []
    cur = str(cost.get("currency", ""))
    prices = cost.get("prices") or {}
    lines = [f"Cost per 1,000 predictions: {_money(cost.get('cost_per_1000'), cur)} "
             f"(CPU {_money(cost.get('cpu_cost_per_1000'), cur)}, memory "
             f"{_money(cost.get('memory_cost_per_1000'), cur)}).",
             f"{cost['predictions']} predictions logged from {_value(cost.get('first_at'))} to "
             f"{_value(cost.get('last_at'))}; CPU time {_value(cost.get('cpu_seconds'))} s "
             f"over {cost.get('cpu_measured_rows', 0)} rows at {_value(prices.get('cpu_hour'))} "
             f"{cur}/CPU-hour; "
             + (f"memory {_value(cost.get('memory_mb'))} MiB ({cost.get('memory_source')})"
                if cost.get("memory_mb") is not None else "memory not measured")
             + f" for {_value(cost.get('hours_serving'))} h serving at "
             f"{_value(prices.get('gb_hour'))} {cur}/GB-hour.",
             f"Hours serving: {cost.get('hours_basis', '')}."]
    return lines


# ---------------------------------------------------------------------- Markdown
def _md_cell(v: Any) -> str:
    return _value(v).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["(none)"]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_md_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return out


def _md_section(section: CardSection) -> list[str]:
    mark = "present" if section.status is SectionStatus.PRESENT else "**MISSING**"
    required = " (required)" if section.key in REQUIRED_SECTIONS else ""
    lines = [f"## {section.title} — {mark}{required}", ""]
    if section.status is SectionStatus.MISSING:
        lines += [f"> {section.missing}", f"> Supply it: `{section.supply}`", ""]
    c = section.content
    if section.key == "evaluation" and c.get("gates"):
        lines += [f"CI run #{c['run']} ({c['status']}, {c['started_at']}):", ""]
        lines += _md_table(c["gates"], ["gate", "passed", "actual", "threshold", "reason"])
    elif section.key == "slices_fairness":
        if "slices" in c:
            lines += [f"Slices ({c['slices']['metric']}, overall "
                      f"{_value(c['slices']['overall'])}):", ""]
            lines += _md_table(c["slices"]["rows"], ["slice", "n", "metric", "gap", "status"])
            lines.append("")
        for feature, res in (c.get("fairness") or {}).get("features", {}).items():
            lines += [f"Fairness by `{feature}`:", ""]
            lines += _md_table(res.get("groups") or [],
                               ["group", "count", "selection_rate", "tpr", "fpr"])
            lines.append("")
    elif section.key == "explainability" and c.get("importances"):
        lines += _md_table(c["importances"], ["rank", "feature", "importance_mean",
                                               "importance_std"])
    elif section.key == "approvals":
        lines += [f"{c.get('count', 0)} of {c.get('required', 0)} required.", ""]
        lines += _md_table(c.get("approvals") or [], ["by", "decision", "at", "comment", "run",
                                                       "counts", "void"])
    elif section.key == "deployments" and c.get("events"):
        lines += _md_table(c["events"], ["at", "environment", "event", "by", "reason",
                                          "audit"])
    elif section.key == "business_impact":
        if c.get("kpis"):
            lines += _md_table(_kpi_rows(c["kpis"]), _KPI_COLUMNS)
            lines.append("")
        lines += _cost_lines(c.get("cost"))
        if section.status is SectionStatus.PRESENT:
            lines += [f"- not measured: {m['what']}: {m['reason']} Supply it: `{m['supply']}`"
                      for m in c.get("not_measured") or []]
    elif section.key == "monitoring" and (c.get("serving") or c.get("alerts")):
        for env in c.get("serving") or []:
            metrics = ", ".join(f"{k} {_value(v['value'])}" for k, v in env["metrics"].items())
            lines.append(f"- {env['environment']} ({env['role']}): {metrics or 'no window yet'}")
        lines.append("")
        lines += _md_table(c.get("alerts") or [], ["rule", "environment", "severity", "state",
                                                    "fired_at", "resolved_at"])
    else:
        lines += [f"- **{k}**: {_md_cell(v)}" for k, v in c.items()]
    if section.evidence:
        lines += ["", "Evidence: " + "; ".join(section.evidence)]
    return [*lines, ""]


def card_markdown(card: ModelCard) -> str:
    """The card as Markdown: one heading per section, tables for gates, slices and
    approvals, and the supplying command under each missing section."""
    missing = [s.title for s in card.missing()]
    lines = [f"# Model card: {card.model} {card.version}", "",
             f"Generated {card.generated_at} from the platform's records. "
             + (f"Missing: {', '.join(missing)}." if missing else "Every section has evidence."),
             ""]
    for section in card.sections:
        lines += _md_section(section)
    return "\n".join(lines)


# ---------------------------------------------------------------------- HTML
def _e(v: Any) -> str:
    return html.escape(_value(v))


def _html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(r.get(c))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(items: list[tuple[str, float, float | None]], width: int = 520) -> str:
    """Horizontal bars (value) with a threshold tick, as inline SVG."""
    numeric = [(label, v, t) for label, v, t in items if isinstance(v, int | float)]
    if not numeric:
        return ""
    top = max([abs(v) for _, v, _ in numeric] + [abs(t) for _, _, t in numeric
                                                  if isinstance(t, int | float)]) or 1.0
    row, left, span = 22, 170, width - 240
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{row * len(numeric) + 8}" role="img">']
    for i, (label, v, t) in enumerate(numeric):
        y = 4 + i * row
        w = max(1.0, abs(v) / top * span)
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label[:26])}</text>'
                     f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="14" '
                     f'fill="#4a7bd0"/><text x="{left + w + 6:.1f}" y="{y + 14}" '
                     f'font-size="11">{v:.4g}</text>')
        if isinstance(t, int | float):
            x = left + abs(t) / top * span
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y}" y2="{y + 20}" '
                         f'stroke="#d03a3a" stroke-width="2"><title>threshold {t:.4g}'
                         "</title></line>")
    parts.append("</svg>")
    return "".join(parts)


def _gate_bars(gates: list[dict[str, Any]]) -> str:
    items: list[tuple[str, float, float | None]] = []
    for g in gates:
        actual, threshold = g.get("actual"), g.get("threshold")
        if isinstance(actual, dict):
            for k, v in actual.items():
                t = threshold.get(k) if isinstance(threshold, dict) else None
                if isinstance(v, int | float) and not isinstance(v, bool):
                    items.append((f"{g['gate']}: {k}", float(v),
                                  float(t) if isinstance(t, int | float) else None))
        elif isinstance(actual, int | float) and not isinstance(actual, bool):
            items.append((str(g["gate"]), float(actual),
                          float(threshold) if isinstance(threshold, int | float) else None))
    return _bars(items)


def _html_section(section: CardSection) -> str:
    status = section.status.value
    required = " (required)" if section.key in REQUIRED_SECTIONS else ""
    out = [f'<h2 id="{html.escape(section.key)}">{html.escape(section.title)}'
           f'<span class="badge {status}">{status}{required}</span></h2>']
    if section.status is SectionStatus.MISSING:
        out.append(f'<p class="fix">{html.escape(section.missing)}<br>Supply it: '
                   f"<code>{html.escape(section.supply)}</code></p>")
    c = section.content
    if section.key == "evaluation" and c.get("gates"):
        out.append(f"<p>CI run #{_e(c['run'])} ({_e(c['status'])}, {_e(c['started_at'])})</p>")
        out.append(_gate_bars(c["gates"]))
        out.append(_html_table(c["gates"], ["gate", "passed", "actual", "threshold",
                                            "reason"]))
    elif section.key == "slices_fairness":
        if "slices" in c:
            out.append(f"<p>Slices by {_e(c['slices']['metric'])} (overall "
                       f"{_e(c['slices']['overall'])})</p>")
            out.append(_html_table(c["slices"]["rows"], ["slice", "n", "metric", "gap",
                                                         "status"]))
        for feature, res in (c.get("fairness") or {}).get("features", {}).items():
            out.append(f"<p>Fairness by <code>{html.escape(str(feature))}</code></p>")
            out.append(_html_table(res.get("groups") or [],
                                   ["group", "count", "selection_rate", "tpr", "fpr"]))
    elif section.key == "explainability" and c.get("importances"):
        out.append(_bars([(str(i["feature"]), i["importance_mean"], None)
                          for i in c["importances"][:15]
                          if isinstance(i.get("importance_mean"), int | float)]))
        out.append(_html_table(c["importances"], ["rank", "feature", "importance_mean",
                                                  "importance_std"]))
    elif section.key == "approvals":
        out.append(f"<p>{_e(c.get('count', 0))} of {_e(c.get('required', 0))} required</p>")
        out.append(_html_table(c.get("approvals") or [], ["by", "decision", "at", "comment",
                                                          "run", "counts", "void"]))
    elif section.key == "deployments" and c.get("events"):
        out.append(_html_table(c["events"], ["at", "environment", "event", "by", "reason",
                                             "audit"]))
    elif section.key == "business_impact":
        if c.get("kpis"):
            out.append(_html_table(_kpi_rows(c["kpis"]), _KPI_COLUMNS))
        out += [f"<p>{html.escape(line)}</p>" for line in _cost_lines(c.get("cost"))]
        if section.status is SectionStatus.PRESENT:
            out += [f'<p class="fix">Not measured: {html.escape(m["what"])}: '
                    f"{html.escape(m['reason'])}<br>Supply it: "
                    f"<code>{html.escape(m['supply'])}</code></p>"
                    for m in c.get("not_measured") or []]
    elif section.key == "monitoring" and (c.get("serving") or c.get("alerts")):
        for env in c.get("serving") or []:
            out.append(f"<p>{_e(env['environment'])} ({_e(env['role'])})</p>")
            out.append(_html_table([{"metric": k, **v} for k, v in env["metrics"].items()],
                                   ["metric", "value", "n", "at"]))
        out.append(_html_table(c.get("alerts") or [], ["rule", "environment", "severity",
                                                       "state", "fired_at", "resolved_at"]))
    else:
        out.append(_html_table([{"field": k, "value": v} for k, v in c.items()],
                               ["field", "value"]))
    if section.evidence:
        out.append('<p class="evidence">Evidence: '
                   + "; ".join(html.escape(e) for e in section.evidence) + "</p>")
    return "".join(out)


def card_html(card: ModelCard) -> str:
    """The card as one HTML page with its CSS and charts inline; no script, no link out."""
    title = f"Model card: {card.model} {card.version}"
    missing = [s.title for s in card.missing()]
    summary = (f"Missing: {', '.join(missing)}." if missing else
               "Every section has evidence.")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p class=\"meta\">Generated "
            f"{html.escape(card.generated_at)} from the platform's records. "
            f"{html.escape(summary)}</p>"
            + "".join(_html_section(s) for s in card.sections) + "</body></html>")
