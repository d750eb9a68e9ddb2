"""Presentation for people: the HTML drift report (the dashboard grows here)."""

from __future__ import annotations

from mlops.ui.drift_report import render_drift_report

__all__ = ["render_drift_report"]
