"""Retraining rows: each model's configuration, the job queue, and the decisions.

Session-level functions: the caller opens the transaction (``ctx.store.write()``), so a
change and its audit event commit together. Events: ``retrain.config.set|delete``,
``retrain.job.queue`` (a new job, with its reasons), ``retrain.job.join`` (reasons added to
a queued job), ``retrain.job.start``, ``retrain.job.finish`` (state, outcome, wall time,
peak memory), ``retrain.job.cancel``; the subject is ``model/NAME/retrain/JOB``.

**Never twice at once.** :func:`claim_next` moves a job from ``queued`` to ``running`` with
a conditional ``UPDATE ... WHERE state = 'queued'`` inside the serialised write
transaction: of two processes claiming the same job one gets it, the other nothing; and a
model never has two running jobs. :func:`finish_job` and :func:`heartbeat` only touch a job
the caller holds (``holder``), so a process whose job was declared interrupted cannot
overwrite what happened since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mlops.errors import RegistryError
from mlops.store.audit import append_event
from mlops.store.catalog import audit_subject, model_row
from mlops.store.egress import redact_secrets
from mlops.store.schema import (
    ModelRow,
    RetrainConfigRow,
    RetrainDecisionRow,
    RetrainJobRow,
    utcnow,
)

__all__ = [
    "PRIORITIES",
    "ConfigRecord",
    "HistoryRecord",
    "JobState",
    "RetrainDecision",
    "RetrainJob",
    "callback_of",
    "claim_next",
    "configured_models",
    "delete_config",
    "finish_job",
    "get_config",
    "get_job",
    "heartbeat",
    "interrupt_stale",
    "job_subject",
    "job_token_hash",
    "list_decisions",
    "list_jobs",
    "put_config",
    "queue_job",
    "record_callback",
    "record_decision",
    "record_deploy",
    "request_cancel",
    "set_pid",
    "trigger_history",
]

#: priority names, most urgent first (stored as their rank)
PRIORITIES = ("critical", "high", "medium", "low")


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # trained, registered and taken through the pipeline
    FAILED = "failed"  # the command, the registration or the pipeline failed
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its process stopped (server restart) before it finished

    @property
    def done(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class ConfigRecord:
    model: str
    spec: dict[str, Any]
    source: str
    updated_by: str
    updated_at: datetime


@dataclass(frozen=True)
class RetrainJob:
    id: int
    model: str
    state: JobState
    priority: str
    reasons: list[dict[str, Any]]
    created_by: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    holder: str = ""
    pid: int | None = None
    cancel_requested: bool = False
    wall_seconds: float | None = None
    peak_rss_mb: float | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return None if t is None else t.isoformat()

        return {"id": self.id, "model": self.model, "state": self.state.value,
                "priority": self.priority, "reasons": self.reasons,
                "created_by": self.created_by, "created_at": iso(self.created_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
                "attempts": self.attempts, "holder": self.holder, "pid": self.pid,
                "cancel_requested": self.cancel_requested,
                "wall_seconds": self.wall_seconds, "peak_rss_mb": self.peak_rss_mb,
                "outcome": self.outcome}


@dataclass(frozen=True)
class RetrainDecision:
    model: str
    trigger: str
    decision: str  # queued | joined | skipped
    reason: str
    job_id: int | None
    count: int
    first_at: datetime
    last_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "trigger": self.trigger, "decision": self.decision,
                "reason": self.reason, "job": self.job_id, "count": self.count,
                "first_at": self.first_at.isoformat(), "last_at": self.last_at.isoformat()}


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def job_subject(model: str, job_id: int) -> str:
    return f"{audit_subject(model)}/retrain/{job_id}"


def _job(row: RetrainJobRow, model: str) -> RetrainJob:
    return RetrainJob(row.id, model, JobState(row.state), PRIORITIES[row.priority],
                      list(row.reasons or []), row.created_by, _utc(row.created_at)
                      or utcnow(), _utc(row.started_at), _utc(row.finished_at), row.attempts,
                      row.holder, row.pid, row.cancel_requested, row.wall_seconds,
                      row.peak_rss_mb, dict(row.outcome or {}))


def _name(session: Session, model_id: int) -> str:
    return str(session.scalar(select(ModelRow.name).where(ModelRow.id == model_id)))


# ---------------------------------------------------------------------------- configs


def put_config(session: Session, model: str, spec: Mapping[str, Any], source: str, *,
               actor: str) -> ConfigRecord:
    """Store (replace) ``model``'s validated configuration."""
    mrow = model_row(session, model)
    row = session.get(RetrainConfigRow, mrow.id)
    before = None if row is None else dict(row.spec)
    if row is None:
        row = RetrainConfigRow(model_id=mrow.id)
        session.add(row)
    row.spec, row.source, row.updated_by, row.updated_at = dict(spec), source, actor, utcnow()
    session.flush()
    append_event(session, actor=actor, action="retrain.config.set",
                 subject=f"{audit_subject(model)}/retrain",
                 payload={"spec": redact_secrets(dict(spec)), "replaced": before is not None})
    return ConfigRecord(model, dict(spec), source, actor, row.updated_at)


