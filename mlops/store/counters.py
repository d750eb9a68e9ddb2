"""Change counters: a writer bumps one in its transaction, pollers compare the value."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mlops.store.schema import CounterRow

__all__ = ["ROUTING", "bump_counter", "read_counter"]

#: Bumped whenever what the gateway should serve may have changed.
ROUTING = "routing"


def bump_counter(session: Session, name: str) -> None:
    """Increment ``name`` inside the caller's (serialised) write transaction."""
    updated = session.execute(update(CounterRow).where(CounterRow.name == name)
                              .values(value=CounterRow.value + 1))
    if not getattr(updated, "rowcount", 0):
        session.add(CounterRow(name=name, value=1))
        session.flush()


def read_counter(session: Session, name: str) -> int:
    value = session.scalar(select(CounterRow.value).where(CounterRow.name == name))
    return int(value or 0)
