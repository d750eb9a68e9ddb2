"""The evaluator inside ``mlops serve``: real traffic over HTTP, labels sent back, drift and an
accuracy drop detected and alerted, visible over the REST API; one leader among processes."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.deployment.routes import RoutingService
from mlops.monitoring.evaluator import Evaluator
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import start_server

FEATURES = ["a", "b", "c", "d"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    frame["label"] = (frame["a"] - frame["b"] > 0).astype(int)
    return frame


def _send(client: httpx.Client, frame: pd.DataFrame, labels: np.ndarray) -> None:
    for start in range(0, len(frame), 25):
        part = frame.iloc[start:start + 25]
        resp = client.post("/v2/models/churn/infer", json={"inputs": [
            {"name": "x", "shape": [len(part), 4], "datatype": "FP64",
             "data": part[FEATURES].to_numpy().ravel().tolist()}]})
        assert resp.status_code == 200, resp.text
        rid = resp.headers["x-request-id"]
        fb = client.post("/v1/models/churn/feedback", json=[
            {"request_id": rid, "row": i, "actual": int(y)}
            for i, y in enumerate(labels[start:start + 25])])
        assert fb.status_code == 200, fb.text


def test_server_evaluator_alerts_on_drift_and_accuracy_drop(tmp_path: Path) -> None:
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    train = _frame(2000, 0)
    clf = LogisticRegression().fit(train[FEATURES], train["label"])
    registry.register("churn", model=clf, reference=train[FEATURES], metrics={"accuracy": 0.97})
    RoutingService(registry).set_route("churn", "production", stable="1.0.0")
    server = start_server(home, env_extra={"MLOPS_MONITOR_INTERVAL": "0.5"})
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            normal = _frame(400, 1)
            _send(client, normal, normal["label"].to_numpy())
            shifted = _frame(800, 2)
            shifted[["a", "c", "d"]] += 1.5
            _send(client, shifted, 1 - shifted["label"].to_numpy())
            firing: set[str] = set()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not {"accuracy-drop", "data-drift"} <= firing:
                firing = {a["rule"] for a in client.get(
                    "/api/v1/alerts", params={"model": "churn", "state": "firing"}).json()}
                time.sleep(0.5)
            assert {"accuracy-drop", "data-drift"} <= firing
            status = client.get("/api/v1/monitor/churn",
                                params={"environment": "production"}).json()
            assert status["latest"]["drift_share"]["value"] >= 0.5
            assert status["health"]["status"] in ("degraded", "unhealthy")
            series = client.get("/api/v1/monitor/churn/series/accuracy").json()
            assert series and series[-1]["value"] < 0.8
            missing = client.post("/api/v1/alerts/9999/ack", json={})
            assert missing.status_code == 404 and "mlops alerts list" in missing.json()["fix"]
            bad_rule = client.put("/api/v1/alert-rules/x", json={"spec": {
                "metric": "accuracyy", "comparator": "<", "threshold": 1}})
            assert bad_rule.status_code == 400 and "unknown metric" in bad_rule.json()["error"]
    finally:
        server.stop()
    events = {e.action for e in registry.audit_log(subject="model/churn", limit=100)}
    assert "alert.fire" in events


def test_only_the_lease_holder_evaluates(registry: ModelRegistry) -> None:
    first = Evaluator(ModelMonitor(registry), holder="a", lease_seconds=30)
    second = Evaluator(ModelMonitor(registry), holder="b", lease_seconds=30)
    assert first.lease.acquire()
    assert second.run_once() == []  # b stands by while a holds the lease
    first.lease.release()
    assert second.lease.acquire()
