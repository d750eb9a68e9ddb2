"""The routing table's rows, and the one answer to "what does environment E serve for M".

:class:`RouteSpec` is one row as the gateway reads it. :func:`served_routes` is the rule,
the only place it is written down:

1. the environment's deployment row, when it has one (written by a rollout or a route
   write);
2. else the highest version at the environment's registry stage (production ->
   ``Production``, staging -> ``Staging``);
3. else, for an environment without a stage (``dev`` by default), the highest registered
   version.

The gateway (:class:`mlops.serving.routing.RouteTable`), the promotion gate
(:mod:`mlops.registry.promotion`), the deployment layer and monitoring all ask here.

Rows are changed only by the routing service
(:class:`mlops.deployment.routes.RoutingService`), which applies the serving policy and
writes the audit event in the same transaction; :func:`write_route` and
:func:`delete_route` are its primitives. Every change bumps the ``routing`` change counter,
which notifies listeners (:mod:`mlops.store.changes`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import semver
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.store.counters import ROUTING, bump_counter
from mlops.store.schema import DeploymentRow, ModelRow, VersionRow, utcnow

__all__ = [
    "SERVER_ONLY_KEYS",
    "RouteMode",
    "RouteSource",
    "RouteSpec",
    "RouteState",
    "delete_route",
    "environment_for_stage",
    "route_row",
    "servable_versions",
    "served_routes",
    "stage_for_environment",
    "write_route",
]

#: Route config keys only rollouts write (the versions the gateway keeps warm).
SERVER_ONLY_KEYS = frozenset({"keep_loaded", "keep_until"})
_STAGES = {"production": "Production", "staging": "Staging"}


class RouteMode(StrEnum):
    """How the candidate gets its share: answering it, or a mirrored copy of it."""

    SPLIT = "split"
    SHADOW = "shadow"


class RouteState(StrEnum):
    """``progressing`` while a rollout moves traffic, ``stable`` otherwise."""

    STABLE = "stable"
    PROGRESSING = "progressing"


class RouteSource(StrEnum):
    """Which rule of :func:`served_routes` decided."""

    ROUTE = "route"
    STAGE = "stage"
    LATEST = "latest"


@dataclass(frozen=True)
class RouteSpec:
    """What one environment serves for one model."""

    model: str
    environment: str
    stable: str | None
    candidate: str | None = None
    weight: float = 0.0  # percent of traffic (split) or mirrored (shadow) to the candidate
    mode: RouteMode = RouteMode.SPLIT
    salt: str = ""
    unit_field: str | None = None
    strategy: str = "full"
    state: RouteState = RouteState.STABLE
    revision: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    source: RouteSource = RouteSource.ROUTE

    def warm(self, now: float | None = None) -> tuple[str, ...]:
        """Versions kept loaded beside the route (for an instant rollback), until their
        ``keep_until`` passes."""
        until = float(self.config.get("keep_until", 0) or 0)
        if until <= (time.time() if now is None else now):
            return ()
        return tuple(str(v) for v in self.config.get("keep_loaded", []))

    def versions(self, now: float | None = None) -> set[str]:
        """Every version this route may answer with: stable, candidate and warm spares."""
        return {v for v in (self.stable, self.candidate) if v} | set(self.warm(now))


def stage_for_environment(environment: str) -> str | None:
    """The registry stage an environment serves when it has no deployment row."""
    return _STAGES.get(environment)


def environment_for_stage(stage: str) -> str | None:
    """The environment a registry stage stands for (Production -> production)."""
    return {v: k for k, v in _STAGES.items()}.get(stage)


def _spec(row: DeploymentRow, model: str) -> RouteSpec:
    return RouteSpec(model=model, environment=row.environment, stable=row.stable_version,
                     candidate=row.candidate_version, weight=float(row.candidate_weight or 0),
                     mode=RouteMode(row.mode or RouteMode.SPLIT), salt=row.salt,
                     unit_field=row.unit_field, strategy=row.strategy,
                     state=RouteState(row.state or RouteState.STABLE),
                     revision=row.revision or 0, config=dict(row.config or {}))


def _order(version: str) -> tuple[int, Any]:
    try:
        return 1, semver.Version.parse(version.lstrip("vV"))
    except (ValueError, TypeError):  # not a semantic version: below every one that is
        return 0, version


def _highest(versions: Iterable[str]) -> str | None:
    return max(versions, key=_order, default=None)


def route_row(s: Session, model_id: int, environment: str) -> DeploymentRow | None:
    """The deployment row of (model, environment), if any."""
    return s.scalar(select(DeploymentRow).where(DeploymentRow.model_id == model_id,
                                                DeploymentRow.environment == environment))


def served_routes(s: Session, environment: str, model: str | None = None
                  ) -> dict[str, RouteSpec]:
    """Per model, what ``environment`` serves (see the module docstring for the rule).
    Models with nothing to serve are left out."""
    rows = select(DeploymentRow, ModelRow.name).join(
        ModelRow, ModelRow.id == DeploymentRow.model_id).where(
        DeploymentRow.environment == environment)
    if model is not None:
        rows = rows.where(ModelRow.name == model)
    out = {name: _spec(row, name) for row, name in s.execute(rows)}
    stage = stage_for_environment(environment)
    versions = select(ModelRow.name, VersionRow.version).join(
        ModelRow, ModelRow.id == VersionRow.model_id)
    if stage is not None:
        versions = versions.where(VersionRow.stage == stage)
    if model is not None:
        versions = versions.where(ModelRow.name == model)
    found: dict[str, list[str]] = {}
    for name, version in s.execute(versions):
        if name not in out:
            found.setdefault(name, []).append(version)
    source = RouteSource.STAGE if stage is not None else RouteSource.LATEST
    for name, candidates in found.items():
        out[name] = RouteSpec(model=name, environment=environment, stable=_highest(candidates),
                              strategy=source.value, source=source)
    return out


def servable_versions(s: Session, environment: str, model: str | None = None,
                      now: float | None = None) -> dict[str, set[str]]:
    """Per model, the versions an explicit-version URL may reach in ``environment``: what
    :func:`served_routes` says it serves (stable, candidate, warm spares) and every version
    at the environment's stage. Everything else is not served there, whatever its aliases
    say."""
    out = {name: spec.versions(now) for name, spec in served_routes(s, environment,
                                                                    model).items()}
    stage = stage_for_environment(environment)
    if stage is not None:
        staged = select(ModelRow.name, VersionRow.version).join(
            ModelRow, ModelRow.id == VersionRow.model_id).where(VersionRow.stage == stage)
        if model is not None:
            staged = staged.where(ModelRow.name == model)
        for name, version in s.execute(staged):
            out.setdefault(name, set()).add(version)
    return out


def write_route(s: Session, model: ModelRow, environment: str, *, stable: str | None,
                candidate: str | None, weight: float, mode: RouteMode, strategy: str,
                state: RouteState, unit_field: str | None, config: dict[str, Any]
                ) -> tuple[RouteSpec | None, RouteSpec]:
    """Create or change the row inside the caller's write transaction; returns (before,
    after). Callers validate and audit (the routing service does both)."""
    row = route_row(s, model.id, environment)
    before = None if row is None else _spec(row, model.name)
    if row is None:
        row = DeploymentRow(model_id=model.id, environment=environment,
                            salt=secrets.token_hex(8), revision=0, config={})
        s.add(row)
    row.stable_version, row.candidate_version = stable, candidate
    row.candidate_weight = float(weight) if candidate else 0.0
    row.mode, row.strategy, row.state = str(mode), strategy, str(state)
    row.unit_field = unit_field
    row.config = dict(config)
    row.revision = (row.revision or 0) + 1
    row.updated_at = utcnow()
    s.flush()
    bump_counter(s, ROUTING)
    return before, _spec(row, model.name)


def delete_route(s: Session, model: ModelRow, environment: str) -> RouteSpec | None:
    """Remove the row inside the caller's write transaction (the environment serves by
    stage again); returns what it was, None when there was none."""
    row = route_row(s, model.id, environment)
    if row is None:
        return None
    before = _spec(row, model.name)
    s.delete(row)
    s.flush()
    bump_counter(s, ROUTING)
    return before
