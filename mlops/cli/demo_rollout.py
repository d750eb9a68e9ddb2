"""The demo's rollout section: the controller promotes a good canary and rolls back a bad
one, deciding from live traffic and labels sent back through the gateway."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.ci.pipeline import ModelPipeline
from mlops.cli.ci import pipeline_table
from mlops.cli.demo_gateway import post_json, start_gateway
from mlops.cli.deploy import show_rollout
from mlops.cli.output import console
from mlops.registry.service import ModelRegistry

__all__ = ["rollout_section"]

# the challenger is a random forest: slower than the logistic champion, so the demo grants
# it a latency budget (p99 may exceed stable's x1.5 by 25 ms) instead of the 5 ms default
_DEMO_ANALYSIS = {"min_samples": 150, "accuracy_margin": 0.05, "require_labels": True,
                  "latency_slack_ms": 25.0,
                  "steps": [{"weight": 50, "pause": 0}, {"weight": 100}]}


def _drive(url: str, model: str, rows: pd.DataFrame, features: list[str], manager: Any,
           rng: np.random.Generator, seconds: float = 90.0) -> Any:
    """Send 10-row requests and their labels until the rollout leaves ``progressing``."""

    deadline = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < deadline:
        batch = rows.sample(10, random_state=int(rng.integers(1 << 30)))
        status, headers, _ = post_json(
            f"{url}/v2/models/{model}/infer",
            {"inputs": [{"name": "x", "shape": [10, len(features)], "datatype": "FP64",
                         "data": batch[features].to_numpy().ravel().tolist()}]},
            {"x-mlops-unit": f"user-{rng.integers(1_000_000)}"})
        if status == 200:
            rid = headers["x-request-id"]
            post_json(f"{url}/v1/models/{model}/feedback",
                  [{"request_id": rid, "row": i, "actual": int(y)}
                   for i, y in enumerate(batch["label"])])
        sent += 1
        if sent % 25 == 0:
            rollout = manager.status(model, "production")
            if rollout is not None and rollout.state != "progressing":
                return rollout
    return manager.status(model, "production")


def rollout_section(registry: ModelRegistry, developer: ModelRegistry, model: str,
                    train: pd.DataFrame, test: pd.DataFrame, features: list[str],
                    candidate: str) -> None:
    """``registry`` acts as an approver (production changes), ``developer`` registers."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    from mlops.deployment.rollouts import RolloutManager

    manager = RolloutManager(registry)
    rng = np.random.default_rng(11)
    proc, url = start_gateway(registry, "--controller-interval", "0.5")
    try:
        manager.deploy(model, candidate, "production", strategy="canary", config=_DEMO_ANALYSIS,
                       reason="demo: the challenger")
        console.print(f"canary of {candidate}: 50% then 100%, the controller analyses every "
                      "0.5 s (labels sent back with every request; the forest gets a 25 ms "
                      "p99 latency budget over the logistic champion)")
        show_rollout(_drive(url, model, test, features, manager, rng), False)

        noisy = LogisticRegression(max_iter=300).fit(
            train[features], rng.permutation(train["label"].to_numpy()))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "noisy.skops"
            sio.dump(noisy, path)
            result = ModelPipeline(developer).run(
                path, model, Path(registry.context.settings.home) / "demo" / "test.csv",
                stage="register", metadata={"algorithm": "trained on shuffled labels"})
            console.print(pipeline_table(result))
            failed = result.failed_step
            console.print(f"the pipeline stops at {failed.name if failed else '-'}: nothing "
                          "is registered, nothing reaches staging or production")
            # to show the automatic rollback, push it past the gates anyway: the override
            # is recorded in the audit log with its reason
            bad = developer.register(model, path, input_example=train[features].head(20),
                                    reference=train[features],
                                    metadata={"algorithm": "trained on shuffled labels"})
        RolloutManager(developer).deploy(model, bad.version, "staging", strategy="full",
                                         reason="demo: staging before production")
        manager.deploy(model, bad.version, "production", strategy="canary",
                       config=_DEMO_ANALYSIS, reason="demo: a model that learned nothing",
                       override="demo: bypass the failed gates to show the automatic rollback")
        console.print(f"canary of {bad.version}, trained on shuffled labels:")
        show_rollout(_drive(url, model, test, features, manager, rng), False)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
