"""Deployment: the routing service, rollouts and the controller that drives them.

- :mod:`~mlops.deployment.routes` - :class:`RoutingService`, the only writer of routes
- :mod:`~mlops.deployment.rollouts` - :class:`RolloutManager`, the rollout commands
- :mod:`~mlops.deployment.tick` - one controller pass; :mod:`~mlops.deployment.controller`
  runs it on the leader
- :mod:`~mlops.deployment.config`, :mod:`~mlops.deployment.strategies`,
  :mod:`~mlops.deployment.types` - typed settings, strategies and the rollout vocabulary
- :mod:`~mlops.deployment.evidence`, :mod:`~mlops.deployment.analysis` (and ``shadow``,
  ``bandit``) - running aggregates and the looks that judge them
- :mod:`~mlops.deployment.materialize` - what each environment serves, as files under
  ``*_MODEL_PATH`` for tools that read a path
"""

from __future__ import annotations

from mlops.deployment.cluster import cluster_spec
from mlops.deployment.routes import (
    MODES,
    DeploymentError,
    RouteChange,
    RouteSpec,
    RoutingService,
    stage_for_environment,
)
from mlops.deployment.types import Action, Outcome, RolloutState, Step, StepGate

__all__ = [
    "MODES",
    "Action",
    "DeploymentError",
    "Outcome",
    "RolloutState",
    "RouteChange",
    "RouteSpec",
    "RoutingService",
    "Step",
    "StepGate",
    "cluster_spec",
    "stage_for_environment",
]
