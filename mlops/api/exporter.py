"""The control plane's state as Prometheus gauges on ``/metrics`` (roles ``all`` and
``control``), so Grafana can chart what the evaluator and the routing service know:

=================================  ========================================================
``mlops_monitor_value``            the evaluator's newest window of each model and
                                   environment, per metric (``health``, ``accuracy``,
                                   ``drift_share``, ``latency_p99_ms`` ...)
``mlops_monitor_window_end_seconds``  when that window ended (Unix time): its freshness
``mlops_route_weight``             percent of an environment's traffic each version takes
                                   (``role`` stable, candidate or shadow)
``mlops_alerts_firing``            firing incidents per model, environment and severity
=================================  ========================================================

They are read at scrape time, at most once per ``ttl`` seconds (several Prometheus servers
or a short scrape interval cost one set of queries); a store that cannot be read leaves
them out of that scrape, with a warning, instead of failing ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from mlops.deployment.routes import RoutingService
from mlops.deployment.shares import placements
from mlops.errors import MlopsError
from mlops.monitoring.alerts import AlertManager
from mlops.monitoring.rules import METRICS
from mlops.monitoring.snapshots import latest_values
from mlops.registry.service import ModelRegistry

__all__ = ["CONTROL_METRICS", "ControlPlaneCollector"]

log = logging.getLogger("mlops.api")

#: the gauge families this collector exports (for dashboards and their tests)
CONTROL_METRICS = ("mlops_monitor_value", "mlops_monitor_window_end_seconds",
                   "mlops_route_weight", "mlops_alerts_firing")


class ControlPlaneCollector(Collector):
    """A ``prometheus_client`` collector over one registry (see the module docstring)."""

    def __init__(self, registry: ModelRegistry, ttl: float = 10.0) -> None:
        self.registry = registry
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] = (-float("inf"), [])

    def describe(self) -> Iterable[Metric]:
        return []  # read nothing when registered; collect() reads at scrape time

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            at, families = self._cached
            if time.monotonic() - at >= self.ttl:
                try:
                    families = self._read()
                except (MlopsError, OSError, SQLAlchemyError) as exc:
                    log.warning("control-plane gauges left out of this scrape: %s", exc)
                    families = []
                self._cached = (time.monotonic(), families)
        yield from families

    def _read(self) -> list[Metric]:
        values = GaugeMetricFamily("mlops_monitor_value", "The evaluator's newest window of a "
                                   "model in an environment, per metric.",
                                   labels=["model_name", "environment", "metric"])
        ends = GaugeMetricFamily("mlops_monitor_window_end_seconds", "When the evaluator's "
                                 "newest window of a model in an environment ended (Unix "
                                 "time).", labels=["model_name", "environment"])
        newest: dict[tuple[str, str], float] = {}
        for (model, env, metric), snap in sorted(latest_values(self.registry,
                                                               METRICS).items()):
            if snap.value is not None:
                values.add_metric([model, env, metric], snap.value)
            end = snap.window_end.timestamp()
            newest[model, env] = max(end, newest.get((model, env), end))
        for (model, env), end in sorted(newest.items()):
            ends.add_metric([model, env], end)
        weights = GaugeMetricFamily("mlops_route_weight", "Percent of an environment's "
                                    "traffic a model version takes (shadow: mirrored).",
                                    labels=["model_name", "environment", "model_version",
                                            "role"])
        routing = RoutingService(self.registry)
        for env in self.registry.context.settings.environments:
            for model, spec in sorted(routing.serving(env).items()):
                for place in placements(spec):
                    weights.add_metric([model, env, place.version, place.role], place.weight)
        firing = GaugeMetricFamily("mlops_alerts_firing", "Firing incidents.",
                                   labels=["model_name", "environment", "severity"])
        counts = Counter((a.model, a.environment, a.severity) for a in
                         AlertManager(self.registry).alerts(state="firing", limit=100_000))
        for labels, n in sorted(counts.items()):
            firing.add_metric(list(labels), n)
        return [values, ends, weights, firing]
