"""The ``DriftDetector(reference).detect_drift(current)`` / ``alert_drift(results)`` shape
of seed ``003``, on the honest decision rule of :func:`mlops.stats.drift.detect_drift`.

The seed flags every column whose KS p-value is below 0.05: with 200 features that is
about ten false alarms per check, and at a million rows it flags shifts too small to
matter. Here the same call profiles the reference once, tests every column (KS for
numbers, chi-square for categories), and flags a column only when its Benjamini-Hochberg
adjusted p-value is below ``drift_threshold`` (the FDR) *and* its effect size passes the
floor. The result keeps the seed's keys and adds ours.

>>> detector = DriftDetector(X_train)                     # doctest: +SKIP
>>> alerts = detector.alert_drift(detector.detect_drift(X_test))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlops.errors import MonitoringError
from mlops.stats.drift import DriftReport, detect_drift
from mlops.stats.profile import build_profile

__all__ = ["DriftDetector"]


class DriftDetector:
    """Drift of new frames against a reference frame (profiled once, here)."""

    def __init__(self, reference_data: pd.DataFrame, drift_threshold: float = 0.05,
                 min_effect: float | dict[str, float] | None = None) -> None:
        if not isinstance(reference_data, pd.DataFrame):
            raise MonitoringError("DriftDetector needs the reference data as a DataFrame.",
                                  fix="Pass pandas.DataFrame(reference).")
        self.reference_data = reference_data
        self.drift_threshold = drift_threshold
        self.min_effect = min_effect
        self.profile = build_profile(reference_data)
        self.last_report: DriftReport | None = None

    def detect_drift(self, current_data: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """Per column: ``ks_statistic`` (numeric columns), ``p_value``, ``p_adjusted``,
        ``effect_size``, ``drift_detected``, ``drift_severity`` and the test used."""
        report = detect_drift(self.profile, current_data, fdr=self.drift_threshold,
                              min_effect=self.min_effect)
        self.last_report = report
        results: dict[str, dict[str, Any]] = {}
        for f in report.features:
            results[f.feature] = {
                "ks_statistic": f.scores.get("ks") if f.kind == "numeric" else None,
                "statistic": f.statistic,
                "p_value": f.p_value,
                "p_adjusted": f.p_adjusted,
                "effect_size": f.effect_size,
                "effect_metric": f.effect_metric,
                "method": f.method,
                "drift_detected": f.drifted,
                "drift_severity": f.severity if f.drifted else "low",
            }
        return results

    def alert_drift(self, drift_results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """One alert per drifted column, with the seed's keys."""
        return [{"column": column, "severity": r["drift_severity"], "p_value": r["p_value"],
                 "effect_size": r["effect_size"],
                 "message": f"Data drift detected in {column}"}
                for column, r in drift_results.items() if r["drift_detected"]]
