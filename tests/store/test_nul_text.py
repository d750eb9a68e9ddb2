"""Text with a NUL character is refused by both stores alike, reads and writes, before it
reaches the database (PostgreSQL cannot store one; SQLite would)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from mlops.errors import StoreError
from mlops.store.db import MetadataStore
from mlops.store.schema import LeaseRow


def test_a_nul_in_a_written_value_is_refused_and_nothing_is_written(database_url: str
                                                                    ) -> None:
    store = MetadataStore(database_url)
    with pytest.raises(StoreError, match="NUL"), store.write() as s:
        s.add(LeaseRow(name="ok", holder="me", expires_at=datetime.now(UTC)))
        s.add(LeaseRow(name="bad", holder="me\x00you", expires_at=datetime.now(UTC)))
    with store.read() as s:
        assert s.scalar(select(func.count()).select_from(LeaseRow)) == 0


def test_a_nul_in_a_filter_is_refused(database_url: str) -> None:
    store = MetadataStore(database_url)
    with pytest.raises(StoreError, match="NUL"), store.read() as s:
        s.scalars(select(LeaseRow).where(LeaseRow.name == "a\x00b")).all()
