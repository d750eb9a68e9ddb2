"""The control plane's gauges on /metrics: the evaluator's newest values, route weights and
firing incidents, read at scrape time (cached), and left out, not failed, when the store
cannot be read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from mlops.api.exporter import CONTROL_METRICS, ControlPlaneCollector
from mlops.deployment.routes import RoutingService
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.rules import AlertRule
from mlops.monitoring.snapshots import record_snapshots
from mlops.registry.service import ModelRegistry


def _samples(collector: ControlPlaneCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                        float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_gauges_show_values_weights_and_incidents(registry: ModelRegistry) -> None:
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    registry.register("churn", model=model)
    registry.register("churn", model=model)
    RoutingService(registry).set_route("churn", "production", stable="1.0.0",
                                       candidate="1.0.1", weight=10, strategy="canary",
                                       reason="t", override="t")
    end = datetime.now(UTC)
    record_snapshots(registry, "churn", "", "production", end - timedelta(hours=1), end,
                     {"health": Observation(65.0, 10), "accuracy": Observation(0.91, 5),
                      "drift_share": Observation(None, 0)})
    alerts = AlertManager(registry, default_channels=[])
    alerts.put_rule(AlertRule(name="low", metric="accuracy", comparator="<", threshold=0.95,
                              min_samples=1, model="churn"))
    alerts.evaluate("churn", "1.0.0", "production", lambda rule: Observation(0.91, 5))
    collector = ControlPlaneCollector(registry, ttl=60)
    got = _samples(collector)
    env = {"model_name": "churn", "environment": "production"}
    assert got[_key("mlops_monitor_value", **env, metric="health")] == 65.0
    assert got[_key("mlops_monitor_value", **env, metric="accuracy")] == 0.91
    assert _key("mlops_monitor_value", **env, metric="drift_share") not in got  # no value
    assert got[_key("mlops_monitor_window_end_seconds", **env)] == pytest.approx(
        end.timestamp())
    assert got[_key("mlops_route_weight", **env, model_version="1.0.0", role="stable")] == 90
    assert got[_key("mlops_route_weight", **env, model_version="1.0.1",
                    role="candidate")] == 10
    assert got[_key("mlops_alerts_firing", **env, severity="medium")] == 1.0
    assert {name for name, _ in got} == set(CONTROL_METRICS)
    # cached for ttl: a new value shows at the next read after it
    record_snapshots(registry, "churn", "", "production", end, end + timedelta(hours=1),
                     {"health": Observation(40.0, 10)})
    assert _samples(collector)[_key("mlops_monitor_value", **env, metric="health")] == 65.0
    collector.ttl = 0
    assert _samples(collector)[_key("mlops_monitor_value", **env, metric="health")] == 40.0


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_an_unreadable_store_leaves_the_gauges_out(registry: ModelRegistry,
                                                  tmp_path: Path) -> None:
    collector = ControlPlaneCollector(registry, ttl=0)
    registry.context.store.engine.dispose()
    with registry.context.store.write() as s:  # break the store: drop a table it reads
        from sqlalchemy import text

        s.execute(text("DROP TABLE metric_snapshots"))
    assert _samples(collector) == {}
