"""The composite health score and its parts."""

from __future__ import annotations

import pytest

from mlops.monitoring.health import health_score


def test_all_good_is_healthy_with_every_part_scored() -> None:
    h = health_score({"accuracy": 0.9, "error_rate": 0.0, "latency_p99_ms": 20.0,
                      "drift_share": 0.0, "missing_rate_excess": 0.0}, {"accuracy": 0.9})
    assert h.score == 100.0 and h.status == "healthy"
    assert {p.name for p in h.parts if p.score is not None} == {
        "performance", "data_quality", "drift", "system"}


def test_accuracy_drop_lowers_the_performance_part_linearly() -> None:
    h = health_score({"accuracy": 0.81}, {"accuracy": 0.9})  # 10% relative loss
    perf = next(p for p in h.parts if p.name == "performance")
    assert perf.score == pytest.approx(50.0)
    assert h.score == pytest.approx(50.0)  # the only scored part


def test_regression_error_rise_counts_as_loss() -> None:
    h = health_score({"mae": 1.2}, {"mae": 1.0})
    perf = next(p for p in h.parts if p.name == "performance")
    assert perf.score == pytest.approx(0.0)


def test_parts_without_data_are_left_out_of_the_composite() -> None:
    h = health_score({"error_rate": 0.05})
    assert h.score == pytest.approx(50.0) and h.status == "degraded"
    assert next(p for p in h.parts if p.name == "performance").score is None
    assert health_score({}).status == "unknown"


def test_drift_and_concept_drift_reduce_the_drift_part() -> None:
    h = health_score({"drift_share": 0.5, "prediction_drift": 1.0, "concept_drift": 1.0})
    drift = next(p for p in h.parts if p.name == "drift")
    assert drift.score == pytest.approx(100 * 0.5 * 0.7 * 0.7)
