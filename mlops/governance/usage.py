"""Usage audit: who used a model, how much, how well, and what happened around it.

:func:`audit_model_usage` reads what the platform recorded in a period and invents nothing:

- the prediction log: rows and requests per version and per caller (the token's identity,
  ``token:alice``, or ``address:10.0.0.7`` when inference is anonymous), failures, latency
  percentiles per request and the CPU time the model spent. Shadow predictions are counted
  for their version, never for a caller (the caller was answered by another version).
  Rows logged before callers were recorded count as ``unrecorded``.
- the audit chain: the model's security events (refused model files, trust overrides,
  overridden promotion rules) and the server's refused credentials in the period.
- the compliance status (SR 11-7 and EU AI Act summaries) of each version that served.

>>> audit = audit_model_usage(registry, "churn", since=start, until=end)  # doctest: +SKIP
>>> [(c.caller, c.predictions) for c in audit.callers]                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops.errors import GovernanceError
from mlops.governance.compliance import FRAMEWORKS, ItemStatus, compliance_report
from mlops.registry.service import ModelRegistry
from mlops.store.audit import AuditEvent
from mlops.store.catalog import audit_subject
from mlops.store.predlog import PREDICTIONS, LogReader, list_files, open_store, prediction_scan

__all__ = [
    "UNRECORDED",
    "CallerUsage",
    "ComplianceStatus",
    "SecurityEvent",
    "UsageAudit",
    "VersionUsage",
    "audit_model_usage",
    "parse_when",
]

#: the caller of rows logged before the log recorded callers
UNRECORDED = "unrecorded"

#: audit actions that are security events of a model (its subject) or of the server
_MODEL_ACTIONS = ("security.model_refused", "security.trust_override", "policy.override")
_SERVER_ACTIONS = ("security.auth_refused",)


@dataclass(frozen=True)
class VersionUsage:
    """One version's traffic in the period (``predictions`` are rows; shadow rows apart)."""

    version: str
    predictions: int
    requests: int
    failed: int  # rows the model failed on (logged with a non-200 status)
    shadow: int  # rows predicted on a copy of traffic, never returned to the caller
    error_rate: float
    latency_p50_ms: float | None  # per answered request
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    cpu_seconds: float | None  # None when the rows predate CPU accounting
    first: datetime
    last: datetime


@dataclass(frozen=True)
class CallerUsage:
    """One caller's requests in the period (shadow copies are not theirs)."""

    caller: str
    predictions: int
    requests: int
    failed: int
    versions: tuple[str, ...]


@dataclass(frozen=True)
class SecurityEvent:
    """A security-relevant audit event, with the id that finds it (``mlops audit log``)."""

    seq: int
    ts: str
    action: str
    actor: str
    subject: str
    summary: str


@dataclass(frozen=True)
class ComplianceStatus:
    """How many items of a framework a version meets today."""

    version: str
    framework: str
    met: int
    missing: int
    not_applicable: int
    missing_items: tuple[str, ...]


