"""``mlops serve``: compose the gateway and the control-plane API by role, run uvicorn.

Roles: ``gateway`` answers inference (plus health and metrics); ``control`` serves the
REST API at ``/api`` and the dashboard (plus health and metrics, with the control plane's
gauges of :mod:`mlops.api.exporter`) and runs the rollout controller, the monitoring
evaluator and the retraining scheduler (one process leads them); ``all`` (the default)
does both in one process. Several gateway replicas can run with ``--role gateway`` behind
a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Scope

from mlops.api.app import create_api
from mlops.api.auth import ApiAuth, SecurityGuard, is_loopback_host
from mlops.api.exporter import ControlPlaneCollector
from mlops.config import get_settings
from mlops.deployment.controller import Controller
from mlops.errors import ConfigError
from mlops.identity import Principal
from mlops.monitoring.evaluator import Evaluator
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.retraining.scheduler import Scheduler
from mlops.serving import GatewayConfig, create_app, metrics
from mlops.store.credentials import Authenticator
from mlops.ui.web import create_dashboard

__all__ = ["INSTANCE_HEADER", "ROLES", "app_factory", "build_app", "check_bind",
           "check_grpc_port", "serve"]

log = logging.getLogger("mlops.serve")

ROLES = ("all", "gateway", "control")
_CONFIG_ENV = "MLOPS_GATEWAY_CONFIG"
_ROLE_ENV = "MLOPS_SERVE_ROLE"
_HOSTS_ENV = "MLOPS_SERVE_HOSTS"
_ANY_HOST_ENV = "MLOPS_SERVE_ANY_HOST"
_INSTANCE_ENV = "MLOPS_SERVE_INSTANCE"
_SELF_URL_ENV = "MLOPS_SERVE_URL"
#: the header on ``/v2/health/live`` that names the serving process (see _after_bind)
INSTANCE_HEADER = "x-mlops-instance"


def _after_bind(job: Callable[[], Coroutine[Any, Any, None]]
                ) -> Callable[[], Coroutine[Any, Any, None]]:
    """Start ``job`` only once this server answers on its own socket.

    Uvicorn runs the startup hook before it binds; on a port that is already taken the
    controllers would otherwise act for a moment against the *other* server (a blue-green
    smoke request answered 404 there rolled a healthy rollout back). The health endpoint
    carries this process's instance id, so an answer from another server does not count;
    when the bind fails the process exits and the job never starts."""
    url, instance = os.environ.get(_SELF_URL_ENV), os.environ.get(_INSTANCE_ENV)

    async def run() -> None:
        if url and instance:
            import httpx

            async with httpx.AsyncClient(timeout=1.0) as client:
                while True:
                    try:
                        answer = await client.get(url + "/v2/health/live")
                        if answer.headers.get(INSTANCE_HEADER) == instance:
                            break
                    except httpx.HTTPError:
                        pass  # not listening yet
                    await asyncio.sleep(0.05)
        await job()

    return run


#: paths the dashboard never answers: the protocols', the API's and the probes' (a wrong
#: method there stays a 405 from its own route, an unknown path their own 404)
_NOT_DASHBOARD = ("/v1/", "/v2/", "/invocations", "/api", "/metrics", "/ping", "/health",
                  "/version")


class DashboardMount(Mount):
    """The dashboard at ``/``, for every path but those of :data:`_NOT_DASHBOARD`."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope.get("type") == "http" and path.startswith(_NOT_DASHBOARD):
            return Match.NONE, {}
        return super().matches(scope)


def build_app(role: str = "all", config: GatewayConfig | None = None) -> ASGIApp:
    """The ASGI app of one worker for ``role``."""
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")
    settings = get_settings()
    auth = ApiAuth(settings)
    hosts = [h for h in os.environ.get(_HOSTS_ENV, "").split(",") if h]

    def guarded(app: ASGIApp) -> ASGIApp:
        return SecurityGuard(app, settings, auth, extra_hosts=hosts,
                             any_host=os.environ.get(_ANY_HOST_ENV) == "1",
                             instance=os.environ.get(_INSTANCE_ENV))

    # gRPC callers pass the same check as HTTP inference (SecurityGuard) in team mode
    authorize = auth.inference_caller if settings.auth and settings.auth_inference else None
    if role == "gateway":
        return guarded(create_app(settings, config, authorize=authorize))
    registry = ModelRegistry(settings, principal=Principal.system("api"))
    metrics.add_collector(ControlPlaneCollector(registry))
    api = Mount("/api", app=create_api(registry, auth))
    dashboard = DashboardMount("/", app=create_dashboard(registry, auth))
    interval = config.controller_interval if config is not None else 5.0
    controller = Controller(registry.acting_as(Principal.system("rollout-controller")),
                            interval=interval,
                            gateway_url=os.environ.get("MLOPS_GATEWAY_URL") or None,
                            gateway_environment=(config or GatewayConfig()).environment
                            if role == "all" else os.environ.get("MLOPS_GATEWAY_ENV") or None)
    evaluator = Evaluator(ModelMonitor(registry.acting_as(Principal.system("evaluator"))))
    scheduler = Scheduler(registry.acting_as(Principal.system("retrain-scheduler")))
    if role == "all":
        return guarded(create_app(settings, config, mounts=[api, dashboard],
                                  background=[_after_bind(controller.loop),
                                              _after_bind(evaluator.loop),
                                              _after_bind(scheduler.loop)],
                                  authorize=authorize))

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def metrics_text(request: Request) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_after_bind(controller.loop)()),
                 asyncio.create_task(_after_bind(evaluator.loop)()),
                 asyncio.create_task(_after_bind(scheduler.loop)())]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return guarded(Starlette(routes=[Route("/v2/health/live", live),
                                     Route("/v2/health/ready", live),
                                     Route("/metrics", metrics_text), api, dashboard],
                             lifespan=lifespan))


