"""Quality gates: one module each (``NAME``, ``Config``, ``run``), one shared result.

``security`` · ``data_quality`` · ``metrics`` · ``champion`` · ``slices`` · ``fairness`` ·
``latency`` · ``resources`` · ``explainability``
"""

from __future__ import annotations

from mlops.ci.gates import (
    champion,
    data_quality,
    explainability,
    fairness,
    latency,
    metrics,
    resources,
    security,
    slices,
)
from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed

__all__ = [
    "GateConfig",
    "GateContext",
    "GateResult",
    "champion",
    "data_quality",
    "explainability",
    "fairness",
    "latency",
    "metrics",
    "resources",
    "security",
    "slices",
    "timed",
]
