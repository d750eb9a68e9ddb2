"""The rollout controller: a loop in ``mlops serve`` (roles ``all`` and ``control``).

Only one process acts at a time: the leader of the ``rollout-controller`` lease
(:class:`mlops.store.leases.Lease`: a PostgreSQL advisory lock, or a lease row on SQLite).
Its heartbeat renews the lease while a pass runs, and every write of a pass checks, in the
same transaction, that the lease is still held (the fence), so a pass that lost its lease
writes nothing. All rollout state is in the database, so a new leader continues where the
old one stopped (its first pass reads each rollout's log once, then only new rows).
"""

from __future__ import annotations

import logging

from mlops.deployment.materialize import materialize, model_paths
from mlops.deployment.rollouts import Rollout, RolloutManager
from mlops.errors import MaterializeError, MlopsError
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
        self.lease = Lease(registry.context.store, LEASE, seconds=lease_seconds, holder=holder)
        self.holder = self.lease.holder
        self._materialize_failure: str | None = None

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live process holds it."""
        return self.lease.acquire()

    def release(self) -> None:
        """Give the lease up (on shutdown) so that another process takes over at once."""
        self.lease.release()

    def run_once(self) -> list[Rollout]:
        """One pass, if this process is the leader; its writes are fenced by the lease."""
        if not self.acquire():
            return []
        rollouts = self.manager.tick(fence=self.lease.check)
        if self.lease.held:
            self.materialize()
        return rollouts

    def materialize(self) -> None:
        """Bring the configured model folders (``*_MODEL_PATH``) in line with what each
        environment serves; a failure is logged, never stops the loop."""
        failure = None
        try:
            if not model_paths(self.registry.context.settings):
                return
            done = materialize(self.registry.context)
        except MaterializeError as exc:
            done, failure = exc.results, str(exc)
        except MlopsError as exc:
            done, failure = [], str(exc)
        except Exception:
            log.exception("materialising served models failed")
            return
        if failure is not None and failure != self._materialize_failure:
            log.warning("materialising served models: %s", failure)  # once, not every pass
        self._materialize_failure = failure
        for item in done:
            if item.changed:
                log.info("materialised %s %s at %s", item.model,
                         item.version or "(removed)", item.path)

    async def loop(self) -> None:
        def report(rollout: Rollout) -> None:
            log.info("rollout %s %s %s: %s step %d (%s)", rollout.id, rollout.model,
                     rollout.environment, rollout.state, rollout.step_index, rollout.reason)

        await leader_loop("rollout controller", self.lease, self.interval, self.run_once,
                          report)
