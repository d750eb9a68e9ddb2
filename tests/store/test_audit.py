from __future__ import annotations

import itertools

import pytest
from sqlalchemy import delete, text, update

from mlops.registry.service import ModelRegistry
from mlops.store.audit import GENESIS_HASH, append_event, checkpoint, event_hash, verify_chain
from mlops.store.schema import AuditEventRow


def _chain(registry: ModelRegistry, n: int = 5) -> None:
    with registry.store.write() as s:
        for i in range(n):
            append_event(s, actor="t", action="test.event", subject=f"model/m/{i}",
                         payload={"i": i, "text": "é"})


def test_empty_chain_verifies(registry: ModelRegistry) -> None:
    result = registry.verify_audit()
    assert result.ok and result.events == 0 and result.head == GENESIS_HASH


def test_chain_links_each_event_to_the_previous(registry: ModelRegistry) -> None:
    _chain(registry)
    events = list(reversed(registry.audit_log(limit=10)))
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    assert registry.verify_audit().ok
    assert registry.verify_audit().events == 5


def test_tampered_payload_is_detected(registry: ModelRegistry) -> None:
    _chain(registry)
    with registry.store.write() as s:
        s.execute(update(AuditEventRow).where(AuditEventRow.seq == 3)
                  .values(payload='{"i":99,"text":"é"}'))
    result = registry.verify_audit()
    assert not result.ok
    assert result.broken_seq == 3
    assert "modified" in result.reason
    assert result.events == 2


def test_tampered_actor_is_detected(registry: ModelRegistry) -> None:
    _chain(registry)
    with registry.store.write() as s:
        s.execute(update(AuditEventRow).where(AuditEventRow.seq == 1).values(actor="mallory"))
    assert registry.verify_audit().broken_seq == 1


def test_deleted_middle_row_is_detected(registry: ModelRegistry) -> None:
    _chain(registry)
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 2))
    result = registry.verify_audit()
    assert not result.ok and result.broken_seq == 3
    assert "deleted" in result.reason


def test_deleted_row_with_renumbering_is_detected(registry: ModelRegistry) -> None:
    _chain(registry)
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 2))
        for seq in (3, 4, 5):
            s.execute(update(AuditEventRow).where(AuditEventRow.seq == seq)
                      .values(seq=seq - 1))
    result = registry.verify_audit()
    assert not result.ok and result.broken_seq == 2


def test_checkpoint_reports_head_and_count(registry: ModelRegistry) -> None:
    _chain(registry, 3)
    with registry.store.read() as s:
        cp = checkpoint(s)
        assert cp.events == 3
        assert cp.head == verify_chain(s).head


def test_failed_change_writes_no_audit_event(registry: ModelRegistry) -> None:
    _chain(registry, 2)
    try:
        with registry.store.write() as s:
            append_event(s, actor="t", action="x", subject="s")
            raise RuntimeError("crash mid-operation")
    except RuntimeError:
        pass
    assert registry.verify_audit().events == 2


def test_checkpoint_detects_a_truncated_tail_and_a_rewrite(registry: ModelRegistry) -> None:
    _chain(registry, 4)
    with registry.store.read() as s:
        cp = checkpoint(s)
    text = f"{cp.events}:{cp.head}"
    assert registry.verify_audit(text).ok
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 4))
    assert registry.verify_audit().ok  # a chain alone cannot see this
    result = registry.verify_audit(text)
    assert not result.ok and "removed from the end" in result.reason
    # a full rewrite: a fresh, internally valid chain of the same length
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow))
    _chain(registry, 4)
    result = registry.verify_audit(text)
    assert not result.ok and "rewritten" in result.reason


def _forge(registry: ModelRegistry, seq: int) -> None:
    """Insert a well-formed event (its own hash is right) with ``seq``, by plain SQL."""
    ts, payload = "2026-01-01T00:00:00.000000+00:00", '{"forged":true}'
    digest = event_hash(seq, ts, "mallory", "model.delete", "model/m", payload, GENESIS_HASH)
    with registry.store.write() as s:
        s.execute(text("INSERT INTO audit_events (seq, ts, actor, action, subject, payload, "
                       "prev_hash, hash) VALUES (:seq, :ts, 'mallory', 'model.delete', "
                       "'model/m', :payload, :prev, :hash)"),
                  {"seq": seq, "ts": ts, "payload": payload, "prev": GENESIS_HASH,
                   "hash": digest})


@pytest.mark.parametrize("seq", [0, -1, -1000])
def test_row_with_seq_zero_or_negative_breaks_the_chain(registry: ModelRegistry,
                                                         seq: int) -> None:
    _chain(registry, 4)
    with registry.store.read() as s:
        cp = checkpoint(s)
    assert registry.verify_audit(f"{cp.events}:{cp.head}").ok
    _forge(registry, seq)
    for against in (None, f"{cp.events}:{cp.head}"):
        result = registry.verify_audit(against)
        assert not result.ok and result.broken_seq == seq and result.events == 0
        assert f"seq {seq} " in result.reason and "starts at 1" in result.reason


def test_forged_rows_do_not_shift_the_real_chain(registry: ModelRegistry) -> None:
    _chain(registry, 3)
    _forge(registry, 0)
    with registry.store.write() as s:  # the next real event still links to event 3
        event = append_event(s, actor="t", action="test.event", subject="model/m/3")
    assert event.seq == 4
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 0))
    result = registry.verify_audit()
    assert result.ok and result.events == 4 and result.head == event.hash


def test_gap_after_a_forged_row_reports_the_lowest_offender(registry: ModelRegistry) -> None:
    _chain(registry, 3)
    _forge(registry, -5)
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 2))
    result = registry.verify_audit()
    assert not result.ok and result.broken_seq == -5


def test_sequence_checks_hold_across_batches(registry: ModelRegistry) -> None:
    _chain(registry, 7)
    with registry.store.read() as s:
        assert verify_chain(s, batch=2).ok and verify_chain(s, batch=2).events == 7
    with registry.store.write() as s:
        s.execute(delete(AuditEventRow).where(AuditEventRow.seq == 5))
    with registry.store.read() as s:
        result = verify_chain(s, batch=2)
    assert not result.ok and result.broken_seq == 6 and "jumps from 4 to 6" in result.reason
    assert result.events == 4
    _forge(registry, 0)
    with registry.store.read() as s:
        result = verify_chain(s, batch=2)
    assert not result.ok and result.broken_seq == 0 and result.events == 0


@pytest.mark.parametrize("batch", [2, 5000])
def test_repeated_seq_is_reported(registry: ModelRegistry, batch: int) -> None:
    """A tamperer with database access can drop the primary key (CREATE TABLE AS SELECT
    keeps no constraints) and repeat a sequence number, inside a batch or across one."""
    _chain(registry, 5)
    with registry.store.write() as s:
        s.execute(text("ALTER TABLE audit_events RENAME TO audit_events_old"))
        s.execute(text("CREATE TABLE audit_events AS SELECT * FROM audit_events_old"))
        s.execute(text("INSERT INTO audit_events SELECT * FROM audit_events_old "
                       "WHERE seq = 2"))
    with registry.store.read() as s:
        result = verify_chain(s, batch=batch)
    assert not result.ok and result.broken_seq == 2
    assert "seq 2 appears more than once" in result.reason
