"""Raw ASGI floor for ``bench/serving.py``: the least a Python server can do per request.

No framework: uvicorn (uvloop + httptools, access log off) calls this callable directly, orjson
parses the same Open Inference Protocol (V2) body the gateway gets, the model predicts, and
orjson writes the same kind of V2 answer. It checks nothing it does not need to, so it is a
floor to compare against, not a server to deploy.

Configured by environment variables (``bench/serving.py`` sets them):

- ``BENCH_FLOOR_MODEL``: path of a pickled (joblib) scikit-learn estimator;
- ``BENCH_FLOOR_NAME``: model name in the URL (default ``bench``);
- ``BENCH_FLOOR_INPUT``: ``frame`` (default) builds a one-row pandas DataFrame with the
  estimator's ``feature_names_in_``, the input a model fitted on named columns expects;
  ``numpy`` passes the plain float64 array instead.

Run: ``uvicorn floor_app:app --app-dir bench --loop uvloop --http httptools --no-access-log``.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]


class _Floor:
    def __init__(self) -> None:
        import joblib
        import pandas as pd

        self.pd = pd
        self.model = joblib.load(os.environ["BENCH_FLOOR_MODEL"])
        self.name = os.environ.get("BENCH_FLOOR_NAME", "bench")
        self.frame = os.environ.get("BENCH_FLOOR_INPUT", "frame") != "numpy"
        self.columns = list(getattr(self.model, "feature_names_in_", []))
        self.infer_path = f"/v2/models/{self.name}/infer"
        if not self.frame:  # the model was fitted with names: sklearn warns on a bare array
            warnings.filterwarnings("ignore", message="X does not have valid feature names")

    def infer(self, body: bytes) -> bytes:
        tensor = orjson.loads(body)["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
        if self.frame:
            x = self.pd.DataFrame(x, columns=self.columns)
        y = self.model.predict(x)
        return orjson.dumps({
            "model_name": self.name,
            "id": uuid.uuid4().hex,
            "outputs": [{"name": "predict", "shape": list(y.shape), "datatype": "INT64",
                         "data": y.tolist()}],
        })


_floor: _Floor | None = None


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _floor
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _floor = _Floor()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if _floor is None:
        _floor = _Floor()
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == _floor.infer_path:
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        try:
            answer = _floor.infer(b"".join(chunks))
        except Exception as exc:  # a bad body is the client's error, not a crash
            await _respond(send, 400, orjson.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return
        await _respond(send, 200, answer)
    elif method == "GET" and path in ("/v2/health/ready", "/v2/health/live"):
        await _respond(send, 200, b"{}")
    else:
        await _respond(send, 404, b'{"error": "not found"}')
