"""The demo's gateway: ``mlops serve`` started on a free loopback port, and JSON posts to it
(used by every section of ``mlops demo``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlops.registry import ModelRegistry

__all__ = ["post_json", "send", "start_gateway"]


def start_gateway(registry: ModelRegistry, *args: str, env_extra: dict[str, str] | None = None,
                  ) -> tuple[subprocess.Popen[bytes], str]:
    """``mlops serve`` on a free loopback port over the demo's store, once it is ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLOPS_HOME": str(registry.context.settings.home), **(env_extra or {})}
    proc = subprocess.Popen([sys.executable, "-m", "mlops", "serve", "--port", str(port), *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/v2/health/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return proc, url


def post_json(url: str, body: object, headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str], object]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def send(url: str, model: str, frame: pd.DataFrame, labels: np.ndarray,
         features: Sequence[str], *, batch: int = 20) -> int:
    """Send ``frame`` in ``batch``-row V2 requests to the gateway at ``url``, each followed
    by its labels (feedback); the rows answered."""
    sent = 0
    for start in range(0, len(frame), batch):
        part = frame.iloc[start:start + batch]
        status, headers, _ = post_json(
            f"{url}/v2/models/{model}/infer",
            {"inputs": [{"name": "x", "shape": [len(part), len(features)], "datatype": "FP64",
                         "data": part[list(features)].to_numpy().ravel().tolist()}]})
        if status == 200:
            post_json(f"{url}/v1/models/{model}/feedback",
                      [{"request_id": headers["x-request-id"], "row": i, "actual": int(y)}
                       for i, y in enumerate(labels[start:start + batch])])
            sent += len(part)
    return sent
