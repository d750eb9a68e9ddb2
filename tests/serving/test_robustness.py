"""Broken models and hostile requests: a 4xx or a 500, never a hang, a crash or a leak."""

from __future__ import annotations

import asyncio
import pickle
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.config import Settings
from mlops.errors import FlavorError
from mlops.registry.service import ModelRegistry
from mlops.serving.batching import Batcher
from mlops.serving.codecs import Columns, Schema
from mlops.serving.routing import ServedModel
from tests.serving.conftest import Server, start_server
from tests.serving.fixtures import RefusesNines, ScalarOutput, Slow


@pytest.fixture(scope="module")
def odd_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("odd")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    for name, obj in (("scalar", ScalarOutput()), ("slow", Slow(1.0))):
        path = root / f"{name}.pkl"
        path.write_bytes(pickle.dumps(obj))
        registry.register(name, path, trust=True)
        registry.promote(name, "1.0.0", "production")
    srv = start_server(home, "--max-inflight", "4")
    yield srv
    srv.stop()


def test_wrong_output_length_is_a_500_and_frees_the_slot(odd_server: Server) -> None:
    def call(_: int) -> httpx.Response:
        return httpx.post(odd_server.url + "/v1/models/scalar:predict",
                          json={"instances": [[1.0], [2.0]]}, timeout=10)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(8)))  # more than --max-inflight, sequentially
    assert {r.status_code for r in responses} <= {500, 503}
    assert any(r.status_code == 500 and "error id" in r.json()["error"] for r in responses)
    time.sleep(0.2)
    families = {f.name: f for f in text_string_to_metric_families(
        httpx.get(odd_server.url + "/metrics").text)}
    assert families["mlops_inflight_requests"].samples[0].value == 0
    assert "returned shape" in odd_server.log.read_text()


def test_a_slow_model_does_not_block_health_checks(odd_server: Server) -> None:
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, odd_server.url + "/v1/models/slow:predict",
                              json={"instances": [[1.0]]}, timeout=10)
        time.sleep(0.2)
        started = time.monotonic()
        assert httpx.get(odd_server.url + "/v2/health/live", timeout=5).status_code == 200
        assert time.monotonic() - started < 0.5
        assert pending.result().status_code == 200


def test_infinite_values_are_4xx(server: Server) -> None:
    body = b'{"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", ' \
        b'"data": [1e999, 1, 2, 3, 4]}]}'
    r = httpx.post(server.url + "/v2/models/clf/infer", content=body)
    assert r.status_code == 400 and "infinity" in r.json()["error"]
    r = httpx.post(server.url + "/invocations", content=b"x0,x1,x2,x3,x4\ninf,1,2,3,4\n",
                   headers={"content-type": "text/csv"})
    assert r.status_code == 400 and "infinite values" in r.json()["error"]


@pytest.mark.parametrize("body", [
    {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, [2, 3], 4]}]},
    {"inputs": [{"name": ["x"], "shape": [1, 5], "datatype": "FP64", "data": [1, 2, 3, 4, 5]}]},
    {"inputs": [{"name": "x", "shape": [2**32, 2**32], "datatype": "FP64", "data": [1]}]},
])
def test_hostile_v2_bodies_are_4xx(server: Server, body: Any) -> None:
    r = httpx.post(server.url + "/v2/models/clf/infer", json=body)
    assert r.status_code == 400, r.text
    assert "error" in r.json()


def test_hostile_mlflow_bodies_are_4xx(server: Server) -> None:
    for body in ({"dataframe_split": {"columns": 5, "data": [[1]]}},
                 {"dataframe_split": {"columns": [["a"]], "data": [[1]]}}):
        r = httpx.post(server.url + "/invocations", json=body)
        assert r.status_code == 400, r.text
    r = httpx.post(server.url + "/invocations", content=("x0,x1,x2,x3,x4\n" + "9" * 400 +
                                                          ",1,2,3,4\n").encode(),
                   headers={"content-type": "text/csv"})
    assert r.status_code in (200, 400), r.text


def test_unknown_names_do_not_become_metric_labels(server: Server) -> None:
    for i in range(5):
        httpx.post(server.url + f"/v2/models/junk{i}/infer", json={"inputs": []})
        httpx.post(server.url + f"/v1/models/junk{i}/feedback",
                   json={"request_id": "x", "actual": 1})
    text = httpx.get(server.url + "/metrics").text
    assert "junk" not in text
    assert 'model_name="_unknown"' in text


def test_feedback_for_an_unserved_model_is_404(server: Server) -> None:
    r = httpx.post(server.url + "/v1/models/ghost/feedback", json={"request_id": "a",
                                                                   "actual": 1})
    assert r.status_code == 404


def test_oversized_request_id_is_replaced(server: Server) -> None:
    r = httpx.post(server.url + "/v1/models/clf:predict",
                   json={"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]},
                   headers={"x-request-id": "x" * 5000})
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32


def test_one_bad_request_does_not_fail_its_batch(tmp_path: Path) -> None:
    from mlops.flavors.estimator import wrap_estimator

    served = ServedModel("m", "1", wrap_estimator(RefusesNines()), Schema(None))
    batcher = Batcher(max_batch=64, max_wait_us=5000)

    def columns(value: float) -> Columns:
        return Columns(["a"], {"a": np.array([value])}, 1)

    async def run() -> list[Any]:
        return await asyncio.gather(*[batcher.predict(served, columns(999.0 if i == 3 else i),
                                                      False) for i in range(10)],
                                    return_exceptions=True)

    results = asyncio.run(run())
    assert isinstance(results[3], FlavorError) and "999" in str(results[3])
    assert [r.values.tolist() for i, r in enumerate(results) if i != 3] == \
        [[float(i)] for i in range(10) if i != 3]
