"""Every protocol round trip over real HTTP against a real gateway process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tests.serving.conftest import FEATURES, Server

Data = tuple[pd.DataFrame, np.ndarray]


def _expected(local_model: Callable[[str], Any], x: pd.DataFrame, version: str = "1.0.0"
              ) -> list[int]:
    return local_model(version).predict(x).tolist()


def test_v2_health_server_and_model_metadata(server: Server) -> None:
    with server.client() as c:
        assert c.get("/v2/health/live").json() == {"live": True}
        assert c.get("/v2/health/ready").json() == {"ready": True}
        meta = c.get("/v2").json()
        assert meta["name"] == "mlops" and meta["extensions"] == ["binary_tensor_data"]
        model = c.get("/v2/models/clf").json()
        assert model["name"] == "clf" and model["versions"] == ["1.0.0"]
        assert [i["name"] for i in model["inputs"]] == FEATURES
        assert all(i["datatype"] == "FP64" for i in model["inputs"])
        assert [o["name"] for o in model["outputs"]] == ["predict", "predict_proba"]
        assert c.get("/v2/models/clf/versions/1.0.0").json()["versions"] == ["1.0.0"]
        assert c.get("/v2/models/clf/ready").json() == {"name": "clf", "ready": True}
        assert c.get("/v2/models/clf/versions/1.0.0/ready").json()["ready"] is True
        # 1.1.0 is registered but production neither deploys nor stages it
        assert c.get("/v2/models/clf/versions/1.1.0").status_code == 404


def test_v2_infer_one_matrix_tensor(server: Server, data: Data,
                                    local_model: Callable[[str], Any]) -> None:
    x, _ = data
    rows = x.head(7)
    body = {"id": "req-1", "inputs": [{"name": "input-0", "shape": [7, 5], "datatype": "FP64",
                                       "data": rows.to_numpy().ravel().tolist()}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    with server.client() as c:
        r = c.post("/v2/models/clf/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_name"] == "clf" and out["model_version"] == "1.0.0"
    assert out["id"] == "req-1"  # the body id, echoed as the protocol says
    assert r.headers["x-request-id"]
    predict, proba = out["outputs"]
    assert predict["shape"] == [7] and predict["datatype"] == "INT64"
    assert predict["data"] == _expected(local_model, rows)
    assert proba["shape"] == [7, 2]
    np.testing.assert_allclose(np.reshape(proba["data"], (7, 2)),
                               local_model("1.0.0").predict_proba(rows))
    assert r.headers["x-model-version"] == "1.0.0"


def test_v2_infer_one_tensor_per_column_nested_data(server: Server, data: Data,
                                                    local_model: Callable[[str], Any]) -> None:
    x, _ = data
    rows = x.iloc[10:13]
    body = {"inputs": [{"name": c, "shape": [3, 1], "datatype": "FP32",
                        "data": [[v] for v in rows[c].tolist()]} for c in reversed(FEATURES)],
            "parameters": {"content_type": "pd"}}
    with server.client() as c:
        r = c.post("/v2/models/clf/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == _expected(local_model, rows)
    assert [o["name"] for o in r.json()["outputs"]] == ["predict"]


def test_v2_explicit_version_reaches_only_what_the_environment_serves(
        server: Server, data: Data, local_model: Callable[[str], Any]) -> None:
    x, _ = data
    rows = x.head(50)
    body = {"inputs": [{"name": "x", "shape": [50, 5], "datatype": "FP64",
                        "data": rows.to_numpy().tolist()}]}
    with server.client() as c:
        r = c.post("/v2/models/clf/versions/1.0.0/infer", json=body)
        by_stage = c.post("/v2/models/clf/versions/production/infer", json=body)
        hidden = c.post("/v2/models/clf/versions/1.1.0/infer", json=body)
        by_alias = c.post("/v2/models/clf/versions/latest/infer", json=body)
    assert r.status_code == 200 and by_stage.status_code == 200
    assert r.headers["x-model-version"] == by_stage.headers["x-model-version"] == "1.0.0"
    assert r.json()["outputs"][0]["data"] == _expected(local_model, rows, "1.0.0")
    # registered, never deployed: explicit URLs are no way around the promotion gate
    assert hidden.status_code == 404 and "not deployed or staged" in hidden.json()["error"]
    assert by_alias.status_code == 404  # "latest" names 1.1.0


def test_v1_lists_and_records(server: Server, data: Data,
                              local_model: Callable[[str], Any]) -> None:
    x, _ = data
    rows = x.head(4)
    with server.client() as c:
        assert c.get("/v1/models/clf").json() == {"name": "clf", "ready": True}
        r1 = c.post("/v1/models/clf:predict", json={"instances": rows.to_numpy().tolist()})
        r2 = c.post("/v1/models/clf:predict", json={"instances": rows.to_dict("records")})
        r3 = c.post("/v1/models/clf:predict", json={"inputs": rows.to_numpy().tolist()})
    expected = _expected(local_model, rows)
    for r in (r1, r2, r3):
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}


def test_mlflow_scoring_formats(server: Server, data: Data,
                                local_model: Callable[[str], Any]) -> None:
    x, _ = data
    rows = x.iloc[20:25]
    expected = {"predictions": _expected(local_model, rows)}
    split = {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}}
    records = {"dataframe_records": rows.to_dict("records")}
    instances = {"instances": rows.to_dict("records")}
    inputs = {"inputs": {c: rows[c].tolist() for c in FEATURES}}
    shuffled = FEATURES[::-1]  # columns named in another order are read by name
    reordered = {"dataframe_split": {"columns": shuffled,
                                     "data": rows[shuffled].to_numpy().tolist()}}
    with server.client() as c:
        for body in (split, reordered, records, instances, inputs):
            r = c.post("/invocations", json=body)
            assert r.status_code == 200, (body, r.text)
            assert r.json() == expected
        r = c.post("/invocations", content=rows.to_csv(index=False),
                   headers={"content-type": "text/csv"})
        assert r.status_code == 200 and r.json() == expected
        assert c.get("/ping").status_code == 200
        assert c.get("/health").status_code == 200
        assert c.get("/version").text


def test_request_id_is_echoed(server: Server, data: Data) -> None:
    x, _ = data
    with server.client() as c:
        r = c.post("/v1/models/clf:predict", json={"instances": x.head(1).to_numpy().tolist()},
                   headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["x-model-version"] == "1.0.0"


def test_tritonclient_calls_infer_and_reads_the_result(server: Server, data: Data,
                                                       local_model: Callable[[str], Any]
                                                       ) -> None:
    import tritonclient.http as httpclient

    x, _ = data
    rows = x.head(6).to_numpy().astype(np.float64)
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_model_ready("clf")
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows, binary_data=False)
    result = client.infer("clf", [tensor], outputs=[
        httpclient.InferRequestedOutput("predict", binary_data=False),
        httpclient.InferRequestedOutput("predict_proba", binary_data=False)])
    assert result.as_numpy("predict").tolist() == _expected(local_model, x.head(6))
    assert result.as_numpy("predict_proba").shape == (6, 2)
    metadata = client.get_model_metadata("clf")
    assert [i["name"] for i in metadata["inputs"]] == FEATURES


def test_v2_body_id_is_echoed(server: Server, data: Data) -> None:
    x, _ = data
    body = {"id": "client-7", "inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64",
                                          "data": x.iloc[0].tolist()}]}
    with server.client() as c:
        assert c.post("/v2/models/clf/infer", json=body).json()["id"] == "client-7"


def test_unknown_url_and_method_answer_json(server: Server) -> None:
    with server.client() as c:
        missing = c.get("/v3/nothing")
        wrong = c.get("/v2/models/clf/infer")
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong.status_code == 405 and "POST" in wrong.json()["fix"]
