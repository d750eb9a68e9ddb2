"""The routing service: the only writer of routing rows and their audit events, and the
deployment layer's answer to "which versions does environment E serve for model M".

Every change of a row goes through :meth:`RoutingService.apply`, which validates it the
same way whoever asks (a person's route write, a rollout step, a promotion, a rollback),
writes the row (:func:`mlops.store.routes.write_route`) and a ``route.set`` (or
``route.clear``) audit event in the caller's transaction, and names what authorised it:
the promotion gate's :class:`~mlops.registry.promotion.Verdict` for a direct change, or
the rollout whose start passed that gate. Gateways learn about the change through the
routing counter's notification (:mod:`mlops.store.changes`).

Reads follow the one rule of :func:`mlops.store.routes.served_routes`: the deployment
row, else the environment's registry stage, else (an environment without a stage) the
newest version.

>>> routes = RoutingService(registry)                                   # doctest: +SKIP
>>> routes.set_route("churn", "production", stable="1.0.0", candidate="1.1.0",
...                  weight=10)                                         # doctest: +SKIP
>>> routes.served("churn", "staging").stable                            # doctest: +SKIP
'1.1.0'
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import DeploymentError
from mlops.registry.promotion import Verdict, check_serving_change
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event
from mlops.store.routes import (
    SERVER_ONLY_KEYS,
    RouteMode,
    RouteSource,
    RouteSpec,
    RouteState,
    delete_route,
    route_row,
    served_routes,
    stage_for_environment,
    write_route,
)
from mlops.store.schema import ModelRow, VersionRow

__all__ = [
    "MODES",
    "SERVER_ONLY_KEYS",
    "Authority",
    "DeploymentError",
    "RolloutAuthority",
    "RouteChange",
    "RouteSpec",
    "RoutingService",
    "stage_for_environment",
    "validate",
]

MODES: tuple[str, ...] = tuple(m.value for m in RouteMode)
_ENV = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RolloutAuthority:
    """A route change made by a rollout whose start passed the promotion gate."""

    rollout: int

    def payload(self) -> dict[str, Any]:
        return {"rollout": self.rollout}


#: what allowed a route change: the gate's verdict, or the rollout it belongs to
Authority = Verdict | RolloutAuthority


@dataclass(frozen=True)
class RouteChange:
    """The row a change asks for. ``keep_settings`` keeps the row's unit field and its own
    config keys (rollouts change versions and weights only); ``warm`` is a version the
    gateway keeps loaded for ``warm_seconds`` (an instant rollback)."""

    stable: str | None
    candidate: str | None = None
    weight: float = 0.0
    mode: RouteMode = RouteMode.SPLIT
    strategy: str = "full"
    state: RouteState = RouteState.STABLE
    unit_field: str | None = None
    config: dict[str, Any] | None = None
    keep_settings: bool = False
    warm: str | None = None
    warm_seconds: float = 0.0


def _fail(message: str, fix: str, model: str) -> DeploymentError:
    return DeploymentError(message, fix=fix, model=model)


def validate(model: str, environment: str, change: RouteChange) -> None:
    """The rules every route change follows, whoever asks."""
    if not isinstance(environment, str) or not _ENV.match(environment):
        raise _fail(f"{environment!r} is not a valid environment name.",
                    "Use lower-case letters, digits, '-' or '_'.", model)
    if change.mode not in MODES:
        raise _fail(f"Unknown routing mode {change.mode!r}.", f"Use one of {', '.join(MODES)}.",
                    model)
    weight = change.weight
    if not isinstance(weight, int | float) or isinstance(weight, bool) \
            or not math.isfinite(weight) or not 0.0 <= float(weight) <= 100.0:
        raise _fail(f"Candidate weight must be 0-100 percent, got {weight}.",
                    "Pass e.g. weight=10 for 10%.", model)
    server_only = sorted(set(change.config or {}) & SERVER_ONLY_KEYS)
    if server_only:
        raise _fail(f"Route config key(s) {server_only} are set by rollouts, not by route "
                    "writes.", "Leave them out; a rollback keeps the previous version warm on "
                    "its own.", model)
    if change.candidate is None and weight:
        raise _fail("A candidate weight needs a candidate version.",
                    "Pass candidate=VERSION or weight=0.", model)


class RoutingService:
    """Read and change what environments serve (each change validated and audited)."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.store = registry.context.store

    # ------------------------------------------------------------------ reads
    def get_route(self, model: str, environment: str) -> RouteSpec | None:
        """The deployment row of (model, environment), None when there is none."""
        spec = self.served(model, environment)
        return spec if spec is not None and spec.source is RouteSource.ROUTE else None

    def served(self, model: str, environment: str) -> RouteSpec | None:
        """What ``environment`` serves for ``model`` (row, else stage, else newest);
        None when it serves nothing."""
        with self.store.read() as s:
            return served_routes(s, environment, model).get(model)

    def serving(self, environment: str) -> dict[str, RouteSpec]:
        """What ``environment`` serves, per model."""
        with self.store.read() as s:
            return served_routes(s, environment)

    # ------------------------------------------------------------------ a person's writes
    def set_route(self, model: str, environment: str, *, stable: str | None,
                  candidate: str | None = None, weight: float = 0.0, mode: str = "split",
                  unit_field: str | None = None, strategy: str = "full",
                  state: str = "stable", config: dict[str, Any] | None = None,
                  reason: str = "", override: str | None = None) -> RouteSpec:
        """Set what ``environment`` serves for ``model``; versions must exist and pass the
        promotion gate (``override`` is the recorded reason to skip its rules)."""
        if mode not in MODES:
            raise _fail(f"Unknown routing mode {mode!r}.", f"Use one of {', '.join(MODES)}.",
                        model)
        if state not in tuple(RouteState):
            raise _fail(f"Unknown route state {state!r}.",
                        f"Use one of {', '.join(RouteState)}.", model)
        change = RouteChange(stable=stable, candidate=candidate, weight=weight,
                             mode=RouteMode(mode), strategy=strategy, state=RouteState(state),
                             unit_field=unit_field, config=dict(config or {}))
        validate(model, environment, change)
        with self.store.write() as s:
            mrow = self.model_row(s, model)
            # exact version numbers only: an alias or "latest" stored here would let a
            # later alias move change what the environment serves, past the gate
            exact = replace(change, stable=self.exact(s, mrow, stable),
                            candidate=self.exact(s, mrow, candidate))
            verdict = check_serving_change(
                s, self.registry.context.settings, self.registry.context.principal, mrow, environment,
                [exact.stable, exact.candidate], override=override, action="write the route")
            return self.apply(s, mrow, environment, exact, authority=verdict, reason=reason)

    def clear_route(self, model: str, environment: str, reason: str = "") -> None:
        """Remove the row: the environment serves by registry stage again."""
        with self.store.write() as s:
            mrow = s.scalar(select(ModelRow).where(ModelRow.name == model))
            if mrow is None or route_row(s, mrow.id, environment) is None:
                return
            verdict = check_serving_change(s, self.registry.context.settings, self.registry.context.principal,
                                           mrow, environment, [], action="clear the route")
            self.clear(s, mrow, environment, authority=verdict, reason=reason)

    # ------------------------------------------------------------------ inside a transaction
    def model_row(self, s: Session, model: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == model))
        if row is None:
            self.registry.get_model(model)  # raises ModelNotFound with its fix
            raise AssertionError("unreachable")
        return row

    def exact(self, s: Session, mrow: ModelRow, version: str | None) -> str | None:
        """The registered version number ``version`` names (VersionNotFound otherwise)."""
        if version is None:
            return None
        found = s.scalar(select(VersionRow.version).where(VersionRow.model_id == mrow.id,
                                                          VersionRow.version == version))
        return found if found is not None else \
            self.registry.get_version(mrow.name, version).version

    def apply(self, s: Session, mrow: ModelRow, environment: str, change: RouteChange, *,
              authority: Authority, reason: str = "") -> RouteSpec:
        """Write ``change`` and its ``route.set`` event in the caller's transaction; the
        caller has already passed the gate (``authority`` says how)."""
        validate(mrow.name, environment, change)
        for version in (change.stable, change.candidate):
            if version is not None and self.exact(s, mrow, version) != version:
                raise _fail(f"A route names exact versions, not {version!r}.",
                            "Resolve the alias first.", mrow.name)
        current = route_row(s, mrow.id, environment)
        unit_field, config = change.unit_field, dict(change.config or {})
        if change.keep_settings and current is not None:
            unit_field = current.unit_field
            config = {k: v for k, v in (current.config or {}).items()
                      if k not in SERVER_ONLY_KEYS}
        if change.warm and change.warm_seconds > 0:  # the gateway keeps it: rollback is a swap
            config.update(keep_loaded=[change.warm], keep_until=time.time() + change.warm_seconds)
        before, after = write_route(
            s, mrow, environment, stable=change.stable, candidate=change.candidate,
            weight=float(change.weight), mode=RouteMode(change.mode), strategy=change.strategy,
            state=change.state, unit_field=unit_field, config=config)
        append_event(s, actor=self.registry.context.actor, action="route.set",
                     subject=f"model/{mrow.name}/env/{environment}",
                     payload={"before": _summary(before), "after": _summary(after),
                              "strategy": change.strategy, "state": str(change.state),
                              "reason": reason, "config": dict(change.config or {}),
                              **authority.payload()})
        return after

    def clear(self, s: Session, mrow: ModelRow, environment: str, *, authority: Authority,
              reason: str = "") -> None:
        """Remove the row and write its ``route.clear`` event in the caller's transaction."""
        before = delete_route(s, mrow, environment)
        if before is not None:
            append_event(s, actor=self.registry.context.actor, action="route.clear",
                         subject=f"model/{mrow.name}/env/{environment}",
                         payload={"before": _summary(before), "reason": reason,
                                  **authority.payload()})


def _summary(spec: RouteSpec | None) -> dict[str, Any] | None:
    return None if spec is None else {"stable": spec.stable, "candidate": spec.candidate,
                                      "weight": spec.weight, "mode": str(spec.mode)}
