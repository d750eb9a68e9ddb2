"""``mlops serve``: compose the gateway and the control-plane API by role, run uvicorn.

Roles: ``gateway`` answers inference (plus health and metrics); ``control`` serves the
REST API at ``/api`` (plus health and metrics) and runs the rollout controller and the
monitoring evaluator; ``all``
(the default) does both in one process. Several gateway replicas can run with ``--role gateway`` behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from mlops.api.app import create_api
from mlops.config import get_settings
from mlops.deployment.controller import Controller
from mlops.errors import ConfigError
from mlops.monitoring.evaluator import Evaluator
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.serving import metrics
from mlops.serving.app import GatewayConfig, create_app

__all__ = ["ROLES", "app_factory", "build_app", "serve"]

ROLES = ("all", "gateway", "control")
_CONFIG_ENV = "MLOPS_GATEWAY_CONFIG"
_ROLE_ENV = "MLOPS_SERVE_ROLE"


def build_app(role: str = "all", config: GatewayConfig | None = None) -> ASGIApp:
    """The ASGI app of one worker for ``role``."""
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")
    settings = get_settings()
    if role == "gateway":
        return create_app(settings, config)
    registry = ModelRegistry(settings)
    api = Mount("/api", app=create_api(registry))
    interval = config.controller_interval if config is not None else 5.0
    controller = Controller(registry, interval=interval,
                            gateway_url=os.environ.get("MLOPS_GATEWAY_URL") or None)
    evaluator = Evaluator(ModelMonitor(registry))
    if role == "all":
        return create_app(settings, config, mounts=[api],
                          background=[controller.loop, evaluator.loop])

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(controller.loop()), asyncio.create_task(evaluator.loop())]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return Starlette(routes=[Route("/v2/health/live", live), Route("/v2/health/ready", live),
                             Route("/metrics", metrics_text), api], lifespan=lifespan)


def app_factory() -> ASGIApp:
    """Called by uvicorn in each worker; role and config travel in environment variables."""
    raw = os.environ.get(_CONFIG_ENV)
    config = GatewayConfig(**json.loads(raw)) if raw else GatewayConfig()
    return build_app(os.environ.get(_ROLE_ENV, "all"), config)


def serve(config: GatewayConfig, *, role: str = "all", host: str = "127.0.0.1",
          port: int = 8000, workers: int = 1, access_log: bool = False,
          **uvicorn_options: Any) -> None:
    """Serve until SIGINT/SIGTERM; shutdown finishes in-flight requests and flushes the
    prediction log."""
    import uvicorn

    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")
    os.environ[_CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    os.environ[_ROLE_ENV] = role
    if role == "all" and not os.environ.get("MLOPS_GATEWAY_URL"):
        # smoke requests of blue-green rollouts go through this very gateway
        local = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        os.environ["MLOPS_GATEWAY_URL"] = f"http://{local}:{port}"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prom-")
    uvicorn.run("mlops.api.server:app_factory", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", access_log=access_log,
                log_level=uvicorn_options.pop("log_level", "warning"),
                timeout_graceful_shutdown=uvicorn_options.pop("timeout_graceful_shutdown", 30),
                **uvicorn_options)
