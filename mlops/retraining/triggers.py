"""Trigger evaluation: which of a model's triggers ask for a retrain now, and which may not.

:func:`evaluate_triggers` reads what the platform recorded and returns, per trigger whose
condition holds, a :class:`Signal` (it may fire) or a :class:`Skip` (a guardrail stops it,
with the reason). A trigger whose condition does not hold returns nothing.

- ``drift``: the monitoring evaluator's ``drift_share`` snapshots of the environment (and
  ``drift:<feature>`` for named features, see :mod:`~mlops.monitoring.drift_window`);
- ``performance``: the metric's snapshots against the baseline of the production version
  (:meth:`~mlops.monitoring.monitor.ModelMonitor.baseline`: registered metrics overridden
  by ``mlops monitor baseline``), only windows with at least ``min_labels`` mature labels;
- ``schedule``: the next cron time (or ``every``) after the trigger last fired, the model
  was last trained or the configuration was set, whichever is latest;
- ``volume``: distinct labelled rows received since the last training (or since the
  trigger last fired), counted with DuckDB over the feedback log;
- ``alert``: a firing incident of the rule for the model;
- ``manual``: never by itself.

**Sustained windows.** The evaluator writes one snapshot per pass, and passes overlap (a 1 h
window every minute). ``sustained: N`` asks for N consecutive *disjoint* windows, walking
back from the newest pass (each next window ends where the previous one starts, at most a
window length earlier), and for the condition to hold in every pass of that span. Only
passes that ended after the trigger last fired and after the last training count (what a
job already acted on is not evidence again), and the newest must be recent
(:data:`STALE_AFTER` or two window lengths).

**Guardrails** (:func:`guardrail`, in this order): the trigger's cooldown, its runs in the
last 24 h, the model's runs in the last 24 h, the expected gain below
``min_expected_gain`` (only when a gain can be estimated: the drop of the metric a
performance trigger or a quality alert saw, in the metric's units).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mlops.errors import MlopsError
from mlops.monitoring.alerts import AlertManager
from mlops.monitoring.drift_window import feature_drift_metric
from mlops.monitoring.snapshots import Snapshot, snapshot_series
from mlops.registry.service import ModelRegistry
from mlops.retraining.config import (
    QUALITY_METRICS,
    AlertTrigger,
    DriftTrigger,
    ManualTrigger,
    PerformanceTrigger,
    Priority,
    RetrainConfig,
    ScheduleTrigger,
    TriggerKind,
    VolumeTrigger,
    format_duration,
)
from mlops.stats.ab import default_higher_is_better
from mlops.store.predlog import FEEDBACK, LogReader, feedback_scan, list_files, open_store
from mlops.store.predlog.layout import day_name

__all__ = ["STALE_AFTER", "Signal", "Skip", "TriggerHistory", "evaluate_triggers",
           "guardrail", "labelled_rows_since"]

log = logging.getLogger("mlops.retraining")

#: The newest evaluated window must have ended this recently (or within two window
#: lengths) for drift and performance triggers: old evidence does not fire.
STALE_AFTER = timedelta(hours=1)
_DAY = timedelta(days=1)

AnyTrigger = (DriftTrigger | PerformanceTrigger | ScheduleTrigger | VolumeTrigger |
              AlertTrigger | ManualTrigger)


@dataclass(frozen=True)
class TriggerHistory:
    """What the job store knows of a model's past retrains (times are UTC)."""

    last_fired: Mapping[str, datetime] = field(default_factory=dict)  # trigger -> last job
    fired_today: Mapping[str, int] = field(default_factory=dict)      # jobs in the last 24 h
    model_runs_today: int = 0
    last_training: datetime | None = None     # the last successful job (None: never)
    production_version: str | None = None
    configured_at: datetime | None = None     # when the configuration was set


@dataclass(frozen=True)
class Signal:
    """A trigger whose condition holds and that may fire."""

    trigger: str
    kind: TriggerKind
    priority: Priority
    reason: str
    detail: dict[str, Any]
    expected_gain: float | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "kind": self.kind.value,
                "priority": self.priority.value, "reason": self.reason, "detail": self.detail,
                "expected_gain": self.expected_gain, "at": self.at.isoformat()}


