"""Leader election without a coordinator: a lease row the holder renews before it expires.

Background loops (rollout controller, monitoring evaluator) each take their own named lease,
so with several ``mlops serve`` processes exactly one of them acts; a crashed holder is
replaced within ``seconds``, and a clean shutdown hands the lease over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from mlops.store.db import MetadataStore
from mlops.store.schema import LeaseRow

__all__ = ["Lease", "leader_loop"]

log = logging.getLogger("mlops.store")
T = TypeVar("T")


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


async def leader_loop(name: str, lease: Lease, interval: float,
                      run_once: Callable[[], list[T]], report: Callable[[T], None],
                      on_stop: Callable[[], None] | None = None) -> None:
    """Call ``run_once`` (which takes or renews ``lease`` and does nothing without it) every
    ``interval`` seconds in a worker thread, ``report`` each result; a failed pass is logged
    and retried at the next one. On cancellation the lease is handed over at once."""
    try:
        while True:
            try:
                for item in await asyncio.to_thread(run_once):
                    report(item)
            except Exception:  # keep going; the next pass retries
                log.exception("%s pass failed", name)
            await asyncio.sleep(interval)
    finally:
        try:
            await asyncio.to_thread(lease.release)
            if on_stop is not None:
                await asyncio.to_thread(on_stop)
        except Exception:  # shutting down: the lease expires on its own
            log.warning("could not release the %s lease", name, exc_info=True)