def app_factory() -> ASGIApp:
    """Called by uvicorn in each worker; role and config travel in environment variables."""
    raw = os.environ.get(_CONFIG_ENV)
    config = GatewayConfig(**json.loads(raw)) if raw else GatewayConfig()
    return build_app(os.environ.get(_ROLE_ENV, "all"), config)


def check_bind(host: str, *, auth: bool, insecure: bool) -> bool:
    """May the server listen on ``host``? Single-user mode stays on loopback unless
    ``insecure`` says otherwise; returns True when that warning applies."""
    if is_loopback_host(host) or auth:
        return False
    if not insecure:
        raise ConfigError(
            f"Refusing to listen on {host or 'all interfaces'} without authentication: in "
            "single-user mode anyone who can reach the port could deploy and roll back.",
            fix="Turn team mode on (mlops serve --auth, then create tokens with mlops tokens "
                "create), keep --host 127.0.0.1, or pass --insecure if a proxy in front "
                "authenticates.")
    return True


def check_grpc_port(port: int, *, host: str, http_port: int, role: str) -> None:
    """May the gRPC service listen on ``port``? In range, not the HTTP port, for a role
    that serves inference, and free now: each worker binds it with ``SO_REUSEPORT`` when
    there are several, which would otherwise share a port another server holds. (The host
    is the HTTP one, so :func:`check_bind` has already judged it.)"""
    if not 1 <= port <= 65535:
        raise ConfigError(f"gRPC port {port} is out of range.",
                          fix="Use a --grpc-port from 1 to 65535.")
    if port == http_port:
        raise ConfigError(f"--grpc-port {port} is also the HTTP --port.",
                          fix="Give gRPC a port of its own (Triton uses 8001, KServe 8081).")
    if role == "control":
        raise ConfigError("--grpc-port serves inference, which role control does not.",
                          fix="Use --role all or --role gateway, or leave --grpc-port out.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        probe = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigError(f"Cannot listen for gRPC on {host or 'all interfaces'} port {port}: "
                          f"{os.strerror(exc.errno) if exc.errno else exc}.",
                          fix="Choose a free --grpc-port (or stop what listens on it).") from exc
    probe.close()


def serve(config: GatewayConfig, *, role: str = "all", host: str = "127.0.0.1",
          port: int = 8000, workers: int = 1, access_log: bool = False,
          auth: bool | None = None, insecure: bool = False,
          **uvicorn_options: Any) -> None:
    """Serve until SIGINT/SIGTERM; shutdown finishes in-flight requests and flushes the
    prediction log. ``auth`` turns team mode on (default: the ``auth`` setting).
    ``config.grpc_port`` adds the V2 gRPC service on ``host`` (every worker binds it,
    sharing the port with ``SO_REUSEPORT``)."""
    import uvicorn

    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}.", fix=f"Use one of {', '.join(ROLES)}.")
    if not 1 <= port <= 65535:
        raise ConfigError(f"Port {port} is out of range.", fix="Use a port from 1 to 65535.")
    if auth:
        os.environ["MLOPS_AUTH"] = "on"
    settings = get_settings()
    if check_bind(host, auth=settings.auth, insecure=insecure):
        log.warning("listening on %s without authentication (--insecure): anyone who can "
                    "reach port %d can change what is served", host or "all interfaces", port)
        wildcard = host in {"0.0.0.0", "::", ""}
        os.environ[_ANY_HOST_ENV] = "1" if wildcard else ""
        os.environ[_HOSTS_ENV] = "" if wildcard else host
    if config.grpc_port is not None:
        check_grpc_port(config.grpc_port, host=host, http_port=port, role=role)
        config = dataclasses.replace(config, grpc_host=host, grpc_reuse_port=workers > 1)
    if settings.auth:
        Authenticator(settings)  # a broken JWT key file stops the start, not each request
    os.environ[_CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    os.environ[_ROLE_ENV] = role
    os.environ[_INSTANCE_ENV] = secrets.token_hex(8)
    own = "127.0.0.1" if host in {"0.0.0.0", ""} else "::1" if host == "::" else host
    os.environ[_SELF_URL_ENV] = f"http://{f'[{own}]' if ':' in own else own}:{port}"
    if role == "all" and not os.environ.get("MLOPS_GATEWAY_URL"):
        # smoke requests of blue-green rollouts go through this very gateway
        local = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host
        os.environ["MLOPS_GATEWAY_URL"] = f"http://{local}:{port}"
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-prom-")
    proxies = list(settings.forwarded_allow_ips)
    uvicorn.run("mlops.api.server:app_factory", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", http="httptools", access_log=access_log,
                proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) or None,
                log_level=uvicorn_options.pop("log_level", "warning"),
                timeout_graceful_shutdown=uvicorn_options.pop("timeout_graceful_shutdown", 30),
                **uvicorn_options)