def get_config(session: Session, model: str) -> ConfigRecord | None:
    mrow = model_row(session, model)
    row = session.get(RetrainConfigRow, mrow.id)
    if row is None:
        return None
    return ConfigRecord(model, dict(row.spec), row.source, row.updated_by,
                        _utc(row.updated_at) or utcnow())


def delete_config(session: Session, model: str, *, actor: str) -> bool:
    """Remove ``model``'s configuration (its jobs and decisions stay); False if none."""
    mrow = model_row(session, model)
    row = session.get(RetrainConfigRow, mrow.id)
    if row is None:
        return False
    session.delete(row)
    append_event(session, actor=actor, action="retrain.config.delete",
                 subject=f"{audit_subject(model)}/retrain")
    return True


def configured_models(session: Session) -> list[str]:
    """Models with a retraining configuration, by name."""
    return sorted(session.scalars(select(ModelRow.name).join(
        RetrainConfigRow, RetrainConfigRow.model_id == ModelRow.id)))



# ---------------------------------------------------------------------------- jobs


def _rank(priority: str) -> int:
    if priority not in PRIORITIES:
        raise RegistryError(f"Unknown priority {priority!r}.",
                            fix=f"Use one of {', '.join(PRIORITIES)}.")
    return PRIORITIES.index(priority)


def queue_job(session: Session, model: str, reasons: Sequence[Mapping[str, Any]], *,
              priority: str, actor: str) -> tuple[RetrainJob, bool]:
    """Queue a job for ``model``, or, when one is queued already (not yet running), add
    ``reasons`` to it and raise its priority: several signals make one job. Returns the job
    and whether it was joined."""
    mrow = model_row(session, model)
    rank = _rank(priority)
    row = session.scalar(select(RetrainJobRow).where(
        RetrainJobRow.model_id == mrow.id, RetrainJobRow.state == JobState.QUEUED.value
    ).order_by(RetrainJobRow.id).limit(1))
    items = [dict(r) for r in reasons]
    if row is not None:
        known = {(r.get("trigger"), r.get("reason")) for r in row.reasons or []}
        row.reasons = [*(row.reasons or []), *(r for r in items
                                                if (r.get("trigger"), r.get("reason"))
                                                not in known)]
        row.priority = min(row.priority, rank)
        session.flush()
        append_event(session, actor=actor, action="retrain.job.join",
                     subject=job_subject(model, row.id),
                     payload={"reasons": items, "priority": PRIORITIES[row.priority]})
        return _job(row, model), True
    row = RetrainJobRow(model_id=mrow.id, state=JobState.QUEUED.value, priority=rank,
                        reasons=items, created_by=actor, created_at=utcnow(), outcome={})
    session.add(row)
    session.flush()
    append_event(session, actor=actor, action="retrain.job.queue",
                 subject=job_subject(model, row.id),
                 payload={"reasons": items, "priority": priority})
    return _job(row, model), False


