"""One pass of the rollout controller: look at every progressing rollout and act on it.

A pass costs O(new log rows), not O(history): the ticker keeps, per rollout, the cursors
that find new log files (:class:`~mlops.deployment.traffic.RolloutTraffic`) and the running
aggregates those rows are added to (:class:`~mlops.deployment.evidence.Evidence`); the
sequential tests' state and the bandit's share live in the rollout row
(:class:`~mlops.deployment.memory.RolloutMemory`). A ticker that has not seen a rollout yet
(a fresh process, a new leader) reads its log once from the start.

Each rollout goes through four small steps: :meth:`RolloutTicker.snapshot` (read the row),
:meth:`RolloutTicker.look` (the analysis its strategy names for the step),
:func:`decide` (the :class:`~mlops.deployment.types.Action`) and
:meth:`RolloutTicker.apply` (one write transaction, behind the lease's fence, that
re-checks the row and applies the action).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.deployment.analysis import StepAnalysis, analyse
from mlops.deployment.bandit import analyse_bandit
from mlops.deployment.config import RolloutConfig
from mlops.deployment.evidence import FEEDBACK_COLUMNS, PREDICTION_COLUMNS, Evidence
from mlops.deployment.memory import BanditMemory, RolloutMemory
from mlops.deployment.shadow import analyse_shadow
from mlops.deployment.smoke import smoke_test
from mlops.deployment.strategies import Look, Strategy, strategy_for
from mlops.deployment.traffic import RolloutTraffic
from mlops.deployment.transitions import Transitions, rollout_settings, rollout_steps
from mlops.deployment.types import Action, Outcome, RolloutState, Step, StepGate
from mlops.deployment.views import Rollout, rollout_view, utc
from mlops.errors import ConcurrencyError, LeaseLost
from mlops.registry.service import ModelRegistry
from mlops.store.routes import RouteMode
from mlops.store.schema import AnalysisRow, ModelRow, RolloutRow, utcnow

__all__ = ["Fence", "Judgement", "RolloutTicker", "Snapshot", "decide"]

log = logging.getLogger("mlops.deployment")

#: called inside each write transaction of a pass; raises when the pass lost its lease
#: (:meth:`mlops.store.leases.Lease.check`)
Fence = Callable[[Session], None]


@dataclass(frozen=True)
class Snapshot:
    """What a look needs of a rollout row, read once at the start of its turn."""

    id: int
    model: str
    environment: str
    strategy: Strategy
    stable: str
    candidate: str
    steps: list[Step]
    index: int
    started: datetime
    step_started: datetime
    settings: RolloutConfig
    memory: RolloutMemory

    @property
    def step(self) -> Step:
        return self.steps[self.index]

    @property
    def weight(self) -> float:
        """The candidate's share now (a bandit's last move, else the step's)."""
        moved = self.memory.bandit.weight if self.strategy.reweights else None
        return self.step.weight if moved is None else moved


@dataclass(frozen=True)
class Judgement:
    """A look's result, the candidate's next share, and what to do about it."""

    result: StepAnalysis
    share: float
    action: Action
    elapsed: float


def decide(snap: Snapshot, result: StepAnalysis, share: float, elapsed: float) -> Action:
    """The controller's rule for one look (a pure function of the look and the plan)."""
    step, outcome = snap.step, result.outcome
    if outcome is Outcome.FAILED:
        return Action.ROLL_BACK
    if step.until is StepGate.MANUAL and step.weight < 100:
        return Action.HOLD  # a person promotes; the analysis still guards against failure
    if outcome is Outcome.SUCCESSFUL and (step.until is not StepGate.TIME
                                          or elapsed >= step.pause):
        last = snap.index + 1 >= len(snap.steps) or snap.steps[snap.index + 1].immediate
        return Action.FINISH if last else Action.ADVANCE
    if outcome is Outcome.INCONCLUSIVE and snap.strategy.reweights:
        return Action.REWEIGHT
    limit = snap.settings.max_step_seconds or max(3600.0, 10 * step.pause)
    if outcome is Outcome.INCONCLUSIVE and elapsed >= limit:
        return Action.PAUSE
    return Action.WAIT


@dataclass
class _Tracked:
    """A rollout's log cursors and running evidence between passes."""

    key: tuple[str, str, str, int]  # (environment, stable, candidate, step): what they fit
    traffic: RolloutTraffic
    evidence: Evidence


