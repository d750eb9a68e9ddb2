"""Alert rules: validation with errors that name the rule, the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.errors import MonitoringError
from mlops.monitoring.rules import DEFAULT_RULES, AlertRule, load_rules, parse_duration


def test_durations_accept_units_and_refuse_garbage() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("5m") == 300
    assert parse_duration("1.5h") == 5400
    assert parse_duration("2d") == 172800
    assert parse_duration(30) == 30
    with pytest.raises(MonitoringError, match="not a duration"):
        parse_duration("soon")


def test_absolute_threshold_rule_breaches_on_the_right_side() -> None:
    rule = AlertRule(name="p99", metric="latency_p99_ms", comparator=">", threshold=500)
    assert rule.breached(501, None) == (True, 500)
    assert rule.breached(500, None) == (False, 500)


def test_baseline_relative_rule_uses_the_baseline_and_is_silent_without_one() -> None:
    rule = AlertRule(name="acc", metric="accuracy", comparator="<", baseline_change=-0.05)
    hit, limit = rule.breached(0.85, 0.90)
    assert hit and limit == pytest.approx(0.855)
    assert rule.breached(0.86, 0.90)[0] is False
    assert rule.breached(0.10, None) == (False, None)


def test_rule_needs_exactly_one_limit() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        AlertRule(name="x", metric="accuracy", comparator="<")
    with pytest.raises(ValueError, match="exactly one"):
        AlertRule(name="x", metric="accuracy", comparator="<", threshold=0.8,
                  baseline_change=-0.1)


def test_yaml_rules_load_with_durations(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n"
                    "  - name: acc\n"
                    "    metric: accuracy\n"
                    "    comparator: '<'\n"
                    "    threshold: 0.8\n"
                    "    window: 30m\n"
                    "    cooldown: 1h\n"
                    "    severity: critical\n")
    (rule,) = load_rules(path)
    assert rule.window == 1800 and rule.cooldown == 3600 and rule.severity == "critical"


def test_invalid_rule_error_names_rule_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("- name: ok\n"
                    "  metric: accuracy\n"
                    "  comparator: '<'\n"
                    "  threshold: 0.8\n"
                    "- name: broken\n"
                    "  metric: accuracy\n"
                    "  comparator: '<'\n"
                    "  threshold: 0.8\n"
                    "  severity: urgent\n")
    with pytest.raises(MonitoringError) as info:
        load_rules(path)
    text = str(info.value)
    assert "'broken'" in text and "severity" in text and "line 9" in text


def test_unknown_metric_and_duplicate_names_are_refused() -> None:
    with pytest.raises(MonitoringError, match="unknown metric"):
        load_rules([{"name": "a", "metric": "accuracyy", "comparator": "<", "threshold": 1}])
    rule = {"name": "a", "metric": "accuracy", "comparator": "<", "threshold": 1}
    with pytest.raises(MonitoringError, match="repeat"):
        load_rules([rule, rule])


def test_default_rules_cover_errors_latency_quality_and_drift() -> None:
    metrics = {r.metric for r in DEFAULT_RULES}
    assert {"error_rate", "latency_p99_ms", "accuracy", "drift_share", "concept_drift"} <= metrics
