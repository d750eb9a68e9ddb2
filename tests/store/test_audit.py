from __future__ import annotations

import itertools

from sqlalchemy import delete, update

from mlops.registry.service import ModelRegistry
from mlops.store.audit import GENESIS_HASH, append_event, checkpoint, verify_chain
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
