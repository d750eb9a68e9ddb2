"""Triton's binary tensor extension with tritonclient's defaults, V2 datatypes enforced, and
per-column tensors decoded into one dense matrix — over real HTTP against a real gateway."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.config import Settings
from mlops.errors import BadRequest
from mlops.flavors.signature import ColumnSpec
from mlops.registry.service import ModelRegistry
from mlops.serving.codecs import Schema, decode_v2
from mlops.store.predlog import read_predictions
from tests.serving.conftest import Server, start_server

httpclient = pytest.importorskip("tritonclient.http")

WIDE = [f"x{i}" for i in range(20)]
CITIES = ["paris", "lyon", "nice", "brest"]


@pytest.fixture(scope="module")
def frames() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    rng = np.random.default_rng(7)
    wide = pd.DataFrame(rng.normal(size=(300, 20)), columns=WIDE)
    wide_y = (wide["x0"] - wide["x3"] + 0.3 * wide["x7"] > 0).astype(int).to_numpy()
    mixed = pd.DataFrame({"age": rng.integers(18, 80, 300).astype(float),
                          "income": rng.normal(50, 15, 300),
                          "city": rng.choice(CITIES, 300)})
    mixed_y = np.where((mixed["city"].isin(["paris", "nice"])) ^ (mixed["age"] > 50),
                       "churn", "stay")
    return {"wide": (wide, wide_y), "mixed": (mixed, mixed_y)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory,
          frames: dict[str, tuple[pd.DataFrame, np.ndarray]]) -> tuple[Path, ModelRegistry]:
    """'wide' (20 float columns, int classes) and 'mixed' (a text column one-hot encoded,
    text classes), both in production."""
    root = tmp_path_factory.mktemp("binary")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    x, y = frames["wide"]
    sio.dump(LogisticRegression().fit(x, y), root / "wide.skops")
    registry.register("wide", root / "wide.skops", version="1.0.0", input_example=x.head(10))
    registry.promote("wide", "1.0.0", "production")
    x, y = frames["mixed"]
    pipeline = Pipeline([
        ("columns", ColumnTransformer([("num", StandardScaler(), ["age", "income"]),
                                       ("cat", OneHotEncoder(handle_unknown="ignore"),
                                        ["city"])])),
        ("model", LogisticRegression()),
    ]).fit(x, y)
    sio.dump(pipeline, root / "mixed.skops")
    registry.register("mixed", root / "mixed.skops", version="1.0.0", input_example=x.head(10))
    registry.promote("mixed", "1.0.0", "production")
    return home, registry


@pytest.fixture(scope="module")
def server(store: tuple[Path, ModelRegistry]) -> Iterator[Server]:
    srv = start_server(store[0])
    yield srv
    srv.stop()


def _triton(server: Server) -> Any:
    return httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))


def _offline(store: tuple[Path, ModelRegistry], name: str) -> Any:
    return store[1].load_model(name, "1.0.0")


# ---------------------------------------------------------------------- tritonclient defaults
def test_tritonclient_defaults_binary_in_and_out(server: Server, store: Any,
                                                 frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.head(9).to_numpy()
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)  # binary_data=True, the default
    assert tensor._get_binary_data() is not None  # really binary
    result = _triton(server).infer("wide", [tensor], outputs=[
        httpclient.InferRequestedOutput("predict"), httpclient.InferRequestedOutput(
            "predict_proba")])  # binary_data=True, the default
    response = result.get_response()
    assert all("binary_data_size" in o["parameters"] for o in response["outputs"])
    model = _offline(store, "wide")
    assert result.as_numpy("predict").tolist() == model.predict(x.head(9)).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(x.head(9)),
                               rtol=1e-12, atol=0)  # raw FP64: no decimal round trip
    # no outputs named: tritonclient asks for all outputs in binary (binary_data_output)
    plain = _triton(server).infer("wide", [tensor])
    assert plain.as_numpy("predict").tolist() == model.predict(x.head(9)).tolist()


def test_tritonclient_binary_through_an_explicit_version_and_fp32(server: Server, store: Any,
                                                                  frames: dict[str, Any]
                                                                  ) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[20:25].to_numpy().astype(np.float32)
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    result = _triton(server).infer("wide", [tensor], model_version="1.0.0",
                                   outputs=[httpclient.InferRequestedOutput("predict_proba")])
    expected = _offline(store, "wide").predict_proba(
        pd.DataFrame(rows.astype(np.float64), columns=WIDE))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected, rtol=1e-12)


def test_tritonclient_one_binary_tensor_per_column_equals_one_matrix(
        server: Server, frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[40:52]
    matrix = httpclient.InferInput("input-0", [12, 20], "FP64")
    matrix.set_data_from_numpy(rows.to_numpy())
    columns = []
    for c in reversed(WIDE):  # order of the tensors does not matter, names do
        tensor = httpclient.InferInput(c, [12], "FP64")
        tensor.set_data_from_numpy(rows[c].to_numpy())
        columns.append(tensor)
    wanted = [httpclient.InferRequestedOutput("predict"),
              httpclient.InferRequestedOutput("predict_proba")]
    one = _triton(server).infer("wide", [matrix], outputs=wanted)
    many = _triton(server).infer("wide", columns, outputs=wanted)
    assert one.as_numpy("predict").tolist() == many.as_numpy("predict").tolist()
    np.testing.assert_array_equal(one.as_numpy("predict_proba"), many.as_numpy("predict_proba"))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                   np.uint32, np.uint64, np.float16, np.float32, np.float64])
def test_every_numeric_datatype_arrives_as_its_values(server: Server, store: Any,
                                                      dtype: type) -> None:
    values: np.ndarray = (np.arange(60).reshape(3, 20) % 7).astype(dtype)
    datatype = httpclient.np_to_triton_dtype(values.dtype)
    tensors = []
    for j, c in enumerate(WIDE):
        tensor = httpclient.InferInput(c, [3], datatype)
        tensor.set_data_from_numpy(np.ascontiguousarray(values[:, j]))
        tensors.append(tensor)
    result = _triton(server).infer("wide", tensors, outputs=[
        httpclient.InferRequestedOutput("predict_proba")])
    expected = _offline(store, "wide").predict_proba(
        pd.DataFrame(values.astype(np.float64), columns=WIDE))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected, rtol=1e-12)


def test_tritonclient_bytes_inputs_and_text_outputs(server: Server, store: Any,
                                                    frames: dict[str, Any]) -> None:
    x, _ = frames["mixed"]
    rows = x.head(8)
    tensors = []
    for c, datatype in (("age", "FP64"), ("income", "FP64"), ("city", "BYTES")):
        values = rows[c].to_numpy(dtype=object if datatype == "BYTES" else np.float64)
        tensor = httpclient.InferInput(c, [8], datatype)
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    result = _triton(server).infer("mixed", tensors, outputs=[
        httpclient.InferRequestedOutput("predict"),
        httpclient.InferRequestedOutput("predict_proba")])
    model = _offline(store, "mixed")
    predict = result.get_output("predict")
    assert predict["datatype"] == "BYTES" and "binary_data_size" in predict["parameters"]
    assert [v.decode() for v in result.as_numpy("predict")] == model.predict(rows).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows),
                               rtol=1e-12, atol=0)
    # a city the encoder never saw is still text, not a refusal (handle_unknown="ignore")
    unseen = httpclient.InferInput("city", [8], "BYTES")
    unseen.set_data_from_numpy(np.array(["zürich"] * 8, dtype=object))
    again = _triton(server).infer("mixed", [*tensors[:2], unseen])
    assert len(again.as_numpy("predict")) == 8


def test_server_metadata_lists_the_extension(server: Server) -> None:
    assert "binary_tensor_data" in _triton(server).get_server_metadata()["extensions"]


# ---------------------------------------------------------------------- raw framing
def _framed(header: dict[str, Any], *blobs: bytes, length: int | None = None
            ) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    size = len(head) if length is None else length
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(size)}


def _row_header(size: int, datatype: str = "FP64", shape: list[int] | None = None
                ) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape or [1, 20], "datatype": datatype,
                        "parameters": {"binary_data_size": size}}]}


ROW = np.linspace(-1, 1, 20).tobytes()


def test_json_request_may_ask_for_binary_outputs(server: Server, store: Any) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                        "data": np.linspace(-1, 1, 20).tolist()}],
            "parameters": {"binary_data_output": True},
            "outputs": [{"name": "predict"},
                        {"name": "predict_proba", "parameters": {"binary_data": False}}]}
    with server.client() as c:
        r = c.post("/v2/models/wide/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    length = int(r.headers["inference-header-content-length"])
    header = orjson.loads(r.content[:length])
    predict, proba = header["outputs"]
    assert predict["parameters"] == {"binary_data_size": 8} and "data" not in predict
    assert "data" in proba and "parameters" not in proba  # the output's own flag wins
    expected = _offline(store, "wide").predict(pd.DataFrame([np.linspace(-1, 1, 20)],
                                                            columns=WIDE))
    assert np.frombuffer(r.content[length:], "<i8").tolist() == expected.tolist()
    assert r.headers["x-model-version"] == "1.0.0" and r.headers["x-request-id"]


def test_binary_request_answers_json_when_no_binary_output_is_asked(server: Server) -> None:
    header = {**_row_header(len(ROW)), "outputs": [{"name": "predict"}]}
    content, headers = _framed(header, ROW)
    with server.client() as c:
        r = c.post("/v2/models/wide/infer", content=content, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert "inference-header-content-length" not in r.headers
    assert len(r.json()["outputs"][0]["data"]) == 1


def _bytes_element(text: bytes) -> bytes:
    return struct.pack("<I", len(text)) + text


HOSTILE: list[tuple[str, bytes, dict[str, str], str]] = [
    ("size larger than the shape", *_framed(_row_header(168), ROW + b"\0" * 8),
     "binary_data_size is 168"),
    ("size smaller than the shape", *_framed(_row_header(152), ROW[:152]),
     "binary_data_size is 152"),
    ("header length beyond the body", *_framed(_row_header(160), ROW, length=10_000),
     "Inference-Header-Content-Length is 10000"),
    ("header length zero", *_framed(_row_header(160), ROW, length=0),
     "Inference-Header-Content-Length is 0"),
    ("header length cuts the JSON", *_framed(_row_header(160), ROW, length=20),
     "not valid JSON"),
    ("negative size", *_framed(_row_header(-160), ROW), "non-negative integer"),
    ("huge size", *_framed(_row_header(2**62), ROW), "only 160 bytes of the body are left"),
    ("size beyond 64 bits", *_framed(_row_header(2**70), ROW), "non-negative integer"),
    ("size as a float", *_framed(_row_header(160.0), ROW), "non-negative integer"),  # type: ignore[arg-type]
    ("size as text", *_framed(_row_header("160"), ROW), "non-negative integer"),  # type: ignore[arg-type]
    ("bytes left over", *_framed(_row_header(160), ROW + b"junk"), "4 bytes after the JSON"),
    ("sizes add up to more than the body", *_framed(
        {"inputs": [{"name": c, "shape": [1], "datatype": "FP64",
                     "parameters": {"binary_data_size": 8}} for c in WIDE]}, ROW[:-8]),
     "only 0 bytes of the body are left"),
    ("both data and binary", *_framed(
        {"inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                     "data": [0.0] * 20, "parameters": {"binary_data_size": 160}}]}, ROW),
     "both 'data' and binary_data_size"),
    ("BOOL byte that is not 0 or 1", *_framed(_row_header(20, "BOOL"), b"\x02" * 20),
     "other than 0 and 1"),
    ("truncated BYTES prefix", *_framed(
        _row_header(7, "BYTES", [2]), _bytes_element(b"abc")), "cannot hold"),
    ("BYTES prefix cut in the middle", *_framed(
        _row_header(9, "BYTES", [2]), _bytes_element(b"abc") + b"\x01\x00"),
     "length prefix of BYTES value 1 is cut off"),
    ("BYTES length beyond the data", *_framed(
        _row_header(8, "BYTES", [1]), struct.pack("<I", 2**32 - 1) + b"abcd"),
     "says 4294967295 bytes"),
    ("BYTES with bytes after the values", *_framed(
        _row_header(9, "BYTES", [1]), _bytes_element(b"abc") + b"xx"), "2 bytes after"),
    ("BYTES not UTF-8", *_framed(_row_header(6, "BYTES", [1]), _bytes_element(b"\xff\xfe")),
     "not UTF-8"),
    ("binary_data_size without the header", orjson.dumps(_row_header(160)) + ROW,
     {}, "not valid JSON"),
    ("binary_data_size in a JSON body", orjson.dumps(_row_header(160)), {},
     "no Inference-Header-Content-Length"),
    ("header length not a number", *_framed(_row_header(160), ROW)[:1],
     {"Inference-Header-Content-Length": "-12"}, "must be the JSON header's length"),
    ("binary_data_output not a boolean", *_framed(
        {**_row_header(160), "parameters": {"binary_data_output": "yes"}}, ROW),
     "must be true or false"),
    ("unknown datatype", *_framed(_row_header(40, "BF16"), ROW[:40]), "unknown datatype"),
    ("FP32 sent as FP64 bytes", *_framed(_row_header(160, "FP32"), ROW),
     "(80 bytes), but its binary_data_size is 160"),
]


@pytest.mark.parametrize(("case", "content", "headers", "message"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_hostile_binary_bodies_get_400(server: Server, case: str, content: bytes,
                                       headers: dict[str, str], message: str) -> None:
    with server.client() as c:
        r = c.post("/v2/models/wide/infer", content=content, headers=headers)
    assert r.status_code == 400, (case, r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "fix"}, body
    assert message in body["error"], body
    assert r.headers["x-model-version"] == "1.0.0"


def test_bool_binary_tensor_is_refused_by_a_float_column(server: Server) -> None:
    tensor = httpclient.InferInput("input-0", [1, 20], "BOOL")
    tensor.set_data_from_numpy(np.ones((1, 20), dtype=bool))
    with pytest.raises(httpclient.InferenceServerException) as caught:
        _triton(server).infer("wide", [tensor])
    assert "expects numbers" in str(caught.value) and caught.value.status() == "400"


def test_gateway_still_healthy_after_hostile_bodies(server: Server) -> None:
    with server.client() as c:
        assert c.get("/v2/health/ready").json() == {"ready": True}
        text = c.get("/metrics").text
    counts = {s.labels["code"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "mlops_requests_total"
              and s.labels["model_name"] == "wide"}
    assert counts.get("400", 0) >= len(HOSTILE) and counts.get("200", 0) > 0
    assert "500" not in counts


# ---------------------------------------------------------------------- datatypes (JSON)
def _v2(datatype: str, data: Any, shape: list[int] | None = None) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": shape or [1, 20], "datatype": datatype,
                        "data": data}]}


REFUSED = [
    ("INT8 1000", _v2("INT8", [1000] + [0] * 19), "INT8: 1000 is outside its range [-128, 127]"),
    ("INT16 40000", _v2("INT16", [40000] + [0] * 19), "outside its range [-32768, 32767]"),
    ("UINT8 256", _v2("UINT8", [256] + [0] * 19), "UINT8: 256 is outside"),
    ("UINT64 -1", _v2("UINT64", [-1] + [0] * 19), "UINT64: -1 is outside"),
    ("UINT64 2**64", _v2("UINT64", [2**64] + [0] * 19), "not an integer"),  # a float to JSON
    ("INT64 2**63", _v2("INT64", [2**63] + [0] * 19), "INT64: 9223372036854775808 is outside"),
    ("float in INT32", _v2("INT32", [1.5] + [0] * 19), "holds 1.5, which is not an integer"),
    ("whole float in INT64", _v2("INT64", [1.0] + [0] * 19), "not an integer"),
    ("text in INT64", _v2("INT64", ["1"] + [0] * 19), "holds text"),
    ("boolean in FP64", _v2("FP64", [True] + [0.0] * 19), "holds booleans"),
    ("number in BOOL", _v2("BOOL", [1] + [False] * 19), "BOOL takes only true and false"),
    ("number in BYTES", _v2("BYTES", [1] + ["a"] * 19), "BYTES takes only strings"),
    ("FP32 beyond its range", _v2("FP32", [1e39] + [0.0] * 19), "FP32: 1e+39 is outside"),
    ("FP16 beyond its range", _v2("FP16", [70000.0] + [0.0] * 19), "FP16: 70000.0 is outside"),
    ("ragged rows", _v2("FP64", [[0.0] * 19, [0.0] * 21], [2, 20]),
     "nested data that does not match its shape [2, 20]"),
    ("nested but not the shape", _v2("FP64", [[0.0] * 10] * 4, [2, 20]),
     "does not match its shape"),
    ("nested for a 1-D shape", {"inputs": [{"name": c, "shape": [2], "datatype": "FP64",
                                            "data": [[0.0], [1.0]]} for c in WIDE]},
     "does not match its shape [2]"),
    ("a list inside flat data", _v2("FP64", [[0.0, 1.0]] + [0.0] * 18, [1, 20]),
     "does not match its shape"),
    ("deeper nesting", _v2("FP64", [[[0.0]] * 20], [1, 20]), "nested data"),
    ("per column with an INT8 out of range",
     {"inputs": [{"name": c, "shape": [1], "datatype": "INT8" if c == "x5" else "FP64",
                  "data": [300 if c == "x5" else 0.0]} for c in WIDE]},
     "inputs[5] (x5) is INT8: 300 is outside"),
    ("per column with a boolean shape",
     {"inputs": [{"name": c, "shape": [True], "datatype": "FP64", "data": [0.0]}
                 for c in WIDE]}, "has shape [True]"),
    ("per column named twice",
     {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [0.0]}
                 for c in [*WIDE[:19], "x0"]]}, "more than once"),
]


@pytest.mark.parametrize(("case", "body", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_datatypes_and_shapes_are_enforced(server: Server, case: str, body: dict[str, Any],
                                           message: str) -> None:
    with server.client() as c:
        r = c.post("/v2/models/wide/infer", json=body)
    assert r.status_code == 400, (case, r.text)
    assert message in r.json()["error"], r.json()
    assert r.json()["fix"]


ACCEPTED = [
    ("INT8 at its limits", _v2("INT8", [-128, 127] + [0] * 18)),
    ("UINT64 at its limit", _v2("UINT64", [2**64 - 1] + [0] * 19)),
    ("INT64 at its limits", _v2("INT64", [-(2**63), 2**63 - 1] + [0] * 18)),
    ("integers in FP32", _v2("FP32", list(range(20)))),
    ("nested as the shape", _v2("FP64", [[float(i) for i in range(20)]] * 2, [2, 20])),
    ("flat for a 2-D shape", _v2("FP64", [float(i) for i in range(20)] * 2, [2, 20])),
    ("lower-case datatype", _v2("fp64", [0.5] * 20)),
]


@pytest.mark.parametrize(("case", "body"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_values_inside_the_datatype_are_accepted(server: Server, case: str,
                                                 body: dict[str, Any]) -> None:
    with server.client() as c:
        r = c.post("/v2/models/wide/infer", json=body)
    assert r.status_code == 200, (case, r.text)


def test_nested_and_flat_data_give_the_same_answer(server: Server) -> None:
    rows = [[float(i + j) / 10 for i in range(20)] for j in range(3)]
    nested = {**_v2("FP64", rows, [3, 20]), "outputs": [{"name": "predict_proba"}]}
    flat = {**_v2("FP64", [v for r in rows for v in r], [3, 20]),
            "outputs": [{"name": "predict_proba"}]}
    with server.client() as c:
        a = c.post("/v2/models/wide/infer", json=nested).json()
        b = c.post("/v2/models/wide/infer", json=flat).json()
    assert a["outputs"] == b["outputs"]


# ---------------------------------------------------------------------- per-column JSON
def test_per_column_json_equals_single_tensor(server: Server, store: Any,
                                              frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[60:67]
    wanted = [{"name": "predict"}, {"name": "predict_proba"}]
    single = {"inputs": [{"name": "input-0", "shape": [7, 20], "datatype": "FP64",
                          "data": rows.to_numpy().ravel().tolist()}], "outputs": wanted}
    columns = {"inputs": [{"name": c, "shape": [7], "datatype": "FP64",
                           "data": rows[c].tolist()} for c in WIDE],
               "parameters": {"content_type": "pd"}, "outputs": wanted}
    # the same request through the per-input checks: [N, 1] nested, lower-case datatypes
    checked = {"inputs": [{"name": c, "shape": [7, 1], "datatype": "fp64",
                           "data": [[v] for v in rows[c].tolist()]} for c in WIDE],
               "outputs": wanted}
    with server.client() as c:
        answers = [c.post("/v2/models/wide/infer", json=b) for b in (single, columns, checked)]
    for r in answers:
        assert r.status_code == 200, r.text
    outputs = [r.json()["outputs"] for r in answers]
    assert outputs[0] == outputs[1] == outputs[2]
    model = _offline(store, "wide")
    assert outputs[0][0]["data"] == model.predict(rows).tolist()
    np.testing.assert_allclose(np.reshape(outputs[0][1]["data"], (7, 2)),
                               model.predict_proba(rows), rtol=1e-12, atol=0)


def test_per_column_decode_is_one_dense_matrix() -> None:
    schema = Schema([ColumnSpec(c, "float64") for c in WIDE])
    values = np.random.default_rng(3).normal(size=(4, 20))
    body = {"inputs": [{"name": c, "shape": [4], "datatype": "FP64",
                        "data": values[:, j].tolist()} for j, c in enumerate(WIDE)][::-1]}
    columns, requested = decode_v2(body, schema)
    assert requested is None and columns.n == 4 and columns.names == WIDE
    assert columns.dense is not None and columns.dense.dtype == np.float64
    np.testing.assert_array_equal(columns.dense, values)
    # integers per column make the same matrix; a gap (null) takes the checked path
    ints = {"inputs": [{"name": c, "shape": [1], "datatype": "INT32", "data": [j]}
                       for j, c in enumerate(WIDE)]}
    assert decode_v2(ints, schema)[0].dense.tolist() == [list(map(float, range(20)))]  # type: ignore[union-attr]
    gap = {"inputs": [{"name": c, "shape": [1], "datatype": "FP64",
                       "data": [None if c == "x4" else 1.0]} for c in WIDE]}
    with pytest.raises(BadRequest, match="'x4' has missing values"):
        decode_v2(gap, schema)


# ---------------------------------------------------------------------- log and metrics
def test_binary_request_is_logged_and_counted(store: tuple[Path, ModelRegistry],
                                              frames: dict[str, Any]) -> None:
    home, _ = store
    x, _ = frames["mixed"]
    rows = x.iloc[100:103]
    srv = start_server(home)
    try:
        tensors = []
        for c, datatype in (("age", "FP64"), ("income", "FP64"), ("city", "BYTES")):
            tensor = httpclient.InferInput(c, [3], datatype)
            tensor.set_data_from_numpy(rows[c].to_numpy(
                dtype=object if datatype == "BYTES" else np.float64))
            tensors.append(tensor)
        result = _triton(srv).infer("mixed", tensors, headers={"x-request-id": "binary-log-1"})
        answered = [v.decode() for v in result.as_numpy("predict")]
        metrics = httpx.get(srv.url + "/metrics").text
    finally:
        assert srv.stop() in (0, -15)
    counted = [s.value for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "mlops_requests_total" and s.labels["model_name"] == "mixed"
               and s.labels["code"] == "200"]
    assert counted == [1.0]
    log = read_predictions(str(home / "artifacts"), model="mixed").to_pandas()
    mine = log[log.request_id == "binary-log-1"].sort_values("row")
    assert len(mine) == 3 and set(mine.status) == {200} and set(mine.version) == {"1.0.0"}
    assert [orjson.loads(p) for p in mine.prediction] == answered
    inputs = [orjson.loads(i) for i in mine.inputs]
    assert [i["city"] for i in inputs] == rows["city"].tolist()
    assert [i["age"] for i in inputs] == rows["age"].tolist()
