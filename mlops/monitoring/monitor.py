"""The monitoring service: performance, drift, concept drift, health and alerts per model.

:class:`ModelMonitor` works offline (record predictions from a batch job, check a frame for
drift) and is what the evaluator in ``mlops serve`` runs on every pass
(:meth:`ModelMonitor.evaluate`): for each deployment it computes the window's performance
from the prediction log joined with feedback, data and prediction drift of each served
version's logged inputs and outputs against that version's own reference profiles (a
canary's candidate against its own, see :mod:`~mlops.monitoring.drift_window`), concept
drift on the stream of per-request errors, the health score; stores them as snapshots and
evaluates the alert rules.

>>> monitor = ModelMonitor(ModelRegistry())                       # doctest: +SKIP
>>> monitor.detect_data_drift("churn", current_frame).drifted_features  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import ModelNotFound, MonitoringError, VersionNotFound
from mlops.identity import Principal, Role
from mlops.monitoring.alerts import AlertManager, AlertTransition, Observation
from mlops.monitoring.drift_window import WindowDrift, outputs_frame, window_drift
from mlops.monitoring.health import HealthScore, health_score
from mlops.monitoring.performance import PerformanceWindow, labelled_rows, performance_window
from mlops.monitoring.snapshots import latest_snapshots, record_snapshots
from mlops.monitoring.status import MonitorStatus, build_status, window_observations
from mlops.monitoring.window import read_window
from mlops.registry.service import ModelRegistry
from mlops.stats.concept import ConceptDriftMonitor
from mlops.stats.drift import DriftReport, detect_drift
from mlops.store.catalog import model_row
from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord
from mlops.store.routes import served_routes
from mlops.store.schema import BaselineRow, DeploymentRow, ModelRow, MonitorStateRow, utcnow


def _baseline_subject(model_name: str, version: str | None) -> str:
    """The audit subject of a model's (or one version's) baseline."""
    return f"model/{model_name}" + (f"/{version}" if version else "")


#: what a baseline metric may be called, and how many a model may have
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")
_MAX_BASELINE = 100

__all__ = ["SEED_METRIC_NAMES", "Evaluation", "ModelMonitor", "MonitorStatus", "PerformanceCheck"]

log = logging.getLogger("mlops.monitoring")

#: Labels eligible for the concept-drift detector this recently wait for the next pass.
CONCEPT_SETTLE = timedelta(seconds=5)
#: Relative loss against the baseline that :meth:`check_model_performance` calls degraded.
TOLERANCE = 0.05
_QUALITY_UP = ("accuracy", "precision", "recall", "f1", "roc_auc", "r2")
_QUALITY_DOWN = ("mae", "rmse", "log_loss")
_WINDOW_FIGURES = ("error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                   "throughput_rps", "n_predictions", "label_coverage")
#: The seeds' names for metrics this package names otherwise.
SEED_METRIC_NAMES = {"f1_score": "f1", "auc": "roc_auc", "roc_auc_score": "roc_auc"}


@dataclass(frozen=True)
class PerformanceCheck:
    """A window's performance next to the baseline, with the metrics that fell behind."""

    model: str
    version: str | None
    environment: str | None
    window: PerformanceWindow
    baseline: dict[str, float]
    changes: dict[str, float]        # relative change vs baseline per metric
    degraded: tuple[str, ...]        # metrics more than TOLERANCE worse than baseline
    health: HealthScore

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.window.metrics)

    def __getitem__(self, key: str) -> float:
        """``check["accuracy"]`` as the seed reads it: a quality metric, ``error_rate``,
        ``latency_p50_ms``/``p95``/``p99``, ``throughput_rps`` or ``n_predictions``. A
        metric that the window could not measure (no labels yet) is NaN, so a comparison
        with it is False: no evidence never looks like an improvement."""
        name = SEED_METRIC_NAMES.get(key, key)
        if name in self.window.metrics:
            return float(self.window.metrics[name])
        if name in _WINDOW_FIGURES:
            value = getattr(self.window, name)
            return float("nan") if value is None else float(value)
        if name in (*_QUALITY_UP, *_QUALITY_DOWN):
            return float("nan")
        raise KeyError(f"{key!r} is not a performance figure; use one of "
                       f"{sorted({*_QUALITY_UP, *_QUALITY_DOWN, *_WINDOW_FIGURES})}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "environment": self.environment,
                "window": self.window.to_dict(), "baseline": self.baseline,
                "changes": self.changes, "degraded": list(self.degraded),
                "health": self.health.to_dict()}


