"""A compliance report as Markdown or as one self-contained HTML page."""

from __future__ import annotations

import html

from mlops.governance.compliance import ComplianceReport, ItemStatus

__all__ = ["compliance_html", "compliance_markdown"]

_MARK = {ItemStatus.MET: "met", ItemStatus.MISSING: "MISSING",
         ItemStatus.NOT_APPLICABLE: "n/a"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2rem auto;
padding:0 1rem;color:#1d232b;line-height:1.45}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #d7dce2;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}.met{color:#17693a;font-weight:600}.missing{color:#a12121;
font-weight:600}.na{color:#5b6675}.ev{color:#5b6675;font-size:.8rem}code{background:#f3f5f7}
"""


def compliance_markdown(report: ComplianceReport) -> str:
    counts = report.counts()
    lines = [f"# {report.title}", "",
             f"{report.model} {report.version}, generated {report.generated_at} from the "
             f"platform's records: {counts['met']} met, {counts['missing']} missing, "
             f"{counts['not applicable']} not applicable. Audit chain: "
             f"{'verifies' if report.audit_ok else 'BROKEN'} ({report.audit_events} events).",
             "", "| item | status | detail | evidence |", "|---|---|---|---|"]
    for i in report.items:
        detail = i.detail + (f" Supply it: `{i.supply}`" if i.supply else "")
        lines.append(f"| {i.title} | {_MARK[i.status]} | {detail.replace('|', '/')} | "
                     f"{'; '.join(i.evidence).replace('|', '/') or '—'} |")
    return "\n".join(lines) + "\n"


def compliance_html(report: ComplianceReport) -> str:
    counts = report.counts()
    rows = []
    for i in report.items:
        cls = {ItemStatus.MET: "met", ItemStatus.MISSING: "missing",
               ItemStatus.NOT_APPLICABLE: "na"}[i.status]
        supply = f"<br>Supply it: <code>{html.escape(i.supply)}</code>" if i.supply else ""
        rows.append(f"<tr><td><b>{html.escape(i.title)}</b><br><span class=\"ev\">"
                    f"{html.escape(i.requirement)}</span></td><td class=\"{cls}\">"
                    f"{_MARK[i.status]}</td><td>{html.escape(i.detail)}{supply}</td>"
                    f"<td class=\"ev\">{'<br>'.join(html.escape(e) for e in i.evidence)}"
                    "</td></tr>")
    title = f"{report.title}: {report.model} {report.version}"
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Generated {html.escape(report.generated_at)} "
            f"from the platform's records: {counts['met']} met, {counts['missing']} missing, "
            f"{counts['not applicable']} not applicable. Audit chain: "
            f"{'verifies' if report.audit_ok else 'BROKEN'} ({report.audit_events} events)."
            "</p><table><tr><th>item</th><th>status</th><th>detail</th><th>evidence</th>"
            "</tr>" + "".join(rows) + "</table></body></html>")
