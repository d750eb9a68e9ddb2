"""``inference.GRPCInferenceService``: the Open Inference Protocol's gRPC service over one
:class:`~mlops.serving.gateway.Gateway`.

ModelInfer goes through :meth:`Gateway.answer`, the request path of HTTP: the same routing
(the sticky key from the ``x-mlops-unit`` metadata), explicit versions, validation,
batching, prediction log, feedback ids and metrics (``protocol="grpc"``). The request id is
the ``x-request-id`` metadata, else the request's ``id``; it comes back in the trailing
metadata, and the response's ``id`` is the request's own (else that request id). Refusals
carry the gateway's message and fix as the status details, with the HTTP status mapped to
a gRPC code (:func:`~mlops.serving.grpc.codec.status_code`).

Authentication is not decided here: in team mode with ``auth_inference`` the server is
given an :data:`Authorize` check by the presentation layer (the same verifier and
failure limiter as HTTP), and every call but the health probes passes it first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn
from urllib.parse import unquote

import grpc

import mlops
from mlops.errors import AuthError, MlopsError, ServingError, clipped
from mlops.serving.gateway import UNIT_HEADER, Call, Gateway, caller_of
from mlops.serving.grpc import codec
from mlops.serving.grpc.proto import grpc_predict_v2_pb2 as pb
from mlops.serving.grpc.proto import grpc_predict_v2_pb2_grpc as pb_grpc
from mlops.serving.responses import request_id_for

__all__ = ["Authorize", "InferenceService", "peer_host"]

#: ``(authorization metadata value or None, client address)``; raises an
#: :class:`~mlops.errors.AuthError` when the caller may not use the inference API
Authorize = Callable[[str | None, str], Awaitable[object]]


def peer_host(peer: str) -> str:
    """The client address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``, URL
    encoded or not)."""
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1:].partition("]")[0]
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer or "unknown"


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    """The six RPCs of the protocol; the model repository RPCs answer UNIMPLEMENTED."""

    def __init__(self, gateway: Gateway, authorize: Authorize | None = None) -> None:
        self.gateway = gateway
        self.authorize = authorize
        self._after: set[asyncio.Task[None]] = set()  # shadow requests still running

    # ------------------------------------------------------------------ health (public)
    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.gateway.ready)

    # ------------------------------------------------------------------ metadata
    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        await self._check(context)
        return pb.ServerMetadataResponse(name="mlops", version=mlops.__version__,
                                         extensions=[])

    async def ModelReady(self, request: Any, context: Any) -> Any:
        await self._check(context)
        try:
            served = await self.gateway.served(request.name, request.version or None)
        except ServingError:
            return pb.ModelReadyResponse(ready=False)  # as HTTP's 404: not ready here
        return pb.ModelReadyResponse(ready=not self.gateway.batcher.stuck(served))

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        await self._check(context)
        try:
            served = await self.gateway.served(request.name, request.version or None)
        except ServingError as exc:
            await _abort(context, exc.status, exc)
        meta = self.gateway.metadata(served, bool(request.version))
        response = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"],
                                            platform=meta["platform"])
        for tensor in meta["inputs"]:
            response.inputs.add(**tensor)
        for tensor in meta["outputs"]:
            response.outputs.add(**tensor)
        context.set_trailing_metadata((("x-model-version", served.version),))
        return response

    # ------------------------------------------------------------------ inference
    async def ModelInfer(self, request: Any, context: Any) -> Any:
        principal = await self._check(context)
        metadata = _metadata(context)
        request_id = request_id_for(metadata.get("x-request-id") or request.id or None)

        async def read() -> codec.GrpcRequest:
            return codec.read_request(request)

        call = Call(request.model_name, request.model_version or None, request_id,
                    metadata.get(UNIT_HEADER), "grpc", read,
                    caller_of(principal, (peer_host(context.peer()),)))
        answer = await self.gateway.answer(call, codec.decode, codec.encode,
                                           codec.wants_proba)
        trailing = [("x-request-id", request_id)]
        if answer.version is not None:
            trailing.append(("x-model-version", answer.version))
        if answer.runtime is not None:
            trailing.append(("x-model-runtime", answer.runtime))
        if answer.error is not None and answer.error.retry_after is not None:
            trailing.append(("retry-after", str(round(answer.error.retry_after))))  # as HTTP
        context.set_trailing_metadata(tuple(trailing))
        if answer.status == 200:
            if answer.after is not None:
                task = asyncio.create_task(answer.after())
                self._after.add(task)
                task.add_done_callback(self._after.discard)
            return answer.payload
        if answer.error is not None:
            await _abort(context, answer.status, answer.error)
        await context.abort(codec.status_code(answer.status), clipped(answer.message))

    # ------------------------------------------------------------------ model repository
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self._refuse_repository(context, "load")

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self._refuse_repository(context, "unload")

    async def _refuse_repository(self, context: Any, verb: str) -> NoReturn:
        """The gateway loads what the registry's routes say; a client cannot {verb} a
        model, on purpose (it would bypass the production gate)."""
        await self._check(context)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            f"This gateway does not {verb} models on request: it serves what "
                            "the registry's routes say. Fix: deploy or roll back with `mlops "
                            "deploy` / `mlops rollback` (or the /api), which go through the "
                            "production gate.")
        raise AssertionError("unreachable: abort raises")  # pragma: no cover

    async def close(self) -> None:
        """Wait for the shadow requests still running (they log their rows)."""
        for task in list(self._after):
            with contextlib.suppress(Exception):
                await task

    # ------------------------------------------------------------------ auth
    async def _check(self, context: Any) -> object:
        """The caller (a principal; None when no authorisation is configured), or abort."""
        if self.authorize is None:
            return None
        try:
            return await self.authorize(_metadata(context).get("authorization"),
                                        peer_host(context.peer()))
        except AuthError as exc:
            if exc.retry_after is not None:
                context.set_trailing_metadata(
                    (("retry-after", str(round(exc.retry_after))),))
            await _abort(context, exc.status, exc)


def _metadata(context: Any) -> dict[str, str]:
    """The call's metadata (keys are lower case in gRPC); binary values are left out."""
    return {key: value for key, value in context.invocation_metadata() or ()
            if isinstance(value, str)}


async def _abort(context: Any, status: int, exc: MlopsError) -> NoReturn:
    """End the call with the status's gRPC code; the details are the message and the fix."""
    await context.abort(codec.status_code(status), clipped(str(exc)))
    raise AssertionError("unreachable: abort raises")  # pragma: no cover
