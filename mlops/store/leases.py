"""Leader election without a coordinator: a lease row the holder renews before it expires.

Background loops (rollout controller, monitoring evaluator) each take their own named lease,
so with several ``mlops serve`` processes exactly one of them acts; a crashed holder is
replaced within ``seconds``, and a clean shutdown hands the lease over at once.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta

from mlops.store.db import MetadataStore
from mlops.store.schema import LeaseRow

__all__ = ["Lease"]


class Lease:
    """A named lease in the metadata store."""

    def __init__(self, store: MetadataStore, name: str, *, seconds: float = 15.0,
                 holder: str | None = None) -> None:
        self.store = store
        self.name = name
        self.seconds = seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live process holds it."""
        now = datetime.now(UTC)
        with self.store.write() as s:
            row = s.get(LeaseRow, self.name)
            if row is None:
                s.add(LeaseRow(name=self.name, holder=self.holder,
                               expires_at=now + timedelta(seconds=self.seconds)))
                return True
            expires = row.expires_at if row.expires_at.tzinfo else \
                row.expires_at.replace(tzinfo=UTC)
            if row.holder != self.holder and expires > now:
                return False
            row.holder = self.holder
            row.expires_at = now + timedelta(seconds=self.seconds)
            return True

    def release(self) -> None:
        """Give the lease up (on shutdown) so that another process takes over at once."""
        with self.store.write() as s:
            row = s.get(LeaseRow, self.name)
            if row is not None and row.holder == self.holder:
                s.delete(row)
