"""Feedback, metrics, overload, and a graceful SIGTERM that loses no logged prediction."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from mlops.registry.service import ModelRegistry
from mlops.store.predlog import read_feedback, read_predictions
from tests.serving.conftest import Server, start_server
from tests.serving.fixtures import Slow

Data = tuple[pd.DataFrame, np.ndarray]


def test_feedback_is_stored_and_joined_by_request_id(served_store: tuple[Path, ModelRegistry],
                                                     data: Data) -> None:
    home, _ = served_store
    x, y = data
    srv = start_server(home)
    try:
        with srv.client() as c:
            ids = [c.post("/v1/models/clf:predict", json={"instances": [x.iloc[i].tolist()]})
                   .headers["x-request-id"] for i in range(5)]
            r = c.post("/v1/models/clf/feedback",
                       json=[{"request_id": rid, "actual": int(y[i])} for i, rid in
                             enumerate(ids)] + [{"request_id": "not-seen-yet", "actual": 1}])
            assert r.json() == {"accepted": 6, "unmatched": 1}
            single = c.post("/v1/models/clf/feedback", json={"request_id": ids[0], "actual": 0})
            assert single.json() == {"accepted": 1, "unmatched": 0}
            bad = c.post("/v1/models/clf/feedback", json={"actual": 1})
            assert bad.status_code == 400 and "request_id" in bad.json()["error"]
    finally:
        srv.stop()
    feedback = read_feedback(str(home / "artifacts"), model="clf").to_pandas()
    predictions = read_predictions(str(home / "artifacts"), model="clf").to_pandas()
    joined = predictions.merge(feedback, on=["request_id", "row"])
    assert set(ids) <= set(joined.request_id)
    assert "not-seen-yet" in set(feedback.request_id)


def test_metrics_are_valid_prometheus_text(server: Server, data: Data) -> None:
    x, _ = data
    with server.client() as c:
        c.post("/v1/models/clf:predict", json={"instances": [x.iloc[0].tolist()]})
        c.post("/v1/models/clf:predict", json={"instances": [[1, 2]]})
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("mlops_requests", "mlops_request_duration_seconds", "mlops_prediction_errors",
                 "mlops_batch_size", "mlops_inflight_requests", "mlops_prediction_log_dropped",
                 "mlops_model_loaded"):
        assert name in families, name
    codes = {s.labels["code"] for s in families["mlops_requests"].samples
             if s.name == "mlops_requests_total"}
    assert {"200", "400"} <= codes
    sample = next(s for s in families["mlops_requests"].samples if s.labels["code"] == "200")
    assert set(sample.labels) == {"model_name", "model_version", "environment", "route",
                                  "protocol", "code"}
    assert sample.labels["protocol"] == "http"


def test_overload_answers_503_with_retry_after(tmp_path: Path, data: Data) -> None:
    from mlops.config import Settings

    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    slow = tmp_path / "slow.pkl"
    slow.write_bytes(pickle.dumps(Slow(0.3)))
    registry.register("slow", slow, trust=True)
    registry.promote("slow", "1.0.0", "production")
    srv = start_server(home, "--max-inflight", "2", "--max-batch", "1")
    try:
        def call(_: int) -> httpx.Response:
            return httpx.post(srv.url + "/v1/models/slow:predict",
                              json={"instances": [[1.0, 2.0]]}, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(call, range(8)))
    finally:
        srv.stop()
    codes = [r.status_code for r in responses]
    assert 200 in codes and 503 in codes
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "in-flight" in refused.json()["error"]


def test_sigterm_under_load_loses_no_logged_prediction(served_store: tuple[Path, ModelRegistry],
                                                       data: Data) -> None:
    home, _ = served_store
    x, _ = data
    srv = start_server(home)
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            i = 0
            while not stop.is_set():
                try:
                    r = c.post("/v1/models/clf:predict",
                               json={"instances": [x.iloc[i % 400].tolist()]})
                except httpx.HTTPError:
                    return  # the server stopped accepting
                if r.status_code == 200:
                    answered.append(r.headers["x-request-id"])
                i += 1

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    code = srv.stop()
    stop.set()
    for t in threads:
        t.join(10)
    assert code in (0, -15)
    assert len(answered) > 100
    logged = set(read_predictions(str(home / "artifacts"), model="clf")
                 .column("request_id").to_pylist())
    missing = set(answered) - logged
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions not logged"


def test_every_response_has_a_request_id_and_model_responses_a_version(server: Server
                                                                       ) -> None:
    with server.client() as c:
        for path in ("/v2/health/live", "/v2", "/metrics", "/v2/models/clf", "/v1/models/clf"):
            r = c.get(path)
            assert r.headers.get("x-request-id"), path
        assert c.get("/v2/models/clf").headers["x-model-version"] == "1.0.0"
        assert c.get("/v1/models/clf").headers["x-model-version"] == "1.0.0"
        assert c.get("/v2", headers={"x-request-id": "mine"}).headers["x-request-id"] == "mine"


def test_log_proba_records_probabilities_of_every_request(
        served_store: tuple[Path, ModelRegistry], data: Data) -> None:
    home, _ = served_store
    x, _ = data
    srv = start_server(home, "--log-proba")
    try:
        r = httpx.post(srv.url + "/v1/models/clf:predict",
                       json={"instances": [x.iloc[0].tolist()]})
        rid = r.headers["x-request-id"]
    finally:
        srv.stop()
    log = read_predictions(str(home / "artifacts"), model="clf").to_pandas()
    proba = log[log.request_id == rid].proba.iloc[0]
    assert len(proba) == 2 and abs(sum(proba) - 1) < 1e-9