@dataclass(frozen=True)
class Skip:
    """A trigger whose condition holds but that must not fire now, and why."""

    trigger: str
    kind: TriggerKind
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": self.trigger, "kind": self.kind.value, "reason": self.reason,
                "at": self.at.isoformat()}


@dataclass(frozen=True)
class _Hit:
    reason: str
    detail: dict[str, Any]
    expected_gain: float | None = None


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _latest(*moments: datetime | None) -> datetime | None:
    present = [_utc(m) for m in moments if m is not None]
    return max(present) if present else None


def _when(dt: datetime) -> str:
    return f"{_utc(dt):%Y-%m-%d %H:%M} UTC"


def _windows(chain: Sequence[Snapshot], now: datetime) -> str:
    """``10:00-11:00 and 11:00-12:00`` (oldest first; dates when not within a day)."""
    fmt = "%H:%M" if all(now - s.window_start < _DAY for s in chain) else "%m-%d %H:%M"
    if any((s.window_end - s.window_start).total_seconds() < 120 for s in chain):
        fmt += ":%S"  # short windows: minutes alone would read 16:24-16:24
    spans = [f"{s.window_start:{fmt}}-{s.window_end:{fmt}}" for s in reversed(chain)]
    if len(spans) > 3:
        return f"{chain[-1].window_start:{fmt}}-{chain[0].window_end:{fmt}}"
    return spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + " and " + spans[-1]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------------------- guardrails


def guardrail(config: RetrainConfig, trigger: AnyTrigger, history: TriggerHistory,
              now: datetime, expected_gain: float | None = None) -> str | None:
    """Why ``trigger`` must not fire at ``now`` (a sentence), or ``None`` when it may."""
    now = _utc(now)
    last = history.last_fired.get(trigger.name)
    if last is not None and trigger.cooldown and now - _utc(last) < timedelta(
            seconds=trigger.cooldown):
        again = _utc(last) + timedelta(seconds=trigger.cooldown)
        return (f"cooldown {format_duration(trigger.cooldown)} not over: {trigger.name} "
                f"last fired at {_when(last)}, may fire again from {_when(again)}")
    fired = int(history.fired_today.get(trigger.name, 0))
    if trigger.max_runs_per_day is not None and fired >= trigger.max_runs_per_day:
        return (f"{trigger.name} fired {_count(fired, 'time')} in the last 24 h, its cap "
                f"(max_runs_per_day {trigger.max_runs_per_day})")
    if history.model_runs_today >= config.max_runs_per_day:
        return (f"the model had {_count(history.model_runs_today, 'retraining job')} in the "
                f"last 24 h, its cap (max_runs_per_day {config.max_runs_per_day})")
    if expected_gain is not None and config.min_expected_gain > 0 and \
            expected_gain < config.min_expected_gain:
        return (f"expected gain {expected_gain:.4g} is below min_expected_gain "
                f"{config.min_expected_gain:.4g}")
    return None


# ---------------------------------------------------------------------------- evaluation


