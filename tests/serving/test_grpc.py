"""The Open Inference Protocol over gRPC (``mlops serve --grpc-port``), checked with
``tritonclient.grpc`` and its default settings against a real server: health, metadata,
inference equal to the model's offline predictions, the same routing, log, feedback ids
and metrics as HTTP, refusals as gRPC status codes, team-mode tokens; and the generated
protobuf code matches the committed KServe proto.

This process imports ``tritonclient.grpc`` (Triton's ``inference.*`` messages), so it
never imports ``mlops.serving.grpc`` (KServe's, the same names): the server runs in a
subprocess, and the generated code is read as text.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlops.config import Settings
from mlops.deployment.routes import RoutingService
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.serving import bucket
from mlops.store.predlog import read_predictions
from tests.conftest import child_env
from tests.serving.conftest import REPO, Server, free_port, start_server

grpcclient = pytest.importorskip("tritonclient.grpc")
grpc = pytest.importorskip("grpc")
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402

PROTO_DIR = REPO / "mlops" / "serving" / "grpc" / "proto"
WIDE = [f"x{i}" for i in range(20)]
CITIES = ["paris", "lyon", "nice", "brest"]
Tensor = service_pb2.ModelInferRequest.InferInputTensor


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def frames() -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    rng = np.random.default_rng(11)
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
    """'wide' 1.0.0 (production) and 1.1.0 (20 float columns), 'mixed' (a text column),
    'split' (1.0.0 and 1.1.0 in a sticky 50% canary)."""
    root = tmp_path_factory.mktemp("grpc")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    x, y = frames["wide"]
    for name in ("wide", "split"):
        for i, c in enumerate((1.0, 0.01)):
            path = root / f"{name}{i}.skops"
            sio.dump(LogisticRegression(C=c).fit(x, y), path)
            registry.register(name, path, version=f"1.{i}.0", input_example=x.head(10))
        registry.promote(name, "1.0.0", "production")
    RoutingService(registry).set_route("split", "production", stable="1.0.0",
                                       candidate="1.1.0", weight=50)
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


@dataclass
class Both:
    """A server answering HTTP (``http``) and gRPC (``target``, host:port)."""

    http: Server
    target: str

    def client(self) -> Any:
        return grpcclient.InferenceServerClient(url=self.target)

    def stub(self) -> Any:
        return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.target))


def start_both(home: Path, *args: str, env_extra: dict[str, str] | None = None) -> Both:
    port = free_port()
    srv = start_server(home, "--grpc-port", str(port), *args, env_extra=env_extra)
    return Both(srv, f"127.0.0.1:{port}")


@pytest.fixture(scope="module")
def server(store: tuple[Path, ModelRegistry]) -> Iterator[Both]:
    both = start_both(store[0])
    yield both
    both.http.stop()


def _offline(store: tuple[Path, ModelRegistry], name: str, version: str = "1.0.0") -> Any:
    return store[1].load_model(name, version)


def _matrix(rows: np.ndarray, datatype: str = "FP64", name: str = "input-0") -> Any:
    tensor = grpcclient.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows)
    return tensor


def _outputs(*names: str) -> list[Any]:
    return [grpcclient.InferRequestedOutput(n) for n in names]


def _refusal(call: Any) -> Any:
    with pytest.raises(grpcclient.InferenceServerException) as caught:
        call()
    return caught.value


# ---------------------------------------------------------------------- health, metadata
def test_health_and_server_metadata(server: Both) -> None:
    client = server.client()
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("wide") and client.is_model_ready("split", "1.1.0")
    assert not client.is_model_ready("nope") and not client.is_model_ready("wide", "7.0.0")
    assert not client.is_model_ready("wide", "1.1.0")  # registered, not served here
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "mlops" and meta["version"]


def test_model_metadata_is_the_http_metadata(server: Both) -> None:
    client = server.client()
    meta = client.get_model_metadata("wide", as_json=True)
    with server.http.client() as c:
        http = c.get("/v2/models/wide").json()
    for tensor in (*meta["inputs"], *meta["outputs"]):
        tensor["shape"] = [int(d) for d in tensor["shape"]]  # int64 is a string in JSON
    assert meta == http
    assert [t["name"] for t in meta["inputs"]] == WIDE
    assert {t["datatype"] for t in meta["inputs"]} == {"FP64"}
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [
        ("predict", "INT64"), ("predict_proba", "FP64")]
    assert meta["versions"] == ["1.0.0"]
    assert client.get_model_metadata("split", "1.1.0", as_json=True)["versions"] == ["1.1.0"]
    assert client.get_model_metadata("split", as_json=True)["versions"] == ["1.0.0", "1.1.0"]
    missing = _refusal(lambda: client.get_model_metadata("nope"))
    assert missing.status() == "StatusCode.NOT_FOUND" and "nope" in missing.message()


# ---------------------------------------------------------------------- inference
def test_fp64_matrix_with_defaults_equals_offline_predictions(server: Both, store: Any,
                                                              frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.head(9)
    tensor = _matrix(rows.to_numpy())
    client = server.client()
    result = client.infer("wide", [tensor], outputs=_outputs("predict", "predict_proba"))
    response = result.get_response()
    assert len(response.raw_output_contents) == 2  # answered raw, as Triton answers
    assert response.model_name == "wide" and response.model_version == "1.0.0"
    model = _offline(store, "wide")
    assert result.as_numpy("predict").tolist() == model.predict(rows).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows),
                               rtol=1e-12, atol=0)
    plain = client.infer("wide", [tensor])  # no outputs named: predict
    assert [o.name for o in plain.get_response().outputs] == ["predict"]
    assert plain.as_numpy("predict").tolist() == model.predict(rows).tolist()
    assert plain.get_response().id  # the id the prediction log knows it by
    assert client.infer("wide", [tensor], request_id="mine-1").get_response().id == "mine-1"


def test_per_column_inputs_equal_the_matrix(server: Both, frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[40:52]
    client = server.client()
    wanted = _outputs("predict", "predict_proba")
    one = client.infer("wide", [_matrix(rows.to_numpy())], outputs=wanted)
    many = client.infer("wide", [_matrix(rows[c].to_numpy(), name=c) for c in reversed(WIDE)],
                        outputs=wanted)
    assert one.as_numpy("predict").tolist() == many.as_numpy("predict").tolist()
    np.testing.assert_array_equal(one.as_numpy("predict_proba"), many.as_numpy("predict_proba"))
    ints = client.infer("wide", [_matrix((np.arange(60).reshape(3, 20) % 7).astype(np.int32),
                                         "INT32")], outputs=wanted)
    floats = client.infer("wide", [_matrix((np.arange(60).reshape(3, 20) % 7).astype(float))],
                          outputs=wanted)
    np.testing.assert_array_equal(ints.as_numpy("predict_proba"),
                                  floats.as_numpy("predict_proba"))


def test_bytes_inputs_and_text_outputs(server: Both, store: Any, frames: dict[str, Any]
                                       ) -> None:
    x, _ = frames["mixed"]
    rows = x.head(8)
    tensors = [_matrix(rows["age"].to_numpy(), name="age"),
               _matrix(rows["income"].to_numpy(), name="income"),
               _matrix(rows["city"].to_numpy(dtype=object), "BYTES", "city")]
    result = server.client().infer("mixed", tensors,
                                   outputs=_outputs("predict", "predict_proba"))
    model = _offline(store, "mixed")
    assert result.get_response().outputs[0].datatype == "BYTES"
    assert [v.decode() for v in result.as_numpy("predict")] == model.predict(rows).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(rows),
                               rtol=1e-12, atol=0)


def test_typed_contents_are_accepted_too(server: Both, store: Any, frames: dict[str, Any]
                                         ) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[5:8]
    request = service_pb2.ModelInferRequest(model_name="wide", inputs=[
        Tensor(name="input-0", datatype="FP64", shape=[3, 20],
               contents=service_pb2.InferTensorContents(
                   fp64_contents=rows.to_numpy().ravel().tolist()))])
    answer, call = server.stub().ModelInfer.with_call(
        request, metadata=[("x-request-id", "typed-1")])
    predict = np.frombuffer(answer.raw_output_contents[0], "<i8")
    assert predict.tolist() == _offline(store, "wide").predict(rows).tolist()
    trailing = dict(call.trailing_metadata())
    assert trailing["x-request-id"] == answer.id == "typed-1"
    assert trailing["x-model-version"] == "1.0.0"


def test_explicit_version(server: Both, store: Any, frames: dict[str, Any]) -> None:
    x, _ = frames["wide"]
    rows = x.iloc[20:25]
    for unit in ("a", "b", "c", "d"):  # a named version bypasses the split
        result = server.client().infer("split", [_matrix(rows.to_numpy())],
                                       model_version="1.1.0", outputs=_outputs("predict_proba"),
                                       headers={"x-mlops-unit": unit})
        assert result.get_response().model_version == "1.1.0"
        np.testing.assert_allclose(result.as_numpy("predict_proba"),
                                   _offline(store, "split", "1.1.0").predict_proba(rows),
                                   rtol=1e-12)


def test_sticky_unit_from_metadata_routes_as_http(server: Both, frames: dict[str, Any],
                                                  store: tuple[Path, ModelRegistry]) -> None:
    x, _ = frames["wide"]
    row = x.head(1).to_numpy()
    spec = RoutingService(store[1]).get_route("split", "production")
    assert spec is not None
    client = server.client()
    seen: dict[str, set[str]] = {}
    with server.http.client() as c:
        for i in range(40):
            unit = f"user-{i}"
            for _ in range(2):
                answer = client.infer("split", [_matrix(row)], headers={"x-mlops-unit": unit})
                seen.setdefault(unit, set()).add(answer.get_response().model_version)
            http = c.post("/v2/models/split/infer", headers={"x-mlops-unit": unit}, json={
                "inputs": [{"name": "input-0", "shape": [1, 20], "datatype": "FP64",
                            "data": row.ravel().tolist()}]})
            assert seen[unit] == {http.headers["x-model-version"]}
    expected = {f"user-{i}": {"1.1.0" if bucket(spec.salt, f"user-{i}") < 5000 else "1.0.0"}
                for i in range(40)}
    assert seen == expected
    assert {v for versions in seen.values() for v in versions} == {"1.0.0", "1.1.0"}


# ---------------------------------------------------------------------- refusals
def test_unknown_model_is_not_found(server: Both) -> None:
    tensor = _matrix(np.zeros((1, 20)))
    client = server.client()
    for name, version in (("nope", ""), ("wide", "7.0.0"), ("wide", "1.1.0")):
        refused = _refusal(lambda n=name, v=version: client.infer(n, [tensor],
                                                                  model_version=v))
        assert refused.status() == "StatusCode.NOT_FOUND", refused
        assert "Fix:" in refused.message()


def test_a_huge_unknown_name_is_not_found_with_a_short_message(server: Both) -> None:
    """The refusal quotes at most the name's start: status details over the client's
    metadata limit would reach it as RESOURCE_EXHAUSTED "Stream removed" instead."""
    refused = _refusal(lambda: server.client().infer("n" * 100_000,
                                                     [_matrix(np.zeros((1, 20)))]))
    assert refused.status() == "StatusCode.NOT_FOUND", refused
    assert "(100002 characters)" in refused.message() and len(refused.message()) < 2_500


def test_clients_cannot_load_or_unload_models(server: Both) -> None:
    """The repository RPCs are refused on purpose: routes decide what is loaded."""
    client = server.client()
    for call in (lambda: client.load_model("wide"), lambda: client.unload_model("wide")):
        refused = _refusal(call)
        assert refused.status() == "StatusCode.UNIMPLEMENTED", refused
        assert "mlops deploy" in refused.message()
    assert client.is_model_ready("wide")  # nothing was unloaded


def test_datatypes_are_enforced(server: Both) -> None:
    client = server.client()
    boolean = _refusal(lambda: client.infer("wide", [_matrix(np.ones((1, 20), bool), "BOOL")]))
    assert boolean.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expects numbers" in boolean.message() and "Fix:" in boolean.message()
    stub = server.stub()
    for datatype, field, value, message in (
            ("INT8", "int_contents", 1000, "INT8: 1000 is outside its range [-128, 127]"),
            ("UINT8", "uint_contents", 256, "UINT8: 256 is outside"),
            ("FP32", "fp32_contents", 3e38, None),  # inside FP32's range: accepted
    ):
        contents = service_pb2.InferTensorContents(**{field: [value] + [0] * 19})
        request = service_pb2.ModelInferRequest(model_name="wide", inputs=[
            Tensor(name="input-0", datatype=datatype, shape=[1, 20], contents=contents)])
        if message is None:
            assert len(stub.ModelInfer(request).raw_output_contents) == 1
            continue
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in caught.value.details()


ROW = np.linspace(-1, 1, 20).tobytes()


def _raw(*tensors: Any, raw: list[bytes] | None = None) -> Any:
    return service_pb2.ModelInferRequest(model_name="wide", inputs=list(tensors),
                                         raw_input_contents=raw or [])


def _input(datatype: str = "FP64", shape: list[int] | None = None, name: str = "input-0",
           **contents: Any) -> Any:
    tensor = Tensor(name=name, datatype=datatype, shape=shape or [1, 20])
    if contents:
        tensor.contents.CopyFrom(service_pb2.InferTensorContents(**contents))
    return tensor


def _text(value: bytes) -> bytes:
    return len(value).to_bytes(4, "little") + value


HOSTILE: list[tuple[str, Any, str]] = [
    ("raw longer than the shape", _raw(_input(), raw=[ROW + b"\0" * 8]),
     "(160 bytes), but its raw_input_contents entry has 168 bytes"),
    ("raw shorter than the shape", _raw(_input(), raw=[ROW[:152]]), "entry has 152 bytes"),
    ("empty raw entry", _raw(_input(), _input(name="x"), raw=[ROW, b""]), "entry has 0 bytes"),
    ("fewer raw entries than inputs", _raw(*[_input(shape=[1], name=c) for c in WIDE],
                                           raw=[ROW[:8]] * 19),
     "20 inputs but 19 raw_input_contents"),
    ("more raw entries than inputs", _raw(_input(), raw=[ROW, ROW]),
     "1 inputs but 2 raw_input_contents"),
    ("a shape of 2**62 rows", _raw(_input(shape=[2**62, 20]), raw=[ROW]), "entry has 160"),
    ("a shape that overflows", _raw(_input(shape=[2**62, 2**62]), raw=[ROW]), "entry has 160"),
    ("a negative shape", _raw(_input(shape=[-1, 20]), raw=[ROW]), "has shape [-1, 20]"),
    ("a 3-D shape", _raw(_input(shape=[1, 4, 5]), raw=[ROW]), "expected [N] or [N, F]"),
    ("FP32 sent as FP64 bytes", _raw(_input("FP32"), raw=[ROW]), "(80 bytes)"),
    ("BOOL byte other than 0 and 1", _raw(_input("BOOL"), raw=[b"\x02" * 20]),
     "other than 0 and 1"),
    ("unknown datatype", _raw(_input("BF16"), raw=[ROW[:40]]), "unknown datatype 'BF16'"),
    ("BYTES length beyond the data", _raw(_input("BYTES", [1], name="x0"),
                                          raw=[(2**32 - 1).to_bytes(4, "little") + b"abcd"]),
     "says 4294967295 bytes"),
    ("BYTES prefix cut off", _raw(_input("BYTES", [2], name="x0"), raw=[_text(b"abcd") + b"\1\0"]),
     "length prefix of BYTES value 1 is cut off"),
    ("BYTES not UTF-8", _raw(_input("BYTES", [1], name="x0"), raw=[_text(b"\xff\xfe")]),
     "not UTF-8"),
    ("raw and typed contents mixed", _raw(_input(fp64_contents=[0.0] * 20), raw=[ROW]),
     "has typed contents, but the request sends raw_input_contents"),
    ("values in the wrong typed field", _raw(_input(fp32_contents=[0.0] * 20)),
     "is FP64, but its values are in fp32_contents"),
    ("FP16 typed", _raw(_input("FP16", int_contents=[0] * 20)), "FP16"),
    ("typed contents shorter than the shape", _raw(_input(fp64_contents=[0.0] * 19)),
     "20 values) but 19 values"),
    ("a NaN in typed per-column contents",
     _raw(*[_input(shape=[1], name=c, fp64_contents=[math.nan if c == "x3" else 1.0])
            for c in WIDE]), "'x3'"),
    ("an infinity in typed per-column contents",
     _raw(*[_input(shape=[1], name=c, fp64_contents=[-math.inf if c == "x3" else 1.0])
            for c in WIDE]), "'x3'"),
    ("typed BYTES not UTF-8", _raw(_input("BYTES", [1], name="x0", bytes_contents=[b"\xff"])),
     "not UTF-8"),
    ("no inputs", _raw(), "no inputs"),
    ("an input named twice", _raw(*[_input(shape=[1], name=c) for c in [*WIDE[:19], "x0"]],
                                  raw=[ROW[:8]] * 20), "more than once"),
    ("an unknown output", service_pb2.ModelInferRequest(
        model_name="wide", inputs=[_input()], raw_input_contents=[ROW],
        outputs=[service_pb2.ModelInferRequest.InferRequestedOutputTensor(name="logits")]),
     "Unknown output 'logits'"),
]


@pytest.mark.parametrize(("case", "request_", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_are_invalid_argument(server: Both, case: str, request_: Any,
                                               message: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        server.stub().ModelInfer(request_)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (case, error.code(),
                                                              error.details())
    assert message in error.details() and "Fix:" in error.details(), error.details()
    assert "JSON header" not in error.details()  # said for gRPC, not for HTTP's framing


def test_a_message_over_the_body_limit_is_resource_exhausted(server: Both) -> None:
    big = np.zeros((60_000, 20))  # 9.6 MB, over the default 8 MB
    refused = _refusal(lambda: server.client().infer("wide", [_matrix(big)]))
    assert refused.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_still_healthy_and_refusals_counted_as_grpc(server: Both) -> None:
    assert server.client().is_server_ready()
    with server.http.client() as c:
        text = c.get("/metrics").text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "mlops_requests_total" and s.labels["protocol"] == "grpc" \
                    and s.labels["model_name"] == "wide":
                counts[s.labels["code"]] = counts.get(s.labels["code"], 0) + s.value
    assert counts.get("400", 0) >= len(HOSTILE) - 1  # "no inputs" names no model either
    assert counts.get("200", 0) > 0 and "500" not in counts


# ---------------------------------------------------------------------- log, feedback, metrics
def test_logged_counted_and_feedback_matched(store: tuple[Path, ModelRegistry],
                                             frames: dict[str, Any]) -> None:
    home, _ = store
    x, _ = frames["mixed"]
    rows = x.iloc[100:103]
    both = start_both(home)
    try:
        tensors = [_matrix(rows["age"].to_numpy(), name="age"),
                   _matrix(rows["income"].to_numpy(), name="income"),
                   _matrix(rows["city"].to_numpy(dtype=object), "BYTES", "city")]
        client = both.client()
        first = client.infer("mixed", tensors, request_id="grpc-log-1")
        second = client.infer("mixed", tensors, request_id="ignored-id",
                              headers={"x-request-id": "grpc-log-2"})
        assert first.get_response().id == "grpc-log-1"
        assert second.get_response().id == "ignored-id"  # the request's own id comes back
        answered = [v.decode() for v in first.as_numpy("predict")]
        with both.http.client() as c:
            feedback = c.post("/v1/models/mixed/feedback", json=[
                {"request_id": "grpc-log-1", "row": 2, "actual": "stay"},
                {"request_id": "grpc-log-2", "actual": "churn"}])
            metrics = c.get("/metrics").text
        assert feedback.json() == {"accepted": 2, "unmatched": 0}
    finally:
        assert both.http.stop() in (0, -15)
    counted = {(s.labels["protocol"], s.labels["code"]): s.value
               for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "mlops_requests_total" and s.labels["model_name"] == "mixed"}
    assert counted == {("grpc", "200"): 2.0}
    durations = [s for f in text_string_to_metric_families(metrics) for s in f.samples
                 if s.name == "mlops_request_duration_seconds_count"
                 and s.labels["model_name"] == "mixed"]
    assert [(s.labels["protocol"], s.value) for s in durations] == [("grpc", 2.0)]
    log = read_predictions(str(home / "artifacts"), model="mixed").to_pandas()
    mine = log[log.request_id == "grpc-log-1"].sort_values("row")
    assert len(mine) == 3 and set(mine.status) == {200} and set(mine.version) == {"1.0.0"}
    assert [p.strip('"') for p in mine.prediction] == answered
    assert set(mine.caller) == {"address:127.0.0.1"}  # anonymous: the client address
    assert (mine.cpu_ms > 0).all()
    assert len(log[log.request_id == "grpc-log-2"]) == 3


# ---------------------------------------------------------------------- team mode
def test_team_mode_with_inference_tokens(store: tuple[Path, ModelRegistry]) -> None:
    home, registry = store
    _, token = TokenService(registry).create("grpc-app", Role.DEVELOPER)
    both = start_both(home, "--auth", env_extra={"MLOPS_AUTH_INFERENCE": "on"})
    try:
        client = both.client()
        tensor = _matrix(np.zeros((1, 20)))
        assert client.is_server_live() and client.is_server_ready()  # probes stay open
        for call in (lambda h: client.infer("wide", [tensor], headers=h),
                     lambda h: client.get_model_metadata("wide", headers=h),
                     lambda h: client.get_server_metadata(headers=h)):
            missing = _refusal(lambda c=call: c(None))
            assert missing.status() == "StatusCode.UNAUTHENTICATED"
            assert "bearer token" in missing.message() and "Fix:" in missing.message()
            wrong = _refusal(lambda c=call: c({"authorization": "Bearer mlops_nope_nope"}))
            assert wrong.status() == "StatusCode.UNAUTHENTICATED"
            assert call({"authorization": f"Bearer {token}"})
        answer = client.infer("wide", [tensor], headers={"authorization": f"Bearer {token}"},
                              request_id="grpc-team-1")
        assert answer.get_response().model_version == "1.0.0"
    finally:
        both.http.stop()
    log = read_predictions(str(home / "artifacts"), model="wide").to_pandas()
    assert list(log[log.request_id == "grpc-team-1"].caller) == ["token:grpc-app"]


# ---------------------------------------------------------------------- workers, options
def test_two_workers_share_the_grpc_port(store: tuple[Path, ModelRegistry]) -> None:
    both = start_both(store[0], "--workers", "2")
    try:
        tensor = _matrix(np.zeros((1, 20)))
        for _ in range(6):  # a new connection each time: the kernel spreads them
            client = both.client()
            assert client.infer("wide", [tensor]).get_response().model_version == "1.0.0"
            client.close()
    finally:
        both.http.stop()


def _serve(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env(MLOPS_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "mlops", "serve", *args], env=env,
                          cwd=home.parent, capture_output=True, text=True, timeout=60)


def test_grpc_port_options_are_checked(tmp_path: Path, server: Both) -> None:
    home = tmp_path / ".mlops"
    taken = server.target.rsplit(":", 1)[1]
    port = str(free_port())
    for args, message in (
            (["--grpc-port", "70000"], "--grpc-port"),
            (["--grpc-port", "0"], "--grpc-port"),
            (["--port", port, "--grpc-port", port], "also the HTTP --port"),
            (["--role", "control", "--grpc-port", str(free_port())], "role control"),
            (["--port", port, "--grpc-port", taken], "Cannot listen for gRPC"),
            (["--host", "0.0.0.0", "--grpc-port", str(free_port())], "Refusing to listen"),
    ):
        run = _serve(home, *args)
        assert run.returncode == 2, (args, run.stdout + run.stderr)
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr


# ---------------------------------------------------------------------- generated code
def _serialized_descriptor(path: Path) -> bytes:
    """The FileDescriptorProto that a ``*_pb2.py`` file registers, read without running it
    (running it here would clash with tritonclient's messages of the same names)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "AddSerializedFile":
            value = node.args[0]
            assert isinstance(value, ast.Constant) and isinstance(value.value, bytes)
            return value.value
    raise AssertionError(f"no serialized descriptor in {path}")


def test_generated_code_matches_the_committed_proto(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    relative = Path("mlops/serving/grpc/proto")
    (tmp_path / relative).mkdir(parents=True)
    proto = tmp_path / relative / "grpc_predict_v2.proto"
    proto.write_bytes((PROTO_DIR / "grpc_predict_v2.proto").read_bytes())
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
                           f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                           str(proto)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / relative
    assert _serialized_descriptor(fresh / "grpc_predict_v2_pb2.py") == \
        _serialized_descriptor(PROTO_DIR / "grpc_predict_v2_pb2.py"), \
        "the generated code has drifted from the proto: run make grpc-proto"
    services = re.compile(r"'(/inference\.GRPCInferenceService/\w+)'")
    assert services.findall((fresh / "grpc_predict_v2_pb2_grpc.py").read_text()) == \
        services.findall((PROTO_DIR / "grpc_predict_v2_pb2_grpc.py").read_text())


def test_the_proto_is_kserves_file_as_shipped() -> None:
    """Everything after the origin header is the file as shipped in the kserve wheel."""
    text = (PROTO_DIR / "grpc_predict_v2.proto").read_bytes()
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(b"// Copyright"))
    header = b"".join(lines[:start]).decode()
    recorded = re.search(r"sha256:\s+([0-9a-f]{64})", header)
    assert recorded is not None and "kserve 0.14.1" in header and "Apache-2.0" in header
    assert all(line.startswith(b"//") for line in lines[:start])  # comments only
    assert hashlib.sha256(b"".join(lines[start:])).hexdigest() == recorded.group(1)
    assert b"package inference;" in text and b"service GRPCInferenceService" in text
