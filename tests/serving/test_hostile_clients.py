"""Clients that misbehave (slow or vanishing senders, odd bodies, huge echoes) get a clear
4xx and cost the model nothing: no 500, no error counted against a version, no slot held."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.registry.service import ModelRegistry
from tests.serving.conftest import FEATURES, Server, start_server

ROW = [0.1, 0.2, 0.3, 0.4, 0.5]
HEADER = ",".join(FEATURES)


@pytest.fixture(scope="module")
def strict(served_store: tuple[Path, ModelRegistry]) -> Iterator[Server]:
    """The gateway with 4 in-flight slots, a 1 s body timeout and up to 10^6 rows."""
    srv = start_server(served_store[0], "--max-inflight", "4", "--body-timeout", "1",
                       "--max-rows", "1000000")
    yield srv
    srv.stop()


def _partial(server: Server) -> socket.socket:
    """A connection that promises 1,000 bytes of body and sends 10."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v2/models/clf/infer HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
    return sock


def _metrics(server: Server) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(
        httpx.get(server.url + "/metrics", timeout=5).text)}


def _samples(server: Server, family: str, **labels: str) -> float:
    metric = _metrics(server).get(family)
    if metric is None:
        return 0.0
    return sum(s.value for s in metric.samples if s.name.endswith("_total")
               and all(s.labels.get(k) == v for k, v in labels.items()))


def test_slow_senders_hold_no_slot_and_get_408(strict: Server) -> None:
    socks = [_partial(strict) for _ in range(8)]  # twice the in-flight limit
    try:
        time.sleep(0.2)
        ok = httpx.post(strict.url + "/v2/models/clf/infer", timeout=5, json={"inputs": [
            {"name": "x", "shape": [1, 5], "datatype": "FP64", "data": ROW}]})
        assert ok.status_code == 200, ok.text
        answer = ""
        while "received)" not in answer:  # after the 1 s body timeout; headers, then body
            chunk = socks[0].recv(4096).decode()
            assert chunk, answer
            answer += chunk
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "did not arrive within 1 s (10 bytes received)" in answer
    finally:
        for s in socks:
            s.close()


def test_a_client_hanging_up_mid_body_is_not_a_model_failure(strict: Server) -> None:
    before = _samples(strict, "mlops_requests", code="499")
    _partial(strict).close()
    deadline = time.monotonic() + 10
    while _samples(strict, "mlops_requests", code="499") == before:
        assert time.monotonic() < deadline, "the hang-up was never counted"
        time.sleep(0.05)
    assert _samples(strict, "mlops_prediction_errors") == 0
    assert "Traceback" not in strict.log.read_text()


def _csv(text: str) -> tuple[str, dict[str, str], bytes]:
    return "/invocations", {"content-type": "text/csv"}, text.encode()


def _json(path: str, body: Any) -> tuple[str, dict[str, str], bytes]:
    import orjson
    return path, {"content-type": "application/json"}, orjson.dumps(body)


CASES = [
    ("csv field over the csv module's limit",
     *_csv(f'{HEADER}\n"{"1" * 200_000}",2,3,4,5\n'), "cannot be read"),
    ("csv bare carriage return", *_csv(f"{HEADER}\r\n1\r2,0,0,0,0\r\n"), "cannot be read"),
    ("csv duplicate header", *_csv("x0,x0,x1,x2,x3,x4\n9,-9,0,0,0,0\n"),
     "names 'x0' more than once"),
    ("csv number with underscores", *_csv(f"{HEADER}\n1_000,0,0,0,0\n"),
     "'x0' expects numbers (float64), got text '1_000' in row 0"),
    ("csv non-latin digits", *_csv(f"{HEADER}\n١٢,0,0,0,0\n"), "'x0' expects numbers"),
    ("csv true among numbers", *_csv(f"{HEADER}\n0.5,0,0,0,0\ntrue,0,0,0,0\n"),
     "'x0' expects numbers (float64), got True in row 1"),
    ("csv text named in its own row", *_csv(f"{HEADER}\n1,0,0,0,0\nabc,0,0,0,0\n"),
     "got text 'abc' in row 1"),
    ("v1 boolean among numbers",
     *_json("/v1/models/clf:predict", {"instances": [[True, *ROW[1:]], ROW]}),
     "'x0' expects numbers (float64), got True in row 0"),
    ("v1 record boolean among numbers",
     *_json("/v1/models/clf:predict", {"instances": [
         dict(zip(FEATURES, ROW, strict=True)),
         {**dict(zip(FEATURES, ROW, strict=True)), "x3": False}]}),
     "'x3' expects numbers (float64), got False in row 1"),
    ("split boolean among numbers",
     *_json("/invocations", {"dataframe_split": {"columns": FEATURES,
                                                 "data": [ROW, [*ROW[:4], True]]}}),
     "'x4' expects numbers (float64), got True in row 1"),
    ("split duplicate columns",
     *_json("/invocations", {"dataframe_split": {"columns": ["x0", *FEATURES],
                                                 "data": [[9, -9, 0, 0, 0, 0]]}}),
     "dataframe_split.columns names 'x0' more than once"),
    ("v2 outputs as names",
     *_json("/v2/models/clf/infer", {"inputs": [{"name": "x", "shape": [1, 5],
                                                  "datatype": "FP64", "data": ROW}],
                                      "outputs": ["predict_proba"]}),
     "'outputs' must be a list of objects"),
    ("v2 shape of 2**63 rows and no values",
     *_json("/v2/models/clf/infer", {"inputs": [{"name": "x", "shape": [2**63 - 1, 0],
                                                  "datatype": "FP64", "data": []}]}),
     "too many values"),
]