@dataclass(frozen=True)
class Evaluation:
    """One evaluator pass over a deployment."""

    model: str
    environment: str
    version: str
    window_start: datetime
    window_end: datetime
    values: dict[str, Observation]
    drift: DriftReport | None             # of ``version`` (else the most drifted version)
    prediction_drift: DriftReport | None
    concept_drift: dict[str, Any]
    health: HealthScore
    transitions: list[AlertTransition] = field(default_factory=list)
    by_version: WindowDrift | None = None  # every version against its own profiles

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "environment": self.environment, "version": self.version,
                "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat(),
                "values": {k: {"value": v.value, "n": v.n} for k, v in self.values.items()},
                "drift": self.drift.to_dict() if self.drift else None,
                "prediction_drift": self.prediction_drift.to_dict()
                if self.prediction_drift else None,
                "drift_by_version": self.by_version.to_dict()["versions"]
                if self.by_version else {},
                "concept_drift": self.concept_drift, "health": self.health.to_dict(),
                "transitions": [{"change": t.change, "rule": t.rule, "value": t.value,
                                 "limit": t.limit} for t in self.transitions]}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ModelMonitor:
    """Monitoring of every model in one store (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, *, alerts: AlertManager | None = None,
                 window: float | None = None, label_delay: float | None = None) -> None:
        self.registry = registry
        self.alerts = alerts or AlertManager(registry)
        self.window = timedelta(seconds=window if window is not None
                                else registry.context.settings.monitor_window)
        self.label_delay = timedelta(seconds=label_delay if label_delay is not None
                                     else registry.context.settings.label_delay)
        self._log: PredictionLog | None = None
        self._lock = threading.Lock()
        self._served: dict[tuple[str, str], tuple[float, str | None]] = {}

    @property
    def artifacts_uri(self) -> str:
        return self.registry.context.settings.artifacts_uri

    def acting_as(self, principal: Principal) -> ModelMonitor:
        """This monitor (same caches, log writer and alert dispatchers) acting for
        ``principal``: one per API request."""
        clone = copy.copy(self)
        clone.registry = self.registry.acting_as(principal)
        clone.alerts = self.alerts.acting_as(principal)
        return clone

    # ------------------------------------------------------------------ versions
    def served_version(self, model: str, environment: str | None = None) -> str | None:
        """The stable version ``environment`` (default production) serves, by the one rule
        the gateway follows (:func:`mlops.store.routes.served_routes`); ``None`` when it
        serves none (or the model is unknown)."""
        with self.registry.context.store.read() as s:
            spec = served_routes(s, environment or "production", model).get(model)
        return spec.stable if spec is not None else None

    def _version_or_newest(self, model: str, environment: str | None) -> str | None:
        """The version ``environment`` serves, else the newest registered one (offline use:
        a model that is registered but not served anywhere yet)."""
        version = self.served_version(model, environment)
        if version is None:
            with contextlib.suppress(ModelNotFound, VersionNotFound):
                version = self.registry.get_version(model).version
        return version

    # ------------------------------------------------------------------ recording
    def _predlog(self) -> PredictionLog:
        with self._lock:
            if self._log is None:
                self._log = PredictionLog(self.artifacts_uri, flush_seconds=1.0,
                                          spool=self.registry.context.settings.home / "spool")
                self._log.start()
            return self._log

    def record_prediction(self, model_name: str, prediction: Any, *args: Any,
                          actual: Any = None, latency_ms: float | None = None,
                          features: Mapping[str, Any] | None = None,
                          version: str | None = None, environment: str = "production",
                          request_id: str | None = None) -> str:
        """Log one prediction (and its label, when known) to the prediction log.

        Called ``record_prediction(model, prediction, actual, latency_ms)``, the last two
        positional or by name. ``version`` defaults to the one ``environment`` serves, else
        the newest registered one. The ``record_prediction(model, latency, accuracy)`` call
        of the MLOps Basics guide (a float latency in seconds, then an accuracy strictly
        between 0 and 1, nothing else) is refused with a :class:`MonitoringError` showing
        the calls that do what it means: here it would store the latency as the prediction
        and the accuracy as its label. A real prediction with such a label passes the label
        by name (``actual=0.95``).

        Rows are buffered (and spooled) and written in the background; every read of this
        monitor flushes first. Returns the request id (send the label later with
        :meth:`record_feedback`).
        """
        self.registry.require(Role.DEVELOPER, f"record predictions of {model_name}")
        if len(args) > 2:
            raise TypeError(f"record_prediction() takes at most 4 positional arguments "
                            f"({len(args) + 2} given)")
        if (args and actual is not None) or (len(args) == 2 and latency_ms is not None):
            raise TypeError("record_prediction() got an argument both positionally and by "
                            "name")
        if args:
            actual = args[0]
            if len(args) == 2:
                latency_ms = args[1]
            elif latency_ms is None and features is None:
                _refuse_seed_latency_form(model_name, prediction, actual)
        if version is None:
            key = (model_name, environment)
            cached = self._served.get(key)
            if cached is None or time.monotonic() - cached[0] > 5.0:  # re-read every 5 s
                cached = (time.monotonic(), self._version_or_newest(model_name, environment))
                self._served[key] = cached
            version = cached[1] or "unregistered"
        rid = request_id or uuid.uuid4().hex
        now = time.time()
        value = prediction.item() if hasattr(prediction, "item") else prediction
        log = self._predlog()
        log.log([PredictionRecord(
            request_id=rid, ts=now, model=model_name, version=str(version),
            environment=environment, route="offline", unit_hash=None, row=0,
            inputs=orjson.dumps(dict(features or {}), option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            prediction=orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            prediction_num=float(value) if isinstance(value, int | float) else None,
            proba=None, latency_ms=float(latency_ms) if latency_ms is not None else 0.0,
            status=200)])
        if actual is not None:
            self.record_feedback(model_name, rid, actual)
        return rid

    def record_feedback(self, model_name: str, request_id: str, actual: Any, row: int = 0) -> None:
        """Log the observed label of an earlier prediction."""
        self.registry.require(Role.DEVELOPER, f"record labels of {model_name}")
        value = actual.item() if hasattr(actual, "item") else actual
        self._predlog().log_feedback([FeedbackRecord(
            request_id=request_id, row=row, model=model_name,
            actual=orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
            actual_num=float(value) if isinstance(value, int | float) else None,
            ts=time.time())])

    def flush(self) -> None:
        """Write buffered predictions and feedback now."""
        if self._log is not None:
            self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        self.alerts.close()

    # ------------------------------------------------------------------ baselines
    def set_baseline(self, model_name: str, metrics: Mapping[str, float],
                     version: str | None = None) -> dict[str, float]:
        """Baseline metrics the alerts and the health score compare against (audited)."""
        self.registry.require(Role.DEVELOPER, f"set the baseline of {model_name}")
        clean: dict[str, float] = {}
        if len(metrics) > _MAX_BASELINE:
            raise MonitoringError(f"{len(metrics)} baseline metrics for {model_name!r}; at most "
                                  f"{_MAX_BASELINE}.", fix="Pass the metrics the alerts use.",
                                  model=model_name)
        for key, value in dict(metrics).items():
            if not isinstance(key, str) or not _METRIC_NAME.match(key):
                raise MonitoringError(
                    f"Baseline metric name {str(key)[:60]!r} of {model_name!r} is not a metric "
                    "name.", fix="Use letters, digits and _ . : / - (at most 128 characters).",
                    model=model_name)
            try:
                number = float(value)
            except (TypeError, ValueError) as exc:
                raise MonitoringError(f"Baseline {key}={value!r} of {model_name!r} is not a "
                                      "number.", fix="Pass metric names with numeric values.",
                                      model=model_name) from exc
            if not math.isfinite(number):
                raise MonitoringError(f"Baseline {key}={value!r} of {model_name!r} is not "
                                      "finite.", fix="Pass finite metric values.",
                                      model=model_name)
            clean[SEED_METRIC_NAMES.get(str(key), str(key))] = number
        from mlops.store.audit import append_event

        with self.registry.context.store.write() as s:
            mrow = model_row(s, model_name)
            row = s.get(BaselineRow, (mrow.id, version or ""))
            if row is None:
                row = BaselineRow(model_id=mrow.id, version=version or "")
                s.add(row)
            merged = {**dict(row.metrics or {}), **clean}
            if len(merged) > _MAX_BASELINE:
                raise MonitoringError(
                    f"{model_name!r} would have {len(merged)} baseline metrics; at most "
                    f"{_MAX_BASELINE}.", fix="Remove the ones no alert uses first (`mlops "
                    "monitor baseline MODEL --remove NAME`, or DELETE "
                    "/api/v1/monitor/MODEL/baseline/NAME).", model=model_name)
            row.metrics = merged
            row.updated_at = utcnow()
            append_event(s, actor=self.registry.context.actor, action="monitor.baseline",
                         subject=_baseline_subject(model_name, version),
                         payload={"metrics": clean})
            return dict(row.metrics)

    def remove_baseline(self, model_name: str, names: Sequence[str],
                        version: str | None = None) -> dict[str, float]:
        """Remove baseline metrics (audited); returns the metrics left. A name that is not
        in the baseline is refused, naming those that are."""
        self.registry.require(Role.DEVELOPER, f"change the baseline of {model_name}")
        from mlops.store.audit import append_event

        wanted = [SEED_METRIC_NAMES.get(n, n) for n in dict.fromkeys(names)]
        with self.registry.context.store.write() as s:
            mrow = model_row(s, model_name)
            row = s.get(BaselineRow, (mrow.id, version or ""))
            have = dict(row.metrics or {}) if row is not None else {}
            missing = [n for n in wanted if n not in have]
            if missing or not wanted:
                where = f"{model_name!r}" + (f" version {version}" if version else "")
                raise MonitoringError(
                    f"No baseline metric {', '.join(repr(n[:60]) for n in missing[:5])} for "
                    f"{where}." if missing else "Name the baseline metrics to remove.",
                    fix=f"Its baseline has: {', '.join(sorted(have)) or 'nothing'}.",
                    model=model_name)
            assert row is not None
            row.metrics = {k: v for k, v in have.items() if k not in wanted}
            row.updated_at = utcnow()
            append_event(s, actor=self.registry.context.actor,
                         action="monitor.baseline.remove",
                         subject=_baseline_subject(model_name, version),
                         payload={"removed": wanted})
            return dict(row.metrics)

    def baseline(self, model_name: str, version: str | None = None) -> dict[str, float]:
        """Registered metrics of the version, overridden by ``set_baseline`` values (model
        level, then version level)."""
        out: dict[str, float] = {}
        if version is not None:
            with contextlib.suppress(ModelNotFound, VersionNotFound):
                out.update(self.registry.get_version(model_name, version).metrics)
        with self.registry.context.store.read() as s:
            mrow = s.scalar(select(ModelRow).where(ModelRow.name == model_name))
            if mrow is None:
                return out
            for key in ("", version):
                if key is None:
                    continue
                row = s.get(BaselineRow, (mrow.id, key))
                if row is not None:
                    out.update({k: float(v) for k, v in row.metrics.items()})
        return out

    # ------------------------------------------------------------------ performance
    def check_model_performance(self, model_name: str, version: str | None = None, *,
                                environment: str | None = None, window: float | None = None,
                                now: datetime | None = None) -> PerformanceCheck:
        """Performance over the last ``window`` seconds (default: all logged history)."""
        self.flush()
        now = now or _utcnow()
        start = now - timedelta(seconds=window) if window is not None else None
        pw = performance_window(self.artifacts_uri, model_name, version=version,
                                environment=environment, start=start, end=now,
                                label_delay=self.label_delay, now=now)
        base = self.baseline(model_name, version or self.served_version(model_name,
                                                                          environment))
        changes: dict[str, float] = {}
        degraded: list[str] = []
        for metric, value in pw.metrics.items():
            ref = base.get(metric)
            if ref is None or ref == 0 or metric not in (*_QUALITY_UP, *_QUALITY_DOWN):
                continue
            change = (value - ref) / abs(ref)
            changes[metric] = change
            worse = -change if metric in _QUALITY_UP else change
            if worse > TOLERANCE:
                degraded.append(metric)
        values = {**pw.metrics, "error_rate": pw.error_rate,
                  "latency_p99_ms": pw.latency_p99_ms}
        return PerformanceCheck(model_name, version, environment, pw, base, changes,
                                tuple(degraded), health_score(values, base))

    # ------------------------------------------------------------------ drift
    def detect_data_drift(self, model_name: str, current_features: Any, *,
                          version: str | None = None, fdr: float = 0.05,
                          min_effect: float | dict[str, float] | None = None) -> DriftReport:
        """Drift of ``current_features`` (a frame of model inputs) against the version's
        stored reference profile (default: the served version)."""
        version = version or self._version_or_newest(model_name, None)
        profile = self.registry.reference_profile(model_name, version, "features")
        frame = current_features if isinstance(current_features, pd.DataFrame) else \
            pd.DataFrame(current_features)
        return detect_drift(profile, frame, fdr=fdr, min_effect=min_effect)

    def detect_prediction_drift(self, model_name: str, predictions: Any = None, *,
                                version: str | None = None, environment: str | None = None,
                                window: float | None = None, now: datetime | None = None,
                                fdr: float = 0.05) -> DriftReport:
        """Drift of the model's outputs against the outputs profiled at registration:
        ``predictions`` given, or the logged predictions of the last ``window`` seconds."""
        version = version or self._version_or_newest(model_name, environment)
        profile = self.registry.reference_profile(model_name, version, "outputs")
        if predictions is None:
            self.flush()
            now = now or _utcnow()
            span = timedelta(seconds=window) if window is not None else self.window
            # the logged outputs of that version only: another version's are not drift
            logged = read_window(self.artifacts_uri, model_name, start=now - span, end=now,
                                 environment=environment, version=version)
            predictions = logged.predictions
        frame = outputs_frame(np.asarray(predictions, dtype=object).ravel(),
                              profile.columns["prediction"].kind)
        return detect_drift(profile, frame, fdr=fdr)

    # ------------------------------------------------------------------ evaluation
    def deployments(self) -> list[tuple[str, str, str]]:
        """(model, environment, stable version) of every deployment with a stable version."""
        with self.registry.context.store.read() as s:
            rows = s.execute(select(ModelRow.name, DeploymentRow.environment,
                                    DeploymentRow.stable_version).join(
                ModelRow, ModelRow.id == DeploymentRow.model_id)).all()
        return [(m, e, v) for m, e, v in rows if v]

    def _concept(self, model: str, environment: str, task: str | None, now: datetime,
                 guard: Callable[[Session], None] | None = None) -> dict[str, Any]:
        """Feed the labels that arrived since the last pass to the persisted ADWIN detector.

        A labelled row becomes eligible when both its label has arrived and its prediction
        is mature (``max(labelled_at, ts + label_delay)``); the cursor is the eligible time
        of the last row fed, and rows eligible in the last ``CONCEPT_SETTLE`` seconds wait
        for the next pass (other gateways may still be flushing labels stamped earlier).
        """
        key = f"concept/{model}/{environment}"
        with self.registry.context.store.read() as s:
            row = s.get(MonitorStateRow, key)
            state = dict(row.state) if row is not None else {}
        cursor = datetime.fromisoformat(state["cursor"]) if "cursor" in state else None
        rows = labelled_rows(self.artifacts_uri, model, environment=environment,
                             start=now - self.window - self.label_delay, end=now,
                             label_delay=self.label_delay, now=now)
        detector = ConceptDriftMonitor.from_state(state["detector"]) if "detector" in state \
            else ConceptDriftMonitor(method="adwin")
        detections = list(state.get("detections", []))
        table = rows.to_pandas()
        if len(table):
            table["eligible"] = np.maximum(table["labelled_at"], table["ts"] + self.label_delay)
            table = table[table["eligible"] <= pd.Timestamp(now - CONCEPT_SETTLE)]
            if cursor is not None:
                table = table[table["eligible"] > pd.Timestamp(cursor)]
        n = len(table)
        if n:
            table = table.sort_values(["eligible", "ts"], kind="stable")
            errors = _errors(table, task)
            for err, ts in zip(errors, table["eligible"], strict=True):
                if np.isfinite(err) and detector.update(float(err)):
                    detections.append(ts.isoformat())
            cursor = table["eligible"].max().to_pydatetime()
        detections = detections[-20:]
        recent = [d for d in detections if datetime.fromisoformat(d) >= now - self.window]
        new_state = {"cursor": cursor.isoformat() if cursor is not None else None,
                     "detector": detector.state(), "detections": detections}
        if new_state["cursor"] is None:
            del new_state["cursor"]
        with self.registry.context.store.write() as s:
            if guard is not None:
                guard(s)
            row = s.get(MonitorStateRow, key)
            if row is None:
                s.add(MonitorStateRow(key=key, state=new_state))
            else:
                row.state = new_state
                row.updated_at = utcnow()
        return {"method": "adwin", "new_rows": n, "detected": bool(recent),
                "last_detection": detections[-1] if detections else None}

    def evaluate(self, model: str, environment: str, *, version: str | None = None,
                 now: datetime | None = None,
                 guard: Callable[[Session], None] | None = None) -> Evaluation:
        """One evaluator pass over a deployment (see the module docstring). ``guard`` is
        called inside every write transaction and may raise to abort it (the evaluator's
        lease check: a process that lost its lease writes nothing)."""
        self.registry.require(Role.DEVELOPER, f"evaluate {model} in {environment}")
        self.flush()
        now = now or _utcnow()
        version = version or self.served_version(model, environment) or ""
        rules = self.alerts.rules(model, environment)
        spans = sorted({self.window.total_seconds(), *(r.window for r in rules)})
        windows: dict[float, PerformanceWindow] = {}
        for span in spans:
            windows[span] = performance_window(
                self.artifacts_uri, model, environment=environment,
                start=now - timedelta(seconds=span), end=now, label_delay=self.label_delay,
                now=now)
        main = windows[self.window.total_seconds()]
        values = window_observations(main)
        by_version: WindowDrift | None = None
        drift = pred_drift = None
        try:  # each version's rows against that version's own profiles
            by_version = window_drift(self.registry, model, start=now - self.window, end=now,
                                      environment=environment)
        except MonitoringError as exc:  # e.g. an unreadable log: performance and alerts go on
            log.warning("no drift check for %s in %s: %s", model, environment, exc.message)
        if by_version is not None:
            values.update(by_version.observations())
            shown = by_version.worst(version or None)
            if shown is not None:
                drift, pred_drift = shown.data, shown.outputs
        concept = self._concept(model, environment, main.task, now, guard)
        values["concept_drift"] = Observation(float(concept["detected"]), main.n_labeled)
        base = self.baseline(model, version or None)
        health = health_score({k: v.value for k, v in values.items() if v.n}, base)
        values["health"] = Observation(health.score if main.n_predictions else None,
                                       main.n_predictions)
        # the windows cover every version the environment served (a canary included), so
        # the history is environment-level: version "". The drifted features are recorded
        # too (drift:<feature>), for retraining triggers on named features.
        features = by_version.feature_observations() if by_version is not None else {}
        record_snapshots(self.registry, model, "", environment, main.start, main.end,
                         {**values, **features}, guard=guard)

        def observe(rule: Any) -> Observation | None:
            if rule.metric in ("drift_share", "drift_max_effect", "prediction_drift",
                               "concept_drift", "missing_rate_max", "health"):
                return values.get(rule.metric)
            return window_observations(windows[rule.window]).get(rule.metric)

        transitions = self.alerts.evaluate(model, version, environment, observe, base, now=now,
                                           guard=guard)
        return Evaluation(model, environment, version, main.start, main.end, values, drift,
                          pred_drift, concept, health, transitions, by_version)

    def evaluate_all(self, now: datetime | None = None) -> list[Evaluation]:
        """Evaluate every deployment once (the evaluator's pass)."""
        return [self.evaluate(m, e, version=v, now=now) for m, e, v in self.deployments()]

    # ------------------------------------------------------------------ status
    def status(self, model_name: str, environment: str | None = None, *,
               now: datetime | None = None) -> MonitorStatus:
        """The live window (the last monitoring window up to ``now``, read from the log
        now), the evaluator's latest pass, health and alerts (see
        :mod:`~mlops.monitoring.status`)."""
        self.registry.get_model(model_name)  # a clear error for an unknown model
        self.flush()
        now = now or _utcnow()
        live = performance_window(self.artifacts_uri, model_name, environment=environment,
                                  start=now - self.window, end=now,
                                  label_delay=self.label_delay, now=now)
        latest = latest_snapshots(self.registry, model_name, environment=environment)
        version = self.served_version(model_name, environment)
        firing = self.alerts.alerts(model_name, state="firing", environment=environment)
        recent = self.alerts.alerts(model_name, environment=environment, limit=20)
        return build_status(model_name, environment, version, live, latest,
                            self.baseline(model_name, version), firing, recent)


def _refuse_seed_latency_form(model: str, prediction: Any, actual: Any) -> None:
    """Refuse ``record_prediction(model, latency_seconds, accuracy)`` (the MLOps Basics
    guide's call), which would store a latency as the prediction and an accuracy as its
    label."""
    def is_float(x: Any) -> bool:
        return isinstance(x, float | np.floating) and math.isfinite(x)

    if not (is_float(prediction) and is_float(actual) and 0.0 <= prediction < 3600.0
            and 0.0 < actual < 1.0):
        return
    raise MonitoringError(
        f"record_prediction({model!r}, {prediction!r}, {actual!r}) reads as (model, "
        "prediction, label): it would store the latency as a prediction and the accuracy "
        "as its label. This API logs one prediction at a time and computes accuracy from "
        "the labels.",
        fix=f"Log the prediction with its latency: record_prediction({model!r}, prediction, "
            "latency_ms=latency * 1000), then its label with record_feedback(model, "
            "request_id, actual) or actual=...; read accuracy with "
            f"check_model_performance({model!r})['accuracy'] and set the expected value with "
            f"set_baseline({model!r}, {{'accuracy': {actual!r}}}). If {prediction!r} really "
            f"is a prediction and {actual!r} its label, pass the label by name: "
            f"actual={actual!r}.",
        model=model)


def _errors(frame: pd.DataFrame, task: str | None) -> np.ndarray:
    """Per-row error stream: 0/1 misclassification (numbers compared as numbers, so 1 and
    1.0 agree), or absolute error for regression."""
    pred = pd.to_numeric(frame["prediction_num"], errors="coerce").to_numpy(dtype=float)
    actual = pd.to_numeric(frame["actual_num"], errors="coerce").to_numpy(dtype=float)
    if task == "regression":
        return np.abs(pred - actual)
    both = np.isfinite(pred) & np.isfinite(actual)
    text = (frame["prediction"].astype(str).to_numpy() != frame["actual"].astype(str).to_numpy())
    return np.where(both, (pred != actual).astype(float), text.astype(float))
