"""Rollout plans: strategies turned into steps of (candidate weight, pause).

``canary`` takes steps such as ``[{"weight": 10, "pause": "5m"}, {"weight": 50}, ...]`` or
the seed's ``{"initial_traffic": 10, "increment": 10, "interval_minutes": 5}``; a pause is
seconds, a duration (``"30s"``, ``"5m"``, ``"1h"``), ``"analysis"`` (until the analysis
decides) or ``"manual"`` (until a person promotes). ``blue_green`` sends everything to the
new version for an observation window and switches back on failure; ``ab_test`` holds a
fixed split until the analysis decides; ``shadow`` mirrors a share of requests to the
candidate (clients always get stable) and switches when the paired analysis passes;
``full`` replaces at once. The settings are validated by :mod:`mlops.deployment.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from mlops.deployment.config import (
    STRATEGIES,
    ABTestConfig,
    BanditConfig,
    BlueGreenConfig,
    CanaryConfig,
    RolloutConfig,
    ShadowConfig,
    parse_pause,
    parse_rollout_config,
)

__all__ = ["STRATEGIES", "Step", "parse_pause", "plan_steps"]


@dataclass(frozen=True)
class Step:
    """Send ``weight`` percent to the candidate; move on after ``pause`` seconds and a
    successful analysis (``until="time"``), when the analysis decides (``"analysis"``), when
    a person promotes (``"manual"``), or once smoke requests pass (``"smoke"``)."""

    weight: float
    pause: float = 0.0
    until: str = "time"
    mode: str = "split"  # "shadow": the candidate sees a mirrored share, clients get stable

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(pause: float | str) -> tuple[float, str]:
    return (0.0, pause) if isinstance(pause, str) else (float(pause), "time")


def plan_steps(strategy: str, config: Mapping[str, Any] | RolloutConfig | None
               ) -> list[Step]:
    """The steps of a strategy; the last step of every plan sends 100% to the candidate.
    ``config`` is parsed first (:func:`~mlops.deployment.config.parse_rollout_config`)."""
    settings = config if isinstance(config, RolloutConfig) and config.strategy == strategy \
        else parse_rollout_config(strategy, config if not isinstance(config, RolloutConfig)
                                  else config.model_dump(exclude_unset=True))
    if isinstance(settings, BlueGreenConfig):
        # green is loaded beside blue with no traffic and must answer smoke requests first
        return [Step(0.0, 0.0, "smoke"), Step(100.0, *_timed(settings.observe)), Step(100.0)]
    if isinstance(settings, BanditConfig):  # the controller moves the share; it starts here
        return [Step(min(settings.initial_weight, 99.0), 0.0, "analysis"), Step(100.0)]
    if isinstance(settings, ShadowConfig):
        return [Step(settings.mirror, *_timed(settings.pause), "shadow"), Step(100.0)]
    if isinstance(settings, ABTestConfig):
        return [Step(settings.weight, *_timed(settings.pause)), Step(100.0)]
    if not isinstance(settings, CanaryConfig):  # full
        return [Step(100.0)]
    if settings.steps is not None:
        steps = [Step(s.weight, *_timed(s.pause)) for s in settings.steps]
    else:
        interval = settings.interval_minutes * 60.0
        steps = []
        weight = settings.initial_traffic
        while weight < 100.0:
            steps.append(Step(weight, interval, "time"))
            weight += settings.step_increment
    if not steps or steps[-1].weight < 100.0:
        steps.append(Step(100.0))
    return steps
