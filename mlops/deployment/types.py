"""The rollout vocabulary: states, steps and their gates, analysis outcomes and the
controller's actions. Enums are stored as their string values (database rows, audit
payloads, JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mlops.store.routes import RouteMode

__all__ = ["ACTIVE", "Action", "Outcome", "RolloutState", "Step", "StepGate", "timed"]


class RolloutState(StrEnum):
    """``progressing`` -> ``succeeded`` | ``rolled_back`` | ``paused`` (waiting for a
    person; ``resume`` continues)."""

    PROGRESSING = "progressing"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"


#: states of a rollout that still owns its environment's route
ACTIVE: tuple[RolloutState, ...] = (RolloutState.PROGRESSING, RolloutState.PAUSED)


class StepGate(StrEnum):
    """What lets a step end: its pause and a successful analysis (``time``), the analysis
    alone (``analysis``), a person (``manual``), or passing smoke requests (``smoke``)."""

    TIME = "time"
    ANALYSIS = "analysis"
    MANUAL = "manual"
    SMOKE = "smoke"


class Outcome(StrEnum):
    """The result of one look at a step (Argo Rollouts' analysis outcomes)."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"


class Action(StrEnum):
    """What the controller does with a look's outcome."""

    ROLL_BACK = "roll_back"  # the analysis failed: all traffic back to stable
    HOLD = "hold"  # a manual step: a person promotes (the analysis still guards it)
    ADVANCE = "advance"  # the next step's weight
    FINISH = "finish"  # the candidate becomes stable
    REWEIGHT = "reweight"  # a bandit moves the split
    PAUSE = "pause"  # inconclusive for too long: wait for a person
    WAIT = "wait"  # look again at the next pass


@dataclass(frozen=True)
class Step:
    """Send ``weight`` percent to the candidate; move on after ``pause`` seconds and a
    successful analysis (``until=time``), when the analysis decides (``analysis``), when a
    person promotes (``manual``), or once smoke requests pass (``smoke``)."""

    weight: float
    pause: float = 0.0
    until: StepGate = StepGate.TIME
    mode: RouteMode = RouteMode.SPLIT  # shadow: the candidate sees a mirrored share

    def __post_init__(self) -> None:  # stored plans hold plain strings
        object.__setattr__(self, "until", StepGate(self.until))
        object.__setattr__(self, "mode", RouteMode(self.mode))

    @property
    def immediate(self) -> bool:
        """A full-traffic step with nothing to wait for: reaching it finishes the rollout."""
        return self.weight >= 100 and self.pause == 0 and self.until is StepGate.TIME

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "pause": self.pause, "until": self.until.value,
                "mode": self.mode.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        return cls(float(data["weight"]), float(data.get("pause", 0.0)),
                   StepGate(data.get("until", StepGate.TIME)),
                   RouteMode(data.get("mode", RouteMode.SPLIT)))


def timed(pause: float | str) -> tuple[float, StepGate]:
    """``(seconds, gate)`` of a parsed pause: seconds wait for time, words for a decision."""
    return (0.0, StepGate(pause)) if isinstance(pause, str) else (float(pause), StepGate.TIME)