@dataclass(frozen=True)
class UsageAudit:
    model: str
    since: datetime
    until: datetime
    environment: str | None
    predictions: int
    requests: int
    failed: int
    error_rate: float
    versions: tuple[VersionUsage, ...]
    callers: tuple[CallerUsage, ...]
    security_events: tuple[SecurityEvent, ...]
    compliance: tuple[ComplianceStatus, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["since"], out["until"] = self.since.isoformat(), self.until.isoformat()
        for v in out["versions"]:
            v["first"], v["last"] = v["first"].isoformat(), v["last"].isoformat()
        return out


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def audit_model_usage(registry: ModelRegistry, name: str, since: datetime,
                      until: datetime | None = None, *, environment: str | None = None,
                      with_compliance: bool = True) -> UsageAudit:
    """The usage audit of ``name`` for ``[since, until)`` (naive times are UTC; ``until``
    defaults to now), in one ``environment`` or all. Raises :class:`ModelNotFound` for an
    unknown model and :class:`GovernanceError` for an empty or inverted period."""
    registry.get_model(name)
    start = _utc(since)
    end = _utc(until) if until is not None else datetime.now(UTC)
    if end <= start:
        raise GovernanceError(f"The audit period is empty: {start.isoformat()} is not before "
                              f"{end.isoformat()}.",
                              fix="Give --since earlier than --until (ISO dates or 7d/24h).")
    versions, callers = _log_usage(registry, name, start, end, environment)
    served = [v for v in versions if v.predictions > v.shadow]
    total = sum(v.predictions - v.shadow for v in versions)
    failed = sum(c.failed for c in callers)
    requests = sum(c.requests for c in callers)
    compliance: list[ComplianceStatus] = []
    if with_compliance:
        for v in served:
            for framework in FRAMEWORKS:
                report = compliance_report(registry, name, v.version, framework)
                counts = report.counts()
                compliance.append(ComplianceStatus(
                    v.version, framework, counts[ItemStatus.MET.value],
                    counts[ItemStatus.MISSING.value], counts[ItemStatus.NOT_APPLICABLE.value],
                    tuple(i.title for i in report.items if i.status is ItemStatus.MISSING)))
    return UsageAudit(name, start, end, environment, total, requests, failed,
                      failed / total if total else 0.0, tuple(versions), tuple(callers),
                      tuple(_security_events(registry, name, start, end)), tuple(compliance))


# ---------------------------------------------------------------------------- the log


_PER_REQUEST = """
    SELECT version, request_id, ts AS logged_at, route,
           coalesce({caller}, $unrecorded) AS caller,
           count(*) AS n_rows, sum(CASE WHEN status <> 200 THEN 1 ELSE 0 END) AS n_failed,
           max(latency_ms) AS latency_ms, sum({cpu}) AS cpu_ms, count({cpu}) AS n_cpu,
           min(ts) AS first_ts, max(ts) AS last_ts
    FROM ({scan}) GROUP BY ALL
"""


def _log_usage(registry: ModelRegistry, name: str, start: datetime, end: datetime,
               environment: str | None) -> tuple[list[VersionUsage], list[CallerUsage]]:
    store = open_store(registry.settings.artifacts_uri)
    files = list_files(store, PREDICTIONS, name, first_day=start.date().isoformat(),
                       last_day=end.date().isoformat())
    if not files:
        return [], []
    scan = prediction_scan(files, start=start, end=end, environment=environment,
                           union_by_name=True)
    params = {**scan.params, "unrecorded": UNRECORDED}
    with LogReader(store) as reader:
        present = reader.columns(scan)  # files from before callers and CPU were recorded
        per_request = _PER_REQUEST.format(
            scan=scan.sql, caller="caller" if "caller" in present else "NULL",
            cpu="cpu_ms" if "cpu_ms" in present else "CAST(NULL AS DOUBLE)")
        version_rows = reader.fetchall(f"""
            SELECT version, sum(n_rows), count(*) FILTER (WHERE route <> 'shadow'),
                   sum(n_failed), sum(n_rows) FILTER (WHERE route = 'shadow'),
                   quantile_cont(latency_ms, [0.5, 0.95, 0.99])
                       FILTER (WHERE n_failed = 0 AND route <> 'shadow'),
                   sum(cpu_ms), sum(n_cpu), min(first_ts), max(last_ts)
            FROM ({per_request}) GROUP BY version ORDER BY version""", params)
        caller_rows = reader.fetchall(f"""
            SELECT caller, sum(n_rows), count(*), sum(n_failed), list(DISTINCT version)
            FROM ({per_request}) WHERE route <> 'shadow'
            GROUP BY caller ORDER BY sum(n_rows) DESC, caller""", params)
    versions = []
    for (version, rows, requests, failed, shadow, quantiles, cpu, n_cpu, first,
         last) in version_rows:
        p50, p95, p99 = quantiles if quantiles is not None else (None, None, None)
        versions.append(VersionUsage(
            str(version), int(rows), int(requests or 0), int(failed or 0), int(shadow or 0),
            int(failed or 0) / int(rows) if rows else 0.0, p50, p95, p99,
            float(cpu) / 1000.0 if n_cpu else None, _utc(first), _utc(last)))
    callers = [CallerUsage(str(caller), int(rows), int(requests), int(failed or 0),
                           tuple(sorted(str(v) for v in used)))
               for caller, rows, requests, failed, used in caller_rows]
    return versions, callers


# ---------------------------------------------------------------------------- the chain


def _summary(event: AuditEvent) -> str:
    p = event.payload
    if event.action == "security.model_refused":
        return (f"model file refused at {p.get('when', '?')}: "
                f"{', '.join(map(str, p.get('offending', []))) or p.get('message', '')}")
    if event.action == "security.trust_override":
        return (f"trust override at {p.get('when', '?')} for a {p.get('format', '?')} file "
                f"importing {', '.join(map(str, p.get('offending', [])))}")
    if event.action == "security.auth_refused":
        clients = p.get("clients", {})
        top = sorted(clients.items(), key=lambda kv: -int(kv[1]))[:3] \
            if isinstance(clients, dict) else []
        return f"{p.get('refused', '?')} refused credentials from " + ", ".join(
            f"{c} ({n})" for c, n in top)
    if event.action == "policy.override":
        return f"promotion rule overridden: {p.get('reason', '')}".rstrip(": ")
    return event.action


def _security_events(registry: ModelRegistry, name: str, start: datetime, end: datetime
                     ) -> list[SecurityEvent]:
    found: list[AuditEvent] = []
    for action in _MODEL_ACTIONS:
        found += registry.audit_log(subject=audit_subject(name), action=action, limit=None,
                                    since=start, until=end)
    for action in _SERVER_ACTIONS:
        found += registry.audit_log(action=action, limit=None, since=start, until=end)
    found.sort(key=lambda e: e.seq)
    return [SecurityEvent(e.seq, e.ts, e.action, e.actor, e.subject, _summary(e))
            for e in found]


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """A CLI time: ISO 8601 (a date or a date and time; naive is UTC) or a duration
    before now (``30d``, ``12h``, ``45m``). :class:`GovernanceError` otherwise."""
    value = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(value) > 1 and value[-1] in units and value[:-1].isdigit():
        try:
            return (now or datetime.now(UTC)) - timedelta(
                **{units[value[-1]]: int(value[:-1])})
        except (OverflowError, ValueError) as exc:
            raise GovernanceError(f"{text!r} reaches before the year 1.",
                                  fix="Use a shorter duration (e.g. 365d) or a date.") from exc
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError as exc:
        raise GovernanceError(f"{text!r} is not a time.",
                              fix="Use an ISO date or time (2026-11-01, "
                                  "2026-11-01T12:00:00Z) or a duration before now "
                                  "(30d, 12h, 45m).") from exc
