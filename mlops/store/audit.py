"""The hash-chained audit log.

Every state change appends one event in the same transaction as the change itself:
``hash = sha256(canonical JSON of {seq, ts, actor, action, subject, payload, prev_hash})``
with ``prev_hash`` of the first event 64 zeros. Canonical JSON: sorted keys, UTF-8, no
insignificant whitespace, times in UTC ISO-8601. :func:`verify_chain` replays the chain
and reports the first broken link: an edited row, a deleted or reordered middle row, a
sequence number that is not the next of 1, 2, 3, ... (zero, negative, repeated, skipped),
or more rows than the highest sequence number.

A chain alone cannot detect a truncated tail or a complete rewrite; publish
:func:`checkpoint` (head hash and count) somewhere else and compare later.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlops.errors import AuditError
from mlops.store.schema import AuditEventRow

__all__ = [
    "GENESIS_HASH",
    "AuditEvent",
    "Checkpoint",
    "VerifyResult",
    "append_event",
    "canonical_json",
    "checkpoint",
    "event_hash",
    "list_events",
    "parse_checkpoint",
    "verify_chain",
]

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept as is; raises on NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value) if isinstance(value, set | frozenset) else list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in an audit payload")


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    ts: str
    actor: str
    action: str
    subject: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


def event_hash(seq: int, ts: str, actor: str, action: str, subject: str, payload: str,
               prev_hash: str) -> str:
    body = canonical_json({"seq": seq, "ts": ts, "actor": actor, "action": action,
                           "subject": subject, "payload": json.loads(payload),
                           "prev_hash": prev_hash})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def append_event(session: Session, *, actor: str, action: str, subject: str,
                 payload: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event; call inside the write transaction that makes the change."""
    last = session.execute(
        select(AuditEventRow.seq, AuditEventRow.hash).order_by(AuditEventRow.seq.desc()).limit(1)
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_HASH if last is None else last.hash
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    body = canonical_json(payload or {})
    digest = event_hash(seq, ts, actor, action, subject, body, prev)
    session.add(AuditEventRow(seq=seq, ts=ts, actor=actor, action=action, subject=subject,
                              payload=body, prev_hash=prev, hash=digest))
    session.flush()
    return AuditEvent(seq, ts, actor, action, subject, json.loads(body), prev, digest)


def _to_event(row: AuditEventRow) -> AuditEvent:
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = {"_unparseable": row.payload}
    return AuditEvent(row.seq, row.ts, row.actor, row.action, row.subject, payload,
                      row.prev_hash, row.hash)


def _stamp(value: datetime) -> str:
    """A time as event timestamps are written (UTC, microseconds), so that they compare as
    strings."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def list_events(session: Session, *, subject: str | None = None, action: str | None = None,
                limit: int | None = 100, since: datetime | None = None,
                until: datetime | None = None) -> list[AuditEvent]:
    """Newest first; ``subject`` matches exactly or as a prefix ending in ``/``; ``action``
    exactly, or every action under a prefix ending in ``.`` (``"security."``); events in
    ``[since, until)`` when given (naive times are UTC); ``limit=None``: all of them."""
    query = select(AuditEventRow)
    if subject:
        query = query.where((AuditEventRow.subject == subject)
                            | AuditEventRow.subject.startswith(subject.rstrip("/") + "/",
                                                              autoescape=True))
    if action and action.endswith("."):
        query = query.where(AuditEventRow.action.startswith(action, autoescape=True))
    elif action:
        query = query.where(AuditEventRow.action == action)
    if since is not None:
        query = query.where(AuditEventRow.ts >= _stamp(since))
    if until is not None:
        query = query.where(AuditEventRow.ts < _stamp(until))
    if limit is None:
        return [_to_event(r) for r in session.scalars(query.order_by(AuditEventRow.seq.desc()))]
    rows = session.scalars(query.order_by(AuditEventRow.seq.desc()).limit(limit))
    return [_to_event(r) for r in rows]


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    head: str
    broken_seq: int | None = None
    reason: str = ""


def parse_checkpoint(text: str) -> tuple[int, str]:
    """``COUNT:HEAD`` (as printed by ``mlops audit checkpoint``) -> (count, head)."""
    count, sep, head = text.strip().partition(":")
    if not sep or not count.isdigit() or len(head) != 64:
        raise AuditError(f"{text!r} is not a checkpoint.",
                         fix="Pass COUNT:HEAD exactly as `mlops audit checkpoint` printed it.")
    return int(count), head.lower()


def _seq_reason(seq: int, expected: int) -> str:
    """Why ``seq`` (rows come in ascending order) is not the expected next number."""
    if seq < 1:
        return (f"event seq {seq} is not a sequence number of the chain (it starts at 1): "
                "a row was inserted outside the chain")
    if seq < expected:
        return f"event seq {seq} appears more than once: a row was inserted outside the chain"
    return f"sequence jumps from {expected - 1} to {seq}: events were deleted"


_CHAIN_COLUMNS = (AuditEventRow.seq, AuditEventRow.ts, AuditEventRow.actor, AuditEventRow.action,
                  AuditEventRow.subject, AuditEventRow.payload, AuditEventRow.prev_hash,
                  AuditEventRow.hash)


def verify_chain(session: Session, batch: int = 5000,
                 against: tuple[int, str] | None = None) -> VerifyResult:
    """Replay the whole chain; stop at the first broken link. Sequence numbers must run
    1, 2, 3, ... with as many rows as the highest one. With ``against`` (a checkpoint's count
    and head hash) also detect a truncated tail or a rewritten chain."""
    prev = GENESIS_HASH
    expected_seq = 1
    count = 0
    last_seq: int | None = None  # None: the first batch starts at the lowest seq, even <= 0
    hash_at_checkpoint = GENESIS_HASH if against is not None and against[0] == 0 else None
    while True:
        query = select(*_CHAIN_COLUMNS).order_by(AuditEventRow.seq).limit(batch)
        if last_seq is not None:
            query = query.where(AuditEventRow.seq > last_seq)
        rows = session.execute(query).all()  # plain rows: no ORM objects for a replay
        if not rows:
            # a seq repeated across a batch boundary was skipped by ``seq > last_seq``; rows
            # appended since the replay (seq > count) are not counted
            rows_total = session.scalar(select(func.count()).select_from(AuditEventRow)
                                        .where(AuditEventRow.seq <= count)) or 0
            if rows_total != count:
                repeated = session.scalar(
                    select(AuditEventRow.seq).group_by(AuditEventRow.seq)
                    .having(func.count() > 1).order_by(AuditEventRow.seq).limit(1))
                return VerifyResult(False, count, prev, broken_seq=repeated,
                                    reason=f"{rows_total} rows hold sequence numbers 1 to "
                                           f"{count}"
                                           + (f": event seq {repeated} appears more than once"
                                              if repeated is not None else ""))
            if against is not None:
                want_count, want_head = against
                if count < want_count:
                    return VerifyResult(False, count, prev, broken_seq=count + 1,
                                        reason=f"the chain ends at event {count} but the "
                                               f"checkpoint has {want_count}: events were "
                                               "removed from the end")
                if hash_at_checkpoint != want_head:
                    return VerifyResult(False, count, prev, broken_seq=want_count,
                                        reason=f"event {want_count} differs from the "
                                               "checkpoint: the chain was rewritten")
            return VerifyResult(True, count, prev)
        for row in rows:
            reason = ""
            if row.seq != expected_seq:
                reason = _seq_reason(row.seq, expected_seq)
            elif row.prev_hash != prev:
                reason = "prev_hash does not match the previous event's hash: the chain was cut or reordered"
            else:
                try:
                    recomputed = event_hash(row.seq, row.ts, row.actor, row.action, row.subject,
                                            row.payload, row.prev_hash)
                except ValueError:
                    recomputed = ""
                if recomputed != row.hash:
                    reason = ("hash does not match the event's content: the row was modified (if "
                          "its hash was recomputed too, the modified row is the one before)")
            if reason:
                return VerifyResult(False, count, prev, broken_seq=row.seq, reason=reason)
            prev = row.hash
            expected_seq += 1
            count += 1
            last_seq = row.seq
            if against is not None and row.seq == against[0]:
                hash_at_checkpoint = row.hash


@dataclass(frozen=True)
class Checkpoint:
    events: int
    head: str
    at: str


def checkpoint(session: Session) -> Checkpoint:
    """Head hash and count, to be published outside the database."""
    last = session.execute(select(AuditEventRow.seq, AuditEventRow.hash)
                           .order_by(AuditEventRow.seq.desc()).limit(1)).first()
    if last is None:
        return Checkpoint(0, GENESIS_HASH, datetime.now(UTC).isoformat())
    return Checkpoint(int(last[0]), str(last[1]), datetime.now(UTC).isoformat())
