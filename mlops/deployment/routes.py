"""The routing table: what the gateway serves for each (model, environment).

This is the data model the rollout controller drives. Until a deployment row exists, an
environment serves by registry stage (production -> Production, staging -> Staging,
others -> the latest version). Every change is audited and bumps the ``routing`` counter
that gateway workers poll, so they switch within a second without a restart.

>>> routes = RouteWriter(registry)                                     # doctest: +SKIP
>>> routes.set_route("churn", "production", stable="1.0.0", candidate="1.1.0",
...                  weight=10)                                        # doctest: +SKIP
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import DeploymentError
from mlops.registry.promotion import check_serving_change, stage_for_environment
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event
from mlops.store.counters import ROUTING, bump_counter
from mlops.store.schema import DeploymentRow, ModelRow, VersionRow, utcnow

__all__ = ["MODES", "SERVER_ONLY_KEYS", "DeploymentError", "RouteSpec", "RouteWriter", "stage_for_environment"]

MODES = ("split", "shadow")
#: Route config keys only rollouts write (the versions the gateway keeps warm).
SERVER_ONLY_KEYS = frozenset({"keep_loaded", "keep_until"})
_ENV = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RouteSpec:
    """One row of the routing table as the gateway reads it."""

    model: str
    environment: str
    stable: str | None
    candidate: str | None = None
    weight: float = 0.0  # percent of traffic (split) or mirrored (shadow) to the candidate
    mode: str = "split"
    salt: str = ""
    unit_field: str | None = None
    strategy: str = "full"
    state: str = "stable"
    revision: int = 0
    config: dict[str, Any] = field(default_factory=dict)


class RouteWriter:
    """Create, change and remove routing rows (each change audited)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.store = registry.store

    def set_route(self, model: str, environment: str, *, stable: str | None,
                  candidate: str | None = None, weight: float = 0.0, mode: str = "split",
                  unit_field: str | None = None, strategy: str = "full",
                  state: str = "stable", config: dict[str, Any] | None = None,
                  reason: str = "", override: str | None = None) -> RouteSpec:
        """Set what ``environment`` serves for ``model``; versions must exist and pass the
        promotion gate (``override`` is the recorded reason to skip its rules)."""
        if not _ENV.match(environment):
            raise DeploymentError(f"{environment!r} is not a valid environment name.",
                                  fix="Use lower-case letters, digits, '-' or '_'.",
                                  model=model)
        if mode not in MODES:
            raise DeploymentError(f"Unknown routing mode {mode!r}.",
                                  fix=f"Use one of {', '.join(MODES)}.", model=model)
        if not isinstance(weight, int | float) or isinstance(weight, bool) \
                or not 0.0 <= float(weight) <= 100.0:
            raise DeploymentError(f"Candidate weight must be 0-100 percent, got {weight}.",
                                  fix="Pass e.g. weight=10 for 10%.", model=model)
        server_only = sorted(set(config or {}) & SERVER_ONLY_KEYS)
        if server_only:
            raise DeploymentError(f"Route config key(s) {server_only} are set by rollouts, "
                                  "not by route writes.",
                                  fix="Leave them out; a rollback keeps the previous version "
                                      "warm on its own.", model=model)
        if candidate is None and weight:
            raise DeploymentError("A candidate weight needs a candidate version.",
                                  fix="Pass candidate=VERSION or weight=0.", model=model)
        with self.store.write() as s:
            mrow = s.scalar(select(ModelRow).where(ModelRow.name == model))
            if mrow is None:
                self.registry.get_model(model)  # raises ModelNotFound with the fix
                raise AssertionError("unreachable")
            # exact version numbers only: an alias or "latest" stored here would let a
            # later alias move change what the environment serves, past the gate
            stable, candidate = (None if ver is None else self._exact(s, mrow, model, ver)
                                 for ver in (stable, candidate))
            verdict = check_serving_change(s, self.registry.settings, self.registry.principal,
                                           mrow, environment, [stable, candidate],
                                           override=override, action="write the route")
            row = s.scalar(select(DeploymentRow).where(DeploymentRow.model_id == mrow.id,
                                                       DeploymentRow.environment == environment))
            before = None
            if row is None:
                row = DeploymentRow(model_id=mrow.id, environment=environment,
                                    salt=secrets.token_hex(8), revision=0)
                s.add(row)
            else:
                before = {"stable": row.stable_version, "candidate": row.candidate_version,
                          "weight": row.candidate_weight, "mode": row.mode}
            row.stable_version, row.candidate_version = stable, candidate
            row.candidate_weight = float(weight) if candidate else 0.0
            row.mode, row.unit_field = mode, unit_field
            row.strategy, row.state = strategy, state
            row.config = dict(config or {})
            row.revision = (row.revision or 0) + 1
            row.updated_at = utcnow()
            s.flush()
            bump_counter(s, ROUTING)
            append_event(s, actor=self.registry.actor, action="route.set",
                         subject=f"model/{model}/env/{environment}",
                         payload={"before": before,
                                  "after": {"stable": stable, "candidate": candidate,
                                            "weight": row.candidate_weight, "mode": mode},
                                  "strategy": strategy, "state": state, "reason": reason,
                                  "config": dict(config or {}),
                                  **verdict.payload()})
            return _spec(row, model)

    def _exact(self, s: Session, mrow: ModelRow, model: str, version: str) -> str:
        """The registered version number ``version`` names (VersionNotFound otherwise)."""
        found = s.scalar(select(VersionRow.version).where(VersionRow.model_id == mrow.id,
                                                          VersionRow.version == version))
        return found if found is not None else self.registry.get_version(model, version).version

    def clear_route(self, model: str, environment: str, reason: str = "") -> None:
        """Remove the row: the environment serves by registry stage again."""
        with self.store.write() as s:
            row = s.scalar(select(DeploymentRow).join(ModelRow).where(
                ModelRow.name == model, DeploymentRow.environment == environment))
            if row is None:
                return
            mrow = s.get(ModelRow, row.model_id)
            assert mrow is not None
            check_serving_change(s, self.registry.settings, self.registry.principal, mrow,
                                 environment, [], action="clear the route")
            s.delete(row)
            bump_counter(s, ROUTING)
            append_event(s, actor=self.registry.actor, action="route.clear",
                         subject=f"model/{model}/env/{environment}", payload={"reason": reason})

    def get_route(self, model: str, environment: str) -> RouteSpec | None:
        with self.store.read() as s:
            row = s.scalar(select(DeploymentRow).join(ModelRow).where(
                ModelRow.name == model, DeploymentRow.environment == environment))
            return None if row is None else _spec(row, model)


def _spec(row: DeploymentRow, model: str) -> RouteSpec:
    return RouteSpec(model=model, environment=row.environment, stable=row.stable_version,
                     candidate=row.candidate_version, weight=row.candidate_weight,
                     mode=row.mode, salt=row.salt, unit_field=row.unit_field,
                     strategy=row.strategy, state=row.state, revision=row.revision,
                     config=dict(row.config or {}))