class RolloutTicker:
    """The controller's passes (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, transitions: Transitions,
                 gateway_url: str | None = None, gateway_environment: str | None = None
                 ) -> None:
        self.registry = registry
        self.store = registry.context.store
        self.transitions = transitions
        self.gateway_url = gateway_url
        self.gateway_environment = gateway_environment
        self.tracked: dict[int, _Tracked] = {}

    # ------------------------------------------------------------------ the pass
    def tick(self, now: float, *, fence: Fence | None = None) -> list[Rollout]:
        """Analyse every progressing rollout once and apply the outcome. A rollout whose
        turn raises (a stored config that no longer parses, a corrupt log file, a bug) is
        paused with the error as its reason; the others go on. A lost lease stops the
        pass (:class:`~mlops.store.leases.LeaseLost`)."""
        with self.store.read() as s:
            ids = [(r.id, name) for r, name in s.execute(
                select(RolloutRow, ModelRow.name).join(ModelRow)
                .where(RolloutRow.state == RolloutState.PROGRESSING.value))]
        for gone in set(self.tracked) - {rid for rid, _ in ids}:
            del self.tracked[gone]  # ended, paused or taken over: start afresh if it returns
        done: list[Rollout] = []
        for rid, name in ids:
            try:
                result = self.turn(rid, name, now, fence)
            except LeaseLost:
                self.tracked.clear()  # a new leader carries on; our cursors go stale
                raise
            except ConcurrencyError as exc:  # the database was busy: the next pass retries
                self.tracked.pop(rid, None)
                log.warning("rollout %s of %s skipped this pass: %s", rid, name, exc)
                continue
            except Exception as exc:  # one broken rollout must not wedge the rest
                self.tracked.pop(rid, None)
                result = self._pause_broken(rid, name, exc, fence)
            if result is not None:
                done.append(result)
        return done

    def turn(self, rollout_id: int, model: str, now: float, fence: Fence | None = None
             ) -> Rollout | None:
        """One rollout's turn: snapshot, look, decide, apply."""
        snap = self.snapshot(rollout_id, model)
        if snap is None:
            return None
        evidence = self.evidence(snap, now)
        result, share = self.look(snap, evidence)
        elapsed = now - snap.step_started.timestamp()
        judgement = Judgement(result, share, decide(snap, result, share, elapsed), elapsed)
        return self.apply(snap, judgement, fence)

    # ------------------------------------------------------------------ steps of a turn
    def snapshot(self, rollout_id: int, model: str) -> Snapshot | None:
        with self.store.read() as s:
            row = s.get(RolloutRow, rollout_id)
            if row is None or row.state != RolloutState.PROGRESSING:
                return None
            return Snapshot(row.id, model, row.environment, strategy_for(row.strategy),
                            row.stable_version or "", row.candidate_version,
                            rollout_steps(row), row.step_index, utc(row.started_at),
                            utc(row.step_started_at), rollout_settings(row),
                            RolloutMemory.from_json(row.monitor))

    def evidence(self, snap: Snapshot, now: float) -> Evidence:
        """The rollout's evidence with the log rows that arrived since the last pass
        added, settled at ``now``."""
        key = (snap.environment, snap.stable, snap.candidate, snap.index)
        tracked = self.tracked.get(snap.id)
        if tracked is None or tracked.key[:3] != key[:3]:
            tracked = self.tracked[snap.id] = _Tracked(key, self.traffic(snap), Evidence(
                environment=snap.environment, stable=snap.stable, candidate=snap.candidate,
                label_delay=snap.settings.label_delay, label_window=snap.settings.label_window,
                shadow=any(s.mode is RouteMode.SHADOW for s in snap.steps)))
        tracked.key = key
        evidence = tracked.evidence
        evidence.begin_step(snap.index, snap.step_started.timestamp(), snap.weight)
        for predictions, feedback in tracked.traffic.read_new():
            evidence.ingest(predictions, feedback, now)
        evidence.settle(now, snap.settings.srm_settle_seconds)
        return evidence

    def traffic(self, snap: Snapshot) -> RolloutTraffic:
        """The log cursors of a rollout, starting when it started."""
        return RolloutTraffic(self.registry.context.settings.artifacts_uri, snap.model,
                              snap.environment, [snap.stable, snap.candidate], snap.started,
                              columns=PREDICTION_COLUMNS, feedback_columns=FEEDBACK_COLUMNS)

    def look(self, snap: Snapshot, evidence: Evidence) -> tuple[StepAnalysis, float]:
        """The analysis the strategy names for this step, and the candidate's next share."""
        kind = snap.strategy.look(snap.index, snap.step)
        return self._looks[kind](self, snap, evidence)

    def _smoke(self, snap: Snapshot, evidence: Evidence) -> tuple[StepAnalysis, float]:
        url = self.gateway_url if self.gateway_environment in (None, snap.environment) \
            else None
        smoke = smoke_test(self.registry, snap.model, snap.candidate, url)
        return StepAnalysis(Outcome.SUCCESSFUL if smoke.ok else Outcome.FAILED,
                            f"smoke ({smoke.via}): {smoke.reason}",
                            {"smoke": {"ok": smoke.ok, "rows": smoke.rows, "via": smoke.via}},
                            snap.memory.analysis), snap.weight

    def _split(self, snap: Snapshot, evidence: Evidence) -> tuple[StepAnalysis, float]:
        return analyse(evidence, weight=snap.step.weight, config=snap.settings,
                       monitors=snap.memory.analysis), snap.weight

    def _shadow(self, snap: Snapshot, evidence: Evidence) -> tuple[StepAnalysis, float]:
        return analyse_shadow(evidence, config=snap.settings,
                              monitors=snap.memory.analysis), snap.weight

    def _bandit(self, snap: Snapshot, evidence: Evidence) -> tuple[StepAnalysis, float]:
        result, share = analyse_bandit(evidence, weight=snap.weight, config=snap.settings)
        return replace(result, monitors=snap.memory.analysis), share

    _looks: ClassVar[dict[Look, Callable[[RolloutTicker, Snapshot, Evidence],
                                         tuple[StepAnalysis, float]]]] = {
        Look.SMOKE: _smoke, Look.SPLIT: _split, Look.SHADOW: _shadow, Look.BANDIT: _bandit}

    def apply(self, snap: Snapshot, judgement: Judgement, fence: Fence | None = None
              ) -> Rollout | None:
        """Record the look and carry out its action in one write transaction (nothing when
        another controller or a person moved the rollout meanwhile)."""
        result = judgement.result

        def record(s: Session) -> Rollout | None:
            if fence is not None:
                fence(s)
            row = s.get(RolloutRow, snap.id)
            if row is None or row.state != RolloutState.PROGRESSING \
                    or row.step_index != snap.index:
                return None
            mrow = s.get(ModelRow, row.model_id)
            assert mrow is not None
            memory = RolloutMemory(result.monitors, snap.memory.bandit)
            s.add(AnalysisRow(rollout_id=row.id, step_index=snap.index,
                              outcome=result.outcome.value,
                              details={"reason": result.reason, "metrics": result.metrics,
                                       "weight": snap.step.weight,
                                       "elapsed_s": round(judgement.elapsed, 1)}))
            row.monitor = (self._act(s, mrow, row, snap, judgement, memory) or memory).to_json()
            row.updated_at = utcnow()
            s.flush()
            return rollout_view(s, row, mrow.name, analyses=1)

        return self.store.run(record)  # again after a deadlock: nothing of a lost try stays

    def _act(self, s: Session, mrow: ModelRow, row: RolloutRow, snap: Snapshot,
             judgement: Judgement, memory: RolloutMemory) -> RolloutMemory | None:
        """Carry out the action; a new memory when it changes the bandit's share."""
        result, action, t = judgement.result, judgement.action, self.transitions
        if action is Action.ROLL_BACK:
            t.roll_back(s, mrow, row, f"analysis failed: {result.reason}")
        elif action is Action.HOLD:
            row.reason = f"waiting for a person to promote ({result.outcome.value.lower()})"
        elif action is Action.FINISH:
            t.finish(s, mrow, row, f"analysis passed: {result.reason}")
        elif action is Action.ADVANCE:
            t.advance(s, mrow, row, result.reason)
        elif action is Action.REWEIGHT:
            current, share = snap.weight, judgement.share
            if abs(share - current) < 1.0:
                return RolloutMemory(memory.analysis, BanditMemory(current))
            t.split(s, mrow, row, share, snap.step.mode,
                    f"bandit: P(candidate better) moves the split to {share:.1f}%")
            return RolloutMemory(memory.analysis, BanditMemory(share))
        elif action is Action.PAUSE:
            t.pause(s, mrow.name, row, f"inconclusive for {judgement.elapsed:.0f} s: "
                                       f"{result.reason}")
        return None

    def _pause_broken(self, rollout_id: int, model: str, error: Exception,
                      fence: Fence | None) -> Rollout | None:
        """Pause a rollout whose turn raised, once, with the error as reason."""
        text = f"{type(error).__name__}: {error}"

        def pause(s: Session) -> Rollout | None:
            if fence is not None:
                fence(s)
            row = s.get(RolloutRow, rollout_id)
            if row is None or row.state != RolloutState.PROGRESSING:
                return None
            self.transitions.pause(s, model, row, "paused by the controller after an "
                                                  f"error: {text}", error=text)
            s.flush()
            return rollout_view(s, row, model, analyses=1)

        try:
            paused = self.store.run(pause)
        except LeaseLost:
            raise
        except Exception:  # logged; the other rollouts go on
            log.exception("rollout %s of %s failed and could not be paused", rollout_id, model)
            return None
        log.error("rollout %s of %s paused after an error: %s", rollout_id, model, text,
                  exc_info=error)
        return paused

