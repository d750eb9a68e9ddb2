"""Which writes :meth:`MetadataStore.run` tries again, on both stores. A real deadlock on
PostgreSQL is in test_db.py; here ``work`` itself raises what a lost race raises, so the
policy is checked on SQLite too."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mlops.errors import ConcurrencyError, LeaseLost
from mlops.store.db import MetadataStore
from mlops.store.schema import LeaseRow


def _count(store: MetadataStore) -> int:
    with store.read() as s:
        return int(s.scalar(select(func.count()).select_from(LeaseRow)) or 0)


def test_a_lost_race_runs_again_and_lands_once(database_url: str) -> None:
    store = MetadataStore(database_url)
    tries = []

    def work(s: Session) -> str:
        s.add(LeaseRow(name=f"r{len(tries)}", holder="me", expires_at=datetime.now(UTC)))
        s.flush()
        tries.append(1)
        if len(tries) < 3:
            raise ConcurrencyError("deadlock detected", fix="Retry it.")
        return "done"

    assert store.run(work) == "done"
    assert len(tries) == 3
    assert _count(store) == 1  # nothing of the two lost tries stayed


def test_a_lost_lease_is_not_tried_again(database_url: str) -> None:
    store = MetadataStore(database_url)
    tries = []

    def work(s: Session) -> None:
        tries.append(1)
        raise LeaseLost("another process leads now", fix="Stop this pass.")

    with pytest.raises(LeaseLost):
        store.run(work)
    assert len(tries) == 1


def test_retries_are_bounded(database_url: str) -> None:
    store = MetadataStore(database_url)
    tries = []

    def work(s: Session) -> None:
        tries.append(1)
        raise ConcurrencyError("deadlock detected", fix="Retry it.")

    with pytest.raises(ConcurrencyError):
        store.run(work, attempts=3)
    assert len(tries) == 3
