"""The monitoring evaluator: a loop in ``mlops serve`` (roles ``all`` and ``control``).

Every ``interval`` seconds the process holding the ``monitor-evaluator`` lease evaluates
every deployment (:meth:`ModelMonitor.evaluate_all`): windows, drift, concept drift,
health, snapshots and alerts. Offline, ``mlops monitor evaluate`` runs the same pass once.
"""

from __future__ import annotations

import logging

from mlops.errors import LeaseLost
from mlops.monitoring.monitor import Evaluation, ModelMonitor
from mlops.store.leases import Lease, leader_loop

__all__ = ["LEASE", "Evaluator"]

LEASE = "monitor-evaluator"
log = logging.getLogger("mlops.monitoring")


class Evaluator:
    """Run :meth:`ModelMonitor.evaluate_all` every ``interval`` seconds while leader."""

    def __init__(self, monitor: ModelMonitor, *, interval: float | None = None,
                 lease_seconds: float | None = None, holder: str | None = None) -> None:
        self.monitor = monitor
        self.interval = interval if interval is not None else \
            monitor.registry.context.settings.monitor_interval
        seconds = lease_seconds if lease_seconds is not None else max(15.0, 3 * self.interval)
        self.lease = Lease(monitor.registry.context.store, LEASE, seconds=seconds, holder=holder)

    def run_once(self) -> list[Evaluation]:
        """One pass while leader. Every write checks the lease in its own transaction, so a
        process that lost it (a long pause, a partition) writes no snapshot or alert."""
        if not self.lease.acquire():
            return []
        results = []
        with self.lease.heartbeat():
            for model, env, version in self.monitor.deployments():
                try:
                    results.append(self.monitor.evaluate(model, env, version=version,
                                                         guard=self.lease.check))
                except LeaseLost:
                    log.warning("the monitoring pass stopped: %s", "lease lost")
                    break
                except Exception:  # one broken deployment must not stop the others
                    log.exception("monitoring %s in %s failed", model, env)
        return results

    async def loop(self) -> None:
        def report(ev: Evaluation) -> None:
            for t in ev.transitions:
                log.info("alert %s %s on %s/%s (%s)", t.rule, t.change, ev.model,
                         ev.environment, t.value)

        await leader_loop("monitoring evaluator", self.lease, self.interval, self.run_once,
                          report, on_stop=self.monitor.close)
