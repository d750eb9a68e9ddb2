"""What ``mlops monitor status`` (and ``GET /api/v1/monitor/{name}``) shows.

The status is one consistent picture: the *live* window (the last monitoring window up to
now, computed from the prediction log when asked) for performance and system figures, and
the evaluator's *latest pass* (one pass, never metrics of different passes mixed) for what
only the evaluator computes (drift, concept drift, missing values), left out when that pass
is older than one window. The health score is computed from exactly the values shown, so
the header and the table agree. A figure measured on no rows is *empty*: it has no value,
and the table says so instead of showing a zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlops.monitoring.alerts import Alert, Observation
from mlops.monitoring.health import HealthScore, health_score
from mlops.monitoring.performance import PerformanceWindow
from mlops.monitoring.snapshots import Snapshot

__all__ = ["LIVE", "PASS", "MonitorStatus", "StatusMetric", "build_status",
           "latest_pass", "window_observations"]

#: Sources of a status figure.
LIVE, PASS = "live", "evaluator"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def window_observations(pw: PerformanceWindow) -> dict[str, Observation]:
    """The alert values of a performance window; a figure of no rows has no value."""
    out: dict[str, Observation] = {}
    for metric, quality in pw.metrics.items():
        out[metric] = Observation(_finite(quality), pw.n_labeled)
    system: dict[str, float | None] = {
        "error_rate": pw.error_rate, "client_error_rate": pw.client_error_rate,
        "latency_p50_ms": pw.latency_p50_ms, "latency_p95_ms": pw.latency_p95_ms,
        "latency_p99_ms": pw.latency_p99_ms, "throughput_rps": pw.throughput_rps}
    for metric, value in system.items():
        out[metric] = Observation(_finite(value) if pw.n_requests else None, pw.n_requests)
    out["label_coverage"] = Observation(pw.label_coverage if pw.n_mature else None,
                                        pw.n_mature)
    out["n_predictions"] = Observation(float(pw.n_predictions), pw.n_predictions)
    return out


@dataclass(frozen=True)
class StatusMetric:
    """One figure of the status: its value, the rows it was measured on, where it comes
    from (:data:`LIVE` or :data:`PASS`) and the window it covers."""

    value: float | None
    n: int
    source: str
    window_start: datetime
    window_end: datetime

    @property
    def empty(self) -> bool:
        """Measured on no rows (or nothing could be measured): not a measurement."""
        return self.n == 0 or self.value is None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "n": self.n, "source": self.source, "empty": self.empty,
                "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat()}


@dataclass(frozen=True)
class MonitorStatus:
    """The live window's figures, the latest evaluator pass, health and alerts."""

    model: str
    environment: str | None
    version: str | None
    window_start: datetime           # the live window
    window_end: datetime
    metrics: dict[str, StatusMetric]  # what the table shows, ``health`` included
    latest: dict[str, Snapshot]      # the evaluator's latest pass (all of its figures)
    health: HealthScore | None       # of ``metrics``; None when the window is empty
    firing: list[Alert]
    recent: list[Alert]

    @property
    def empty(self) -> bool:
        """No prediction in the live window."""
        found = self.metrics.get("n_predictions")
        return found is None or found.empty

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "environment": self.environment, "version": self.version,
                "window": {"start": self.window_start.isoformat(),
                           "end": self.window_end.isoformat(), "empty": self.empty},
                "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
                "latest": {k: {"value": s.value, "n": s.n, "window_end": s.window_end.isoformat()}
                           for k, s in self.latest.items()},
                "health": self.health.to_dict() if self.health else None,
                "firing": [a.to_dict() for a in self.firing],
                "recent": [a.to_dict() for a in self.recent]}


def latest_pass(snapshots: Mapping[str, Snapshot]) -> dict[str, Snapshot]:
    """The snapshots of the newest evaluator pass only (the newest ``window_end``)."""
    if not snapshots:
        return {}
    newest = max(s.window_end for s in snapshots.values())
    return {k: s for k, s in snapshots.items() if s.window_end == newest}


def build_status(model: str, environment: str | None, version: str | None,
                 live: PerformanceWindow, latest: Mapping[str, Snapshot],
                 baseline: Mapping[str, float], firing: list[Alert], recent: list[Alert]
                 ) -> MonitorStatus:
    """The status of ``model`` from its live window and the evaluator's latest pass."""
    metrics = {k: StatusMetric(o.value, o.n, LIVE, live.start, live.end)
               for k, o in window_observations(live).items()}
    last = latest_pass(latest)
    for name, snap in sorted(last.items()):
        if name in metrics or name == "health" or snap.window_end < live.start:
            continue  # live figures win; a pass older than the window is not current
        metrics[name] = StatusMetric(snap.value, snap.n, PASS, snap.window_start,
                                     snap.window_end)
    values = {k: m.value for k, m in metrics.items() if not m.empty}
    health = health_score(values, baseline) if live.n_predictions else None
    score = health.score if health is not None else None
    metrics["health"] = StatusMetric(score, live.n_predictions, LIVE, live.start, live.end)
    return MonitorStatus(model, environment, version, live.start, live.end, metrics, last,
                         health, firing, recent)
