"""Seed API (``001`` README): ``get_model_registry()`` returns the process's registry.

>>> from mlops.registry.model_registry import get_model_registry
>>> registry = get_model_registry()                                  # doctest: +SKIP
>>> version = registry.register_model(model_name="m", model_path="models/v1.pkl",
...                                   metadata={"accuracy": 0.85})  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

from mlops.registry.service import ModelRegistry

__all__ = ["ModelRegistry", "get_model_registry"]

_registries: dict[tuple[str, str], ModelRegistry] = {}
_lock = threading.Lock()


def get_model_registry(**overrides: Any) -> ModelRegistry:
    """The registry for the current settings (``MLOPS_*``, ``mlops.toml``), shared per
    database and artifact location."""
    from mlops.config import get_settings

    settings = get_settings(**overrides)
    key = (settings.database_url, settings.artifacts_uri)
    with _lock:
        registry = _registries.get(key)
        if registry is None:
            registry = _registries[key] = ModelRegistry(settings)
        return registry
