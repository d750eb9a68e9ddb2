"""The monitoring service offline: reference profiles, performance vs baseline, data and
prediction drift, concept drift, evaluation with snapshots and alerts; the seed snippets."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.deployment.rollouts import RolloutManager
from mlops.errors import MonitoringError
from mlops.monitoring.drift_detector import DriftDetector
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.snapshots import snapshot_series
from mlops.registry.service import ModelRegistry

FEATURES = ["a", "b", "c", "d"]


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    frame["a"] += shift
    frame["b"] += shift
    frame["label"] = (frame["a"] - frame["b"] + rng.normal(0, 0.3, n) > 0).astype(int)
    return frame


@pytest.fixture
def deployed(registry: ModelRegistry) -> tuple[ModelRegistry, LogisticRegression]:
    train = _frame(3000, 0)
    clf = LogisticRegression().fit(train[FEATURES], train["label"])
    registry.register("churn", model=clf, reference=train[FEATURES],
                      metrics={"accuracy": 0.93})
    manager = RolloutManager(registry)
    manager.deploy("churn", "1.0.0", "staging", strategy="full")
    manager.deploy("churn", "1.0.0", "production", strategy="full")
    return registry, clf


def _record(monitor: ModelMonitor, clf: LogisticRegression, frame: pd.DataFrame,
            labels: np.ndarray | None = None) -> None:
    predictions = clf.predict(frame[FEATURES])
    actual = frame["label"].to_numpy() if labels is None else labels
    for i in range(len(frame)):
        monitor.record_prediction("churn", int(predictions[i]), int(actual[i]), latency_ms=4.0,
                                  features=frame.iloc[i][FEATURES].to_dict())
    monitor.flush()


def test_registration_profiles_features_and_outputs(deployed: tuple[ModelRegistry, object]
                                                    ) -> None:
    registry, _ = deployed
    infos = {i.kind: i for i in registry.reference_profiles("churn", "1.0.0")}
    assert set(infos) == {"features", "outputs"}
    assert infos["features"].n_rows == 3000 and set(infos["features"].columns) == set(FEATURES)
    assert infos["outputs"].columns["prediction"]["kind"] == "categorical"
    event = registry.audit_log(action="version.register", limit=1)[0]
    assert set(event.payload["profiles"]) == {"features", "outputs"}


def test_no_profile_is_a_clear_error(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("plain", skops_file)
    with pytest.raises(MonitoringError, match="no features reference profile") as info:
        ModelMonitor(registry).detect_data_drift("plain", pd.DataFrame({"a": [1.0]}))
    assert "mlops monitor reference" in (info.value.fix or "")


def test_performance_against_the_registered_baseline(deployed: tuple[ModelRegistry,
                                                                      LogisticRegression]
                                                     ) -> None:
    registry, clf = deployed
    monitor = ModelMonitor(registry)
    good = _frame(300, 1)
    _record(monitor, clf, good)
    check = monitor.check_model_performance("churn")
    assert check.window.n_labeled == 300 and check.degraded == ()
    expected = float((clf.predict(good[FEATURES]) == good["label"]).mean())
    assert check.metrics["accuracy"] == pytest.approx(expected)
    wrong = 1 - good["label"].to_numpy()
    _record(monitor, clf, good, labels=wrong)
    worse = monitor.check_model_performance("churn")
    assert "accuracy" in worse.degraded and worse.changes["accuracy"] < -0.05
    monitor.set_baseline("churn", {"accuracy": 0.4})
    assert monitor.baseline("churn", "1.0.0")["accuracy"] == 0.4
    assert monitor.check_model_performance("churn").degraded == ()
    monitor.close()


def test_baseline_metrics_can_be_removed_and_are_capped(
        deployed: tuple[ModelRegistry, LogisticRegression]) -> None:
    """PUT merges, so a metric once set could never go (its alerts kept comparing with
    it), and merges grew past the cap of one call."""
    from mlops.errors import MonitoringError

    registry, _ = deployed
    monitor = ModelMonitor(registry)
    monitor.set_baseline("churn", {"accuracy": 0.9, "f1": 0.8})
    assert monitor.remove_baseline("churn", ["f1"]) == {"accuracy": 0.9}
    assert "f1" not in monitor.baseline("churn", "1.0.0")
    with pytest.raises(MonitoringError, match="No baseline metric 'recall'") as refused:
        monitor.remove_baseline("churn", ["recall"])
    assert "accuracy" in str(refused.value.fix)
    events = registry.audit_log(action="monitor.baseline.remove")
    assert events[0].payload == {"removed": ["f1"]}
    monitor.set_baseline("churn", {f"m{i}": 1.0 for i in range(99)})  # 100 with accuracy
    with pytest.raises(MonitoringError, match="would have 101 baseline metrics"):
        monitor.set_baseline("churn", {"one_more": 1.0})
    assert len(monitor.remove_baseline("churn", [f"m{i}" for i in range(99)])) == 1
    monitor.close()


def test_data_and_prediction_drift(deployed: tuple[ModelRegistry, LogisticRegression]) -> None:
    registry, clf = deployed
    monitor = ModelMonitor(registry)
    same = monitor.detect_data_drift("churn", _frame(2000, 7)[FEATURES])
    assert same.n_drifted == 0
    shifted = monitor.detect_data_drift("churn", _frame(2000, 8, shift=0.8)[FEATURES])
    assert set(shifted.drifted_features) == {"a", "b"}
    tilted = _frame(2000, 9)
    tilted["a"] += 1.5  # most rows now predict 1
    assert monitor.detect_prediction_drift("churn", clf.predict(tilted[FEATURES])
                                           ).n_drifted == 1
    assert monitor.detect_prediction_drift("churn", clf.predict(
        _frame(2000, 10)[FEATURES])).n_drifted == 0
    monitor.close()


def test_a_label_that_arrives_before_its_prediction_matures_is_still_fed(
        deployed: tuple[ModelRegistry, LogisticRegression]) -> None:
    import time as clock

    from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord

    registry, _ = deployed
    monitor = ModelMonitor(registry, label_delay=60)
    monitor.alerts._default = []
    t0 = clock.time()

    def rows(prefix: str, ts: float) -> tuple[list[PredictionRecord], list[FeedbackRecord]]:
        preds = [PredictionRecord(f"{prefix}{i}", ts, "churn", "1.0.0", "production", "stable",
                                  None, 0, "{}", "1", 1.0, None, 2.0, 200) for i in range(30)]
        labels = [FeedbackRecord(f"{prefix}{i}", 0, "churn", "1", 1.0, t0) for i in range(30)]
        return preds, labels

    old, old_labels = rows("old-", t0 - 120)  # mature already when labelled
    new, new_labels = rows("new-", t0)        # labelled at once, mature at t0 + 60
    log = PredictionLog(registry.settings.artifacts_uri)
    log.log(old + new)
    log.log_feedback(old_labels + new_labels)
    log.close()
    start = datetime.fromtimestamp(t0, UTC)
    first = monitor.evaluate("churn", "production", now=start + timedelta(seconds=10))
    assert first.concept_drift["new_rows"] == 30  # the old ones; the cursor moves to ~t0
    later = monitor.evaluate("churn", "production", now=start + timedelta(seconds=70))
    assert later.concept_drift["new_rows"] == 30  # the new ones, labelled before the cursor
    again = monitor.evaluate("churn", "production", now=start + timedelta(seconds=80))
    assert again.concept_drift["new_rows"] == 0  # nothing twice
    monitor.close()


def test_evaluate_stores_snapshots_and_fires_alerts(deployed: tuple[ModelRegistry,
                                                                     LogisticRegression]
                                                    ) -> None:
    registry, clf = deployed
    monitor = ModelMonitor(registry)
    monitor.alerts._default = []  # no log noise
    _record(monitor, clf, _frame(600, 11))
    first = monitor.evaluate("churn", "production")
    assert first.values["drift_share"].value == 0.0
    assert first.health.status == "healthy" and not first.transitions
    shifted = _frame(1500, 12, shift=1.0)
    _record(monitor, clf, shifted, labels=1 - shifted["label"].to_numpy())
    second = monitor.evaluate("churn", "production")
    fired = {t.rule for t in second.transitions if t.change == "fired"}
    assert {"accuracy-drop", "data-drift"} <= fired
    assert second.health.score is not None and second.health.score < 70
    status = monitor.status("churn", "production")
    assert {a.rule for a in status.firing} >= {"accuracy-drop", "data-drift"}
    series = snapshot_series(registry, "churn", "accuracy", environment="production")
    assert len(series) == 2 and series[1].value < series[0].value
    monitor.close()


def test_concept_drift_detector_state_survives_between_passes(
        deployed: tuple[ModelRegistry, LogisticRegression]) -> None:
    registry, clf = deployed
    monitor = ModelMonitor(registry)
    monitor.alerts._default = []
    _record(monitor, clf, _frame(1500, 13))
    now = datetime.now(UTC) + timedelta(seconds=6)  # labels settle for 5 s before use
    assert not monitor.evaluate("churn", "production", now=now).concept_drift["detected"]
    bad = _frame(1500, 14)
    _record(monitor, clf, bad, labels=1 - bad["label"].to_numpy())
    later = monitor.evaluate("churn", "production", now=now + timedelta(seconds=6))
    assert later.concept_drift["new_rows"] == 1500
    assert later.concept_drift["detected"]
    monitor.close()


README_MONITOR = textwrap.dedent('''
    from mlops.monitoring.model_monitor import get_model_monitor

    monitor = get_model_monitor()

    # Record prediction
    monitor.record_prediction(
        model_name="task_classifier",
        prediction=prediction,
        actual=actual,
        latency_ms=50
    )

    # Check performance
    performance = monitor.check_model_performance("task_classifier")

    # Detect drift
    drift = monitor.detect_data_drift("task_classifier", current_features)
''')

README_BASELINE = textwrap.dedent('''
    # Monitor in production
    monitor = get_model_monitor()
    monitor.set_baseline("my_model", metrics)

    # Continuous monitoring
    monitor.record_prediction("my_model", prediction, actual)
    performance = monitor.check_model_performance("my_model")
''')


def test_readme_monitoring_snippets_run_verbatim() -> None:
    from mlops.monitoring.model_monitor import get_model_monitor
    from mlops.registry.model_registry import get_model_registry

    train = _frame(1000, 20)
    clf = LogisticRegression().fit(train[FEATURES], train["label"])
    registry = get_model_registry()
    registry.register("task_classifier", model=clf, reference=train[FEATURES])
    registry.register("my_model", model=clf)
    namespace: dict[str, object] = {"prediction": 1, "actual": 1,
                                    "current_features": _frame(500, 21, shift=1.0)[FEATURES]}
    exec(compile(README_MONITOR, "README.md", "exec"), namespace)
    assert namespace["performance"].window.n_labeled == 1  # type: ignore[attr-defined]
    assert set(namespace["drift"].drifted_features) == {"a", "b"}  # type: ignore[attr-defined]
    namespace.update({"get_model_monitor": get_model_monitor, "metrics": {"accuracy": 0.9}})
    exec(compile(README_BASELINE, "README.md", "exec"), namespace)
    performance = namespace["performance"]
    assert performance.baseline["accuracy"] == 0.9  # type: ignore[attr-defined]
    assert performance.metrics["accuracy"] == 1.0  # type: ignore[attr-defined]
    get_model_monitor().close()


def test_seed_drift_detector_shape_with_honest_decisions() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(rng.normal(size=(5000, 30)), columns=[f"x{i}" for i in range(30)])
    current = pd.DataFrame(rng.normal(size=(5000, 30)), columns=reference.columns)
    current["x0"] += 0.5
    detector = DriftDetector(reference)
    results = detector.detect_drift(current)
    alerts = detector.alert_drift(results)
    assert [a["column"] for a in alerts] == ["x0"]
    assert {"ks_statistic", "p_value", "drift_detected", "drift_severity"} <= set(results["x0"])
    assert alerts[0]["message"] == "Data drift detected in x0"
    # the seed's raw p < 0.05 rule would flag about 5% of 29 unshifted columns by chance;
    # here none is flagged
    assert sum(r["drift_detected"] for r in results.values()) == 1


def test_logged_window_reads_an_fsspec_store() -> None:
    import time as clock
    import uuid

    from mlops.monitoring.window import read_window
    from mlops.store.predlog import PredictionLog, PredictionRecord

    uri = f"memory://window-{uuid.uuid4().hex}"
    now = clock.time()
    log = PredictionLog(uri)
    log.log([PredictionRecord(f"r{i}", now - i, "churn", "1.0.0", "production", "stable", None,
                              0, f'{{"a": {i}}}', "1", 1.0, None, 2.0, 200 if i % 4 else 500)
             for i in range(20)])
    log.close()
    end = datetime.fromtimestamp(now + 1, UTC)
    window = read_window(uri, "churn", start=end - timedelta(minutes=5), end=end, limit=5)
    assert window.n_total == 15  # the 500s are left out
    assert list(window.inputs["a"]) == [1, 2, 3, 5, 6]  # newest first
