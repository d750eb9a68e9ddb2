"""The rollout controller: a loop in ``mlops serve`` (roles ``all`` and ``control``).

Only one process acts at a time: it holds a lease row that it renews on every pass and
that another process may take over once it has expired (a crashed leader is replaced
within ``lease_seconds``; a clean shutdown hands it over at once). All rollout state is in the database, so a new leader continues
where the old one stopped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta

from mlops.deployment.rollouts import Rollout, RolloutManager
from mlops.registry.service import ModelRegistry
from mlops.store.schema import LeaseRow

__all__ = ["LEASE", "Controller"]

LEASE = "rollout-controller"
log = logging.getLogger("mlops.deployment")


class Controller:
    """Analyse and advance rollouts every ``interval`` seconds while holding the lease."""

    def __init__(self, registry: ModelRegistry, *, interval: float = 5.0,
                 lease_seconds: float = 15.0, holder: str | None = None,
                 gateway_url: str | None = None) -> None:
        self.registry = registry
        self.manager = RolloutManager(registry, gateway_url)
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live process holds it."""
        now = datetime.now(UTC)
        with self.registry.store.write() as s:
            row = s.get(LeaseRow, LEASE)
            if row is None:
                s.add(LeaseRow(name=LEASE, holder=self.holder,
                               expires_at=now + timedelta(seconds=self.lease_seconds)))
                return True
            expires = row.expires_at if row.expires_at.tzinfo else \
                row.expires_at.replace(tzinfo=UTC)
            if row.holder != self.holder and expires > now:
                return False
            row.holder = self.holder
            row.expires_at = now + timedelta(seconds=self.lease_seconds)
            return True

    def release(self) -> None:
        """Give the lease up (on shutdown) so that another process takes over at once."""
        with self.registry.store.write() as s:
            row = s.get(LeaseRow, LEASE)
            if row is not None and row.holder == self.holder:
                s.delete(row)

    def run_once(self) -> list[Rollout]:
        if not self.acquire():
            return []
        return self.manager.tick()

    async def loop(self) -> None:
        try:
            while True:
                try:
                    for rollout in await asyncio.to_thread(self.run_once):
                        log.info("rollout %s %s %s: %s step %d (%s)", rollout.id,
                                 rollout.model, rollout.environment, rollout.state,
                                 rollout.step_index, rollout.reason)
                except Exception:  # keep controlling; the next pass retries
                    log.exception("rollout controller pass failed")
                await asyncio.sleep(self.interval)
        finally:
            try:
                self.release()
            except Exception:  # shutting down: the lease expires on its own
                log.warning("could not release the controller lease", exc_info=True)