def claim_next(session: Session, holder: str, *, limit: int,
               exclude_models: Iterable[str] = ()) -> RetrainJob | None:
    """Start the most urgent queued job (oldest first within a priority) when fewer than
    ``limit`` run, skipping models that already run one and ``exclude_models`` (e.g. a
    rollout in progress). None when nothing may start."""
    running = session.scalar(select(func.count()).select_from(RetrainJobRow).where(
        RetrainJobRow.state == JobState.RUNNING.value)) or 0
    if running >= limit:
        return None
    busy = set(session.scalars(select(RetrainJobRow.model_id).where(
        RetrainJobRow.state == JobState.RUNNING.value)))
    excluded = set(exclude_models)
    rows = session.execute(select(RetrainJobRow.id, RetrainJobRow.model_id, ModelRow.name)
                           .join(ModelRow, ModelRow.id == RetrainJobRow.model_id)
                           .where(RetrainJobRow.state == JobState.QUEUED.value)
                           .order_by(RetrainJobRow.priority, RetrainJobRow.created_at,
                                     RetrainJobRow.id)).all()
    now = utcnow()
    for job_id, model_id, name in rows:
        if model_id in busy or name in excluded:
            continue
        done = session.execute(
            update(RetrainJobRow).where(RetrainJobRow.id == job_id,
                                        RetrainJobRow.state == JobState.QUEUED.value)
            .values(state=JobState.RUNNING.value, holder=holder, started_at=now,
                    heartbeat_at=now, attempts=RetrainJobRow.attempts + 1))
        if getattr(done, "rowcount", 0) != 1:
            continue  # another process took it first
        row = session.get(RetrainJobRow, job_id)
        assert row is not None
        session.refresh(row)
        append_event(session, actor=f"system:{holder}", action="retrain.job.start",
                     subject=job_subject(name, job_id), payload={"attempt": row.attempts})
        return _job(row, name)
    return None


def _held(session: Session, job_id: int, holder: str) -> RetrainJobRow | None:
    row = session.get(RetrainJobRow, job_id)
    if row is None or row.state != JobState.RUNNING.value or row.holder != holder:
        return None
    return row


def heartbeat(session: Session, job_id: int, holder: str) -> bool:
    """Note that ``holder`` still runs the job; False when it no longer holds it, or when
    a cancel was asked for (the caller stops the job)."""
    row = _held(session, job_id, holder)
    if row is None:
        return False
    row.heartbeat_at = utcnow()
    return not row.cancel_requested


def set_pid(session: Session, job_id: int, holder: str, pid: int | None,
            token_hash: str | None = None) -> None:
    row = _held(session, job_id, holder)
    if row is not None:
        row.pid = pid
        if token_hash is not None:
            row.token_hash = token_hash


def finish_job(session: Session, job_id: int, holder: str, state: JobState, *,
               outcome: Mapping[str, Any], log: str = "", wall_seconds: float | None = None,
               peak_rss_mb: float | None = None) -> RetrainJob | None:
    """Record how a held job ended (None when ``holder`` no longer holds it)."""
    if not state.done:
        raise ValueError(f"{state} is not a final state")
    row = _held(session, job_id, holder)
    if row is None:
        return None
    row.state, row.finished_at, row.outcome = state.value, utcnow(), dict(outcome)
    row.log, row.wall_seconds, row.peak_rss_mb, row.pid = log, wall_seconds, peak_rss_mb, None
    row.token_hash = None
    session.flush()
    name = _name(session, row.model_id)
    append_event(session, actor=f"system:{holder}", action="retrain.job.finish",
                 subject=job_subject(name, job_id),
                 payload={"state": state.value, "outcome": dict(outcome),
                          "wall_seconds": wall_seconds, "peak_rss_mb": peak_rss_mb})
    return _job(row, name)


