"""Smoke requests: the registered input example sent to a version before it takes traffic.

Through the gateway (``/v2/models/{name}/versions/{version}/infer``) when its URL is known
(``mlops serve`` passes its own; ``MLOPS_GATEWAY_URL`` otherwise), comparing the answers
with the version's offline predictions on the same rows; without a gateway, the version
is loaded and predicts locally. A version registered without an input example has nothing
to send: the check says so and passes.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import MlopsError
from mlops.registry.service import ModelRegistry

__all__ = ["SmokeResult", "smoke_test"]


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    reason: str
    rows: int = 0
    via: str = "gateway"


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all((isinstance(v, int | float) and not isinstance(v, bool)) or v is None for v in values):
        return "FP64"
    return "BYTES"


def smoke_test(registry: ModelRegistry, model: str, version: str,
               gateway_url: str | None = None, timeout: float = 10.0) -> SmokeResult:
    mv = registry.get_version(model, version)
    rows = mv.input_example or []
    if not rows:
        return SmokeResult(True, "skipped: the version was registered without an input "
                           "example", 0, "none")
    frame = pd.DataFrame.from_records(rows)
    try:
        expected = registry.load_model(model, version).predict(frame)
    except MlopsError as exc:
        return SmokeResult(False, f"the version does not predict offline: {exc.message}",
                           len(rows), "local")
    if gateway_url is None:
        return SmokeResult(True, f"{len(rows)} example rows predicted locally", len(rows),
                           "local")
    body = {"inputs": [{"name": c, "shape": [len(rows)], "datatype": _datatype(list(frame[c])),
                        "data": [None if isinstance(v, float) and np.isnan(v) else v
                                 for v in frame[c].tolist()]} for c in frame.columns]}
    url = f"{gateway_url.rstrip('/')}/v2/models/{model}/versions/{version}/infer"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return SmokeResult(False, f"the gateway answered {exc.code}: "
                           f"{exc.read()[:200].decode(errors='replace')}", len(rows))
    except (OSError, ValueError) as exc:
        return SmokeResult(False, f"the gateway at {gateway_url} did not answer: {exc}",
                           len(rows))
    outputs = {o.get("name"): o for o in answer.get("outputs", [])}
    got = outputs.get("predict", {}).get("data")
    want = np.asarray(expected).ravel().tolist()
    same = got is not None and len(got) == len(want) and all(
        (abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b))))
        if isinstance(a, int | float) and isinstance(b, int | float) else str(a) == str(b)
        for a, b in zip(got, want, strict=True))
    if not same:
        return SmokeResult(False, f"gateway predictions {str(got)[:120]} differ from offline "
                           f"{str(want)[:120]}", len(rows))
    return SmokeResult(True, f"{len(rows)} example rows through the gateway match offline "
                       "predictions", len(rows))
