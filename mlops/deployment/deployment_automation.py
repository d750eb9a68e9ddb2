"""Seed API (``001`` README): ``get_deployment_automation()``.

>>> deployment = get_deployment_automation()                         # doctest: +SKIP
>>> deployment.deploy_model(model_name="task_classifier", model_version="1.1.0",
...                         strategy="canary", config={"initial_traffic": 10,
...                         "increment": 10, "interval_minutes": 5})  # doctest: +SKIP
>>> deployment.rollback("task_classifier")                           # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from mlops.deployment.rollouts import RolloutManager
from mlops.registry.service import ModelRegistry

__all__ = ["DeploymentAutomation", "get_deployment_automation"]


class DeploymentAutomation:
    """Thin facade over :class:`RolloutManager` with the seed's method names."""

    def __init__(self, registry: ModelRegistry, environment: str = "production") -> None:
        self.registry = registry
        self.environment = environment
        self.rollouts = RolloutManager(registry)

    def deploy_model(self, model_name: str, model_version: str, strategy: str = "canary",
                     config: Mapping[str, Any] | None = None, environment: str | None = None,
                     reason: str = "", override: str | None = None) -> dict[str, Any]:
        """Start a rollout; ``ab_test`` without a split uses the registry's A/B set-up.
        ``config`` is validated first (a :class:`~mlops.errors.DeploymentError` names the
        key and the fix; nothing is stored)."""
        env = environment or self.environment
        if strategy == "ab_test" and (config is None or isinstance(config, Mapping)) \
                and "traffic_split" not in (config or {}):
            ab = self.registry.active_ab_test(model_name)
            if ab is not None and ab.version_b == model_version:
                config = {**(config or {}), "traffic_split": ab.traffic_split}
        return self.rollouts.deploy(model_name, model_version, env, strategy=strategy,
                                    config=config, reason=reason, override=override).to_dict()

    def rollback(self, model_name: str, to_version: str | None = None,
                 environment: str | None = None, reason: str = "") -> str:
        """Send all traffic back to the previous (or named) version; returns it."""
        return self.rollouts.rollback(model_name, environment or self.environment,
                                      to=to_version, reason=reason)

    def status(self, model_name: str, environment: str | None = None) -> dict[str, Any] | None:
        rollout = self.rollouts.status(model_name, environment or self.environment)
        return None if rollout is None else rollout.to_dict()


_instances: dict[tuple[str, str], DeploymentAutomation] = {}
_lock = threading.Lock()


def get_deployment_automation(environment: str = "production", **overrides: Any
                              ) -> DeploymentAutomation:
    """The deployment facade for the current settings (shared per store)."""
    from mlops.registry.model_registry import get_model_registry

    registry = get_model_registry(**overrides)
    key = (registry.context.settings.database_url, environment)
    with _lock:
        found = _instances.get(key)
        if found is None or found.registry is not registry:
            found = _instances[key] = DeploymentAutomation(registry, environment)
        return found


