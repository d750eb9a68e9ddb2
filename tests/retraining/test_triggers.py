"""Trigger evaluation on real stores: every kind fires on what the platform recorded, stays
quiet below its threshold, and the guardrails (cooldown, caps, expected gain) turn a signal
into a skip with its reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.errors import ArtifactError
from mlops.monitoring.alerts import AlertManager, Observation
from mlops.monitoring.drift_window import feature_drift_metric
from mlops.monitoring.monitor import ModelMonitor
from mlops.monitoring.rules import AlertRule
from mlops.monitoring.snapshots import record_snapshots
from mlops.registry.service import ModelRegistry
from mlops.retraining import triggers as trig
from mlops.retraining.config import Priority, RetrainConfig, TriggerKind, parse_config
from mlops.retraining.triggers import (
    Signal,
    Skip,
    TriggerHistory,
    evaluate_triggers,
    labelled_rows_since,
)
from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
NONE = TriggerHistory()


@pytest.fixture
def model(registry: ModelRegistry, skops_file: Path) -> str:
    registry.register("churn", skops_file, version="1.0.0", metrics={"accuracy": 0.9})
    return "churn"


def config(*triggers: str, **top: Any) -> RetrainConfig:
    lines = ["command: [python, train.py]", *(f"{k}: {v}" for k, v in top.items()),
             "triggers:", *(f"  - {t}" for t in triggers)]
    return parse_config("\n".join(lines) + "\n")


def window(registry: ModelRegistry, end: datetime, values: dict[str, float | None], *,
           n: int = 500, length: timedelta = HOUR, env: str = "production") -> None:
    """One evaluator pass over ``[end - length, end)``, as the monitor records it."""
    record_snapshots(registry, "churn", "", env, end - length, end,
                     {k: Observation(v, n) for k, v in values.items()})


def run(registry: ModelRegistry, cfg: RetrainConfig, history: TriggerHistory = NONE,
        now: datetime = NOW) -> tuple[list[Signal], list[Skip]]:
    return evaluate_triggers(registry, "churn", cfg, history, now)


# ---------------------------------------------------------------------------- drift


def test_drift_share_fires_over_sustained_windows(registry: ModelRegistry, model: str) -> None:
    cfg = config("{name: drift, kind: drift, share: 0.3, sustained: 2, priority: high}")
    window(registry, NOW - HOUR, {"drift_share": 0.42})
    assert run(registry, cfg) == ([], [])  # one window of two
    window(registry, NOW, {"drift_share": 0.5})
    (signal,), skips = run(registry, cfg)
    assert skips == []
    assert signal.trigger == "drift" and signal.kind is TriggerKind.DRIFT
    assert signal.priority is Priority.HIGH and signal.expected_gain is None
    assert signal.reason == ("drift_share 0.42 >= 0.30 in 2 consecutive windows "
                             "(production, 10:00-11:00 and 11:00-12:00)")
    assert signal.detail["drift_share"] == [0.42, 0.5] and signal.at == NOW
    json.dumps(signal.to_dict())  # what the job store keeps as the job's reason


def test_drift_does_not_fire_below_the_share_or_on_old_evidence(registry: ModelRegistry,
                                                                 model: str) -> None:
    cfg = config("{name: drift, kind: drift, share: 0.3, sustained: 2}")
    window(registry, NOW - HOUR, {"drift_share": 0.2})   # below: breaks the run
    window(registry, NOW, {"drift_share": 0.9})
    assert run(registry, cfg) == ([], [])
    window(registry, NOW + HOUR, {"drift_share": 0.9})
    assert len(run(registry, cfg, now=NOW + HOUR)[0]) == 1
    # windows before the last training were acted on already
    trained = TriggerHistory(last_training=NOW + timedelta(minutes=30))
    assert run(registry, cfg, trained, now=NOW + HOUR) == ([], [])
    # an evaluator that stopped long ago is no evidence now
    assert run(registry, cfg, now=NOW + 4 * HOUR) == ([], [])
    # a gap: 12:00-13:00 and 15:00-16:00 are not consecutive
    window(registry, NOW + 2 * HOUR, {"drift_share": None})  # not evaluated (too few rows)
    window(registry, NOW + 4 * HOUR, {"drift_share": 0.9})
    assert run(registry, cfg, now=NOW + 4 * HOUR) == ([], [])
    window(registry, NOW + 3 * HOUR, {"drift_share": 0.9})
    (signal,), _ = run(registry, cfg, now=NOW + 4 * HOUR)
    assert signal.reason.endswith("(production, 14:00-15:00 and 15:00-16:00)")


def test_many_windows_are_shown_as_one_span(registry: ModelRegistry, model: str) -> None:
    for k in range(4):
        window(registry, NOW - k * HOUR, {"drift_share": 0.4})
    cfg = config("{name: drift, kind: drift, share: 0.3, sustained: 4}")
    (signal,), _ = run(registry, cfg)
    assert signal.reason == "drift_share 0.40 >= 0.30 in 4 consecutive windows (production, " \
        "08:00-12:00)"
    (later,), _ = run(registry, cfg, now=NOW + timedelta(minutes=90))
    assert later.reason.endswith("(production, 08:00-12:00)")


def test_overlapping_passes_must_all_hold(registry: ModelRegistry, model: str) -> None:
    """A 1 h window every 20 minutes: two consecutive windows span 2 h of passes."""
    cfg = config("{name: drift, kind: drift, share: 0.3, sustained: 2}")
    ends = [NOW - timedelta(minutes=20 * k) for k in range(6, -1, -1)]  # 10:00 ... 12:00
    for end in ends:
        window(registry, end, {"drift_share": 0.5})
    (signal,), _ = run(registry, cfg)
    assert signal.reason == ("drift_share 0.50 >= 0.30 in 2 consecutive windows (production, "
                             "10:00-11:00 and 11:00-12:00, 4 evaluator passes)")
    window(registry, NOW - timedelta(minutes=30), {"drift_share": 0.1})  # one pass between
    assert run(registry, cfg) == ([], [])


def test_named_features_fire_from_their_snapshots(registry: ModelRegistry, model: str) -> None:
    cfg = config("{name: income, kind: drift, features: [income, age], sustained: 2}")
    window(registry, NOW - HOUR, {"drift_share": 0.1, feature_drift_metric("income"): 1.0})
    window(registry, NOW, {"drift_share": 0.1, feature_drift_metric("zip"): 1.0})
    assert run(registry, cfg) == ([], [])  # income did not drift in the newest window
    window(registry, NOW + HOUR, {"drift_share": 0.1, feature_drift_metric("age"): 1.0,
                                  feature_drift_metric("income"): 1.0})
    window(registry, NOW + 2 * HOUR, {"drift_share": 0.1, feature_drift_metric("age"): 1.0})
    (signal,), _ = run(registry, cfg, now=NOW + 2 * HOUR)
    assert signal.reason == ("age, income drifted in 2 consecutive windows "
                             "(production, 12:00-13:00 and 13:00-14:00)")
    assert signal.detail["features"] == ["age", "income"]
    # share or features: either keeps a window in the run
    both = config("{name: d, kind: drift, share: 0.05, features: [zip], sustained: 3}")
    (mixed,), _ = run(registry, both, now=NOW + 2 * HOUR)
    assert mixed.reason.startswith("drift_share 0.10 >= 0.05 in 3 consecutive windows")


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])


def test_named_feature_trigger_reads_what_the_evaluator_recorded(
        registry: ModelRegistry) -> None:
    """End to end: the monitor's passes over shifted traffic record drift:a, which a
    trigger on feature ``a`` reads back."""
    reference = _frame(2000, 1)
    clf = LogisticRegression().fit(reference, (reference["a"] > 0).astype(int))
    registry.register("churn", model=clf, reference=reference, version="1.0.0")
    log = PredictionLog(registry.settings.artifacts_uri, spool=False)
    for k, end in enumerate((NOW - HOUR, NOW)):
        shifted = reference.sample(300, random_state=k)  # b and c as in the reference
        shifted["a"] += 2.0
        start = (end - HOUR).timestamp()
        log.log([PredictionRecord(f"r{k}-{i}", start + 1 + i, "churn", "1.0.0", "production",
                                  "stable", None, 0, shifted.iloc[i].to_json(), "1", 1.0, None,
                                  3.0, 200) for i in range(len(shifted))])
    log.close()
    monitor = ModelMonitor(registry, window=3600)
    monitor.alerts._default = []
    try:
        for end in (NOW - HOUR, NOW):
            monitor.evaluate("churn", "production", version="1.0.0", now=end)
    finally:
        monitor.close()
    cfg = config("{name: a-drift, kind: drift, features: [a, c], sustained: 2}")
    (signal,), _ = run(registry, cfg)
    assert signal.reason.startswith("a drifted in 2 consecutive windows (production")
    assert run(registry, config("{name: c, kind: drift, features: [c]}")) == ([], [])


# ---------------------------------------------------------------------------- performance


def test_performance_fires_below_baseline_minus_margin(registry: ModelRegistry,
                                                       model: str) -> None:
    cfg = config("{name: acc, kind: performance, metric: accuracy, margin: 0.05, "
                 "min_labels: 200}")
    history = TriggerHistory(production_version="1.0.0")
    window(registry, NOW, {"accuracy": 0.86}, n=500)   # within the margin of 0.90
    assert run(registry, cfg, history) == ([], [])
    window(registry, NOW + HOUR, {"accuracy": 0.80}, n=150)  # too few labels
    assert run(registry, cfg, history, now=NOW + HOUR) == ([], [])
    window(registry, NOW + 2 * HOUR, {"accuracy": 0.80}, n=250)
    (signal,), _ = run(registry, cfg, history, now=NOW + 2 * HOUR)
    assert signal.expected_gain == pytest.approx(0.10)
    assert signal.reason == ("accuracy 0.8 < 0.85 (baseline 0.9 - margin 0.05) in 1 window "
                             "of at least 200 labels (production, 13:00-14:00); expected "
                             "gain 0.1")
    assert signal.detail["baseline"] == 0.9 and signal.detail["labels"] == [250]
    # the baseline set with `mlops monitor baseline` wins over the registered metric
    ModelMonitor(registry).set_baseline("churn", {"accuracy": 0.82})
    assert run(registry, cfg, history, now=NOW + 2 * HOUR) == ([], [])


def test_performance_of_a_lower_is_better_metric(registry: ModelRegistry, model: str) -> None:
    ModelMonitor(registry).set_baseline("churn", {"rmse": 2.0})
    cfg = config("{name: err, kind: performance, metric: rmse, margin: 0.5, sustained: 2, "
                 "min_labels: 10}")
    window(registry, NOW - HOUR, {"rmse": 2.6})
    window(registry, NOW, {"rmse": 3.0})
    (signal,), _ = run(registry, cfg)
    assert signal.reason.startswith("rmse at least 2.6 > 2.5 (baseline 2 + margin 0.5) in 2 "
                                    "consecutive windows")
    assert signal.expected_gain == pytest.approx(1.0)
    no_baseline = config("{name: f1, kind: performance, metric: f1}")
    window(registry, NOW, {"f1": 0.1})
    assert run(registry, no_baseline) == ([], [])


# ---------------------------------------------------------------------------- schedule


def test_cron_schedule_fires_when_due_after_the_anchor(registry: ModelRegistry,
                                                       model: str) -> None:
    cfg = config('{name: nightly, kind: schedule, cron: "0 3 * * *"}')
    set_at = TriggerHistory(configured_at=datetime(2026, 11, 1, 4, 0, tzinfo=UTC))
    assert run(registry, cfg, set_at) == ([], [])  # next run 2026-11-02 03:00
    (signal,), _ = run(registry, cfg, set_at, now=datetime(2026, 11, 2, 3, 0, 30, tzinfo=UTC))
    assert signal.reason == ("cron '0 3 * * *' (UTC) was due at 2026-11-02 03:00 UTC; "
                             "configured 2026-11-01 04:00 UTC")
    fired = TriggerHistory(last_fired={"nightly": datetime(2026, 11, 2, 3, 1, tzinfo=UTC)},
                           configured_at=set_at.configured_at)
    assert run(registry, cfg, fired, now=datetime(2026, 11, 2, 12, 0, tzinfo=UTC)) == ([], [])
    # nothing to count from: the most recent slot is due once
    (first,), _ = run(registry, cfg)
    assert "was due at 2026-11-01 03:00 UTC; no run before" in first.reason
    paris = config('{name: nightly, kind: schedule, cron: "0 3 * * *", '
                   'timezone: Europe/Paris}')
    (local,), _ = run(registry, paris, set_at, now=datetime(2026, 11, 2, 2, 0, tzinfo=UTC))
    assert "due at 2026-11-02 02:00 UTC" in local.reason  # 03:00 in Paris (CET)


def test_interval_schedule(registry: ModelRegistry, model: str) -> None:
    cfg = config("{name: daily, kind: schedule, every: 24h}")
    trained = TriggerHistory(last_training=NOW - 23 * HOUR)
    assert run(registry, cfg, trained) == ([], [])
    (signal,), _ = run(registry, cfg, trained, now=NOW + HOUR)
    assert signal.reason == ("every 1d was due at 2026-11-01 13:00 UTC; last training "
                             "2026-10-31 13:00 UTC")


# ---------------------------------------------------------------------------- volume


def _labels(registry: ModelRegistry, n: int, at: datetime, prefix: str = "r") -> None:
    log = PredictionLog(registry.settings.artifacts_uri, spool=False)
    log.log_feedback([FeedbackRecord(f"{prefix}{i}", 0, "churn", "1", 1.0,
                                     at.timestamp() + i) for i in range(n)])
    log.close()


def test_volume_counts_new_labelled_rows(registry: ModelRegistry, model: str) -> None:
    cfg = config("{name: labels, kind: volume, rows: 100}")
    _labels(registry, 80, NOW - 30 * HOUR)          # before the last training
    _labels(registry, 60, NOW - 2 * HOUR, "s")
    _labels(registry, 30, NOW - HOUR, "s")          # corrections of s0..s29: not new rows
    trained = TriggerHistory(last_training=NOW - 10 * HOUR)
    assert labelled_rows_since(registry, "churn", NOW - 10 * HOUR) == 60
    assert run(registry, cfg, trained) == ([], [])
    _labels(registry, 50, NOW - HOUR, "t")
    (signal,), _ = run(registry, cfg, trained)
    assert signal.reason == ("110 labelled rows received since the last training "
                             "(2026-11-01 02:00 UTC) >= 100")
    assert labelled_rows_since(registry, "churn", None) == 190
    refired = TriggerHistory(last_training=NOW - 10 * HOUR,
                             last_fired={"labels": NOW - timedelta(minutes=90)})
    assert run(registry, cfg, refired) == ([], [])  # 50 new rows since it last fired


def test_an_unreadable_log_is_a_skip_that_says_so(registry: ModelRegistry, model: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> int:
        raise ArtifactError("Cannot read the prediction log under 's3://x': timeout",
                            fix="Check the store.")

    monkeypatch.setattr(trig, "labelled_rows_since", broken)
    cfg = config("{name: labels, kind: volume, rows: 1}", "{name: daily, kind: schedule, "
                 "every: 1h}")
    signals, (skip,) = run(registry, cfg)
    assert [s.trigger for s in signals] == ["daily"]  # the others are still evaluated
    assert skip.trigger == "labels" and skip.reason.startswith("cannot be evaluated: Cannot")


# ---------------------------------------------------------------------------- alert / manual


def _alert(registry: ModelRegistry, value: float, at: datetime) -> None:
    manager = AlertManager(registry, default_channels=[])
    manager.put_rule(AlertRule.model_validate({
        "name": "accuracy-drop", "metric": "accuracy", "comparator": "<",
        "baseline_change": -0.05, "min_samples": 10}))
    manager.evaluate("churn", "1.0.0", "production",
                     lambda r: Observation(value, 300) if r.metric == "accuracy" else None,
                     {"accuracy": 0.9}, now=at)


def test_alert_trigger_fires_on_a_firing_incident(registry: ModelRegistry, model: str) -> None:
    cfg = config("{name: on-alert, kind: alert, rule: accuracy-drop, priority: critical}")
    assert run(registry, cfg) == ([], [])
    _alert(registry, 0.95, NOW - HOUR)  # within the limit: nothing fires
    assert run(registry, cfg) == ([], [])
    _alert(registry, 0.80, NOW - HOUR)
    history = TriggerHistory(production_version="1.0.0")
    (signal,), _ = run(registry, cfg, history)
    assert signal.priority is Priority.CRITICAL
    assert signal.reason.startswith("alert accuracy-drop firing in production since "
                                    "2026-11-01 11:00 UTC: accuracy-drop: accuracy = 0.8")
    assert signal.expected_gain == pytest.approx(0.1)  # the quality drop against baseline
    other = config("{name: lat, kind: alert, rule: latency-p99, environment: production}")
    assert run(registry, other) == ([], [])
    # the incident that made it fire last time does not fire it again
    again = TriggerHistory(last_fired={"on-alert": NOW - timedelta(minutes=30)})
    assert run(registry, cfg, again) == ([], [])
    _alert(registry, 0.95, NOW - timedelta(minutes=10))  # resolved
    assert run(registry, cfg) == ([], [])


def test_manual_never_fires_by_itself(registry: ModelRegistry, model: str) -> None:
    assert run(registry, config("{name: by-hand, kind: manual}")) == ([], [])


# ---------------------------------------------------------------------------- guardrails


def test_cooldown_and_caps_turn_signals_into_skips(registry: ModelRegistry,
                                                   model: str) -> None:
    cfg = config("{name: drift, kind: drift, share: 0.3, cooldown: 6h, max_runs_per_day: 2}",
                 max_runs_per_day=3)
    window(registry, NOW, {"drift_share": 0.5})
    cooling = TriggerHistory(last_fired={"drift": NOW - 7 * HOUR + timedelta(minutes=-1)})
    assert len(run(registry, cfg, cooling)[0]) == 1  # cooled down; the window is newer
    window(registry, NOW + HOUR, {"drift_share": 0.5})
    recent = TriggerHistory(last_fired={"drift": NOW - timedelta(minutes=30)})
    signals, (skip,) = run(registry, cfg, recent, now=NOW + HOUR)
    assert signals == [] and skip.trigger == "drift" and skip.kind is TriggerKind.DRIFT
    assert skip.reason == ("drift_share 0.50 >= 0.30 in 1 window (production, 12:00-13:00), "
                           "but cooldown 6h not over: drift last fired at 2026-11-01 11:30 "
                           "UTC, may fire again from 2026-11-01 17:30 UTC")
    capped = TriggerHistory(last_fired={"drift": NOW - 7 * HOUR},
                            fired_today={"drift": 2}, model_runs_today=2)
    (skip,) = run(registry, cfg, capped, now=NOW + HOUR)[1]
    assert skip.reason.endswith("but drift fired 2 times in the last 24 h, its cap "
                                "(max_runs_per_day 2)")
    model_cap = TriggerHistory(last_fired={"drift": NOW - 7 * HOUR},
                               fired_today={"drift": 1}, model_runs_today=3)
    (skip,) = run(registry, cfg, model_cap, now=NOW + HOUR)[1]
    assert skip.reason.endswith("but the model had 3 retraining jobs in the last 24 h, its "
                                "cap (max_runs_per_day 3)")
    json.dumps(skip.to_dict())


def test_a_small_expected_gain_is_skipped(registry: ModelRegistry, model: str) -> None:
    triggers = ("{name: acc, kind: performance, metric: accuracy, margin: 0.01, "
                "min_labels: 10}", "{name: drift, kind: drift, share: 0.3}")
    window(registry, NOW, {"accuracy": 0.88, "drift_share": 0.5})
    history = TriggerHistory(production_version="1.0.0")
    signals, (skip,) = run(registry, config(*triggers, min_expected_gain=0.05), history)
    assert skip.trigger == "acc" and skip.reason.endswith(
        "but expected gain 0.02 is below min_expected_gain 0.05")
    assert [s.trigger for s in signals] == ["drift"]  # no estimable gain: not skipped
    signals, skips = run(registry, config(*triggers, min_expected_gain=0.01), history)
    assert skips == [] and [s.trigger for s in signals] == ["acc", "drift"]