class _Context:
    """What the checks of one model share: the registry, the history, the clock, caches."""

    def __init__(self, registry: ModelRegistry, model: str, history: TriggerHistory,
                 now: datetime) -> None:
        self.registry = registry
        self.model = model
        self.history = history
        self.now = now
        self._baseline: dict[str, float] | None = None

    def since(self, trigger: str) -> datetime | None:
        """Evidence must be newer than this: the trigger's last fire and the last training."""
        return _latest(self.history.last_fired.get(trigger), self.history.last_training)

    def baseline(self) -> dict[str, float]:
        if self._baseline is None:
            from mlops.monitoring.monitor import ModelMonitor

            monitor = ModelMonitor(self.registry, alerts=AlertManager(
                self.registry, default_channels=[]))
            self._baseline = monitor.baseline(self.model, self.history.production_version)
        return self._baseline

    def gain(self, metric: str, value: float | None,
             higher_is_better: bool | None = None) -> tuple[float | None, float | None]:
        """(expected gain, baseline): how far ``value`` is worse than the baseline."""
        base = self.baseline().get(metric)
        if base is None or value is None:
            return None, base
        higher = default_higher_is_better(metric) if higher_is_better is None \
            else higher_is_better
        return (base - value if higher else value - base), base

    def series(self, metric: str, environment: str, sustained: int, since: datetime | None
               ) -> list[Snapshot]:
        """Evaluated passes of ``metric`` that may count (value present, newer than
        ``since``), oldest first, reaching back far enough for ``sustained`` windows."""
        span = timedelta(seconds=self.registry.context.settings.monitor_window)
        start = self.now - (sustained + 2) * span - STALE_AFTER
        points = snapshot_series(self.registry, self.model, metric, environment=environment,
                                 since=start if since is None else max(start, since),
                                 limit=50_000)
        return [p for p in points if p.value is not None and p.window_end <= self.now
                and (since is None or p.window_end > since)]


def _sustained(series: Sequence[Snapshot], holds: Callable[[Snapshot], bool], count: int,
               now: datetime) -> tuple[list[Snapshot], list[Snapshot]] | None:
    """(chain of ``count`` consecutive disjoint windows, newest first; every pass of their
    span) when the condition holds in all of them; else ``None`` (see the module
    docstring)."""
    if not series:
        return None
    newest = series[-1]
    if now - newest.window_end > max(STALE_AFTER, 2 * (newest.window_end -
                                                       newest.window_start)):
        return None
    chain: list[Snapshot] = []
    covered: list[Snapshot] = []
    for snap in reversed(series):
        if chain and snap.window_end > chain[-1].window_start:  # inside the last window
            if not holds(snap):
                return None
            covered.append(snap)
            continue
        if chain and chain[-1].window_start - snap.window_end > \
                chain[-1].window_end - chain[-1].window_start:
            return None  # a gap: the windows are not consecutive
        if not holds(snap):
            return None
        chain.append(snap)
        covered.append(snap)
        if len(chain) == count:
            return chain, covered
    return None


def _drift(ctx: _Context, trigger: DriftTrigger) -> _Hit | None:
    since = ctx.since(trigger.name)
    series = ctx.series("drift_share", trigger.environment, trigger.sustained, since)
    drifted: dict[str, set[datetime]] = {}
    for feature in trigger.features:
        points = ctx.series(feature_drift_metric(feature), trigger.environment,
                            trigger.sustained, since)
        drifted[feature] = {p.window_end for p in points if p.value}

    def share_ok(s: Snapshot) -> bool:
        return trigger.share is not None and s.value is not None and s.value >= trigger.share

    def named(s: Snapshot) -> list[str]:
        return [f for f in trigger.features if s.window_end in drifted[f]]

    found = _sustained(series, lambda s: share_ok(s) or bool(named(s)), trigger.sustained,
                       ctx.now)
    if found is None:
        return None
    chain, covered = found
    lowest = min(float(s.value or 0.0) for s in covered)
    names = sorted({f for s in covered for f in named(s)})
    if trigger.share is not None and all(share_ok(s) for s in covered):
        what = f"drift_share {lowest:.2f} >= {trigger.share:.2f}"
    elif names and all(named(s) for s in covered):
        what = f"{', '.join(names)} drifted"
    else:
        what = (f"drift_share >= {trigger.share:.2f} or "
                f"{' or '.join(trigger.features)} drifted")
    passes = f", {len(covered)} evaluator passes" if len(covered) > len(chain) else ""
    windows = _count(len(chain), "consecutive window") if len(chain) > 1 else "1 window"
    reason = f"{what} in {windows} ({trigger.environment}, {_windows(chain, ctx.now)}{passes})"
    detail = {"environment": trigger.environment, "share": trigger.share,
              "drift_share": [s.value for s in reversed(chain)],
              "drift_share_min": lowest, "features": names,
              "windows": [[s.window_start.isoformat(), s.window_end.isoformat()]
                          for s in reversed(chain)],
              "passes": len(covered)}
    return _Hit(reason, detail)


