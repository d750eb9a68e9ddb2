"""Rollout strategies as small objects: each knows its plan and which look judges a step.

A look is one of four analyses (:class:`Look`): ``smoke`` requests before green takes
traffic, the ``split`` analysis of two arms answering their own requests
(:mod:`mlops.deployment.analysis`), the ``shadow`` analysis of paired answers to the same
requests (:mod:`mlops.deployment.shadow`), and the ``bandit``'s posterior
(:mod:`mlops.deployment.bandit`), which also moves the split (``reweights``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from mlops.deployment.config import (
    ABTestConfig,
    BanditConfig,
    BlueGreenConfig,
    CanaryConfig,
    RolloutConfig,
    ShadowConfig,
    config_model,
)
from mlops.deployment.types import Step, StepGate, timed
from mlops.store.routes import RouteMode

__all__ = [
    "ABTest",
    "Bandit",
    "BlueGreen",
    "Canary",
    "Full",
    "Look",
    "Shadow",
    "Strategy",
    "strategy_for",
]


class Look(StrEnum):
    """The analysis that judges a step."""

    SMOKE = "smoke"
    SPLIT = "split"
    SHADOW = "shadow"
    BANDIT = "bandit"


@dataclass(frozen=True)
class Strategy:
    """``full``: all traffic to the candidate at once (the base of the others)."""

    name: ClassVar[str] = "full"
    #: whether the controller moves the split between looks (a bandit)
    reweights: ClassVar[bool] = False

    def plan(self, settings: RolloutConfig) -> list[Step]:
        return [Step(100.0)]

    def look(self, index: int, step: Step) -> Look:
        """The analysis of step ``index``."""
        if step.until is StepGate.SMOKE:
            return Look.SMOKE
        return Look.SHADOW if step.mode is RouteMode.SHADOW else Look.SPLIT


class Full(Strategy):
    """All traffic to the candidate at once, after its smoke test: the base behaviour."""


class Canary(Strategy):
    """Explicit steps, or the seed's ``initial_traffic`` + ``increment`` every
    ``interval_minutes``."""

    name: ClassVar[str] = "canary"

    def plan(self, settings: RolloutConfig) -> list[Step]:
        assert isinstance(settings, CanaryConfig)
        if settings.steps is not None:
            return [Step(s.weight, *timed(s.pause)) for s in settings.steps]
        steps, weight = [], settings.initial_traffic
        while weight < 100.0:
            steps.append(Step(weight, settings.interval_minutes * 60.0, StepGate.TIME))
            weight += settings.step_increment
        return steps


class BlueGreen(Strategy):
    """Green is loaded beside blue with no traffic and must answer smoke requests, then
    takes everything for the observation window."""

    name: ClassVar[str] = "blue_green"

    def plan(self, settings: RolloutConfig) -> list[Step]:
        assert isinstance(settings, BlueGreenConfig)
        return [Step(0.0, 0.0, StepGate.SMOKE), Step(100.0, *timed(settings.observe)),
                Step(100.0)]


class ABTest(Strategy):
    """A fixed split held until the analysis decides."""

    name: ClassVar[str] = "ab_test"

    def plan(self, settings: RolloutConfig) -> list[Step]:
        assert isinstance(settings, ABTestConfig)
        return [Step(settings.weight, *timed(settings.pause)), Step(100.0)]


class Shadow(Strategy):
    """The candidate answers a mirrored share; clients always get stable."""

    name: ClassVar[str] = "shadow"

    def plan(self, settings: RolloutConfig) -> list[Step]:
        assert isinstance(settings, ShadowConfig)
        return [Step(settings.mirror, *timed(settings.pause), RouteMode.SHADOW), Step(100.0)]


class Bandit(Strategy):
    """Thompson sampling moves the split (starting at ``initial_weight``) until one arm
    wins."""

    name: ClassVar[str] = "bandit"
    reweights: ClassVar[bool] = True

    def plan(self, settings: RolloutConfig) -> list[Step]:
        assert isinstance(settings, BanditConfig)
        return [Step(min(settings.initial_weight, 99.0), 0.0, StepGate.ANALYSIS), Step(100.0)]

    def look(self, index: int, step: Step) -> Look:
        return Look.BANDIT if index == 0 else super().look(index, step)


_STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Full(), Canary(), BlueGreen(), ABTest(), Shadow(), Bandit())}


def strategy_for(name: str) -> Strategy:
    """The strategy object of ``name`` (unknown names: the config error with the nearest
    valid name)."""
    config_model(name)  # raises DeploymentError naming the nearest strategy
    return _STRATEGIES[name]
