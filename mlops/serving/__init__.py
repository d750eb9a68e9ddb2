"""The inference gateway: protocols, routing, adaptive batching, prediction log, metrics."""

from __future__ import annotations

from mlops.serving.app import create_app
from mlops.serving.batching import Batcher, Prediction
from mlops.serving.codecs import Columns, Schema
from mlops.serving.gateway import Gateway, GatewayConfig
from mlops.serving.routing import CircuitBreaker, RouteTable, ServedModel, ServingRoute, bucket

__all__ = [
    "Batcher",
    "CircuitBreaker",
    "Columns",
    "Gateway",
    "GatewayConfig",
    "Prediction",
    "RouteTable",
    "Schema",
    "ServedModel",
    "ServingRoute",
    "bucket",
    "create_app",
]
