"""URL handlers of the gateway: V2 (native), KServe V1, MLflow scoring, health, metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

import mlops
from mlops.errors import BadRequest, ModelUnavailable, ServingError, shown
from mlops.serving import metrics as m
from mlops.serving.batching import Prediction
from mlops.serving.binary import HEADER, RawTensors, binary_outputs, split_body
from mlops.serving.codecs import (
    Columns,
    decode_mlflow,
    decode_v1,
    decode_v2,
    encode_plain,
    encode_v2,
)
from mlops.serving.gateway import Gateway
from mlops.serving.responses import error_response, framed_response, json_response, loads_json
from mlops.serving.routing import ServedModel

__all__ = ["hot_target", "routes"]

Endpoint = Callable[[Request], Awaitable[Response]]


Hot = Callable[[Request, str, str | None], Awaitable[Response]]
_DEFAULT_OUTPUTS = ["predict"]  # what a V2 request that names no outputs gets


def routes(gw: Gateway) -> tuple[list[tuple[str, Endpoint, list[str]]], dict[str, Hot]]:
    """(path, endpoint, methods) for every URL the gateway answers, and the inference
    handlers by kind (``v2``, ``v1``, ``mlflow``) for the router-free fast path."""

    # ------------------------------------------------------------------ V2
    def read_v2(doc: Any, served: ServedModel, raw: RawTensors | None) -> tuple[Columns, Any]:
        columns, requested = decode_v2(doc, served.schema, raw)
        body_id = doc.get("id")
        return columns, (requested, body_id if isinstance(body_id, str) else None,
                         binary_outputs(doc, _DEFAULT_OUTPUTS))

    def dec_v2(body: bytes, served: ServedModel) -> tuple[Columns, Any]:
        return read_v2(loads_json(body), served, None)

    def dec_v2_framed(header_length: str) -> Callable[[bytes, ServedModel], tuple[Columns, Any]]:
        """A body in the binary tensor extension: a JSON header, then raw tensor bytes."""
        def dec(body: bytes, served: ServedModel) -> tuple[Columns, Any]:
            header, raw = split_body(body, header_length)
            return read_v2(loads_json(header), served, raw)
        return dec

    def enc_v2(served: ServedModel, pred: Prediction, request_id: str, extra: Any) -> Any:
        requested, body_id, binary = extra
        outputs, blobs = encode_v2(pred.values, pred.proba, requested,
                                   f"{served.name} {served.version}", binary)
        payload = {"model_name": served.name, "model_version": served.version,
                   "id": body_id or request_id, "outputs": outputs}
        return framed_response(payload, blobs) if blobs else payload

    def proba_v2(extra: Any) -> bool:
        requested = extra[0]
        return bool(requested) and "predict_proba" in requested

    async def v2_hot(request: Request, name: str, version: str | None) -> Response:
        header_length = request.headers.get(HEADER)
        decode = dec_v2 if header_length is None else dec_v2_framed(header_length)
        return await gw.infer(request, name, version, decode, enc_v2, proba_v2)

    async def v2_infer(request: Request) -> Response:
        params = request.path_params
        return await v2_hot(request, params["name"], params.get("version"))

    async def v2_live(request: Request) -> Response:
        return json_response({"live": True})

    async def v2_ready(request: Request) -> Response:
        return json_response({"ready": gw.ready}, 200 if gw.ready else 503)

    async def v2_server(request: Request) -> Response:
        return json_response({"name": "mlops", "version": mlops.__version__,
                              "extensions": ["binary_tensor_data"]})

    def _served(request: Request) -> ServedModel:
        name, version = request.path_params["name"], request.path_params.get("version")
        if version is not None:
            return gw.table.direct(name, version)
        return gw.table.route(name).stable

    async def v2_model(request: Request) -> Response:
        try:
            served = _served(request)
        except ServingError as exc:
            return error_response(exc)
        return json_response(gw.metadata(served, "version" in request.path_params),
                             headers={"x-model-version": served.version})

    async def v2_model_ready(request: Request) -> Response:
        try:
            served = _served(request)
        except ServingError as exc:
            return error_response(exc)
        ready = not gw.batcher.stuck(served)  # not while a call is past its deadline
        return json_response({"name": served.name, "ready": ready}, 200 if ready else 503,
                             headers={"x-model-version": served.version})

    # ------------------------------------------------------------------ V1
    def dec_v1(body: bytes, served: ServedModel) -> tuple[Columns, Any]:
        return decode_v1(loads_json(body), served.schema), None

    def enc_v1(served: ServedModel, pred: Prediction, request_id: str, extra: Any) -> Any:
        return {"predictions": encode_plain(pred.values)}

    async def v1_hot(request: Request, name: str, version: str | None) -> Response:
        return await gw.infer(request, name, version, dec_v1, enc_v1)

    async def v1_model(request: Request) -> Response:
        target: str = request.path_params["target"]
        if request.method == "POST":
            if not target.endswith(":predict"):
                return error_response(ModelUnavailable(f"Unknown V1 verb in {shown(target)}.",
                                               fix="POST /v1/models/NAME:predict"))
            return await v1_hot(request, target[: -len(":predict")], None)
        try:
            route = gw.table.route(target)
        except ServingError as exc:
            return error_response(exc)
        return json_response({"name": target, "ready": True},
                     headers={"x-model-version": route.stable.version})

    async def feedback(request: Request) -> Response:
        return await gw.feedback(request, request.path_params["name"])

    # ------------------------------------------------------------------ MLflow
    def dec_mlflow_for(content_type: str) -> Callable[[bytes, ServedModel], tuple[Columns, Any]]:
        def dec(body: bytes, served: ServedModel) -> tuple[Columns, Any]:
            if content_type.split(";")[0].strip().lower() == "text/csv":  # before parsing
                gw.refuse_rows(body.count(b"\n") - 1)
            return decode_mlflow(body, content_type, served.schema, loads_json), None
        return dec

    async def invocations_hot(request: Request, name: str, version: str | None) -> Response:
        return await invocations(request)

    async def invocations(request: Request) -> Response:
        name = request.headers.get("x-mlops-model") or gw.config.default_model
        if name is None:
            served_names = sorted(gw.table.routes)
            if len(served_names) != 1:
                return error_response(BadRequest(
                    f"/invocations needs to know which model to use; {len(served_names)} are "
                    "deployed here.",
                    fix="Send the header x-mlops-model: NAME, or start the server with "
                        "--model NAME."))
            name = served_names[0]
        return await gw.infer(request, name, None,
                              dec_mlflow_for(request.headers.get("content-type", "")), enc_v1)

    async def ping(request: Request) -> Response:
        return Response("\n", status_code=200 if gw.ready else 503,
                        media_type="application/json")

    async def version(request: Request) -> Response:
        return Response(mlops.__version__, media_type="text/plain")

    async def metrics(request: Request) -> Response:
        return Response(m.render(), media_type=m.CONTENT_TYPE_LATEST)

    return [
        ("/v2/health/live", v2_live, ["GET"]),
        ("/v2/health/ready", v2_ready, ["GET"]),
        ("/v2", v2_server, ["GET"]),
        ("/v2/models/{name}", v2_model, ["GET"]),
        ("/v2/models/{name}/ready", v2_model_ready, ["GET"]),
        ("/v2/models/{name}/infer", v2_infer, ["POST"]),
        ("/v2/models/{name}/versions/{version}", v2_model, ["GET"]),
        ("/v2/models/{name}/versions/{version}/ready", v2_model_ready, ["GET"]),
        ("/v2/models/{name}/versions/{version}/infer", v2_infer, ["POST"]),
        ("/v1/models/{name}/feedback", feedback, ["POST"]),
        ("/v1/models/{target}", v1_model, ["GET", "POST"]),
        ("/invocations", invocations, ["POST"]),
        ("/ping", ping, ["GET"]),
        ("/health", ping, ["GET"]),
        ("/version", version, ["GET"]),
        ("/metrics", metrics, ["GET"]),
    ], {"v2": v2_hot, "v1": v1_hot, "mlflow": invocations_hot}


def hot_target(path: str) -> tuple[str, str, str | None] | None:
    """``(kind, model, version)`` when ``path`` is an inference URL, else None."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[len("/v2/models/"):-len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2", parts[0], None
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return "v2", parts[0], parts[2]
        return None
    if path.startswith("/v1/models/") and path.endswith(":predict"):
        name = path[len("/v1/models/"):-len(":predict")]
        return ("v1", name, None) if name and "/" not in name else None
    if path == "/invocations":
        return "mlflow", "", None
    return None
