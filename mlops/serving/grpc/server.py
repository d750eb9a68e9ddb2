"""The ``grpc.aio`` server of a gateway worker: on the worker's event loop, beside its HTTP
app, over the same :class:`~mlops.serving.gateway.Gateway`.

Messages are limited to the HTTP body limit (larger ones get RESOURCE_EXHAUSTED from gRPC
itself). ``SO_REUSEPORT`` is off unless asked for: one server binds its port alone, so a
port already taken fails the start instead of silently sharing the traffic; with several
workers (``mlops serve --workers N``) each worker binds the port with it on and the kernel
spreads the connections across them.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mlops.errors import ConfigError
from mlops.serving.gateway import Gateway
from mlops.serving.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from mlops.serving.grpc.service import Authorize, InferenceService

__all__ = ["GrpcServer", "address", "start_server"]


def address(host: str, port: int) -> str:
    """``host:port`` as gRPC reads it (IPv6 in brackets; no host: every interface)."""
    if host in {"", "::"}:
        return f"[::]:{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class GrpcServer:
    """A started server and its service; :meth:`stop` lets calls in flight finish."""

    server: grpc.aio.Server
    service: InferenceService
    address: str

    async def stop(self, grace: float = 10.0) -> None:
        await self.server.stop(grace)
        await self.service.close()


async def start_server(gateway: Gateway, host: str, port: int, *,
                       authorize: Authorize | None = None,
                       reuse_port: bool = False) -> GrpcServer:
    """Serve ``inference.GRPCInferenceService`` for ``gateway`` on ``host:port``."""
    limit = gateway.config.max_body_bytes
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", -1),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ])
    service = InferenceService(gateway, authorize)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    where = address(host, port)
    try:
        bound = server.add_insecure_port(where)
    except RuntimeError as exc:
        bound, reason = 0, f": {exc}"
    else:
        reason = ""
    if bound == 0:
        raise ConfigError(f"Cannot listen for gRPC on {where}{reason}.",
                          fix="Choose a free --grpc-port (or stop what listens on it).")
    await server.start()
    return GrpcServer(server, service, where)