def _performance(ctx: _Context, trigger: PerformanceTrigger) -> _Hit | None:
    higher = default_higher_is_better(trigger.metric) if trigger.higher_is_better is None \
        else trigger.higher_is_better
    base = ctx.baseline().get(trigger.metric)
    if base is None:
        log.debug("retraining trigger %s of %s: no baseline %s", trigger.name, ctx.model,
                  trigger.metric)
        return None
    limit = base - trigger.margin if higher else base + trigger.margin

    def holds(s: Snapshot) -> bool:
        value = float(s.value) if s.value is not None else None
        return value is not None and s.n >= trigger.min_labels and \
            (value < limit if higher else value > limit)

    series = ctx.series(trigger.metric, trigger.environment, trigger.sustained,
                        ctx.since(trigger.name))
    found = _sustained(series, holds, trigger.sustained, ctx.now)
    if found is None:
        return None
    chain, covered = found
    newest = float(chain[0].value or 0.0)
    values = [float(s.value or 0.0) for s in covered]
    weakest = max(values) if higher else min(values)
    gain, _ = ctx.gain(trigger.metric, newest, higher)
    op, sign = ("<", "-") if higher else (">", "+")
    shown = f"{weakest:.4g}" if len(covered) == 1 else \
        f"{'at most' if higher else 'at least'} {weakest:.4g}"
    windows = _count(len(chain), 'consecutive window') if len(chain) > 1 else "1 window"
    reason = (f"{trigger.metric} {shown} {op} {limit:.4g} (baseline {base:.4g} {sign} "
              f"margin {trigger.margin:.4g}) in {windows} of at least "
              f"{trigger.min_labels} labels ({trigger.environment}, "
              f"{_windows(chain, ctx.now)}); expected gain {gain:.4g}")
    detail = {"environment": trigger.environment, "metric": trigger.metric,
              "baseline": base, "margin": trigger.margin, "limit": limit,
              "values": [s.value for s in reversed(chain)],
              "labels": [s.n for s in reversed(chain)],
              "windows": [[s.window_start.isoformat(), s.window_end.isoformat()]
                          for s in reversed(chain)],
              "production_version": ctx.history.production_version}
    return _Hit(reason, detail, gain)


def _schedule(ctx: _Context, trigger: ScheduleTrigger) -> _Hit | None:
    h = ctx.history
    marks = {"last fired": h.last_fired.get(trigger.name), "last training": h.last_training,
             "configured": h.configured_at}
    anchor = _latest(*marks.values())
    what = next((k for k, v in marks.items() if v is not None and _utc(v) == anchor), None)
    if trigger.every is not None:
        rule = f"every {format_duration(trigger.every)}"
        due = ctx.now if anchor is None else anchor + timedelta(seconds=trigger.every)
    else:
        from croniter import croniter

        assert trigger.cron is not None
        rule = f"cron {trigger.cron!r} ({trigger.timezone})"
        zone = ZoneInfo(trigger.timezone)
        if anchor is None:  # nothing to count from: the most recent slot is due
            due = _utc(croniter(trigger.cron, ctx.now.astimezone(zone)).get_prev(datetime))
        else:
            due = _utc(croniter(trigger.cron, anchor.astimezone(zone)).get_next(datetime))
    if due > ctx.now:
        return None
    since = f"; {what} {_when(anchor)}" if anchor is not None else "; no run before"
    reason = f"{rule} was due at {_when(due)}{since}"
    detail = {"cron": trigger.cron, "every": trigger.every, "timezone": trigger.timezone,
              "due": due.isoformat(), "anchor": anchor.isoformat() if anchor else None,
              "anchor_kind": what}
    return _Hit(reason, detail)


