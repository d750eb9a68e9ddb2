"""Monitoring fixes of issue 11: the version an environment serves, drift per version during
a split, empty windows in the evaluator and the status table, the seed-003 call, and the
monitor's flush interval."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from mlops.config import Settings
from mlops.deployment.routes import RoutingService
from mlops.errors import MonitoringError
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord, read_predictions

FEATURES = ["a", "b", "c"]


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=FEATURES)
    frame[["a", "b"]] += shift
    return frame


def _fit(frame: pd.DataFrame, threshold: float) -> LogisticRegression:
    return LogisticRegression().fit(frame, (frame["a"] - frame["b"] > threshold).astype(int))


def _record(monitor: ModelMonitor, clf: LogisticRegression, frame: pd.DataFrame,
            version: str | None = None, labels: np.ndarray | None = None) -> None:
    predictions = clf.predict(frame)
    for i in range(len(frame)):
        monitor.record_prediction(
            "m", int(predictions[i]), actual=None if labels is None else int(labels[i]),
            latency_ms=3.0, features=frame.iloc[i].to_dict(), version=version)
    monitor.flush()


def test_served_version_answers_for_the_environment_asked(registry: ModelRegistry) -> None:
    train = _frame(300, 0)
    for _ in range(3):
        registry.register("m", model=_fit(train, 0.0))
    registry.promote("m", "1.0.0", "production")
    registry.promote("m", "1.0.1", "staging")
    monitor = ModelMonitor(registry)
    assert monitor.served_version("m", "production") == "1.0.0"
    assert monitor.served_version("m") == "1.0.0"
    assert monitor.served_version("m", "staging") == "1.0.1"  # was the Production version
    assert monitor.served_version("m", "dev") == "1.0.2"       # no stage, no route: the newest, as the gateway serves
    RoutingService(registry).set_route("m", "staging", stable="1.0.2")  # a route wins
    assert monitor.served_version("m", "staging") == "1.0.2"
    assert monitor.served_version("nobody", "staging") is None
    # offline recording without a version: the environment's, else the newest registered
    rid = monitor.record_prediction("m", 1, environment="dev")
    monitor.flush()
    logged = read_predictions(registry.settings.artifacts_uri, "m").to_pylist()
    assert [(r["request_id"], r["version"]) for r in logged] == [(rid, "1.0.2")]
    monitor.close()


@pytest.fixture
def split(registry: ModelRegistry) -> tuple[ModelMonitor, LogisticRegression,
                                            LogisticRegression]:
    """A canary: 1.0.0 (stable) and 2.0.0 (candidate, a different model whose outputs are
    mostly 0), both profiled on the same reference inputs, half of the traffic each."""
    reference = _frame(3000, 1)
    stable, candidate = _fit(reference, 0.0), _fit(reference, 1.2)
    registry.register("m", model=stable, reference=reference, version="1.0.0")
    registry.register("m", model=candidate, reference=reference, version="2.0.0")
    monitor = ModelMonitor(registry)
    monitor.alerts._default = []
    _record(monitor, stable, _frame(600, 2), version="1.0.0")
    _record(monitor, candidate, _frame(600, 3), version="2.0.0")
    return monitor, stable, candidate


def test_drift_compares_each_version_with_its_own_profile_during_a_split(
        split: tuple[ModelMonitor, LogisticRegression, LogisticRegression]) -> None:
    monitor, _, candidate = split
    # the candidate's outputs against the stable version's profile do look drifted ...
    assert monitor.detect_prediction_drift(
        "m", candidate.predict(_frame(600, 4)), version="1.0.0").n_drifted == 1
    # ... which is why each version's rows are tested against that version's own profiles
    ev = monitor.evaluate("m", "production", version="1.0.0")
    assert ev.values["prediction_drift"].value == 0.0  # the mix used to say 1.0
    assert ev.values["drift_share"].value == 0.0
    assert ev.by_version is not None and set(ev.by_version.versions) == {"1.0.0", "2.0.0"}
    for v in ev.by_version.versions.values():
        assert v.n_rows == 600 and v.data is not None and v.outputs is not None
        assert v.outputs.n_drifted == 0 and v.data.n_drifted == 0
    assert ev.prediction_drift is not None and ev.prediction_drift.n_drifted == 0
    assert set(ev.to_dict()["drift_by_version"]) == {"1.0.0", "2.0.0"}
    monitor.close()


def test_logged_prediction_drift_reads_only_that_versions_rows(
        split: tuple[ModelMonitor, LogisticRegression, LogisticRegression]) -> None:
    monitor, _, _ = split
    for version in ("1.0.0", "2.0.0"):
        report = monitor.detect_prediction_drift("m", version=version,
                                                 environment="production")
        assert report.n_drifted == 0 and report.n_current_rows == 600
    monitor.close()


def _drifted_traffic(registry: ModelRegistry, at: float) -> ModelMonitor:
    reference = _frame(2000, 5)
    clf = _fit(reference, 0.0)
    registry.register("m", model=clf, reference=reference, metrics={"accuracy": 0.95})
    registry.promote("m", "1.0.0", "production")
    shifted = _frame(400, 6, shift=1.5)
    predictions = clf.predict(shifted)
    log = PredictionLog(registry.settings.artifacts_uri, spool=False)
    log.log([PredictionRecord(f"r{i}", at + i * 1e-3, "m", "1.0.0", "production", "stable",
                              None, 0, shifted.iloc[i].to_json(), str(int(p)), float(p), None,
                              3.0, 200) for i, p in enumerate(predictions)])
    log.close()
    monitor = ModelMonitor(registry, window=3600)
    monitor.alerts._default = []
    return monitor


def test_an_empty_window_is_empty_not_healthy(registry: ModelRegistry) -> None:
    t0 = datetime.now(UTC) - timedelta(hours=3)
    monitor = _drifted_traffic(registry, t0.timestamp())
    busy = monitor.evaluate("m", "production", now=t0 + timedelta(minutes=1))
    assert busy.values["drift_share"].value and busy.values["drift_share"].value > 0.5
    assert busy.health.score is not None and busy.health.score < 80
    later = t0 + timedelta(hours=2)
    empty = monitor.evaluate("m", "production", now=later)
    assert empty.values["n_predictions"].n == 0
    assert empty.values["health"].value is None  # was 100: an empty window looked perfect
    assert empty.values["error_rate"].value is None
    assert empty.health.score is None

    status = monitor.status("m", "production", now=later)
    assert status.empty and status.health is None
    assert status.window_end == later and status.window_start == later - timedelta(hours=1)
    assert all(m.empty for m in status.metrics.values()), {
        k: m for k, m in status.metrics.items() if not m.empty}
    assert status.metrics["health"].value is None
    assert status.latest and {s.window_end for s in status.latest.values()} == {later}
    assert "drift_share" not in status.metrics  # the busy pass is not the latest pass
    assert status.to_dict()["window"]["empty"] is True

    live = monitor.status("m", "production", now=t0 + timedelta(minutes=2))
    assert not live.empty and live.metrics["n_predictions"].value == 400
    assert live.metrics["n_predictions"].source == "live"
    # the table's health is the header's, computed from the figures shown
    assert live.health is not None and live.metrics["health"].value == live.health.score
    monitor.close()


def test_status_table_shows_the_live_window_and_marks_empty_rows(tmp_path: Path) -> None:
    from mlops.cli.monitor import monitor_app

    registry = ModelRegistry(Settings(home=tmp_path / ".mlops", actor="tester"))
    t0 = datetime.now(UTC) - timedelta(hours=3)
    monitor = _drifted_traffic(registry, t0.timestamp())
    monitor.evaluate("m", "production", now=t0 + timedelta(minutes=1))
    monitor.evaluate("m", "production")  # the latest pass: an empty window
    monitor.close()
    result = CliRunner().invoke(monitor_app, ["status", "m", "--env", "production"],
                                terminal_width=200)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "health -" in out and "/100" not in out  # no score from an empty window
    assert "live window" in out and "is empty" in out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines()
            if line.count("│") >= 4}
    assert "empty" in rows["health"] and "100" not in rows["health"]
    assert "empty" in rows["error_rate"] and "empty" in rows["accuracy" if "accuracy" in rows
                                                              else "latency_p99_ms"]
    assert rows["n_predictions"].split("│")[3].strip() == "0"


def test_seed_003_call_is_refused_with_the_calls_that_mean_it(registry: ModelRegistry) -> None:
    monitor = ModelMonitor(registry)
    latency = 0.0021
    with pytest.raises(MonitoringError) as err:
        monitor.record_prediction("fraud_detector", latency, 0.95)
    assert "latency" in err.value.message and "accuracy" in err.value.message
    fix = err.value.fix or ""
    assert "latency_ms=latency * 1000" in fix and "actual=0.95" in fix
    assert "set_baseline('fraud_detector', {'accuracy': 0.95})" in fix
    assert read_predictions(registry.settings.artifacts_uri).num_rows == 0  # nothing stored
    # what the seed means, and the seed-001 forms, work
    monitor.record_prediction("fraud_detector", 1, latency_ms=latency * 1000)
    monitor.record_prediction("fraud_detector", 0.0021, actual=0.95)  # a real regression
    monitor.record_prediction("fraud_detector", 0.3, 1)                # a score and a label
    monitor.record_prediction("fraud_detector", 1, 1, 50)              # latency positional
    monitor.record_prediction("fraud_detector", 0.2, 0.4, features={"x": 1.0})
    with pytest.raises(TypeError):
        monitor.record_prediction("fraud_detector", 1, 1, 50, 7)
    with pytest.raises(TypeError):
        monitor.record_prediction("fraud_detector", 1, 1, actual=1)
    monitor.flush()
    table = read_predictions(registry.settings.artifacts_uri, "fraud_detector")
    assert table.num_rows == 5
    assert sorted(table["latency_ms"].to_pylist()) == [0.0, 0.0, 0.0, 2.1, 50.0]
    monitor.close()


def test_the_monitors_log_flushes_every_second(registry: ModelRegistry) -> None:
    monitor = ModelMonitor(registry)
    rid = monitor.record_prediction("m", 1, environment="dev")
    deadline = time.monotonic() + 1.75  # the writer's default interval is 2 s
    while time.monotonic() < deadline:
        table = read_predictions(registry.settings.artifacts_uri, "m")
        if table.num_rows:
            break
        time.sleep(0.05)
    assert table["request_id"].to_pylist() == [rid]
    monitor.close()
