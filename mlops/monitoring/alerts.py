"""Alert state: rules in the database, incidents that fire once and resolve once.

For every (rule, model, environment) series there is at most one ``firing``
incident; evaluating a breached rule again only counts it (deduplication). When the value
is back within the limit the incident resolves. A series whose last incident resolved less
than the rule's ``cooldown`` ago does not fire again (flap protection). Each firing,
resolution, acknowledgement and rule change is an audit event, written in the same
transaction as the row; notifications go out after the commit through non-blocking
:class:`~mlops.monitoring.channels.Dispatcher` s.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mlops.errors import AlertNotFound, MonitoringError
from mlops.identity import Principal, Role
from mlops.monitoring.channels import (
    Channel,
    Dispatcher,
    LogChannel,
    Notification,
    UnavailableChannel,
    channel_from_config,
)
from mlops.monitoring.rules import DEFAULT_RULES, AlertRule
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event
from mlops.store.catalog import model_row
from mlops.store.egress import EgressPolicy, redact_secrets
from mlops.store.schema import AlertRow, AlertRuleRow, ModelRow

__all__ = ["Alert", "AlertManager", "AlertTransition", "Observation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    """A metric value over a window and how many observations back it."""

    value: float | None
    n: int


@dataclass(frozen=True)
class Alert:
    id: int
    rule: str
    model: str
    version: str
    environment: str
    severity: str
    state: str
    metric: str
    value: float | None
    threshold: float | None
    message: str
    evaluations: int
    fired_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("fired_at", "last_seen_at", "resolved_at", "acked_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


@dataclass(frozen=True)
class AlertTransition:
    """What one evaluation changed: ``fired``, ``resolved`` or ``suppressed`` (cooldown)."""

    change: str
    rule: str
    alert: Alert | None
    value: float | None
    limit: float | None


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _fingerprint(rule: str, model: str, environment: str) -> str:
    """The series an incident belongs to. Not the version: the evaluated windows are
    environment-wide, so a version switch continues the same incident (the row keeps the
    version that was serving when it fired)."""
    key = json.dumps([rule, model, environment])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _alert(row: AlertRow, rule: str, model: str) -> Alert:
    return Alert(id=row.id, rule=rule, model=model, version=row.version,
                 environment=row.environment, severity=row.severity, state=row.state,
                 metric=row.metric, value=row.value, threshold=row.threshold,
                 message=row.message, evaluations=row.evaluations,
                 fired_at=_utc(row.fired_at) or row.fired_at,
                 last_seen_at=_utc(row.last_seen_at) or row.last_seen_at,
                 resolved_at=_utc(row.resolved_at), acked_by=row.acked_by,
                 acked_at=_utc(row.acked_at))


class AlertManager:
    """Rules, incidents and notifications for every model of one store.

    Rule channels obey ``egress`` (default: the registry settings' ``egress_allow``).
    """

    def __init__(self, registry: ModelRegistry, *,
                 default_channels: list[Channel] | None = None,
                 egress: EgressPolicy | None = None) -> None:
        self.registry = registry
        self.egress = egress if egress is not None else \
            EgressPolicy.from_settings(registry.context.settings)
        self._default = default_channels if default_channels is not None else [LogChannel()]
        self._dispatchers: dict[str, Dispatcher] = {}
        self._lock = threading.Lock()

    def acting_as(self, principal: Principal) -> AlertManager:
        """This manager (same dispatchers) acting for ``principal``."""
        clone = copy.copy(self)
        clone.registry = self.registry.acting_as(principal)
        return clone

    # ------------------------------------------------------------------ rules
    def put_rule(self, rule: AlertRule) -> AlertRule:
        """Create or replace the rule with this name (audited)."""
        self.registry.require(Role.DEVELOPER, f"store the alert rule {rule.name!r}")
        for spec in rule.channels:
            channel_from_config(spec, egress=self.egress)  # refuse it now, not when it fires
        with self.registry.context.store.write() as s:
            model_id = None
            if rule.model is not None:
                model_id = model_row(s, rule.model).id
            row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.name == rule.name))
            if row is None:
                row = AlertRuleRow(name=rule.name, created_by=self.registry.context.actor)
                s.add(row)
            row.model_id = model_id
            row.environment = rule.environment or ""
            row.spec = rule.to_dict()
            row.enabled = True
            append_event(s, actor=self.registry.context.actor, action="alert.rule.put",
                         subject=f"alert-rule/{rule.name}",
                         payload=redact_secrets(rule.to_dict()))  # the log is for everyone
        return rule

    def delete_rule(self, name: str) -> None:
        """Remove a stored rule; its firing incidents are resolved (and audited) first, and
        its history stays. Built-in rules cannot be removed, only overridden."""
        self.registry.require(Role.DEVELOPER, f"delete the alert rule {name!r}")
        with self.registry.context.store.write() as s:
            row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.name == name,
                                                      AlertRuleRow.enabled))
            if row is None:
                if any(r.name == name for r in DEFAULT_RULES):
                    raise AlertNotFound(
                        f"{name!r} is a built-in rule; it cannot be deleted.",
                        fix=f"Store a rule named {name!r} with the limits you want (it "
                            "replaces the built-in one): mlops alerts rules --add FILE.")
                raise AlertNotFound(f"No alert rule named {name!r}.",
                                    fix="See the rules with `mlops alerts rules`.")
            now = datetime.now(UTC)
            for incident in s.scalars(select(AlertRow).where(AlertRow.rule_id == row.id,
                                                             AlertRow.state == "firing")):
                incident.state = "resolved"
                incident.resolved_at = now
                append_event(s, actor=self.registry.context.actor, action="alert.resolve",
                             subject=f"alert-rule/{name}",
                             payload={"alert": incident.id, "rule": name,
                                      "reason": "rule deleted"})
            row.enabled = False  # kept: it anchors the incidents' history
            append_event(s, actor=self.registry.context.actor, action="alert.rule.delete",
                         subject=f"alert-rule/{name}")

    def rules(self, model: str | None = None, environment: str | None = None
              ) -> list[AlertRule]:
        """Stored rules that apply (global or for ``model``), then the defaults whose name
        no stored rule takes."""
        with self.registry.context.store.read() as s:
            query = select(AlertRuleRow, ModelRow.name).outerjoin(
                ModelRow, ModelRow.id == AlertRuleRow.model_id).where(AlertRuleRow.enabled)
            if model is not None:
                query = query.where(or_(AlertRuleRow.model_id.is_(None), ModelRow.name == model))
            if environment is not None:
                query = query.where(AlertRuleRow.environment.in_(["", environment]))
            stored = [AlertRule.model_validate(row.spec) for row, _ in s.execute(query)]
        taken = {r.name for r in stored}
        return stored + [r for r in DEFAULT_RULES if r.name not in taken]

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model: str, version: str, environment: str,
                 observe: Callable[[AlertRule], Observation | None],
                 baselines: Mapping[str, float] | None = None, *,
                 now: datetime | None = None,
                 guard: Callable[[Session], None] | None = None) -> list[AlertTransition]:
        """Evaluate every applicable rule on the values ``observe(rule)`` returns.

        ``observe`` returns ``None`` when the metric is not available for the rule's window
        (the incident state is then left as it is), as does a value with fewer than the
        rule's ``min_samples`` observations. ``guard`` runs inside the write transaction and
        may raise to abort it (nothing is written or notified then).
        """
        now = now or datetime.now(UTC)
        baselines = baselines or {}
        transitions: list[AlertTransition] = []
        notify: list[tuple[AlertRule, Notification]] = []
        rules = self.rules(model, environment)
        with self.registry.context.store.write() as s:
            if guard is not None:
                guard(s)
            mrow = model_row(s, model)
            for rule in rules:
                obs = observe(rule)
                if obs is None or obs.value is None or obs.n < rule.min_samples:
                    continue
                hit, limit = rule.breached(obs.value, baselines.get(rule.metric))
                change = self._apply(s, mrow, version, environment, rule, obs, hit,
                                     limit, now)
                if change is not None:
                    transitions.append(change)
                    if change.alert is not None and change.change in ("fired", "resolved"):
                        notify.append((rule, self._notification(change.alert, rule, now)))
        for rule, note in notify:
            self._dispatcher(rule).submit(note)
        return transitions

    def _rule_row(self, s: Session, rule: AlertRule) -> AlertRuleRow:
        row = s.scalar(select(AlertRuleRow).where(AlertRuleRow.name == rule.name))
        if row is None:  # a default rule: stored (disabled for evaluation) to anchor incidents
            row = AlertRuleRow(name=rule.name, model_id=None, environment="",
                               spec=rule.to_dict(), enabled=False, created_by="default")
            s.add(row)
            s.flush()
        return row

    def _apply(self, s: Session, model_row: ModelRow, version: str, environment: str,
               rule: AlertRule, obs: Observation, hit: bool, limit: float | None,
               now: datetime) -> AlertTransition | None:
        fp = _fingerprint(rule.name, model_row.name, environment)
        firing = s.scalar(select(AlertRow).where(AlertRow.fingerprint == fp,
                                                 AlertRow.state == "firing"))
        subject = f"model/{model_row.name}/env/{environment}" if environment else \
            f"model/{model_row.name}"
        if firing is not None:
            firing.last_seen_at = now
            firing.value = obs.value
            if hit:
                firing.evaluations += 1
                return None
            firing.state = "resolved"
            firing.resolved_at = now
            append_event(s, actor=self.registry.context.actor, action="alert.resolve", subject=subject,
                         payload={"alert": firing.id, "rule": rule.name,
                                  "environment": environment, "value": obs.value,
                                  "limit": limit})
            s.flush()
            return AlertTransition("resolved", rule.name, _alert(firing, rule.name,
                                                                  model_row.name),
                                   obs.value, limit)
        if not hit:
            return None
        last = s.scalar(select(AlertRow).where(AlertRow.fingerprint == fp)
                        .order_by(AlertRow.id.desc()).limit(1))
        resolved = _utc(last.resolved_at) if last is not None else None
        if resolved is not None and now - resolved < timedelta(seconds=rule.cooldown):
            return AlertTransition("suppressed", rule.name, None, obs.value, limit)
        value_text = f"{obs.value:.4g}"
        message = (f"{rule.name}: {rule.metric} = {value_text} "
                   f"({rule.describe()}"
                   + (f", limit {limit:.4g}" if limit is not None else "")
                   + f") on {model_row.name}" + (f" v{version}" if version else "")
                   + (f" in {environment}" if environment else "")
                   + f", n={obs.n}")
        row = AlertRow(rule_id=self._rule_row(s, rule).id, model_id=model_row.id,
                       version=version, environment=environment, fingerprint=fp,
                       severity=rule.severity, state="firing", metric=rule.metric,
                       value=obs.value, threshold=limit, message=message, evaluations=1,
                       fired_at=now, last_seen_at=now)
        s.add(row)
        s.flush()
        append_event(s, actor=self.registry.context.actor, action="alert.fire", subject=subject,
                     payload={"alert": row.id, "rule": rule.name, "severity": rule.severity,
                              "environment": environment, "metric": rule.metric,
                              "value": obs.value, "limit": limit, "n": obs.n})
        return AlertTransition("fired", rule.name, _alert(row, rule.name, model_row.name),
                               obs.value, limit)

    # ------------------------------------------------------------------ notifications
    def _notification(self, alert: Alert, rule: AlertRule, now: datetime) -> Notification:
        return Notification(
            alert_id=str(alert.id), rule=rule.name, model=alert.model,
            version=alert.version or None, environment=alert.environment or None,
            severity=alert.severity, state=alert.state, metric=alert.metric,
            value=alert.value, threshold=alert.threshold, message=alert.message,
            fired_at=alert.fired_at if alert.state == "firing" else now,
            details={"evaluations": alert.evaluations, "rule": rule.describe()})

    def _dispatcher(self, rule: AlertRule) -> Dispatcher:
        key = json.dumps(rule.channels, sort_keys=True)
        with self._lock:
            found = self._dispatchers.get(key)
            if found is None:
                channels = [self._channel(rule, c) for c in rule.channels] or self._default
                # one worker per channel set: a receiver sees firing before resolved
                found = self._dispatchers[key] = Dispatcher(channels, workers=1)
            return found

    def _channel(self, rule: AlertRule, spec: Mapping[str, Any]) -> Channel:
        """A stored rule's channel; one refused now (the egress policy changed since it was
        stored) fails each delivery with the reason instead of breaking evaluation."""
        try:
            return channel_from_config(spec, egress=self.egress)
        except MonitoringError as exc:
            name = str(spec.get("name") or f"{spec.get('type')}:{rule.name}")
            log.warning("alert rule %s: channel %s is unavailable: %s", rule.name, name, exc)
            return UnavailableChannel(name, f"channel unavailable: {exc}")

    def flush(self, timeout: float = 10.0) -> None:
        """Wait for queued notifications (tests, shutdown)."""
        for dispatcher in list(self._dispatchers.values()):
            dispatcher.flush(timeout)

    def close(self) -> None:
        for dispatcher in list(self._dispatchers.values()):
            dispatcher.close()
        self._dispatchers.clear()

    # ------------------------------------------------------------------ queries
    def alerts(self, model: str | None = None, *, state: str | None = None,
               environment: str | None = None, limit: int = 100) -> list[Alert]:
        """Incidents, newest first."""
        with self.registry.context.store.read() as s:
            query = (select(AlertRow, AlertRuleRow.name, ModelRow.name)
                     .join(AlertRuleRow, AlertRuleRow.id == AlertRow.rule_id)
                     .join(ModelRow, ModelRow.id == AlertRow.model_id))
            if model is not None:
                query = query.where(ModelRow.name == model)
            if state is not None:
                query = query.where(AlertRow.state == state)
            if environment is not None:
                query = query.where(AlertRow.environment == environment)
            rows = s.execute(query.order_by(AlertRow.id.desc()).limit(limit)).all()
            return [_alert(row, rule, name) for row, rule, name in rows]

    def ack(self, alert_id: int, *, note: str = "") -> Alert:
        """Acknowledge an incident: a person has seen it (it stays firing until resolved)."""
        self.registry.require(Role.DEVELOPER, f"acknowledge alert {alert_id}")
        with self.registry.context.store.write() as s:
            row = s.get(AlertRow, alert_id)
            if row is None:
                raise AlertNotFound(f"No alert with id {alert_id}.",
                                      fix="See the ids with `mlops alerts list`.")
            rule = s.get(AlertRuleRow, row.rule_id)
            model = s.get(ModelRow, row.model_id)
            assert rule is not None and model is not None
            row.acked_by = self.registry.context.actor
            row.acked_at = datetime.now(UTC)
            append_event(s, actor=self.registry.context.actor, action="alert.ack",
                         subject=f"model/{model.name}/env/{row.environment}"
                         if row.environment else f"model/{model.name}",
                         payload={"alert": row.id, "rule": rule.name, "note": note})
            s.flush()
            return _alert(row, rule.name, model.name)