def request_cancel(session: Session, model: str | None, job_id: int, *, actor: str
                   ) -> RetrainJob:
    """Cancel a queued job at once; ask a running one to stop (its runner kills it)."""
    row = session.get(RetrainJobRow, job_id)
    if row is None or (model is not None and row.model_id != model_row(session, model).id):
        raise RegistryError(f"No retraining job {job_id}.",
                            fix="List them with `mlops retrain jobs`.")
    name = _name(session, row.model_id)
    state = JobState(row.state)
    if state.done:
        raise RegistryError(f"Job {job_id} has ended ({state.value}); nothing to cancel.",
                            fix="Queue a new one with `mlops retrain run`.")
    if state is JobState.QUEUED:
        row.state, row.finished_at = JobState.CANCELLED.value, utcnow()
        row.outcome = {"cancelled_by": actor}
    else:
        row.cancel_requested = True
    session.flush()
    append_event(session, actor=actor, action="retrain.job.cancel",
                 subject=job_subject(name, job_id), payload={"was": state.value})
    return _job(row, name)


def interrupt_stale(session: Session, *, older_than: datetime, requeue: Iterable[str] = (),
                    actor: str = "system:retrain") -> list[RetrainJob]:
    """Running jobs whose holder stopped beating before ``older_than`` (a server restart,
    a crash) become ``interrupted``; those of models in ``requeue`` are queued again as a
    new job with the same reasons. Returns the interrupted jobs."""
    again = set(requeue)
    rows = session.scalars(select(RetrainJobRow).where(
        RetrainJobRow.state == JobState.RUNNING.value,
        (RetrainJobRow.heartbeat_at < older_than) | RetrainJobRow.heartbeat_at.is_(None)
    )).all()
    out = []
    for row in rows:
        name = _name(session, row.model_id)
        row.state, row.finished_at = JobState.INTERRUPTED.value, utcnow()
        row.outcome = {**(row.outcome or {}), "interrupted": "its process stopped beating "
                       f"(holder {row.holder}) before it finished"}
        session.flush()
        append_event(session, actor=actor, action="retrain.job.finish",
                     subject=job_subject(name, row.id),
                     payload={"state": JobState.INTERRUPTED.value, "holder": row.holder})
        if name in again and not row.cancel_requested:
            queue_job(session, name, [*row.reasons, {"trigger": "requeue",
                                                     "reason": f"job {row.id} was interrupted"}],
                      priority=PRIORITIES[row.priority], actor=actor)
        out.append(_job(row, name))
    return out


def get_job(session: Session, job_id: int) -> tuple[RetrainJob, str]:
    """A job and its captured log."""
    row = session.get(RetrainJobRow, job_id)
    if row is None:
        raise RegistryError(f"No retraining job {job_id}.",
                            fix="List them with `mlops retrain jobs`.")
    return _job(row, _name(session, row.model_id)), row.log


def job_token_hash(session: Session, job_id: int) -> str | None:
    """The hash of a running webhook job's callback token (None otherwise)."""
    row = session.get(RetrainJobRow, job_id)
    if row is None or row.state != JobState.RUNNING.value:
        return None
    return row.token_hash



def record_callback(session: Session, job_id: int, payload: Mapping[str, Any]) -> bool:
    """Keep what a webhook job's orchestrator reported (once; the job's runner picks it
    up). False when the job is not running or reported already."""
    row = session.get(RetrainJobRow, job_id)
    if row is None or row.state != JobState.RUNNING.value or "callback" in (row.outcome or {}):
        return False
    row.outcome = {**(row.outcome or {}), "callback": dict(payload)}
    name = _name(session, row.model_id)
    append_event(session, actor=f"system:job-{job_id}", action="retrain.job.callback",
                 subject=job_subject(name, job_id),
                 payload={"status": payload.get("status"),
                          "model_path": payload.get("model_path")})
    return True


def record_deploy(session: Session, job_id: int, deploy: Mapping[str, Any], *,
                  actor: str) -> None:
    """Record that a finished job's version was shipped later (after its approvals)."""
    row = session.get(RetrainJobRow, job_id)
    if row is None:
        return
    row.outcome = {**(row.outcome or {}), "deploy": dict(deploy)}
    append_event(session, actor=actor, action="retrain.job.deploy",
                 subject=job_subject(_name(session, row.model_id), job_id),
                 payload={"deploy": dict(deploy)})


