"""The rollout controller: a loop in ``mlops serve`` (roles ``all`` and ``control``).

Only one process acts at a time: it holds a lease row that it renews on every pass and
that another process may take over once it has expired (a crashed leader is replaced
within ``lease_seconds``; a clean shutdown hands it over at once; see
:class:`mlops.store.leases.Lease`). All rollout state is in the database, so a new leader
continues where the old one stopped.
"""

from __future__ import annotations

import logging

from mlops.deployment.rollouts import Rollout, RolloutManager
from mlops.registry.service import ModelRegistry
from mlops.store.leases import Lease, leader_loop

__all__ = ["LEASE", "Controller"]

LEASE = "rollout-controller"
log = logging.getLogger("mlops.deployment")


class Controller:
    """Analyse and advance rollouts every ``interval`` seconds while holding the lease."""

    def __init__(self, registry: ModelRegistry, *, interval: float = 5.0,
                 lease_seconds: float = 15.0, holder: str | None = None,
                 gateway_url: str | None = None,
                 gateway_environment: str | None = None) -> None:
        self.registry = registry
        self.manager = RolloutManager(registry, gateway_url, gateway_environment)
        self.interval = interval
        self.lease = Lease(registry.store, LEASE, seconds=lease_seconds, holder=holder)
        self.holder = self.lease.holder

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live process holds it."""
        return self.lease.acquire()

    def release(self) -> None:
        """Give the lease up (on shutdown) so that another process takes over at once."""
        self.lease.release()

    def run_once(self) -> list[Rollout]:
        if not self.acquire():
            return []
        return self.manager.tick()

    async def loop(self) -> None:
        def report(rollout: Rollout) -> None:
            log.info("rollout %s %s %s: %s step %d (%s)", rollout.id, rollout.model,
                     rollout.environment, rollout.state, rollout.step_index, rollout.reason)

        await leader_loop("rollout controller", self.lease, self.interval, self.run_once,
                          report)
