"""Staging tests: smoke and contract requests through a real gateway over HTTP.

The pipeline starts ``mlops serve --role gateway --env staging`` on a free loopback port over
the same store (or uses ``gateway_url`` when one is given), then checks that the gateway
is ready, serves the version just deployed (``x-model-version``), answers the test rows with
the offline predictions (the one comparison flow of :mod:`mlops.deployment.smoke`), and
refuses a malformed request with a 4xx instead of a 500.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from mlops.config import Settings
from mlops.deployment.smoke import compare_predictions, gateway_predictions
from mlops.errors import CIError

__all__ = ["StagingReport", "run_staging_checks", "staging_gateway"]


@dataclass(frozen=True)
class StagingReport:
    passed: bool
    reason: str
    checks: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def staging_gateway(settings: Settings, environment: str = "staging",
                    timeout: float = 60.0) -> Iterator[str]:
    """A gateway subprocess for ``environment`` over ``settings``' store; yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "MLOPS_HOME": str(settings.home),
           "MLOPS_DATABASE_URL": settings.database_url,
           "MLOPS_ARTIFACTS_URI": settings.artifacts_uri}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops", "serve", "--role", "gateway", "--env", environment,
         "--port", str(port), "--no-log-predictions"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise CIError(f"The staging gateway exited with {proc.returncode}: {err}",
                              fix="Run `mlops serve --env staging` by hand to see why.")
            with contextlib.suppress(httpx.HTTPError):  # not listening yet: poll again
                if httpx.get(url + "/v2/health/ready", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise CIError(f"The staging gateway did not become ready in {timeout:.0f} s.",
                              fix="Check that the model loads: mlops models show NAME.")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def run_staging_checks(url: str, model: str, version: str, X: pd.DataFrame,
                       expected: np.ndarray, *, n_rows: int = 50, timeout: float = 10.0
                       ) -> StagingReport:
    """Smoke + contract checks against a running gateway (see the module docstring)."""
    checks: dict[str, Any] = {}
    failures: list[str] = []
    rows = X.head(n_rows)
    with httpx.Client(base_url=url, timeout=timeout) as client:
        ready = client.get("/v2/health/ready")
        checks["ready"] = ready.status_code
        if ready.status_code != 200:
            failures.append(f"/v2/health/ready answered {ready.status_code}")
        meta = client.get(f"/v2/models/{model}")
        checks["metadata"] = meta.status_code
        if meta.status_code != 200:
            failures.append(f"/v2/models/{model} answered {meta.status_code}")
        answer = gateway_predictions(client, model, rows)
        checks["predict_status"] = answer.status
        checks["served_version"] = answer.served_version
        if answer.predictions is None:
            failures.append(f"/v2/models/{model}/infer answered {answer.status}: "
                            f"{answer.error}")
        else:
            if answer.served_version != version:
                failures.append(f"staging served version {answer.served_version}, expected "
                                f"{version}")
            same, where = compare_predictions(answer.predictions,
                                              np.asarray(expected)[: len(rows)])
            checks["rows_compared"] = len(rows)
            checks["outputs_match"] = same
            if not same:
                failures.append("gateway outputs differ from the offline predictions"
                                + (f" at row {where}" if where >= 0 else " in length"))
        bad = client.post("/invocations", json={"dataframe_split": {
            "columns": ["__not_a_feature__"], "data": [[1.0]]}},
            headers={"x-mlops-model": model})
        checks["malformed_status"] = bad.status_code
        if not 400 <= bad.status_code < 500:
            failures.append(f"a malformed request got {bad.status_code}, expected a 4xx")
    if failures:
        return StagingReport(False, "; ".join(failures), checks)
    return StagingReport(True, f"gateway ready, served {version}, {checks['rows_compared']} "
                               "rows matched the offline predictions, malformed request "
                               f"refused with {checks['malformed_status']}", checks)
