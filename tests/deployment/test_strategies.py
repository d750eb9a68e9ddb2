"""Typed rollouts: strategies as objects (plan and look), the controller's rule as a pure
function of a look, enums stored as their values, analysis state apart from the bandit's
share (and the flat layout of older rows still read)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlops.deployment.analysis import StepAnalysis
from mlops.deployment.config import parse_rollout_config
from mlops.deployment.memory import BanditMemory, RolloutMemory
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.strategies import Look, strategy_for
from mlops.deployment.tick import Snapshot, decide
from mlops.deployment.types import Action, Outcome, RolloutState, Step, StepGate
from mlops.errors import DeploymentError
from mlops.registry.service import ModelRegistry
from mlops.store.routes import RouteMode
from mlops.store.schema import RolloutRow


@pytest.mark.parametrize(("strategy", "looks"), [
    ("canary", [Look.SPLIT, Look.SPLIT]),
    ("ab_test", [Look.SPLIT, Look.SPLIT]),
    ("blue_green", [Look.SMOKE, Look.SPLIT, Look.SPLIT]),
    ("shadow", [Look.SHADOW, Look.SPLIT]),
    ("bandit", [Look.BANDIT, Look.SPLIT]),
    ("full", [Look.SPLIT]),
])
def test_each_strategy_names_the_look_of_each_step(strategy: str, looks: list[Look]) -> None:
    obj = strategy_for(strategy)
    settings = parse_rollout_config(strategy, {"steps": [{"weight": 20}]}
                                    if strategy == "canary" else {})
    plan = obj.plan(settings)
    if plan[-1].weight < 100:
        plan.append(Step(100.0))
    assert [obj.look(i, s) for i, s in enumerate(plan)] == looks
    assert obj.reweights is (strategy == "bandit")


def test_an_unknown_strategy_names_the_nearest() -> None:
    with pytest.raises(DeploymentError, match="did you mean 'canary'"):
        strategy_for("canery")


def _snap(steps: list[Step], index: int = 0, strategy: str = "canary",
          max_step_seconds: float | None = None) -> Snapshot:
    now = datetime.now(UTC)
    config = {} if max_step_seconds is None else {"max_step_seconds": max_step_seconds}
    return Snapshot(1, "m", "production", strategy_for(strategy), "1.0.0", "1.1.0", steps,
                    index, now, now, parse_rollout_config(strategy, config), RolloutMemory())


def _look(outcome: Outcome) -> StepAnalysis:
    return StepAnalysis(outcome, "because")


CANARY = [Step(10, 60), Step(50, 0, StepGate.ANALYSIS), Step(100)]


@pytest.mark.parametrize(("snap", "outcome", "elapsed", "action"), [
    (_snap(CANARY), Outcome.FAILED, 0, Action.ROLL_BACK),
    (_snap(CANARY), Outcome.SUCCESSFUL, 10, Action.WAIT),  # the pause has not passed
    (_snap(CANARY), Outcome.SUCCESSFUL, 60, Action.ADVANCE),
    (_snap(CANARY, 1), Outcome.SUCCESSFUL, 0, Action.FINISH),  # the next step is 100%
    (_snap(CANARY), Outcome.INCONCLUSIVE, 10, Action.WAIT),
    (_snap(CANARY, max_step_seconds=30), Outcome.INCONCLUSIVE, 31, Action.PAUSE),
    (_snap([Step(50, 0, StepGate.MANUAL), Step(100)]), Outcome.SUCCESSFUL, 0, Action.HOLD),
    (_snap([Step(50, 0, StepGate.MANUAL), Step(100)]), Outcome.FAILED, 0, Action.ROLL_BACK),
    (_snap([Step(50, 0, StepGate.ANALYSIS), Step(100)], strategy="bandit"),
     Outcome.INCONCLUSIVE, 10_000, Action.REWEIGHT),
])
def test_the_controller_rule(snap: Snapshot, outcome: Outcome, elapsed: float,
                             action: Action) -> None:
    assert decide(snap, _look(outcome), 50.0, elapsed) is action


def test_stored_plans_and_states_are_plain_values_read_back_as_enums(
        registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    registry.register("m", skops_file, bump="minor")
    registry.promote("m", "1.0.0", "production")
    rollout = RolloutManager(registry).deploy("m", "1.1.0", "production",
                                              strategy="shadow", override="test")
    with registry.store.read() as s:
        row = s.get(RolloutRow, rollout.id)
        assert row is not None
        assert row.state == "progressing" and type(row.steps["steps"][0]["until"]) is str
    assert rollout.state is RolloutState.PROGRESSING
    assert rollout.steps[0].mode is RouteMode.SHADOW and rollout.steps[0].until is StepGate.ANALYSIS
    assert rollout.to_dict()["state"] == "progressing"


def test_analysis_state_and_the_bandit_share_are_kept_apart() -> None:
    memory = RolloutMemory({"error_rate": {"looks": 3}}, BanditMemory(37.5))
    stored = memory.to_json()
    assert stored == {"analysis": {"error_rate": {"looks": 3}}, "bandit": {"weight": 37.5}}
    assert RolloutMemory.from_json(stored) == memory
    legacy = {"error_rate": {"looks": 3}, "bandit_weight": 37.5}  # rows written before
    assert RolloutMemory.from_json(legacy) == memory
    assert RolloutMemory.from_json(None) == RolloutMemory()
