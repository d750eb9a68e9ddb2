"""The evaluator records which features drifted (``drift:<feature>``), bounded to the drifted
ones, for retraining triggers on named features."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops.monitoring.alerts import Observation
from mlops.monitoring.drift_window import (
    FEATURE_DRIFT_PREFIX,
    MAX_FEATURE_SNAPSHOTS,
    feature_drift_metric,
)
from mlops.monitoring.health import health_status
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.snapshots import (
    latest_by_deployment,
    latest_snapshots,
    record_snapshots,
    snapshot_series,
)
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_drifted_features_are_snapshotted_and_only_those(registry: ModelRegistry) -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.normal(size=(2000, 3)), columns=["a", "b", "c"])
    clf = LogisticRegression().fit(reference, (reference["a"] > 0).astype(int))
    registry.register("m", model=clf, reference=reference, version="1.0.0")
    current = reference.sample(300, random_state=1)
    current["a"] += 2.0   # strongly
    current["b"] += 0.6   # less
    start = (NOW - timedelta(hours=1)).timestamp()
    log = PredictionLog(registry.settings.artifacts_uri, spool=False)
    log.log([PredictionRecord(f"r{i}", start + 1 + i, "m", "1.0.0", "production", "stable",
                              None, 0, current.iloc[i].to_json(), "1", 1.0, None, 3.0, 200)
             for i in range(len(current))])
    log.close()
    monitor = ModelMonitor(registry, window=3600)
    monitor.alerts._default = []
    try:
        ev = monitor.evaluate("m", "production", version="1.0.0", now=NOW)
    finally:
        monitor.close()
    assert not any(k.startswith(FEATURE_DRIFT_PREFIX) for k in ev.values)  # alert values
    (a,) = snapshot_series(registry, "m", "drift:a", environment="production")
    assert a.value == 1.0 and a.n == 300 and a.window_end == NOW
    assert len(snapshot_series(registry, "m", "drift:b", environment="production")) == 1
    assert snapshot_series(registry, "m", "drift:c") == []  # not drifted: no row
    latest = latest_snapshots(registry, "m", environment="production")
    assert latest["drift:a"].window_end == latest["drift_share"].window_end
    assert ev.by_version is not None
    assert list(ev.by_version.feature_observations(limit=1)) == ["drift:a"]  # largest effect
    assert MAX_FEATURE_SNAPSHOTS >= 1


def test_feature_metric_names_fit_the_snapshot_column() -> None:
    assert feature_drift_metric("income") == "drift:income"
    long = feature_drift_metric("x" * 300)
    assert len(long) == 128 and long == feature_drift_metric("x" * 200)


def test_latest_by_deployment_is_each_model_and_environments_newest_window(
        registry: ModelRegistry) -> None:
    clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    for name in ("a", "b"):
        registry.register(name, model=clf)
    hour = timedelta(hours=1)
    for i, (name, env, score) in enumerate([("a", "production", 70.0), ("a", "staging", 95.0),
                                            ("a", "production", 82.5), ("b", "production", 40.0)]):
        end = NOW + i * hour
        record_snapshots(registry, name, "", env, end - hour, end,
                         {"health": Observation(score, 100), "accuracy": Observation(0.1, 9)})
    record_snapshots(registry, "b", "1.0.0", "production", NOW, NOW + 9 * hour,
                     {"health": Observation(1.0, 5)})  # a version-level value: not the cell's
    latest = latest_by_deployment(registry, "health")
    assert {k: v.value for k, v in latest.items()} == {
        ("a", "production"): 82.5, ("a", "staging"): 95.0, ("b", "production"): 40.0}
    assert latest["a", "production"].window_end == NOW + 2 * hour
    assert [health_status(latest[k].value) for k in sorted(latest)] == [
        "healthy", "healthy", "unhealthy"]
    assert health_status(None) == "unknown" and health_status(50.0) == "degraded"
