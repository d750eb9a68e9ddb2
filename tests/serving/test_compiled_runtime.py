"""A real gateway serves a version's compiled ONNX runtime when it has one, says so in
``x-model-runtime``, answers what the model answers offline, and switches to a runtime
compiled while it runs."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.errors import SignatureError
from mlops.registry.service import ModelRegistry
from tests.serving.conftest import FEATURES, Server, start_server

pytest.importorskip("skl2onnx")

Store = tuple[Path, ModelRegistry, pd.DataFrame]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Production serves 'forest' (200 trees, compiled), 'plain' (not compiled) and
    'later' (compiled by a test while the gateway runs); returns unseen rows too."""
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(800, 5)), columns=FEATURES)
    y = (x["x0"] - x["x1"] + 0.5 * x["x2"] * x["x3"] > 0).astype(int).to_numpy()
    train, held_out, unseen = x.iloc[:400], x.iloc[400:600], x.iloc[600:]
    root = tmp_path_factory.mktemp("compiled")
    home = root / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    models = {"forest": RandomForestClassifier(200, max_depth=4, random_state=0),
              "plain": LogisticRegression(), "later": LogisticRegression(C=0.1)}
    for name, model in models.items():
        path = root / f"{name}.skops"
        sio.dump(model.fit(train, y[:400]), path)
        registry.register(name, path, input_example=train.head(10))
        registry.promote(name, "1.0.0", "production")
    registry.compile("forest", "1.0.0", data=held_out)
    return home, registry, unseen


@pytest.fixture(scope="module")
def gateway(store: Store) -> Iterator[Server]:
    srv = start_server(store[0])
    yield srv
    srv.stop()


def _v2(rows: pd.DataFrame, proba: bool = True) -> dict[str, object]:
    outputs = [{"name": "predict"}] + ([{"name": "predict_proba"}] if proba else [])
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.to_numpy().ravel().tolist()}], "outputs": outputs}


def test_the_gateway_serves_the_compiled_forest_with_the_offline_answers(
        gateway: Server, store: Store) -> None:
    _, registry, unseen = store
    rows = unseen.head(50)
    original = registry.load_model("forest", "1.0.0")
    compiled = registry.load_model("forest", "1.0.0", runtime="onnx")
    tolerance = registry.get_version("forest", "1.0.0").runtimes["onnx"]["tolerance"]
    with gateway.client() as c:
        r = c.post("/v2/models/forest/infer", json=_v2(rows))
        assert r.status_code == 200, r.text
        assert r.headers["x-model-runtime"] == "onnx"
        assert r.headers["x-model-version"] == "1.0.0"
        predict, proba = r.json()["outputs"]
        assert predict["datatype"] == "INT64"
        assert predict["data"] == original.predict(rows).tolist()  # labels identical
        got = np.reshape(proba["data"], (50, 2))
        np.testing.assert_allclose(got, original.predict_proba(rows), **tolerance)
        np.testing.assert_allclose(got, compiled.predict_proba(rows), rtol=0, atol=1e-7)

        mlflow = c.post("/invocations", headers={"x-mlops-model": "forest"},
                        json={"dataframe_split": {"columns": FEATURES,
                                                  "data": rows.to_numpy().tolist()}})
        assert mlflow.status_code == 200, mlflow.text
        assert mlflow.headers["x-model-runtime"] == "onnx"
        assert mlflow.json()["predictions"] == original.predict(rows).tolist()
        v1 = c.post("/v1/models/forest:predict", json={"instances": rows.to_dict("records")})
        assert v1.status_code == 200 and v1.headers["x-model-runtime"] == "onnx"
        assert v1.json()["predictions"] == original.predict(rows).tolist()


def test_an_uncompiled_version_answers_with_its_own_runtime(gateway: Server,
                                                            store: Store) -> None:
    rows = store[2].head(5)
    with gateway.client() as c:
        r = c.post("/v2/models/plain/infer", json=_v2(rows, proba=False))
        assert r.status_code == 200 and r.headers["x-model-runtime"] == "sklearn"
        refused = c.post("/v2/models/forest/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
        assert refused.status_code == 400 and refused.headers["x-model-runtime"] == "onnx"


def test_a_version_compiled_while_served_switches_the_gateway(gateway: Server,
                                                              store: Store) -> None:
    _, registry, unseen = store
    rows = unseen.head(20)
    with gateway.client() as c:
        before = c.post("/v2/models/later/infer", json=_v2(rows))
        assert before.headers["x-model-runtime"] == "sklearn"
        registry.compile("later", "1.0.0", data=unseen.tail(100))
        deadline = time.monotonic() + 20
        after: httpx.Response = before
        while time.monotonic() < deadline:
            after = c.post("/v2/models/later/infer", json=_v2(rows))
            if after.headers["x-model-runtime"] == "onnx":
                break
            time.sleep(0.1)
    assert after.status_code == 200 and after.headers["x-model-runtime"] == "onnx"
    assert after.json()["outputs"][0]["data"] == before.json()["outputs"][0]["data"]
    tolerance = registry.get_version("later", "1.0.0").runtimes["onnx"]["tolerance"]
    np.testing.assert_allclose(after.json()["outputs"][1]["data"],
                               before.json()["outputs"][1]["data"], **tolerance)


def test_values_beyond_float32_are_the_clients_error_on_either_runtime(
        gateway: Server, store: Store) -> None:
    """Trees compute in float32: 1e39 is refused by name (scikit-learn raised a ValueError,
    a 500 counted against the version; the float32 graph would have read it as infinity)."""
    _, registry, unseen = store
    rows = unseen.head(2).copy()
    rows.iloc[1, 2] = 1e39
    for runtime in ("original", "onnx"):
        model = registry.load_model("forest", "1.0.0", runtime=runtime)
        with pytest.raises(SignatureError, match=re.escape(
                "float32, whose largest value is 3.4e38; the input holds 1e+39")):
            model.predict(rows)
    with gateway.client() as c:
        r = c.post("/v2/models/forest/infer", json=_v2(rows))
        assert r.status_code == 400 and "computes in float32" in r.json()["error"], r.text
        fine = c.post("/v2/models/forest/infer", json=_v2(unseen.head(2)))
        assert fine.status_code == 200
    assert "Traceback" not in gateway.log.read_text()
