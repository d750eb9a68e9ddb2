"""Smoke requests: rows sent through a gateway, answers compared with offline predictions.

One flow for both callers: the rollout controller's smoke test of a candidate before it
takes traffic (:func:`smoke_test`: the version's registered input example, through
``/v2/models/{name}/versions/{version}/infer``) and the pipeline's staging tests
(:mod:`mlops.ci.staging`: test rows through what staging serves). Both send a V2 request
with :func:`gateway_predictions` and compare with :func:`compare_predictions` (classes
equal; numbers within 1e-6 relative).

Without a gateway URL (``mlops serve`` passes its own; ``MLOPS_GATEWAY_URL`` otherwise) the
smoke test loads the version and predicts locally. A version registered without an input
example has nothing to send: the check says so and passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlops.errors import MlopsError
from mlops.registry.service import ModelRegistry

__all__ = ["GatewayAnswer", "SmokeResult", "compare_predictions", "gateway_predictions",
           "smoke_test"]


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    reason: str
    rows: int = 0
    via: str = "gateway"


@dataclass(frozen=True)
class GatewayAnswer:
    """What the gateway answered: status, the version that answered, the ``predict``
    output (None unless 200), and the body's text when it was not a 200."""

    status: int
    served_version: str | None
    predictions: list[Any] | None
    error: str = ""


def _datatype(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "BOOL"
    if all((isinstance(v, int | float) and not isinstance(v, bool)) or v is None for v in values):
        return "FP64"
    return "BYTES"


def _plain(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def gateway_predictions(client: httpx.Client, model: str, frame: pd.DataFrame,
                        version: str | None = None) -> GatewayAnswer:
    """POST ``frame`` as a V2 request (one tensor per column) to what the gateway serves
    for ``model``, or to ``version`` explicitly. Raises ``httpx.HTTPError`` when the
    gateway does not answer."""
    body = {"inputs": [{"name": str(c), "shape": [len(frame)],
                        "datatype": _datatype(list(frame[c])),
                        "data": [_plain(v) for v in frame[c].tolist()]} for c in frame.columns]}
    path = f"/v2/models/{model}/infer" if version is None else \
        f"/v2/models/{model}/versions/{version}/infer"
    resp = client.post(path, json=body)
    served = resp.headers.get("x-model-version")
    if resp.status_code != 200:
        return GatewayAnswer(resp.status_code, served, None, resp.text[:200])
    try:
        outputs = {o.get("name"): o for o in resp.json().get("outputs", [])}
    except (ValueError, AttributeError) as exc:
        return GatewayAnswer(resp.status_code, served, None, f"unreadable answer: {exc}")
    data = outputs.get("predict", {}).get("data")
    return GatewayAnswer(200, served, list(data) if isinstance(data, list) else None,
                         "" if isinstance(data, list) else "no 'predict' output")


def compare_predictions(got: Sequence[Any], expected: Any) -> tuple[bool, int]:
    """(same, where): the first differing row, ``-1`` for a different length, else the
    number of rows compared. Classes must be equal, numbers within 1e-6 relative."""
    exp = np.asarray(expected).ravel().tolist()
    if len(got) != len(exp):
        return False, -1
    for i, (a, b) in enumerate(zip(got, exp, strict=True)):
        if isinstance(b, float) or isinstance(a, float):
            try:
                if not np.isclose(float(a), float(b), rtol=1e-6, atol=1e-9):
                    return False, i
            except (TypeError, ValueError):
                return False, i
        elif str(a) != str(b):
            return False, i
    return True, len(exp)


def smoke_test(registry: ModelRegistry, model: str, version: str,
               gateway_url: str | None = None, timeout: float = 10.0) -> SmokeResult:
    """Send the version's input example through the gateway (or predict locally without
    one) and compare with its offline predictions."""
    mv = registry.get_version(model, version)
    rows = mv.input_example or []
    if not rows:
        return SmokeResult(True, "skipped: the version was registered without an input "
                           "example", 0, "none")
    frame = pd.DataFrame.from_records(rows)
    try:
        # the runtime the gateway executes (a compiled one when the version has it)
        expected = registry.load_model(model, version, runtime="auto").predict(frame)
    except MlopsError as exc:
        return SmokeResult(False, f"the version does not predict offline: {exc.message}",
                           len(rows), "local")
    if gateway_url is None:
        return SmokeResult(True, f"{len(rows)} example rows predicted locally", len(rows),
                           "local")
    try:
        with httpx.Client(base_url=gateway_url.rstrip("/"), timeout=timeout) as client:
            answer = gateway_predictions(client, model, frame, version)
    except httpx.HTTPError as exc:
        return SmokeResult(False, f"the gateway at {gateway_url} did not answer: {exc}",
                           len(rows))
    if answer.predictions is None:
        return SmokeResult(False, f"the gateway answered {answer.status}: {answer.error}",
                           len(rows))
    same, _ = compare_predictions(answer.predictions, expected)
    if not same:
        want = np.asarray(expected).ravel().tolist()
        return SmokeResult(False, f"gateway predictions {str(answer.predictions)[:120]} "
                           f"differ from offline {str(want)[:120]}", len(rows))
    return SmokeResult(True, f"{len(rows)} example rows through the gateway match offline "
                       "predictions", len(rows))
