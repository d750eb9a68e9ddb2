"""Retention: how long the prediction log, feedback and metric snapshots are kept, the run
that deletes what is older (recorded in the audit chain), and compaction of the log's files.

The policy comes from the settings (``retention_days``, 365 by default as in seed 000, and
per-kind overrides ``retention_predictions_days``, ``retention_feedback_days``,
``retention_snapshots_days``). A whole UTC day is expired when it is before the kind's
*cutoff* ``today - days``: the cutoff day itself is kept. Prediction and feedback day
partitions are deleted as folders (:mod:`mlops.store.predlog.maintenance` knows the files);
metric snapshots whose window ended before the cutoff are deleted as rows. The audit chain
is never purged.

:func:`apply_retention` writes one ``retention.apply`` audit event (the policy, the cutoffs,
the partitions deleted, the snapshot count) in the transaction that deletes the snapshots,
after the partitions are gone. A journal written before the first deletion makes a run
that stopped half-way complete at the next run, which records what both deleted; a
partition is deleted only while it is expired under the policy in force. An expired
partition goes whole, compacted files and manifests included.

:func:`compact_prediction_log` merges each partition's small files (see the maintenance
module for why no query result changes) flushed at least
:data:`~mlops.store.predlog.maintenance.COMPACT_MIN_AGE` (one day) ago: a shorter
``min_age`` is refused, because an incremental reader (the rollout controller) could count
rows it has read again. A merge keeps its source files, hidden from every reader, for
:data:`~mlops.store.predlog.maintenance.SOURCE_GRACE` (one hour), for the readers that
listed them just before; the next compaction or retention run after that deletes them.
Both take the ``log-maintenance`` lease, so they never run at the same time as each other
or as themselves in another process.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from mlops.config import Settings
from mlops.errors import GovernanceError
from mlops.identity import Role
from mlops.monitoring.snapshots import count_snapshots_before, delete_snapshots_before
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event, list_events
from mlops.store.leases import Lease
from mlops.store.predlog import FEEDBACK, PREDICTIONS, open_store
from mlops.store.predlog.maintenance import (
    COMPACT_MIN_AGE,
    SOURCE_GRACE,
    CompactionOutcome,
    Partition,
    clean_compacted,
    compact_log,
    delete_partition,
    finish_purge,
    list_partitions,
    pending_purges,
    start_purge,
)

__all__ = [
    "AUDIT_SUBJECT",
    "KINDS",
    "LEASE_NAME",
    "CompactionReport",
    "RetentionPolicy",
    "RetentionResult",
    "apply_retention",
    "compact_prediction_log",
    "retention_policy",
]

#: What retention applies to: the log's two kinds and the metric snapshots.
KINDS = ("predictions", "feedback", "snapshots")
#: Subject of the retention and compaction audit events.
AUDIT_SUBJECT = "retention"
#: One maintenance run at a time (retention and compaction share it).
LEASE_NAME = "log-maintenance"
_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class RetentionPolicy:
    """Days each kind is kept (``default_days`` is ``retention_days``)."""

    predictions_days: int
    feedback_days: int
    snapshots_days: int
    default_days: int

    def days(self, kind: str) -> int:
        return {"predictions": self.predictions_days, "feedback": self.feedback_days,
                "snapshots": self.snapshots_days}[kind]

    def cutoffs(self, today: date) -> dict[str, date]:
        """The first day kept of each kind: days before it are expired."""
        return {kind: today - timedelta(days=self.days(kind)) for kind in KINDS}

    def to_dict(self) -> dict[str, int]:
        return {"retention_days": self.default_days,
                "predictions_days": self.predictions_days,
                "feedback_days": self.feedback_days, "snapshots_days": self.snapshots_days}


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The policy the settings define (a per-kind value overrides ``retention_days``)."""
    default = settings.retention_days
    return RetentionPolicy(
        predictions_days=settings.retention_predictions_days or default,
        feedback_days=settings.retention_feedback_days or default,
        snapshots_days=settings.retention_snapshots_days or default,
        default_days=default)


@dataclass(frozen=True)
class RetentionResult:
    """What a retention run deleted (or, with ``dry_run``, would delete).

    ``partitions`` are the day folders gone after the run (including those a stopped run
    had set out to delete, whose runs are ``resumed``); ``abandoned`` are partitions a
    stopped run had listed that the policy in force keeps (that run may have deleted part
    of them). ``audit_seq`` is the ``retention.apply`` event (None for a dry run).
    ``sources_deleted`` counts the source files of compactions past their grace that the
    run deleted (would delete), ``sources_waiting`` those still in their grace (hidden from
    readers; a later run deletes them)."""

    policy: RetentionPolicy
    today: date
    cutoffs: Mapping[str, date]
    partitions: tuple[Partition, ...]
    snapshots: int
    dry_run: bool
    run: str | None = None
    resumed: tuple[str, ...] = ()
    abandoned: tuple[Partition, ...] = ()
    audit_seq: int | None = None
    sources_deleted: int = 0
    sources_waiting: int = 0

    def count(self, kind: str) -> int:
        """Partitions of ``kind`` (``predictions``/``feedback``) in :attr:`partitions`."""
        return sum(1 for p in self.partitions if p.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "today": self.today.isoformat(),
                "cutoffs": {k: v.isoformat() for k, v in self.cutoffs.items()},
                "dry_run": self.dry_run, "run": self.run, "resumed": list(self.resumed),
                "partitions": [p.to_dict() for p in self.partitions],
                "abandoned": [p.to_dict() for p in self.abandoned],
                "snapshots": self.snapshots, "audit_seq": self.audit_seq,
                "sources_deleted": self.sources_deleted,
                "sources_waiting": self.sources_waiting}


