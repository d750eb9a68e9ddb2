"""The gateway's JSON responses: bodies, errors in the ``{"error", "fix"}`` shape, framed
bodies of the binary tensor extension, and reading a JSON body (every handler and the hot
path use these)."""

from __future__ import annotations

import os
from typing import Any

import orjson
from starlette.responses import Response

from mlops.errors import BadRequest, ServingError, SignatureError, clipped
from mlops.serving.binary import HEADER

__all__ = ["error_response", "framed_response", "json_response", "loads_json", "request_id_for"]


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> Response:
    """``payload`` as JSON (numpy values included)."""
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def framed_response(payload: Any, blobs: list[bytes], headers: dict[str, str] | None = None
                    ) -> Response:
    """``payload`` as a JSON header followed by ``blobs`` (binary tensor extension), the
    header's length in ``Inference-Header-Content-Length``."""
    header = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(b"".join([header, *blobs]), media_type="application/octet-stream",
                    headers={**(headers or {}), HEADER: str(len(header))})


def error_response(exc: ServingError | SignatureError, request_id: str | None = None
                   ) -> Response:
    """The error's status (400 for a signature mismatch) with ``{"error", "fix"}``."""
    status = exc.status if isinstance(exc, ServingError) else 400
    body: dict[str, Any] = {"error": clipped(exc.message)}
    if exc.fix:
        body["fix"] = clipped(exc.fix)
    headers = {"x-request-id": request_id} if request_id else {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(round(exc.retry_after))
    return json_response(body, status, headers)


def loads_json(body: bytes | memoryview) -> Any:
    """The body as JSON; a :class:`BadRequest` naming the problem otherwise."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "surrogates not allowed" in str(exc) or "not valid UTF-8" in str(exc):
            raise BadRequest(
                "The body is not valid JSON: it holds bytes that are not UTF-8 text.",
                fix="Send JSON as UTF-8; binary tensor data goes after the JSON header, whose "
                    "length the Inference-Header-Content-Length header gives.") from exc
        raise BadRequest(f"The body is not valid JSON: {exc}.",
                         fix="Send a JSON document (NaN and Infinity are not JSON).") from exc


def request_id_for(given: str | None) -> str:
    """The client's id when it is short and printable; a fresh one otherwise."""
    if given and len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return os.urandom(16).hex()
