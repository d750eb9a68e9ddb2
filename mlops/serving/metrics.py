"""Prometheus metrics of the gateway (``mlops_*``), multiprocess-aware.

With several workers, ``mlops serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start; each worker writes its own files and ``/metrics`` aggregates them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "BATCH_SIZE",
    "CONTENT_TYPE_LATEST",
    "FEEDBACK",
    "INFLIGHT",
    "LOG_DROPPED",
    "MODEL_LOADED",
    "PREDICTION_ERRORS",
    "REQUESTS",
    "REQUEST_DURATION",
    "add_collector",
    "render",
]

_ROUTE_LABELS = ("model_name", "model_version", "environment", "route")

# protocol: "http" (V2, KServe V1 and MLflow bodies) or "grpc" (the V2 gRPC service)
REQUESTS = Counter("mlops_requests_total", "Inference requests answered.",
                   (*_ROUTE_LABELS, "protocol", "code"))
REQUEST_DURATION = Histogram("mlops_request_duration_seconds",
                             "Inference request latency, from receipt to response.",
                             (*_ROUTE_LABELS, "protocol"))
PREDICTION_ERRORS = Counter("mlops_prediction_errors_total",
                            "Predictions that raised inside the model.", _ROUTE_LABELS)
BATCH_SIZE = Histogram("mlops_batch_size", "Rows per predict call.",
                       ("model_name", "model_version"),
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
INFLIGHT = Gauge("mlops_inflight_requests", "Requests being processed.",
                 multiprocess_mode="livesum")
LOG_DROPPED = Counter("mlops_prediction_log_dropped_total",
                      "Prediction log records dropped because the buffer was full.")
MODEL_LOADED = Gauge("mlops_model_loaded", "1 when a model version is loaded for serving.",
                     ("model_name", "model_version", "environment"),
                     multiprocess_mode="livemax")
FEEDBACK = Counter("mlops_feedback_total", "Feedback labels received.",
                   ("model_name", "matched"))


_EXTRA: list[Collector] = []


def add_collector(collector: Collector) -> None:
    """Export ``collector`` too (the control plane's gauges), in either mode; adding the
    same collector again does nothing."""
    if collector not in _EXTRA:
        _EXTRA.append(collector)


def render() -> bytes:
    """The exposition text: this process's registry, or all workers' in multiprocess mode,
    plus the collectors of :func:`add_collector`."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward(REGISTRY))
    for collector in _EXTRA:
        registry.register(collector)
    return generate_latest(registry)


class _Forward(Collector):
    """The process registry as one collector of the exposition's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()
