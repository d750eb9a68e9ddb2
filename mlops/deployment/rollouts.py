"""Rollouts: the state machine that moves traffic from the stable version to a candidate.

States: ``progressing`` -> ``succeeded`` (the candidate became stable) | ``rolled_back``
(traffic went back to stable: a failed analysis or a person) | ``paused`` (waiting for a
person; ``resume`` continues). Everything lives in the database, so a controller that is
killed and started again continues at the same step with the same split; each transition
is idempotent (it checks the state it expects) and writes its audit event in the same
transaction. :meth:`RolloutManager.tick` is one pass of the controller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.deployment.analysis import StepAnalysis, analyse
from mlops.deployment.bandit import analyse_bandit
from mlops.deployment.config import RolloutConfig, parse_rollout_config
from mlops.deployment.routes import RouteWriter
from mlops.deployment.shadow import analyse_shadow
from mlops.deployment.smoke import smoke_test
from mlops.deployment.steps import Step, plan_steps
from mlops.errors import ConcurrencyError, DeploymentError
from mlops.registry.promotion import (
    Verdict,
    check_serving_change,
    environment_for_stage,
    stage_for_environment,
)
from mlops.registry.service import ModelRegistry
from mlops.serving.predlog import read_feedback, read_predictions
from mlops.store.audit import append_event
from mlops.store.counters import ROUTING, bump_counter
from mlops.store.schema import (
    AnalysisRow,
    DeploymentRow,
    ModelRow,
    RolloutRow,
    VersionRow,
    utcnow,
)

__all__ = ["ACTIVE", "Rollout", "RolloutManager"]

ACTIVE = ("progressing", "paused")
log = logging.getLogger("mlops.deployment")


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@dataclass(frozen=True)
class Rollout:
    id: int
    model: str
    environment: str
    strategy: str
    stable: str | None
    candidate: str
    steps: list[Step]
    step_index: int
    state: str
    reason: str
    started_at: datetime
    step_started_at: datetime
    analyses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weight(self) -> float:
        return self.steps[min(self.step_index, len(self.steps) - 1)].weight

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "environment": self.environment,
                "strategy": self.strategy, "stable": self.stable, "candidate": self.candidate,
                "steps": [s.to_dict() for s in self.steps], "step_index": self.step_index,
                "weight": self.weight, "state": self.state, "reason": self.reason,
                "started_at": self.started_at.isoformat(),
                "step_started_at": self.step_started_at.isoformat(),
                "analyses": self.analyses}


class RolloutManager:
    """Start, advance, pause, promote and roll back rollouts (one model, one environment
    has at most one active rollout)."""

    def __init__(self, registry: ModelRegistry, gateway_url: str | None = None,
                 gateway_environment: str | None = None) -> None:
        self.registry = registry
        self.store = registry.store
        self.routes = RouteWriter(registry)
        self.gateway_url = gateway_url
        #: the environment that gateway serves (None: unknown, assumed to be the rollout's);
        #: a smoke request through another environment's gateway would be refused there
        self.gateway_environment = gateway_environment

    # ------------------------------------------------------------------ helpers
    def _model(self, s: Session, name: str) -> ModelRow:
        row = s.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            self.registry.get_model(name)  # raises ModelNotFound with its fix
            raise AssertionError("unreachable")
        return row

    def _active(self, s: Session, model: ModelRow, env: str) -> RolloutRow | None:
        return s.scalar(select(RolloutRow).where(
            RolloutRow.model_id == model.id, RolloutRow.environment == env,
            RolloutRow.state.in_(ACTIVE)).order_by(RolloutRow.id.desc()))

    def _latest(self, s: Session, model: ModelRow, env: str) -> RolloutRow | None:
        return s.scalar(select(RolloutRow).where(
            RolloutRow.model_id == model.id, RolloutRow.environment == env)
            .order_by(RolloutRow.id.desc()))

    @staticmethod
    def _steps(row: RolloutRow) -> list[Step]:
        return [Step(**d) for d in row.steps.get("steps", [])]

    @staticmethod
    def _settings(row: RolloutRow) -> RolloutConfig:
        """The row's stored settings, parsed with the same models as at deploy time."""
        try:
            return parse_rollout_config(row.strategy, row.config or {})
        except DeploymentError as exc:
            raise DeploymentError(
                f"The stored config of rollout {row.id} no longer parses: {exc.message}",
                fix="Abort the rollout and deploy again with a valid config.",
                rollout=row.id) from exc

    @classmethod
    def _keep_seconds(cls, row: RolloutRow) -> float:
        """How long the previous version stays loaded; the default when the stored config
        no longer parses (promoting or aborting such a rollout must still work)."""
        try:
            return cls._settings(row).keep_previous_seconds
        except DeploymentError:
            return RolloutConfig().keep_previous_seconds

    def _to_rollout(self, s: Session, row: RolloutRow, name: str, analyses: int = 20
                    ) -> Rollout:
        found = s.scalars(select(AnalysisRow).where(AnalysisRow.rollout_id == row.id)
                          .order_by(AnalysisRow.id.desc()).limit(analyses)).all()
        return Rollout(row.id, name, row.environment, row.strategy, row.stable_version,
                       row.candidate_version, self._steps(row), row.step_index, row.state,
                       row.reason, _utc(row.started_at), _utc(row.step_started_at),
                       [{"step": a.step_index, "outcome": a.outcome, "at":
                         _utc(a.created_at).isoformat(), **a.details}
                        for a in reversed(found)])

    def _set_route(self, s: Session, model: ModelRow, env: str, stable: str | None,
                   candidate: str | None, weight: float, strategy: str, state: str,
                   mode: str = "split", keep: str | None = None,
                   keep_seconds: float = 0.0) -> None:
        """Write the routing row inside the caller's transaction."""
        row = s.scalar(select(DeploymentRow).where(DeploymentRow.model_id == model.id,
                                                   DeploymentRow.environment == env))
        if row is None:
            import secrets

            row = DeploymentRow(model_id=model.id, environment=env, salt=secrets.token_hex(8),
                                revision=0, config={})
            s.add(row)
        row.stable_version, row.candidate_version = stable, candidate
        row.candidate_weight = weight if candidate else 0.0
        row.mode, row.strategy, row.state = mode, strategy, state
        config = {k: v for k, v in (row.config or {}).items()
                  if k not in {"keep_loaded", "keep_until"}}
        if keep and keep_seconds > 0:  # the gateway keeps it loaded: rollback is a swap
            config.update(keep_loaded=[keep], keep_until=time.time() + keep_seconds)
        row.config = config
        row.revision = (row.revision or 0) + 1
        row.updated_at = utcnow()
        s.flush()
        bump_counter(s, ROUTING)

    def _audit(self, s: Session, action: str, model: str, env: str, payload: dict[str, Any]
               ) -> None:
        append_event(s, actor=self.registry.actor, action=action,
                     subject=f"model/{model}/env/{env}", payload=payload)

    # ------------------------------------------------------------------ commands
    def _gate(self, s: Session, mrow: ModelRow, environment: str, versions: list[str | None],
              action: str, override: str | None = None) -> Verdict:
        """Every change of what an environment serves passes the one promotion gate."""
        return check_serving_change(s, self.registry.settings, self.registry.principal, mrow,
                                    environment, versions, override=override, action=action)

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
            mrow = self._model(s, model)
            verdict = self._gate(s, mrow, environment, [version], f"deploy {version}", override)
            if self._active(s, mrow, environment) is not None:
                raise DeploymentError(
                    f"{model} already has an active rollout in {environment}.",
                    fix=f"Finish it first: mlops rollout promote|abort {model} --env "
                        f"{environment}.", model=model)
            dep = s.scalar(select(DeploymentRow).where(DeploymentRow.model_id == mrow.id,
                                                       DeploymentRow.environment == environment))
            stable = dep.stable_version if dep is not None else None
            if stable is None:
                stage = stage_for_environment(environment)
                current = [v for v in self.registry.list_versions(model)
                           if stage is not None and v.stage == stage]
                stable = current[-1].version if current else None
            if stable == version:
                raise DeploymentError(f"{model} {version} is already stable in {environment}.",
                                      fix="Deploy another version.", model=model,
                                      version=version)
            row = RolloutRow(model_id=mrow.id, environment=environment, strategy=strategy,
                             stable_version=stable, candidate_version=version,
                             steps={"steps": [st.to_dict() for st in steps]}, step_index=0,
                             state="progressing", reason=reason, config=settings.analysis(),
                             monitor={},
                             created_by=self.registry.actor)
            s.add(row)
            s.flush()
            self._audit(s, "rollout.start", model, environment,
                        {"rollout": row.id, "strategy": strategy, "stable": stable,
                         "candidate": version, "steps": row.steps["steps"], "reason": reason,
                         **verdict.payload()})
            if stable is None or strategy == "full":
                self._finish(s, mrow, row, "no stable version to compare with" if stable is None
                             else "full replacement")
            else:
                self._set_route(s, mrow, environment, stable, version, steps[0].weight,
                                strategy, "progressing", steps[0].mode)
            s.flush()
            return self._to_rollout(s, row, model)

    def _finish(self, s: Session, model: ModelRow, row: RolloutRow, why: str) -> None:
        """The candidate becomes stable (the previous stable stays known for rollback)."""
        self._set_route(s, model, row.environment, row.candidate_version, None, 0.0,
                        row.strategy, "stable", keep=row.stable_version,
                        keep_seconds=self._keep_seconds(row))
        row.step_index = len(self._steps(row)) - 1
        row.state, row.reason, row.updated_at = "succeeded", why, utcnow()
        stage = stage_for_environment(row.environment)
        if stage is not None:  # the registry's stage follows what the environment serves
            for version in s.scalars(select(VersionRow).where(
                    VersionRow.model_id == model.id,
                    (VersionRow.stage == stage) | (VersionRow.version == row.candidate_version))):
                if self._serves_later(version.stage, row.environment):
                    continue  # never take a version away from an environment further on
                previous = version.stage
                version.stage = stage if version.version == row.candidate_version else "Archived"
                if previous != version.stage:
                    version.updated_at = utcnow()
                    append_event(s, actor=self.registry.actor, action="version.stage",
                                 subject=f"model/{model.name}/{version.version}",
                                 payload={"from": previous, "to": version.stage,
                                          "reason": f"rollout {row.id} succeeded"})
        self._audit(s, "rollout.succeed", model.name, row.environment,
                    {"rollout": row.id, "version": row.candidate_version,
                     "previous": row.stable_version, "reason": why})

    def _serves_later(self, stage: str, environment: str) -> bool:
        """Is ``stage`` the stage of an environment after ``environment`` in the promotion
        order? (Deploying production's version to staging must not demote it.)"""
        envs = list(self.registry.settings.environments)
        other = environment_for_stage(stage)
        return other is not None and other in envs and environment in envs \
            and envs.index(other) > envs.index(environment)

    def _roll_back(self, s: Session, model: ModelRow, row: RolloutRow, why: str) -> None:
        self._set_route(s, model, row.environment, row.stable_version, None, 0.0,
                        row.strategy, "stable")
        row.state, row.reason, row.updated_at = "rolled_back", why, utcnow()
        self._audit(s, "rollout.rollback", model.name, row.environment,
                    {"rollout": row.id, "to": row.stable_version,
                     "from": row.candidate_version, "reason": why})

    def _transition(self, model: str, env: str, expect: tuple[str, ...], action: str,
                    reason: str) -> Rollout:
        with self.store.write() as s:
            mrow = self._model(s, model)
            self._gate(s, mrow, env, [], f"{action} the rollout")
            row = self._active(s, mrow, env)
            if row is None or row.state not in expect:
                raise DeploymentError(f"{model} has no rollout in {env} that can {action}.",
                                      fix=f"See mlops rollout status {model} --env {env}.",
                                      model=model)
            if action == "promote":
                self._finish(s, mrow, row, reason or "promoted by a person")
            elif action == "abort":
                self._roll_back(s, mrow, row, reason or "aborted by a person")
            elif action == "pause":
                row.state, row.reason = "paused", reason or "paused by a person"
                self._audit(s, "rollout.pause", model, env, {"rollout": row.id,
                                                             "reason": row.reason})
            else:  # resume
                self._settings(row)  # a config that no longer parses would pause again
                row.state, row.reason, row.step_started_at = "progressing", reason, utcnow()
                self._audit(s, "rollout.resume", model, env, {"rollout": row.id,
                                                              "reason": reason})
            row.updated_at = utcnow()
            s.flush()
            return self._to_rollout(s, row, model)

    def promote(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ACTIVE, "promote", reason)

    def abort(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ACTIVE, "abort", reason)

    def pause(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ("progressing",), "pause", reason)

    def resume(self, model: str, env: str = "production", reason: str = "") -> Rollout:
        return self._transition(model, env, ("paused",), "resume", reason)

    def rollback(self, model: str, env: str = "production", *, to: str | None = None,
                 reason: str = "") -> str:
        """All traffic back to the previous stable version (or ``to``); returns it."""
        with self.store.write() as s:
            mrow = self._model(s, model)
            self._gate(s, mrow, env, [], "roll back")  # who may, before what there is
            active = self._active(s, mrow, env)
            if active is not None and to is None:
                self._gate(s, mrow, env, [active.stable_version], "roll back")
                self._roll_back(s, mrow, active, reason or "rollback by a person")
                return str(active.stable_version)
            target = to
            if target is None:
                last = s.scalar(select(RolloutRow).where(
                    RolloutRow.model_id == mrow.id, RolloutRow.environment == env,
                    RolloutRow.state == "succeeded").order_by(RolloutRow.id.desc()))
                target = last.stable_version if last is not None else None
            if target is None:
                raise DeploymentError(f"{model} has no earlier version in {env} to go back to.",
                                      fix=f"Name one: mlops rollback {model} --env {env} "
                                          "--to VERSION.", model=model)
            target = self.registry.get_version(model, target).version
            self._gate(s, mrow, env, [target], f"roll back to {target}")
            if active is not None:
                self._roll_back(s, mrow, active, reason or f"rollback to {target}")
            dep = s.scalar(select(DeploymentRow).where(DeploymentRow.model_id == mrow.id,
                                                       DeploymentRow.environment == env))
            before = dep.stable_version if dep is not None else None
            self._set_route(s, mrow, env, target, None, 0.0, "rollback", "stable")
            self._audit(s, "rollout.rollback", model, env,
                        {"to": target, "from": before, "reason": reason or "rollback"})
            return target

    def status(self, model: str, env: str = "production") -> Rollout | None:
        with self.store.read() as s:
            mrow = self._model(s, model)
            row = self._latest(s, mrow, env)
            return None if row is None else self._to_rollout(s, row, model)

    # ------------------------------------------------------------------ the controller
    def tick(self, now: float | None = None) -> list[Rollout]:
        """Analyse every progressing rollout once and apply the outcome. A rollout whose
        pass raises (a stored config that no longer parses, a corrupt log file, a bug) is
        paused with the error as its reason; the others go on."""
        now = time.time() if now is None else now
        with self.store.read() as s:
            ids = [(r.id, name) for r, name in s.execute(
                select(RolloutRow, ModelRow.name).join(ModelRow)
                .where(RolloutRow.state == "progressing"))]
        done: list[Rollout] = []
        for rid, name in ids:
            try:
                result = self._advance(rid, name, now)
            except ConcurrencyError as exc:  # the database was busy: the next pass retries
                log.warning("rollout %s of %s skipped this pass: %s", rid, name, exc)
                continue
            except Exception as exc:  # one broken rollout must not wedge the rest
                result = self._pause_broken(rid, name, exc)
            if result is not None:
                done.append(result)
        return done

    def _pause_broken(self, rollout_id: int, model: str, error: Exception) -> Rollout | None:
        """Pause a rollout whose controller pass raised, once, with the error as reason."""
        text = f"{type(error).__name__}: {error}"
        try:
            with self.store.write() as s:
                row = s.get(RolloutRow, rollout_id)
                if row is None or row.state != "progressing":
                    return None
                row.state = "paused"
                row.reason = f"paused by the controller after an error: {text}"[:2000]
                row.updated_at = utcnow()
                self._audit(s, "rollout.pause", model, row.environment,
                            {"rollout": row.id, "reason": row.reason, "error": text})
                s.flush()
                paused = self._to_rollout(s, row, model, analyses=1)
        except Exception:  # logged; the other rollouts go on
            log.exception("rollout %s of %s failed and could not be paused", rollout_id, model)
            return None
        log.error("rollout %s of %s paused after an error: %s", rollout_id, model, text,
                  exc_info=error)
        return paused

    def _traffic(self, model: str, env: str, since: float) -> tuple[pa.Table, pa.Table]:
        uri = self.registry.settings.artifacts_uri
        # only the day partitions since the rollout started are read
        log = read_predictions(uri, model=model, since=since)
        if log.num_rows:
            log = log.filter(pc.equal(log["environment"], env))
        return log, read_feedback(uri, model=model, since=since)

    def _advance(self, rollout_id: int, model: str, now: float) -> Rollout | None:
        with self.store.read() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None or row.state != "progressing":
                return None
            steps, index = self._steps(row), row.step_index
            started = _utc(row.started_at).timestamp()
            step_started = _utc(row.step_started_at).timestamp()
            env, stable, candidate = row.environment, row.stable_version, row.candidate_version
            settings, monitors = self._settings(row), dict(row.monitor or {})
            row_strategy = row.strategy
            current_weight = float(row.monitor.get("bandit_weight", steps[index].weight)) \
                if row.monitor else steps[index].weight
        step = steps[index]
        log, feedback = self._traffic(model, env, started)
        share = step.weight
        result: StepAnalysis
        if step.until == "smoke":
            url = self.gateway_url if self.gateway_environment in (None, env) else None
            smoke = smoke_test(self.registry, model, candidate, url)
            result = StepAnalysis("Successful" if smoke.ok else "Failed",
                                  f"smoke ({smoke.via}): {smoke.reason}",
                                  {"smoke": {"ok": smoke.ok, "rows": smoke.rows,
                                             "via": smoke.via}}, monitors)
        elif row_strategy == "bandit" and index == 0:
            result, share = analyse_bandit(log, feedback, stable=stable or "",
                                           candidate=candidate, weight=current_weight,
                                           config=settings, now=now)
        elif step.mode == "shadow":
            result = analyse_shadow(log, feedback, stable=stable or "", candidate=candidate,
                                    config=settings, monitors=monitors, now=now)
        else:
            result = analyse(log, feedback, stable=stable or "", candidate=candidate,
                             weight=step.weight, config=settings, monitors=monitors, now=now,
                             step_since=step_started)
        elapsed = now - step_started
        limit = settings.max_step_seconds or max(3600.0, 10 * step.pause)
        with self.store.write() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None or row.state != "progressing" or row.step_index != index:
                return None  # another controller or a person moved it meanwhile
            mrow = s.get(ModelRow, row.model_id)
            assert mrow is not None
            row.monitor = result.monitors
            s.add(AnalysisRow(rollout_id=row.id, step_index=index, outcome=result.outcome,
                              details={"reason": result.reason, "metrics": result.metrics,
                                       "weight": step.weight, "elapsed_s": round(elapsed, 1)}))
            if result.outcome == "Failed":
                self._roll_back(s, mrow, row, f"analysis failed: {result.reason}")
            elif step.until == "manual" and step.weight < 100:
                # a person promotes; the analysis still guards against failure meanwhile
                row.reason = f"waiting for a person to promote ({result.outcome.lower()})"
            elif result.outcome == "Successful" and (step.until != "time"
                                                     or elapsed >= step.pause):
                if index + 1 >= len(steps) or (steps[index + 1].weight >= 100 \
                        and steps[index + 1].pause == 0 and steps[index + 1].until == "time"):
                    self._finish(s, mrow, row, f"analysis passed: {result.reason}")
                else:
                    row.step_index = index + 1
                    row.step_started_at = utcnow()
                    nxt = steps[index + 1]
                    self._set_route(s, mrow, row.environment, row.stable_version,
                                    row.candidate_version, nxt.weight, row.strategy,
                                    "progressing", nxt.mode)
                    self._audit(s, "rollout.step", mrow.name, row.environment,
                                {"rollout": row.id, "step": index + 1, "weight": nxt.weight,
                                 "reason": result.reason})
            elif row_strategy == "bandit" and result.outcome == "Inconclusive":
                if abs(share - current_weight) >= 1.0:
                    row.monitor = {**result.monitors, "bandit_weight": share}
                    self._set_route(s, mrow, row.environment, row.stable_version,
                                    row.candidate_version, share, row.strategy, "progressing")
                else:
                    row.monitor = {**result.monitors, "bandit_weight": current_weight}
            elif result.outcome == "Inconclusive" and elapsed >= limit:
                row.state = "paused"
                row.reason = f"inconclusive for {elapsed:.0f} s: {result.reason}"
                self._audit(s, "rollout.pause", mrow.name, row.environment,
                            {"rollout": row.id, "reason": row.reason})
            row.updated_at = utcnow()
            s.flush()
            return self._to_rollout(s, row, mrow.name, analyses=1)
