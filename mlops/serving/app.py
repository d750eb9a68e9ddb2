"""The inference gateway: Open Inference Protocol (V2), KServe V1 and MLflow scoring.

One Starlette app per worker over one :class:`~mlops.serving.gateway.Gateway`: inference
URLs take a router-free fast path, every other URL goes through Starlette.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.config import Settings, get_settings
from mlops.serving.gateway import Gateway, GatewayConfig
from mlops.serving.handlers import hot_target, routes
from mlops.serving.responses import json_response, request_id_for

if TYPE_CHECKING:
    from mlops.serving.grpc import Authorize

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, config: GatewayConfig | None = None,
               mounts: list[BaseRoute] | None = None,
               background: list[Callable[[], Coroutine[Any, Any, None]]] | None = None,
               authorize: Authorize | None = None) -> ASGIApp:
    """The gateway app (ASGI); ``mounts`` adds other apps (the control API) beside it.
    ``mlops serve`` runs it under uvicorn. With ``config.grpc_port`` the app also serves
    the V2 gRPC service, on the same event loop and gateway, for as long as it runs;
    ``authorize`` checks its callers (team mode with ``auth_inference``)."""
    gateway = Gateway(settings or get_settings(), config or GatewayConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        grpc_server = None
        port = gateway.config.grpc_port
        if port is not None:
            from mlops.serving.grpc import start_server  # registers the protobuf messages

            try:
                grpc_server = await start_server(gateway, gateway.config.grpc_host, port,
                                                 authorize=authorize,
                                                 reuse_port=gateway.config.grpc_reuse_port)
            except BaseException:
                await gateway.stop()
                raise
        tasks = [asyncio.create_task(job()) for job in background or []]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if grpc_server is not None:
            await grpc_server.stop()
        await gateway.stop()

    table, hot = routes(gateway)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        fix = {404: "See GET /v2/models/NAME, /v1/models/NAME:predict, /invocations, /api.",
               405: "Check the HTTP method (inference is POST)."}.get(status, "")
        return json_response({"error": str(getattr(exc, "detail", "")) or "Error", "fix": fix}, status)

    app = Starlette(routes=[*(Route(path, endpoint, methods=methods)
                              for path, endpoint, methods in table), *(mounts or [])],
                    lifespan=lifespan, exception_handlers={404: http_error, 405: http_error})
    app.state.gateway = gateway

    async def fast_path(scope: Scope, receive: Receive, send: Send) -> None:
        """Inference URLs skip the router and middleware stack (a sixth of the CPU per
        request); every other URL goes through Starlette."""
        if scope["type"] == "http" and scope["method"] == "POST":
            target = hot_target(scope["path"])
            if target is not None:
                kind, name, version = target
                response = await hot[kind](Request(scope, receive), name, version)
                await response(scope, receive, send)
                return
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == b"x-request-id"), None)
        request_id = request_id_for(given.decode("latin-1") if given else None).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_id)

    return fast_path
