"""The retraining scheduler: a loop in ``mlops serve`` (roles ``all`` and ``control``).

Every ``interval`` seconds the process holding the ``retrain-scheduler`` lease runs one
:meth:`~mlops.retraining.service.RetrainService.run_pass`: stale jobs are interrupted,
triggers are evaluated, jobs queued and started (each in its own thread, with its command
in its own process group). On shutdown the jobs it runs are stopped and end
``interrupted`` (queued again when their configuration says so). Offline,
``mlops retrain pass`` runs the same pass once.
"""

from __future__ import annotations

import logging

from mlops.registry.service import ModelRegistry
from mlops.retraining.service import PassReport, RetrainService
from mlops.store.leases import Lease, leader_loop

__all__ = ["LEASE", "Scheduler"]

LEASE = "retrain-scheduler"
log = logging.getLogger("mlops.retraining")


class Scheduler:
    """Run a retraining pass every ``interval`` seconds while leader."""

    def __init__(self, registry: ModelRegistry, *, interval: float | None = None,
                 holder: str | None = None) -> None:
        settings = registry.settings
        self.interval = interval if interval is not None else settings.retrain_interval
        self.service = RetrainService(registry, holder=holder,
                                      concurrency=settings.retrain_concurrency)
        self.lease = Lease(registry.store, LEASE, seconds=max(15.0, 3 * self.interval),
                           holder=self.service.holder)

    def run_once(self) -> list[PassReport]:
        if not self.lease.acquire():
            return []
        return [self.service.run_pass()]

    async def loop(self) -> None:
        def report(done: PassReport) -> None:
            if done.queued or done.started or done.interrupted or done.errors:
                log.info("retraining pass: queued %s, started %s, interrupted %s, errors %s",
                         done.queued, done.started, done.interrupted, done.errors)

        await leader_loop("retraining scheduler", self.lease, self.interval, self.run_once,
                          report, on_stop=self.service.shutdown)