def callback_of(session: Session, job_id: int) -> dict[str, Any] | None:
    """The reported outcome of a webhook job (None while it has not reported)."""
    row = session.get(RetrainJobRow, job_id)
    if row is None:
        return None
    found = (row.outcome or {}).get("callback")
    return dict(found) if isinstance(found, dict) else None


def list_jobs(session: Session, model: str | None = None, *, states: Iterable[str] | None
              = None, limit: int = 50) -> list[RetrainJob]:
    """Jobs, newest first."""
    query = select(RetrainJobRow, ModelRow.name).join(
        ModelRow, ModelRow.id == RetrainJobRow.model_id)
    if model is not None:
        query = query.where(RetrainJobRow.model_id == model_row(session, model).id)
    if states is not None:
        query = query.where(RetrainJobRow.state.in_([str(s) for s in states]))
    rows = session.execute(query.order_by(RetrainJobRow.id.desc()).limit(limit)).all()
    return [_job(row, name) for row, name in rows]


# ---------------------------------------------------------------------------- decisions


def record_decision(session: Session, model: str, trigger: str, decision: str, reason: str,
                    job_id: int | None = None) -> None:
    """Record a decision; a skip that repeats the model's last decision for this trigger
    (same reason) only counts up on that row."""
    mrow = model_row(session, model)
    now = utcnow()
    last = session.scalar(select(RetrainDecisionRow).where(
        RetrainDecisionRow.model_id == mrow.id, RetrainDecisionRow.trigger == trigger
    ).order_by(RetrainDecisionRow.id.desc()).limit(1))
    if decision == "skipped" and last is not None and last.decision == "skipped" \
            and last.reason == reason:
        last.count += 1
        last.last_at = now
        return
    session.add(RetrainDecisionRow(model_id=mrow.id, trigger=trigger, decision=decision,
                                   reason=reason, job_id=job_id, count=1, first_at=now,
                                   last_at=now))


def list_decisions(session: Session, model: str, *, limit: int = 50
                   ) -> list[RetrainDecision]:
    mrow = model_row(session, model)
    rows = session.scalars(select(RetrainDecisionRow).where(
        RetrainDecisionRow.model_id == mrow.id).order_by(RetrainDecisionRow.id.desc())
        .limit(limit))
    return [RetrainDecision(model, r.trigger, r.decision, r.reason, r.job_id, r.count,
                            _utc(r.first_at) or utcnow(), _utc(r.last_at) or utcnow())
            for r in rows]


@dataclass(frozen=True)
class HistoryRecord:
    """What the trigger evaluation needs to know of a model's past jobs and decisions."""

    last_fired: dict[str, datetime]
    fired_today: dict[str, int]
    model_runs_today: int
    last_training: datetime | None



def trigger_history(session: Session, model: str, now: datetime) -> HistoryRecord:
    """When each trigger last queued (or joined) a job, how many it did in the last 24 h,
    the model's jobs in the last 24 h, and when its last job succeeded."""
    mrow = model_row(session, model)
    day_ago = now - timedelta(days=1)
    last_fired: dict[str, datetime] = {}
    fired_today: dict[str, int] = {}
    for trigger, at in session.execute(
            select(RetrainDecisionRow.trigger, RetrainDecisionRow.last_at).where(
                RetrainDecisionRow.model_id == mrow.id,
                RetrainDecisionRow.decision.in_(["queued", "joined"]))):
        moment = _utc(at) or now
        if trigger not in last_fired or moment > last_fired[trigger]:
            last_fired[trigger] = moment
        if moment >= day_ago:
            fired_today[trigger] = fired_today.get(trigger, 0) + 1
    runs = session.scalar(select(func.count()).select_from(RetrainJobRow).where(
        RetrainJobRow.model_id == mrow.id, RetrainJobRow.created_at >= day_ago,
        RetrainJobRow.state != JobState.CANCELLED.value)) or 0
    last = session.scalar(select(func.max(RetrainJobRow.finished_at)).where(
        RetrainJobRow.model_id == mrow.id, RetrainJobRow.state == JobState.SUCCEEDED.value))
    return HistoryRecord(last_fired, fired_today, int(runs), _utc(last))
