"""Rollouts: the state machine that moves traffic from the stable version to a candidate.

States (:class:`~mlops.deployment.types.RolloutState`): ``progressing`` -> ``succeeded``
(the candidate became stable) | ``rolled_back`` (traffic went back to stable: a failed
analysis or a person) | ``paused`` (waiting for a person; ``resume`` continues). Everything
lives in the database, so a controller that is killed and started again continues at the
same step with the same split; each transition is idempotent (it checks the state it
expects) and writes its audit events in the same transaction
(:mod:`mlops.deployment.transitions`). :meth:`RolloutManager.tick` is one pass of the
controller (:mod:`mlops.deployment.tick`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.deployment.config import parse_rollout_config
from mlops.deployment.evidence import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, Evidence
from mlops.deployment.routes import RouteChange, RoutingService
from mlops.deployment.steps import plan_steps
from mlops.deployment.tick import Fence, RolloutTicker
from mlops.deployment.transitions import Transitions, rollout_settings, rollout_steps
from mlops.deployment.types import ACTIVE, RolloutState
from mlops.deployment.views import Rollout, rollout_view, utc
from mlops.errors import DeploymentError
from mlops.registry.promotion import Verdict, check_serving_change
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import read_feedback, read_predictions
from mlops.store.routes import RouteMode, RouteSource, RouteState, served_routes
from mlops.store.schema import ModelRow, RolloutRow, utcnow

__all__ = ["ACTIVE", "Fence", "Rollout", "RolloutManager"]


class RolloutManager:
    """Start, advance, pause, promote and roll back rollouts (one model, one environment
    has at most one active rollout)."""

    def __init__(self, registry: ModelRegistry, gateway_url: str | None = None,
                 gateway_environment: str | None = None) -> None:
        self.registry = registry
        self.store = registry.context.store
        #: the one writer of routing rows (every route change of a rollout goes through it)
        self.routes = RoutingService(registry)
        self.transitions = Transitions(registry, self.routes)
        self.gateway_url = gateway_url
        #: the environment that gateway serves (None: unknown, assumed to be the rollout's);
        #: a smoke request through another environment's gateway would be refused there
        self.gateway_environment = gateway_environment
        #: the controller's passes; keeps each rollout's running evidence between them
        self.ticker = RolloutTicker(registry, self.transitions, gateway_url,
                                    gateway_environment)

    # ------------------------------------------------------------------ helpers
    def _active(self, s: Session, model: ModelRow, env: str) -> RolloutRow | None:
        return s.scalar(select(RolloutRow).where(
            RolloutRow.model_id == model.id, RolloutRow.environment == env,
            RolloutRow.state.in_([a.value for a in ACTIVE])).order_by(RolloutRow.id.desc()))

    def _latest(self, s: Session, model: ModelRow, env: str) -> RolloutRow | None:
        return s.scalar(select(RolloutRow).where(
            RolloutRow.model_id == model.id, RolloutRow.environment == env)
            .order_by(RolloutRow.id.desc()))

    def to_rollout(self, s: Session, row: RolloutRow, name: str, analyses: int = 20
                   ) -> Rollout:
        """The typed view of a rollout row, with its latest ``analyses``."""
        return rollout_view(s, row, name, analyses)

    def _gate(self, s: Session, mrow: ModelRow, environment: str, versions: list[str | None],
              action: str, override: str | None = None) -> Verdict:
        """Every change of what an environment serves passes the one promotion gate."""
        return check_serving_change(s, self.registry.context.settings, self.registry.context.principal, mrow,
                                    environment, versions, override=override, action=action)

    # ------------------------------------------------------------------ commands
    def deploy(self, model: str, version: str, environment: str = "production", *,
               strategy: str = "canary", config: Mapping[str, Any] | None = None,
               reason: str = "", override: str | None = None) -> Rollout:
        """Start rolling ``version`` out; ``full`` finishes at once. ``override`` is the
        recorded reason for skipping the promotion policy. ``config`` is validated before
        anything is stored (:func:`~mlops.deployment.config.parse_rollout_config`)."""
        settings = parse_rollout_config(strategy, config)
        steps = plan_steps(strategy, settings)
        # an alias, stage name or "latest" is resolved now: rows hold exact version numbers,
        # so moving an alias later never changes what an environment serves
        version = self.registry.get_version(model, version).version
        with self.store.write() as s:
            mrow = self.routes.model_row(s, model)
            verdict = self._gate(s, mrow, environment, [version], f"deploy {version}", override)
            if self._active(s, mrow, environment) is not None:
                raise DeploymentError(
                    f"{model} already has an active rollout in {environment}.",
                    fix=f"Finish it first: mlops rollout promote|abort {model} --env "
                        f"{environment}.", model=model)
            served = served_routes(s, environment, model).get(model)
            stable = served.stable if served is not None else None
            if stable == version and served is not None \
                    and served.source is RouteSource.LATEST:
                stable = None  # served as the newest version by default: pin it at once
            if stable == version:
                raise DeploymentError(f"{model} {version} is already stable in {environment}.",
                                      fix="Deploy another version.", model=model,
                                      version=version)
            row = RolloutRow(model_id=mrow.id, environment=environment, strategy=strategy,
                             stable_version=stable, candidate_version=version,
                             steps={"steps": [st.to_dict() for st in steps]}, step_index=0,
                             state=RolloutState.PROGRESSING.value, reason=reason,
                             config=settings.analysis(), monitor={},
                             created_by=self.registry.context.actor)
            s.add(row)
            s.flush()
            self.transitions.audit(s, "rollout.start", model, environment,
                                   {"rollout": row.id, "strategy": strategy, "stable": stable,
                                    "candidate": version, "steps": row.steps["steps"],
                                    "reason": reason, **verdict.payload()})
            if stable is None or strategy == "full":
                self.transitions.finish(s, mrow, row, "no stable version to compare with"
                                        if stable is None else "full replacement")
            else:
                self.transitions.split(s, mrow, row, steps[0].weight, steps[0].mode,
                                       reason or f"rollout {row.id} starts")
            s.flush()
            return self.to_rollout(s, row, model)

    def _transition(self, model: str, env: str, expect: tuple[RolloutState, ...],
                    action: str, reason: str) -> Rollout:
        with self.store.write() as s:
            mrow = self.routes.model_row(s, model)
            self._gate(s, mrow, env, [], f"{action} the rollout")
            row = self._active(s, mrow, env)
            if row is None or row.state not in expect:
                raise DeploymentError(f"{model} has no rollout in {env} that can {action}.",
                                      fix=f"See mlops rollout status {model} --env {env}.",
                                      model=model)
            moves: dict[str, Callable[[], None]] = {
                "promote": lambda: self.transitions.finish(s, mrow, row,
                                                           reason or "promoted by a person"),
                "abort": lambda: self.transitions.roll_back(s, mrow, row,
                                                            reason or "aborted by a person"),
                "pause": lambda: self.transitions.pause(s, model, row,
                                                        reason or "paused by a person"),
                "resume": lambda: self.transitions.resume(s, model, row, reason),
            }
            moves[action]()
            row.updated_at = utcnow()
            s.flush()
            return self.to_rollout(s, row, model)

    def promote(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ACTIVE, "promote", reason)

    def abort(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ACTIVE, "abort", reason)

    def pause(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, (RolloutState.PROGRESSING,), "pause", reason)

    def resume(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, (RolloutState.PAUSED,), "resume", reason)

    def rollback(self, model: str, env: str = "production", *, to: str | None = None,
                 reason: str = "") -> str:
        """All traffic back to the previous stable version (or ``to``); returns it."""
        with self.store.write() as s:
            mrow = self.routes.model_row(s, model)
            self._gate(s, mrow, env, [], "roll back")  # who may, before what there is
            active = self._active(s, mrow, env)
            if active is not None and to is None:
                self._gate(s, mrow, env, [active.stable_version], "roll back")
                self.transitions.roll_back(s, mrow, active, reason or "rollback by a person")
                return str(active.stable_version)
            target = to
            if target is None:
                last = s.scalar(select(RolloutRow).where(
                    RolloutRow.model_id == mrow.id, RolloutRow.environment == env,
                    RolloutRow.state == RolloutState.SUCCEEDED.value)
                    .order_by(RolloutRow.id.desc()))
                target = last.stable_version if last is not None else None
            if target is None:
                raise DeploymentError(f"{model} has no earlier version in {env} to go back to.",
                                      fix=f"Name one: mlops rollback {model} --env {env} "
                                          "--to VERSION.", model=model)
            target = self.registry.get_version(model, target).version
            verdict = self._gate(s, mrow, env, [target], f"roll back to {target}")
            if active is not None:
                self.transitions.roll_back(s, mrow, active, reason or f"rollback to {target}")
            served = served_routes(s, env, model).get(model)
            before = served.stable if served is not None else None
            self.routes.apply(s, mrow, env, RouteChange(
                target, None, 0.0, RouteMode.SPLIT, "rollback", RouteState.STABLE,
                keep_settings=True), authority=verdict, reason=reason or "rollback")
            self.transitions.audit(s, "rollout.rollback", model, env,
                                   {"to": target, "from": before,
                                    "reason": reason or "rollback"})
            return target

    def status(self, model: str, env: str = "production") -> Rollout | None:
        with self.store.read() as s:
            mrow = self.routes.model_row(s, model)
            row = self._latest(s, mrow, env)
            return None if row is None else self.to_rollout(s, row, model)

    def history(self, model: str, version: str | None = None, limit: int = 200
                ) -> list[Rollout]:
        """The rollouts of ``model`` in every environment (those in which ``version`` was
        the candidate or the stable one, when given), oldest first, with their analyses."""
        with self.store.read() as s:
            mrow = self.routes.model_row(s, model)
            query = select(RolloutRow).where(RolloutRow.model_id == mrow.id)
            if version is not None:
                query = query.where((RolloutRow.candidate_version == version)
                                    | (RolloutRow.stable_version == version))
            rows = s.scalars(query.order_by(RolloutRow.id.desc()).limit(limit)).all()
            return [self.to_rollout(s, row, model) for row in reversed(rows)]

    # ------------------------------------------------------------------ the controller
    def tick(self, now: float | None = None, *, fence: Fence | None = None) -> list[Rollout]:
        """Analyse every progressing rollout once and apply the outcome (one controller
        pass: :class:`~mlops.deployment.tick.RolloutTicker`). ``fence`` runs inside each
        write transaction (the controller passes its lease's check)."""
        return self.ticker.tick(time.time() if now is None else now, fence=fence)

    def _traffic(self, model: str, env: str, since: float) -> tuple[pa.Table, pa.Table]:
        """Every log row of a rollout since it started (the full re-read the controller no
        longer does; :meth:`recount` and the tick benchmark compare with it)."""
        uri = self.registry.context.settings.artifacts_uri
        return (read_predictions(uri, model, since=since, environment=env,
                                 columns=list(PREDICTION_COLUMNS)),
                read_feedback(uri, model, since=since))

    def recount(self, model: str, env: str = "production", now: float | None = None
                ) -> Evidence:
        """The active rollout's evidence rebuilt from a full re-read of the log: what the
        controller's running aggregates must equal (a check, and the benchmark's
        baseline)."""
        now = time.time() if now is None else now
        with self.store.read() as s:
            mrow = self.routes.model_row(s, model)
            row = self._active(s, mrow, env)
            if row is None:
                raise DeploymentError(f"{model} has no active rollout in {env}.",
                                      fix=f"See mlops rollout status {model} --env {env}.",
                                      model=model)
            settings, steps = rollout_settings(row), rollout_steps(row)
            step = steps[row.step_index]
            evidence = Evidence(environment=env, stable=row.stable_version or "",
                                candidate=row.candidate_version,
                                label_delay=settings.label_delay,
                                label_window=settings.label_window,
                                shadow=step.mode is RouteMode.SHADOW)
            evidence.begin_step(row.step_index, utc(row.step_started_at).timestamp(),
                                step.weight)
            since = utc(row.started_at).timestamp()
        predictions, feedback = self._traffic(model, env, since)
        evidence.ingest(predictions, feedback.select(list(FEEDBACK_COLUMNS)), now)
        evidence.settle(now, settings.srm_settle_seconds)
        return evidence
