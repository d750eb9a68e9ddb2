"""Change counters: a writer bumps one in its transaction; readers learn that it moved.

On PostgreSQL a bump also sends ``NOTIFY mlops_<name>`` in the same transaction (delivered
at commit, never for a rolled-back change), so listeners (:mod:`mlops.store.changes`) learn
about it without polling; on SQLite they compare the counter's value.
"""

from __future__ import annotations

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from mlops.store.schema import CounterRow

__all__ = ["ROUTING", "bump_counter", "channel", "read_counter"]

#: Bumped whenever what the gateway should serve may have changed.
ROUTING = "routing"


def channel(name: str) -> str:
    """The PostgreSQL notification channel of counter ``name``."""
    return f"mlops_{name}"


def bump_counter(session: Session, name: str) -> None:
    """Increment ``name`` inside the caller's (serialised) write transaction."""
    updated = session.execute(update(CounterRow).where(CounterRow.name == name)
                              .values(value=CounterRow.value + 1))
    if not getattr(updated, "rowcount", 0):
        session.add(CounterRow(name=name, value=1))
        session.flush()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, :name)"),
                        {"channel": channel(name), "name": name})


def read_counter(session: Session, name: str) -> int:
    value = session.scalar(select(CounterRow.value).where(CounterRow.name == name))
    return int(value or 0)
