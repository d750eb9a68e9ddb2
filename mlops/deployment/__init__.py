"""Deployment: the routing table the gateway serves from (rollouts build on it)."""

from __future__ import annotations

from mlops.deployment.routes import (
    MODES,
    DeploymentError,
    RouteSpec,
    RouteWriter,
    stage_for_environment,
)

__all__ = ["MODES", "DeploymentError", "RouteSpec", "RouteWriter", "stage_for_environment"]
