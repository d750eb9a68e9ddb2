"""Run the gateway under uvicorn (uvloop + httptools), one or several workers."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

from starlette.types import ASGIApp

from mlops.serving.app import GatewayConfig, create_app

__all__ = ["app_factory", "serve"]

_CONFIG_ENV = "MLOPS_GATEWAY_CONFIG"


def app_factory() -> ASGIApp:
    """Called by uvicorn in each worker; the config travels in an environment variable."""
    raw = os.environ.get(_CONFIG_ENV)
    config = GatewayConfig(**json.loads(raw)) if raw else GatewayConfig()
    return create_app(config=config)


def serve(config: GatewayConfig, *, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1, access_log: bool = False, **uvicorn_options: Any) -> None:
    """Serve until SIGINT/SIGTERM; shutdown finishes in-flight requests and flushes the
    prediction log."""
    import uvicorn

    os.environ[_CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prom-")
    uvicorn.run("mlops.serving.server:app_factory", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", access_log=access_log,
                log_level=uvicorn_options.pop("log_level", "warning"),
                timeout_graceful_shutdown=uvicorn_options.pop("timeout_graceful_shutdown", 30),
                **uvicorn_options)
