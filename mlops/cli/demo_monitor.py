"""The demo's monitoring section: production traffic shifts, the evaluator in ``mlops serve``
detects data drift and the accuracy drop, fires alerts, and ``mlops monitor status`` shows
them with the health score."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from typing import Any

import numpy as np
import pandas as pd

from mlops.cli.demo_gateway import send, start_gateway
from mlops.cli.output import console
from mlops.registry.service import ModelRegistry

__all__ = ["monitor_section"]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def monitor_section(registry: ModelRegistry, model: str, test: pd.DataFrame,
                    features: list[str]) -> None:
    from mlops.cli.monitor import status
    from mlops.monitoring.monitor import ModelMonitor

    monitor = ModelMonitor(registry)
    version = monitor.served_version(model, "production")
    rng = np.random.default_rng(3)
    # a short window, so that the rollout section's traffic has mostly left it
    proc, url = start_gateway(registry, env_extra={"MLOPS_MONITOR_INTERVAL": "2",
                                                   "MLOPS_MONITOR_WINDOW": "30"})
    try:
        normal = test.sample(600, replace=True, random_state=1)
        sent = send(url, model, normal, normal["label"].to_numpy(), features)
        console.print(f"{sent} normal requests to {model} {version} in production, with labels")
        # the world changes: f0, f1 and f3 shift by 1.5 sd, and the label follows a new rule
        shifted = test.sample(900, replace=True, random_state=2).copy()
        for column in ("f0", "f1", "f3"):
            shifted[column] += 1.5
        new_labels = (shifted["f2"] - 1.2 * shifted["f1"] + rng.normal(0, 0.5, len(shifted))
                      > -1.8).astype(int).to_numpy()
        sent = send(url, model, shifted, new_labels, features)
        console.print(f"{sent} requests after the shift (f0, f1, f3 +1.5 sd; labels follow a new "
                      "rule); the evaluator runs every 2 s over the last 30 s")
        firing: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            firing = _get(f"{url}/api/v1/alerts?model={model}&state=firing")
            if {"data-drift", "accuracy-drop"} <= {a["rule"] for a in firing}:
                break
            time.sleep(1.0)
        console.print("firing alerts (GET /api/v1/alerts): " + ", ".join(
            f"{a['rule']} ({a['severity']}, {a['metric']}={a['value']:.3g})" for a in firing))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    console.print("$ mlops monitor status " + model + " --env production")
    try:
        status(model, env="production", as_json=False)
    except Exception as exc:  # typer.Exit(1) when alerts are firing: that is the point here
        if type(exc).__name__ != "Exit":
            raise