def labelled_rows_since(registry: ModelRegistry, model: str, since: datetime | None) -> int:
    """Distinct labelled rows (request id, row) of ``model`` whose feedback arrived at or
    after ``since`` (all when ``None``), counted by DuckDB over the feedback log."""
    store = open_store(registry.context.settings.artifacts_uri)
    first = None if since is None else day_name(_utc(since) - _DAY)
    files = list_files(store, FEEDBACK, model, first_day=first)
    if not files:
        return 0
    scan = feedback_scan(files, since=None if since is None else _utc(since))
    with LogReader(store) as reader:
        rows = reader.fetchall(
            f'SELECT count(*) FROM (SELECT DISTINCT request_id, "row" FROM ({scan.sql}))',
            scan.params)
    return int(rows[0][0]) if rows else 0


def _volume(ctx: _Context, trigger: VolumeTrigger) -> _Hit | None:
    last = ctx.history.last_fired.get(trigger.name)
    since = ctx.since(trigger.name)
    n = labelled_rows_since(ctx.registry, ctx.model, since)
    if n < trigger.rows:
        return None
    if since is None:
        what = "ever"
    else:
        event = "it last fired" if last is not None and since == _utc(last) else \
            "the last training"
        what = f"since {event} ({_when(since)})"
    reason = f"{n:,} labelled rows received {what} >= {trigger.rows:,}"
    return _Hit(reason, {"rows": n, "threshold": trigger.rows,
                         "since": since.isoformat() if since else None})


def _alert(ctx: _Context, trigger: AlertTrigger) -> _Hit | None:
    since = ctx.since(trigger.name)
    firing = [a for a in AlertManager(ctx.registry, default_channels=[]).alerts(
        ctx.model, state="firing", environment=trigger.environment, limit=1000)
        if a.rule == trigger.rule and (since is None or _utc(a.fired_at) > since)]
    if not firing:
        return None
    alert = max(firing, key=lambda a: a.fired_at)
    gain = None
    if alert.metric in QUALITY_METRICS:
        gain, _ = ctx.gain(alert.metric, alert.value)
    where = f" in {alert.environment}" if alert.environment else ""
    reason = f"alert {trigger.rule} firing{where} since {_when(alert.fired_at)}: {alert.message}"
    detail = {"alert": alert.id, "rule": alert.rule, "environment": alert.environment,
              "metric": alert.metric, "value": alert.value, "threshold": alert.threshold,
              "fired_at": alert.fired_at.isoformat(), "severity": alert.severity}
    return _Hit(reason, detail, gain)


def _manual(ctx: _Context, trigger: ManualTrigger) -> _Hit | None:
    return None


_CHECKS: dict[TriggerKind, Callable[[_Context, Any], _Hit | None]] = {
    TriggerKind.DRIFT: _drift, TriggerKind.PERFORMANCE: _performance,
    TriggerKind.SCHEDULE: _schedule, TriggerKind.VOLUME: _volume, TriggerKind.ALERT: _alert,
    TriggerKind.MANUAL: _manual}


def evaluate_triggers(registry: ModelRegistry, model: str, config: RetrainConfig,
                      history: TriggerHistory, now: datetime
                      ) -> tuple[list[Signal], list[Skip]]:
    """Each trigger of ``config`` whose condition holds at ``now``: a :class:`Signal` when
    it may fire, a :class:`Skip` (with the guardrail's reason) when it may not. A trigger
    whose data cannot be read (an unreachable log, ...) is a Skip that says so; the others
    are still evaluated."""
    now = _utc(now)
    ctx = _Context(registry, model, history, now)
    signals: list[Signal] = []
    skips: list[Skip] = []
    for trigger in config.triggers:
        kind = TriggerKind(trigger.kind)
        try:
            hit = _CHECKS[kind](ctx, trigger)
        except MlopsError as exc:
            log.warning("retraining trigger %s of %s cannot be evaluated: %s", trigger.name,
                        model, exc)
            skips.append(Skip(trigger.name, kind, f"cannot be evaluated: {exc.message}", now))
            continue
        if hit is None:
            continue
        why = guardrail(config, trigger, history, now, hit.expected_gain)
        if why is not None:
            skips.append(Skip(trigger.name, kind, f"{hit.reason}, but {why}", now))
        else:
            signals.append(Signal(trigger.name, kind, trigger.priority, hit.reason,
                                  hit.detail, hit.expected_gain, now))
    return signals, skips
