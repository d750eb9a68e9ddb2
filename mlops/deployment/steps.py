"""Rollout plans: a strategy's settings turned into steps of (candidate weight, pause).

``canary`` takes steps such as ``[{"weight": 10, "pause": "5m"}, {"weight": 50}, ...]`` or
the seed's ``{"initial_traffic": 10, "increment": 10, "interval_minutes": 5}``; a pause is
seconds, a duration (``"30s"``, ``"5m"``, ``"1h"``), ``"analysis"`` (until the analysis
decides) or ``"manual"`` (until a person promotes). ``blue_green`` sends everything to the
new version for an observation window and switches back on failure; ``ab_test`` holds a
fixed split until the analysis decides; ``shadow`` mirrors a share of requests to the
candidate (clients always get stable) and switches when the paired analysis passes;
``full`` replaces at once. Each strategy's plan is in :mod:`mlops.deployment.strategies`;
its settings are validated by :mod:`mlops.deployment.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops.deployment.config import STRATEGIES, RolloutConfig, parse_pause, parse_rollout_config
from mlops.deployment.strategies import strategy_for
from mlops.deployment.types import Step

__all__ = ["STRATEGIES", "Step", "parse_pause", "plan_steps"]


def plan_steps(strategy: str, config: Mapping[str, Any] | RolloutConfig | None
               ) -> list[Step]:
    """The steps of a strategy; the last step of every plan sends 100% to the candidate.
    ``config`` is parsed first (:func:`~mlops.deployment.config.parse_rollout_config`)."""
    settings = config if isinstance(config, RolloutConfig) and config.strategy == strategy \
        else parse_rollout_config(strategy, config if not isinstance(config, RolloutConfig)
                                  else config.model_dump(exclude_unset=True))
    steps = strategy_for(strategy).plan(settings)
    if not steps or steps[-1].weight < 100.0:
        steps.append(Step(100.0))
    return steps
