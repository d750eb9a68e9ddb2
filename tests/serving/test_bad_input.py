"""Bad input gets a 4xx that names the field and what was expected; never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from tests.serving.conftest import FEATURES, Server

ROW = [0.1, 0.2, 0.3, 0.4, 0.5]


def _v2(data: Any, shape: list[int], datatype: str = "FP64", name: str = "x") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


CASES = [
    ("v2 wrong width", "/v2/models/clf/infer", _v2([1, 2, 3], [1, 3]), 400,
     "expects 5: x0, x1, x2, x3, x4"),
    ("v2 shape and data disagree", "/v2/models/clf/infer", _v2([1, 2, 3, 4], [1, 5]), 400,
     "5 values) but 4 values"),
    ("v2 text in FP64", "/v2/models/clf/infer", _v2(["a"] * 5, [1, 5]), 400, "holds text"),
    ("v2 unknown datatype", "/v2/models/clf/infer", _v2(ROW, [1, 5], "FLOAT"), 400,
     "unknown datatype"),
    ("v2 missing column", "/v2/models/clf/infer",
     {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]}
                 for c in FEATURES[:4]]}, 400, "missing input(s) ['x4']"),
    ("v2 unknown column", "/v2/models/clf/infer",
     {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]}
                 for c in [*FEATURES, "extra"]]}, 400, "unknown input(s) ['extra']"),
    ("v2 empty batch", "/v2/models/clf/infer", _v2([], [0, 5]), 400, "is empty"),
    ("v2 no inputs", "/v2/models/clf/infer", {"inputs": []}, 400, "non-empty 'inputs'"),
    ("v2 null where not allowed", "/v2/models/clf/infer", _v2([None, 1, 2, 3, 4], [1, 5]), 400,
     "'x0' has missing values"),
    ("v2 boolean for number", "/v2/models/clf/infer", _v2([True] * 5, [1, 5], "BOOL"), 400,
     "expects numbers"),
    ("v2 unknown output", "/v2/models/clf/infer",
     {**_v2(ROW, [1, 5]), "outputs": [{"name": "scores"}]}, 400, "Unknown output 'scores'"),
    ("unknown model", "/v2/models/nope/infer", _v2(ROW, [1, 5]), 404, "'nope' is not deployed"),
    ("unknown version", "/v2/models/clf/versions/9.9.9/infer", _v2(ROW, [1, 5]), 404, "9.9.9"),
    ("v1 ragged rows", "/v1/models/clf:predict", {"instances": [ROW, [1, 2]]}, 400,
     "different lengths"),
    ("v1 record missing column", "/v1/models/clf:predict",
     {"instances": [dict(zip(FEATURES[:4], ROW, strict=False))]}, 400, "missing input(s)"),
    ("v1 text in number column", "/v1/models/clf:predict",
     {"instances": [{**dict(zip(FEATURES, ROW, strict=True)), "x2": "high"}]}, 400,
     "'x2' expects numbers"),
    ("v1 no instances", "/v1/models/clf:predict", {"rows": []}, 400, "'instances'"),
    ("mlflow two formats", "/invocations", {"instances": [ROW], "inputs": [ROW]}, 400,
     "exactly one of"),
    # rows of plain numbers take a bulk path; anything else gets the checked one's words
    ("mlflow split null", "/invocations",
     {"dataframe_split": {"columns": FEATURES, "data": [ROW, [None, *ROW[1:]]]}}, 400,
     "'x0' has missing values (null/NaN) in rows [1]"),
    ("v1 lists boolean", "/v1/models/clf:predict", {"instances": [[True, *ROW[1:]]]}, 400,
     "'x0' expects numbers"),
    ("v1 lists text", "/v1/models/clf:predict", {"instances": [ROW, [*ROW[:2], "a", *ROW[3:]]]},
     400, "'x2' expects numbers"),
    ("mlflow split unknown column", "/invocations",
     {"dataframe_split": {"columns": [*FEATURES[:4], "zz"], "data": [ROW]}}, 400,
     "missing input(s) ['x4']"),
    ("v1 lists nested", "/v1/models/clf:predict", {"instances": [[[1.0], *ROW[1:]]]}, 400,
     "'x0' must hold one scalar per row"),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "message"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_request_names_the_problem(server: Server, case: str, path: str, body: Any,
                                       status: int, message: str) -> None:
    with server.client() as c:
        r = c.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


def test_malformed_json(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v2/models/clf/infer", content=b'{"inputs": [',
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]


def test_nan_literal_is_not_json(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/models/clf:predict", content=b'{"instances": [[NaN, 1, 2, 3, 4]]}')
    assert r.status_code == 400 and "NaN" in r.json()["fix"]


def test_body_over_the_limit_is_413(server: Server) -> None:
    big = b'{"instances": [' + b"[1,2,3,4,5]," * 800_000 + b"[1,2,3,4,5]]}"
    assert len(big) > 8 * 1024 * 1024
    with server.client() as c:
        r = c.post("/v1/models/clf:predict", content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_unsupported_media_type_on_invocations(server: Server) -> None:
    with server.client() as c:
        r = c.post("/invocations", content=b"x0=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "text/csv" in r.json()["fix"]


def test_bad_csv(server: Server) -> None:
    with server.client() as c:
        r = c.post("/invocations", content=b"x0,x1\n1\n", headers={"content-type": "text/csv"})
    assert r.status_code == 400


def test_server_still_healthy_after_bad_input(server: Server) -> None:
    with server.client() as c:
        r = c.post("/v1/models/clf:predict", json={"instances": [ROW]})
    assert r.status_code == 200