@pytest.mark.parametrize(("case", "path", "headers", "body", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_odd_bodies_are_400_naming_the_problem(server: Server, case: str, path: str,
                                               headers: dict[str, str], body: bytes,
                                               message: str) -> None:
    r = httpx.post(server.url + path, content=body,
                   headers={**headers, "x-mlops-model": "clf"}, timeout=10)
    assert r.status_code == 400, (case, r.status_code, r.text)
    assert message in r.json()["error"], (case, r.json())


def test_compressed_bodies_are_415(server: Server) -> None:
    body = gzip.compress(b'{"instances": [[0.1, 0.2, 0.3, 0.4, 0.5]]}')
    r = httpx.post(server.url + "/v1/models/clf:predict", content=body, timeout=10,
                   headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert r.status_code == 415 and "Content-Encoding 'gzip'" in r.json()["error"]


def test_binary_bytes_without_the_header_length_say_so(server: Server) -> None:
    body = b'{"inputs":[]}' + bytes(range(128, 256))
    r = httpx.post(server.url + "/v2/models/clf/infer", content=body, timeout=10)
    assert r.status_code == 400
    assert "Inference-Header-Content-Length" in r.json()["fix"]


@pytest.mark.parametrize(("item", "message"), [
    ({"request_id": "r", "actual": 1, "row": True}, "'row' must be a row number"),
    ({"request_id": "r", "actual": 1, "row": 2**63}, "'row' must be a row number"),
    ({"request_id": None, "actual": 1}, "'request_id' must be the id an answer carried"),
    ({"request_id": {"a": 1}, "actual": 1}, "'request_id' must be the id an answer carried"),
])
def test_feedback_that_could_not_be_stored_is_refused_not_acknowledged(
        server: Server, item: dict[str, Any], message: str) -> None:
    r = httpx.post(server.url + "/v1/models/clf/feedback", json=item, timeout=10)
    assert r.status_code == 400 and message in r.json()["error"], r.text


def test_errors_quote_at_most_the_start_of_what_was_sent(server: Server) -> None:
    huge = "a" * 4_000_000
    r = httpx.post(server.url + "/v2/models/clf/infer", timeout=30, json={"inputs": [
        {"name": "x", "shape": [1, 5], "datatype": "FP64", "data": [huge, 0, 0, 0, 0]}]})
    assert r.status_code == 400 and len(r.content) < 2_000, r.content[:300]
    assert "(4000002 characters)" in r.json()["error"]
    name = httpx.post(server.url + "/v2/models/" + "m" * 10_000 + "/infer", timeout=10,
                      json={"inputs": []})
    assert name.status_code == 404 and len(name.content) < 5_000
    version = httpx.post(server.url + "/v2/models/clf/versions/" + "9" * 5_000 + "/infer",
                         timeout=10, json={"inputs": []})
    assert version.status_code == 404 and len(version.content) < 2_000
    assert "not a version, stage or alias" in version.json()["error"]


def test_a_large_request_does_not_stall_the_event_loop(strict: Server) -> None:
    """400,000 CSV rows are decoded, and their log rows made, off the event loop: health
    checks answer meanwhile (they waited for seconds when both ran on it)."""
    from concurrent.futures import ThreadPoolExecutor

    body = (HEADER + "\n" + "0.5,0,0,0,0\n" * 400_000).encode()
    with ThreadPoolExecutor(1) as pool:
        big = pool.submit(httpx.post, strict.url + "/invocations", content=body, timeout=60,
                          headers={"content-type": "text/csv", "x-mlops-model": "clf"})
        slowest = 0.0
        while not big.done():
            started = time.monotonic()
            assert httpx.get(strict.url + "/v2/health/live", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)
        r = big.result()
    assert r.status_code == 200 and len(r.json()["predictions"]) == 400_000
    assert slowest < 1.0, f"a health check waited {slowest:.2f} s"


def test_requests_over_the_row_limit_are_413(server: Server) -> None:
    """100,000 rows by default: a CSV is counted before it is parsed, JSON once decoded."""
    csv_body = (HEADER + "\n" + "0.5,0,0,0,0\n" * 100_001).encode()
    r = httpx.post(server.url + "/invocations", content=csv_body, timeout=30,
                   headers={"content-type": "text/csv", "x-mlops-model": "clf"})
    assert r.status_code == 413 and "100,001 rows; the limit is 100,000" in r.json()["error"]
    assert "--max-rows" in r.json()["fix"]
    v1 = httpx.post(server.url + "/v1/models/clf:predict", timeout=30,
                    json={"instances": [ROW] * 100_001})
    assert v1.status_code == 413 and "100,001 rows" in v1.json()["error"]
    fine = httpx.post(server.url + "/v1/models/clf:predict", timeout=30,
                      json={"instances": [ROW] * 100_000})
    assert fine.status_code == 200 and len(fine.json()["predictions"]) == 100_000
