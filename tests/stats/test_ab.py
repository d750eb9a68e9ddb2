"""The decision: recommend() rules and the seed's ABTestAnalyzer code pattern."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from mlops.errors import StatsError
from mlops.stats import (
    ABTestAnalyzer,
    default_higher_is_better,
    msprt_two_proportions,
    recommend,
    sample_ratio_mismatch,
)
from mlops.stats.ab import welch_t_test


@dataclass(frozen=True)
class R:
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    n_control: int = 5000
    n_treatment: int = 5000


def _metrics(rng: np.random.Generator, n: int, accuracy: float, latency: float,
             satisfaction: float) -> dict[str, np.ndarray]:
    return {
        "accuracy": (rng.random(n) < accuracy).astype(float),
        "latency": rng.normal(latency, 20.0, n),
        "user_satisfaction": rng.normal(satisfaction, 1.0, n),
    }


def _seed_pattern(control: dict[str, np.ndarray], treatment: dict[str, np.ndarray]
                  ) -> tuple[str, str]:
    analyzer = ABTestAnalyzer()
    results = analyzer.analyze_test_results(control, treatment)
    for row in results.values():
        assert {"p_value", "effect_size", "is_significant", "control_mean", "treatment_mean",
                "improvement"} <= set(row)
    return analyzer.generate_recommendation(results)


def test_seed_pattern_deploys_a_clear_improvement() -> None:
    rng = np.random.default_rng(100)
    action, reason = _seed_pattern(_metrics(rng, 5000, 0.85, 100.0, 4.0),
                                   _metrics(rng, 5000, 0.90, 100.0, 4.0))
    assert action == "DEPLOY" and "accuracy" in reason


def test_seed_pattern_rolls_back_a_clear_degradation() -> None:
    rng = np.random.default_rng(101)
    action, reason = _seed_pattern(_metrics(rng, 5000, 0.90, 100.0, 4.0),
                                   _metrics(rng, 5000, 0.85, 100.0, 4.0))
    assert action == "ROLLBACK" and "accuracy" in reason
    # slower is worse even though the seed would have called it an "improvement"
    rng = np.random.default_rng(102)
    action, reason = _seed_pattern(_metrics(rng, 5000, 0.90, 100.0, 4.0),
                                   _metrics(rng, 5000, 0.90, 120.0, 4.0))
    assert action == "ROLLBACK" and "latency" in reason


def test_seed_pattern_continues_on_noise() -> None:
    rng = np.random.default_rng(103)
    action, _ = _seed_pattern(_metrics(rng, 5000, 0.90, 100.0, 4.0),
                              _metrics(rng, 5000, 0.90, 100.0, 4.0))
    assert action == "CONTINUE_TESTING"


def test_no_decision_before_the_minimum_sample_size() -> None:
    rng = np.random.default_rng(104)
    action, reason = _seed_pattern(_metrics(rng, 400, 0.70, 100.0, 4.0),
                                   _metrics(rng, 400, 0.95, 100.0, 4.0))
    assert action == "CONTINUE_TESTING" and "400 of 1000" in reason


def test_analysis_rows_carry_effects_with_intervals() -> None:
    rng = np.random.default_rng(105)
    analyzer = ABTestAnalyzer()
    rows = analyzer.analyze_test_results(_metrics(rng, 3000, 0.85, 100.0, 4.0),
                                         _metrics(rng, 3000, 0.90, 110.0, 4.0))
    acc, lat = rows["accuracy"], rows["latency"]
    assert acc["test"] == "two_proportion_z" and acc["effect_size_kind"] == "cohens_h"
    assert lat["test"] == "welch_t" and lat["effect_size_kind"] == "cohens_d"
    assert lat["higher_is_better"] is False and acc["higher_is_better"] is True
    for row in rows.values():
        assert row["ci_low"] <= row["difference"] <= row["ci_high"]
        assert row["improvement_ci_low"] <= row["improvement"] <= row["improvement_ci_high"]
        assert row["effect_size_ci_low"] <= row["effect_size"] <= row["effect_size_ci_high"]
        assert row["p_adjusted"] >= row["p_value"]
        assert row["is_significant"] == (row["p_adjusted"] < 0.05)
    assert lat["improvement"] == pytest.approx(lat["treatment_mean"] / lat["control_mean"] - 1)
    with pytest.raises(StatsError):
        analyzer.analyze_test_results({"a": [1.0, 2.0]}, {"b": [1.0, 2.0]})


def test_seed_shaped_rows_without_sample_sizes_do_not_decide() -> None:
    rows = {"accuracy": {"p_value": 1e-9, "effect_size": 0.3, "is_significant": True,
                         "control_mean": 0.85, "treatment_mean": 0.9, "improvement": 0.0588}}
    action, reason = ABTestAnalyzer().generate_recommendation(rows)
    assert action == "CONTINUE_TESTING" and "minimum sample size" in reason
    action, _ = ABTestAnalyzer(minimum_sample_size=0).generate_recommendation(rows)
    assert action == "DEPLOY"


def test_benjamini_hochberg_applies_across_metrics() -> None:
    # raw p = 0.04 would be "significant" alone; among three metrics its BH p is 0.12
    results = {"accuracy": R(0.01, 0.001, 0.02, 0.04), "recall": R(0.0, -0.01, 0.01, 0.6),
               "precision": R(0.0, -0.01, 0.01, 0.8)}
    rec = recommend(results)
    assert rec.action == "CONTINUE_TESTING"
    assert rec.per_metric[0].p_adjusted == pytest.approx(0.12)
    assert recommend({"accuracy": results["accuracy"]}).action == "DEPLOY"
    assert recommend(results, correction="bonferroni").per_metric[0].p_adjusted == 0.12


def test_guards_and_margins() -> None:
    better = R(0.02, 0.01, 0.03, 1e-6)
    slower = R(8.0, 4.0, 12.0, 1e-5)
    rec = recommend({"accuracy": better, "latency_ms": slower}, guard_metrics=["latency_ms"])
    assert rec.action == "ROLLBACK" and rec.reason.startswith("guard metric")
    unclear = R(1.0, -2.0, 6.0, 0.5)  # latency CI reaches +6 ms
    assert recommend({"accuracy": better, "latency_ms": unclear},
                     guard_metrics=["latency_ms"]).action == "DEPLOY"
    held = recommend({"accuracy": better, "latency_ms": unclear}, guard_metrics=["latency_ms"],
                     guard_margins={"latency_ms": 5.0})
    assert held.action == "CONTINUE_TESTING" and "margin" in held.reason
    assert held.per_metric[1].non_inferior is False
    tight = R(0.5, -1.0, 2.0, 0.5)
    assert recommend({"accuracy": better, "latency_ms": tight}, guard_metrics=["latency_ms"],
                     guard_margins={"latency_ms": 5.0}).action == "DEPLOY"
    # only guards: deploy needs every guard shown within its margin
    assert recommend({"latency_ms": tight}, guard_metrics=["latency_ms"],
                     guard_margins={"latency_ms": 5.0}).action == "DEPLOY"
    assert recommend({"latency_ms": tight},
                     guard_metrics=["latency_ms"]).action == "CONTINUE_TESTING"
    with pytest.raises(StatsError):
        recommend({"accuracy": better}, guard_metrics=["latency"])


def test_min_effect_srm_and_direction() -> None:
    tiny = R(0.001, 0.0005, 0.0015, 1e-4)
    assert recommend({"accuracy": tiny}, min_effect={"accuracy": 0.005}).action == (
        "CONTINUE_TESTING")
    broken = sample_ratio_mismatch([52_000, 48_000], [50, 50])
    rec = recommend({"accuracy": R(0.05, 0.04, 0.06, 1e-12)}, srm=broken)
    assert rec.action == "CONTINUE_TESTING" and "sample ratio mismatch" in rec.reason
    lower = recommend({"error_rate": R(0.01, 0.005, 0.015, 1e-5)})
    assert lower.action == "ROLLBACK" and lower.per_metric[0].direction == "worse"
    flipped = recommend({"score": R(-1.0, -1.5, -0.5, 1e-5)}, higher_is_better={"score": False})
    assert flipped.action == "DEPLOY"
    assert recommend({}).action == "CONTINUE_TESTING"
    per_metric = recommend({"accuracy": tiny}, min_sample_size={"accuracy": 10_000})
    assert per_metric.action == "CONTINUE_TESTING" and not per_metric.per_metric[0].enough_data


def test_default_direction_from_metric_names() -> None:
    for name in ("latency", "p99_latency_seconds", "error_rate", "log_loss", "cost", "rmse",
                 "response_time_ms"):
        assert default_higher_is_better(name) is False, name
    for name in ("accuracy", "auc", "user_satisfaction", "uptime", "revenue"):
        assert default_higher_is_better(name) is True, name


def test_sequential_results_feed_the_same_decision() -> None:
    worse = msprt_two_proportions(9000, 10_000, 8700, 10_000, tau=0.02)
    assert worse.decision == "reject"
    assert recommend({"accuracy": worse}).action == "ROLLBACK"


def test_fixed_horizon_result_is_reexported_from_ab() -> None:
    r = welch_t_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert r.estimate == 1.0 and math.isfinite(r.p_value)
