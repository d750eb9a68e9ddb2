"""Presentation for people: the HTML drift report (the dashboard grows here)."""

from __future__ import annotations

from mlops.ui.card import card_html, card_markdown
from mlops.ui.compliance import compliance_html, compliance_markdown
from mlops.ui.drift_report import render_drift_report
from mlops.ui.lineage import lineage_dot

__all__ = ["card_html", "card_markdown", "compliance_html", "compliance_markdown",
           "lineage_dot", "render_drift_report"]