def _today(now: datetime | None) -> tuple[datetime, date]:
    now = datetime.now(UTC) if now is None else (
        now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC))
    return now, now.date()


def _lease(registry: ModelRegistry) -> Lease:
    lease = Lease(registry.context.store, LEASE_NAME, seconds=_LEASE_SECONDS)
    if not lease.acquire():
        raise GovernanceError(
            "Another retention or compaction run holds the log-maintenance lease.",
            fix="Wait for it to finish (a run that died frees it within a minute) and run "
                "the command again.")
    return lease


def apply_retention(registry: ModelRegistry, *, dry_run: bool = False,
                    now: datetime | None = None) -> RetentionResult:
    """Delete the expired prediction and feedback day partitions and metric snapshots, and
    record them in one ``retention.apply`` audit event (see the module docstring); also
    delete the source files of compactions past their grace in the partitions kept. With
    ``dry_run`` list what would go and change nothing. Needs the admin role (not for a
    dry run)."""
    ctx = registry.context
    if not dry_run:
        ctx.require(Role.ADMIN, "apply the retention policy")
    policy = retention_policy(ctx.settings)
    now, today = _today(now)
    cutoffs = policy.cutoffs(today)
    snapshot_cutoff = datetime.combine(cutoffs["snapshots"], time(), UTC)
    store = open_store(ctx.settings.artifacts_uri)

    def expired(p: Partition) -> bool:
        return p.day < cutoffs[p.kind].isoformat()

    def plan() -> tuple[list[Partition], list[str], list[Partition], list[str]]:
        """(partitions to delete, runs resumed, abandoned partitions, runs already
        recorded)."""
        todo: dict[str, Partition] = {}
        for kind in (PREDICTIONS, FEEDBACK):
            for p in list_partitions(store, kind, before_day=cutoffs[kind].isoformat()):
                todo[p.relative] = p
        with ctx.store.read() as s:
            recorded: set[str] = set()
            for event in list_events(s, action="retention.apply", subject=AUDIT_SUBJECT,
                                     limit=200):
                recorded.add(str(event.payload.get("run")))
                recorded.update(str(r) for r in event.payload.get("resumed", []))
        resumed: list[str] = []
        done: list[str] = []
        abandoned: dict[str, Partition] = {}
        for journal in pending_purges(store):
            if journal.run in recorded:  # stopped after its event: only the journal is left
                done.append(journal.run)
                continue
            resumed.append(journal.run)
            for p in journal.partitions:
                if expired(p):
                    todo.setdefault(p.relative, p)
                else:
                    abandoned[p.relative] = p
        return (sorted(todo.values(), key=lambda p: p.relative), resumed,
                sorted(abandoned.values(), key=lambda p: p.relative), done)

    def clean(todo: list[Partition], dry: bool) -> tuple[int, int]:
        """(compacted sources deleted, still waiting) in the partitions kept."""
        outcomes = clean_compacted(store, now=now, dry_run=dry,
                                   exclude={p.relative for p in todo})
        return (sum(o.sources_deleted for o in outcomes),
                sum(o.sources_waiting for o in outcomes))

    if dry_run:
        todo, resumed, abandoned, _ = plan()
        deleted, waiting = clean(todo, True)
        with ctx.store.read() as s:
            n = count_snapshots_before(s, snapshot_cutoff)
        return RetentionResult(policy, today, cutoffs, tuple(todo), n, True, None,
                               tuple(resumed), tuple(abandoned), sources_deleted=deleted,
                               sources_waiting=waiting)

    lease = _lease(registry)
    try:
        with lease.heartbeat():
            todo, resumed, abandoned, done = plan()
            for run in done:
                finish_purge(store, run)
            # before the journal: a failure here leaves nothing half-recorded
            deleted, waiting = clean(todo, False)
            run = uuid.uuid4().hex
            if todo:
                start_purge(store, run, todo, now=now)
            for p in todo:
                if not expired(p):  # never: planned from the cutoff; checked once more
                    raise GovernanceError(f"Refusing to delete {p.relative}: it is not "
                                          "expired.", fix="Report this as a bug.")
                delete_partition(store, p)
            payload = {
                "run": run, "resumed": resumed, "policy": policy.to_dict(),
                "today": today.isoformat(),
                "cutoffs": {k: v.isoformat() for k, v in cutoffs.items()},
                "rule": "a day before its kind's cutoff is deleted; the cutoff day is kept",
                "partitions": [p.to_dict() for p in todo],
                "abandoned": [p.to_dict() for p in abandoned],
                "compacted_sources_deleted": deleted,
            }
            with ctx.store.write() as s:
                lease.check(s)
                n = delete_snapshots_before(s, snapshot_cutoff)
                event = append_event(s, actor=ctx.actor, action="retention.apply",
                                     subject=AUDIT_SUBJECT,
                                     payload={**payload, "snapshots_deleted": n})
            if todo:
                finish_purge(store, run)
            for old in resumed:
                finish_purge(store, old)
    finally:
        lease.release()
    return RetentionResult(policy, today, cutoffs, tuple(todo), n, False, run,
                           tuple(resumed), tuple(abandoned), event.seq, deleted, waiting)


