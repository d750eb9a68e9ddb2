"""Seed API (``001`` README): ``get_model_monitor()``.

>>> monitor = get_model_monitor()                                     # doctest: +SKIP
>>> monitor.record_prediction(model_name="task_classifier", prediction=1, actual=1,
...                           latency_ms=50)                          # doctest: +SKIP
>>> performance = monitor.check_model_performance("task_classifier")  # doctest: +SKIP
>>> drift = monitor.detect_data_drift("task_classifier", current_features)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from typing import Any

from mlops.monitoring.monitor import ModelMonitor

__all__ = ["ModelMonitor", "get_model_monitor"]

_instances: dict[str, ModelMonitor] = {}
_lock = threading.Lock()


def get_model_monitor(**overrides: Any) -> ModelMonitor:
    """The monitor for the current settings (one per store, shared)."""
    from mlops.registry.model_registry import get_model_registry

    registry = get_model_registry(**overrides)
    key = registry.context.settings.database_url
    with _lock:
        found = _instances.get(key)
        if found is None or found.registry is not registry:
            found = _instances[key] = ModelMonitor(registry)
        return found
