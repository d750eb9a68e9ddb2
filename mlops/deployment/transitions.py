"""Every change of a rollout's state, each with its route write and audit events, inside the
caller's write transaction.

Route changes go through the routing service (:class:`~mlops.deployment.routes
.RoutingService`), authorised by the rollout whose start passed the promotion gate; the
rollout's own lifecycle is audited as ``rollout.*`` events beside the ``route.set`` events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.deployment.config import RolloutConfig, parse_rollout_config
from mlops.deployment.routes import RolloutAuthority, RouteChange, RoutingService
from mlops.deployment.types import RolloutState, Step
from mlops.errors import DeploymentError
from mlops.registry.promotion import environment_for_stage, stage_for_environment
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event
from mlops.store.routes import RouteMode, RouteState
from mlops.store.schema import ModelRow, RolloutRow, VersionRow, utcnow

__all__ = ["Transitions", "rollout_settings", "rollout_steps"]


def rollout_steps(row: RolloutRow) -> list[Step]:
    """The stored plan of a rollout."""
    return [Step.from_dict(d) for d in (row.steps or {}).get("steps", [])]


def rollout_settings(row: RolloutRow) -> RolloutConfig:
    """The row's stored settings, parsed with the same models as at deploy time."""
    try:
        return parse_rollout_config(row.strategy, row.config or {})
    except DeploymentError as exc:
        raise DeploymentError(
            f"The stored config of rollout {row.id} no longer parses: {exc.message}",
            fix="Abort the rollout and deploy again with a valid config.",
            rollout=row.id) from exc


def _keep_seconds(row: RolloutRow) -> float:
    """How long the previous version stays loaded; the default when the stored config no
    longer parses (promoting or aborting such a rollout must still work)."""
    try:
        return rollout_settings(row).keep_previous_seconds
    except DeploymentError:
        return RolloutConfig().keep_previous_seconds


class Transitions:
    """State changes of rollouts (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, routes: RoutingService) -> None:
        self.registry = registry
        self.routes = routes

    def audit(self, s: Session, action: str, model: str, env: str, payload: dict[str, Any]
              ) -> None:
        append_event(s, actor=self.registry.context.actor, action=action,
                     subject=f"model/{model}/env/{env}", payload=payload)

    def route(self, s: Session, model: ModelRow, row: RolloutRow, change: RouteChange,
              reason: str) -> None:
        self.routes.apply(s, model, row.environment, change,
                          authority=RolloutAuthority(row.id), reason=reason)

    def split(self, s: Session, model: ModelRow, row: RolloutRow, weight: float,
              mode: RouteMode, reason: str) -> None:
        """Send ``weight`` percent (answered, or mirrored in shadow mode) to the candidate."""
        self.route(s, model, row, RouteChange(
            row.stable_version, row.candidate_version, weight, mode, row.strategy,
            RouteState.PROGRESSING, keep_settings=True), reason)

    def advance(self, s: Session, model: ModelRow, row: RolloutRow, reason: str) -> None:
        """On to the next step of the plan."""
        index = row.step_index + 1
        step = rollout_steps(row)[index]
        row.step_index, row.step_started_at = index, utcnow()
        self.split(s, model, row, step.weight, step.mode, reason)
        self.audit(s, "rollout.step", model.name, row.environment,
                   {"rollout": row.id, "step": index, "weight": step.weight, "reason": reason})

    def finish(self, s: Session, model: ModelRow, row: RolloutRow, why: str) -> None:
        """The candidate becomes stable (the previous stable stays warm for rollback)."""
        self.route(s, model, row, RouteChange(
            row.candidate_version, None, 0.0, RouteMode.SPLIT, row.strategy, RouteState.STABLE,
            keep_settings=True, warm=row.stable_version, warm_seconds=_keep_seconds(row)), why)
        row.step_index = len(rollout_steps(row)) - 1
        self._end(row, RolloutState.SUCCEEDED, why)
        self._follow_stage(s, model, row)
        self.audit(s, "rollout.succeed", model.name, row.environment,
                   {"rollout": row.id, "version": row.candidate_version,
                    "previous": row.stable_version, "reason": why})

    def roll_back(self, s: Session, model: ModelRow, row: RolloutRow, why: str) -> None:
        """All traffic back to stable; the rollout ends."""
        self.route(s, model, row, RouteChange(
            row.stable_version, None, 0.0, RouteMode.SPLIT, row.strategy, RouteState.STABLE,
            keep_settings=True), why)
        self._end(row, RolloutState.ROLLED_BACK, why)
        self.audit(s, "rollout.rollback", model.name, row.environment,
                   {"rollout": row.id, "to": row.stable_version,
                    "from": row.candidate_version, "reason": why})

    def pause(self, s: Session, model: str, row: RolloutRow, why: str,
              error: str | None = None) -> None:
        """Hold the rollout at its step until a person resumes it."""
        self._end(row, RolloutState.PAUSED, why[:2000])
        payload: dict[str, Any] = {"rollout": row.id, "reason": row.reason}
        if error is not None:
            payload["error"] = error
        self.audit(s, "rollout.pause", model, row.environment, payload)

    def resume(self, s: Session, model: str, row: RolloutRow, reason: str) -> None:
        rollout_settings(row)  # a config that no longer parses would pause again
        row.state, row.reason, row.step_started_at = RolloutState.PROGRESSING, reason, utcnow()
        self.audit(s, "rollout.resume", model, row.environment,
                   {"rollout": row.id, "reason": reason})

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _end(row: RolloutRow, state: RolloutState, why: str) -> None:
        row.state, row.reason, row.updated_at = state.value, why, utcnow()

    def _follow_stage(self, s: Session, model: ModelRow, row: RolloutRow) -> None:
        """The registry's stage follows what the environment serves."""
        stage = stage_for_environment(row.environment)
        if stage is None:
            return
        for version in s.scalars(select(VersionRow).where(
                VersionRow.model_id == model.id,
                (VersionRow.stage == stage) | (VersionRow.version == row.candidate_version))):
            if self._serves_later(version.stage, row.environment):
                continue  # never take a version away from an environment further on
            previous = version.stage
            version.stage = stage if version.version == row.candidate_version else "Archived"
            if previous != version.stage:
                version.updated_at = utcnow()
                append_event(s, actor=self.registry.context.actor, action="version.stage",
                             subject=f"model/{model.name}/{version.version}",
                             payload={"from": previous, "to": version.stage,
                                      "reason": f"rollout {row.id} succeeded"})

    def _serves_later(self, stage: str, environment: str) -> bool:
        """Is ``stage`` the stage of an environment after ``environment`` in the promotion
        order? (Deploying production's version to staging must not demote it.)"""
        envs = list(self.registry.context.settings.environments)
        other = environment_for_stage(stage)
        return other is not None and other in envs and environment in envs \
            and envs.index(other) > envs.index(environment)