@dataclass(frozen=True)
class CompactionReport:
    """The outcome of each partition a compaction touched (partitions with nothing to do
    are left out), the flush time before which files were merged, and the audit event
    (``retention.compact``, when something was compacted or deleted)."""

    outcomes: tuple[CompactionOutcome, ...]
    settled_before: datetime
    dry_run: bool
    audit_seq: int | None = None

    @property
    def merged(self) -> tuple[CompactionOutcome, ...]:
        """Merges done (or, with ``dry_run``, to do)."""
        return tuple(o for o in self.outcomes if o.status in ("compacted", "would_compact"))

    @property
    def skipped(self) -> tuple[CompactionOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "skipped")

    @property
    def sources_deleted(self) -> int:
        """Source files of earlier merges, past their grace, deleted (would be deleted)."""
        return sum(o.sources_deleted for o in self.outcomes)

    @property
    def sources_waiting(self) -> int:
        """Source files that stay after the run, hidden, until their grace has passed (the
        sources of this run's merges included); a later run deletes them."""
        return sum(o.sources_waiting for o in self.outcomes)

    @property
    def files_before(self) -> int:
        return sum(len(o.sources) for o in self.merged)

    @property
    def files_after(self) -> int:
        return len(self.merged)

    def to_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "settled_before": self.settled_before.isoformat(),
                "files_before": self.files_before, "files_after": self.files_after,
                "sources_deleted": self.sources_deleted,
                "sources_waiting": self.sources_waiting,
                "source_grace_seconds": SOURCE_GRACE.total_seconds(),
                "audit_seq": self.audit_seq,
                "outcomes": [o.to_dict() for o in self.outcomes]}


def compact_prediction_log(registry: ModelRegistry, model: str | None = None, *,
                           dry_run: bool = False, min_age: timedelta = COMPACT_MIN_AGE,
                           now: datetime | None = None) -> CompactionReport:
    """Merge the small files of each prediction and feedback partition (of ``model`` or
    all) flushed more than ``min_age`` ago, and delete the source files of earlier merges
    past their grace; no query result changes. ``min_age`` is at least
    :data:`COMPACT_MIN_AGE` (one day; tests inject ``now`` instead). Needs the admin role
    (not for a dry run)."""
    ctx = registry.context
    if min_age < COMPACT_MIN_AGE:
        raise GovernanceError(
            f"min_age {min_age} is shorter than {COMPACT_MIN_AGE}: an incremental reader "
            "(the rollout controller) may have read some of the files it would merge, and "
            "would count their rows again from the merged file.",
            fix="Leave min_age at its default of one day or make it longer (`mlops retention "
                "compact --min-age-hours 24` or more).")
    if not dry_run:
        ctx.require(Role.ADMIN, "compact the prediction log")
    now, _ = _today(now)
    settled = now - min_age
    store = open_store(ctx.settings.artifacts_uri)
    if dry_run:
        return CompactionReport(tuple(compact_log(store, model, settled_before=settled,
                                                  now=now, dry_run=True)), settled, True)
    lease = _lease(registry)
    try:
        with lease.heartbeat():
            outcomes = tuple(compact_log(store, model, settled_before=settled, now=now))
            report = CompactionReport(outcomes, settled, False)
            seq = None
            if report.merged or report.sources_deleted:
                with ctx.store.write() as s:
                    lease.check(s)
                    seq = append_event(s, actor=ctx.actor, action="retention.compact",
                                       subject=AUDIT_SUBJECT, payload={
                                           "model": model,
                                           "settled_before": settled.isoformat(),
                                           "files_before": report.files_before,
                                           "files_after": report.files_after,
                                           "sources_deleted": report.sources_deleted,
                                           "sources_waiting": report.sources_waiting,
                                           "partitions": sorted({o.partition.relative
                                                                 for o in report.merged}),
                                       }).seq
    finally:
        lease.release()
    return CompactionReport(outcomes, settled, False, seq)
