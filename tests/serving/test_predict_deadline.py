"""A model that never answers: the gateway answers its batch 504 after ``--predict-timeout``
and stops the call when the model can be stopped (an ONNX graph); a call that cannot be
stopped makes the version refuse its requests (503) until it returns, while everything
else keeps answering.

The model is a real ONNX graph whose loop count is read from its input (a Loop over
``max(x)`` turns): quick on ordinary rows and on the one-row probe of loading, and as long
as the sender likes on a crafted row.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.config import Settings
from mlops.errors import Overloaded, PredictTimeout
from mlops.flavors.base import LoadedModel
from mlops.flavors.onnx import load_onnx
from mlops.registry.service import ModelRegistry
from mlops.serving.batching import Batcher
from mlops.serving.codecs import Columns, Schema
from mlops.serving.routing import ServedModel
from tests.flavors.test_onnx_external_data import loop_body
from tests.serving.conftest import free_port, start_server

onnx = pytest.importorskip("onnx")
helper, TensorProto = onnx.helper, onnx.TensorProto


def _loop_from_input() -> bytes:
    """label = argmax(x); probabilities = x carried through a Loop of max(x) turns."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
         helper.make_node("Cast", ["top"], ["M"], to=TensorProto.INT64),
         helper.make_node("Loop", ["M", "", "x"], ["probabilities"], body=loop_body()),
         helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model.SerializeToString()


def _body(x0: float) -> dict[str, object]:
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [x0, 0.0]}]}


def _square_from_input() -> bytes:
    """No loop: n = max(x); an n x n matrix of ones times itself (the red team's: n^3 work
    and n^2 memory, sized by a value of the input)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0),
         helper.make_node("Cast", ["top"], ["n"], to=TensorProto.INT64),
         helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
         helper.make_node("Concat", ["n1", "n1"], ["shape"], axis=0),
         helper.make_node("ConstantOfShape", ["shape"], ["ones"],
                          value=helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])),
         helper.make_node("MatMul", ["ones", "ones"], ["square"]),
         helper.make_node("ReduceSum", ["square"], ["total"], keepdims=0),
         helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_graphs_whose_run_time_depends_on_the_input_never_predict_on_the_event_loop() -> None:
    assert load_onnx(_loop_from_input()).bounded is False
    assert load_onnx(_square_from_input()).bounded is False
    argmax = helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None])])
    plain = helper.make_model(argmax, opset_imports=[helper.make_opsetid("", 15)])
    plain.ir_version = 8
    assert load_onnx(plain.SerializeToString()).bounded is True


def test_what_the_converters_write_may_predict_on_the_event_loop() -> None:
    """The compiled runtimes (skl2onnx, onnxmltools) keep their fast path."""
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    for model in (LogisticRegression(), RandomForestClassifier(5, random_state=0),
                  MLPClassifier((8,), max_iter=50, random_state=0)):
        graph = to_onnx(model.fit(x, y), x[:1]).SerializeToString()
        assert load_onnx(graph).bounded is True, type(model).__name__


def test_an_endless_graph_is_a_504_at_its_deadline_and_is_stopped(tmp_path: Path) -> None:
    """A crafted row makes the graph loop 10^12 times: the gateway answers 504 after
    ``--predict-timeout``, stops the graph (onnxruntime's terminate flag), counts the
    model's error, and the version answers again at once."""
    path = tmp_path / "loop.onnx"
    path.write_bytes(_loop_from_input())
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    example = pd.DataFrame({"a": [0.1, 0.5], "b": [0.2, 0.3]}, dtype=np.float32)
    registry.register("looper", str(path), version="1.0.0", input_example=example)
    registry.promote("looper", "1.0.0", "production")
    grpc_port = free_port()
    srv = start_server(home, "--role", "gateway", "--predict-timeout", "1",
                       "--grpc-port", str(grpc_port))
    grpcclient = pytest.importorskip("tritonclient.grpc")
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        with srv.client() as c:
            ok = c.post("/v2/models/looper/infer", json=_body(0.5))
            assert ok.status_code == 200, ok.text
            started = time.monotonic()
            late = c.post("/v2/models/looper/infer", json=_body(1e12), timeout=60)
            assert late.status_code == 504, late.text
            assert "did not predict within 1 s" in late.json()["error"]
            assert 0.9 <= time.monotonic() - started < 5
            assert c.get("/v2/health/live").status_code == 200  # the loop never stopped
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the stopped graph returns at its next turn
                again = c.post("/v2/models/looper/infer", json=_body(0.5))
                if again.status_code == 200:
                    break
                assert again.status_code == 503, again.text
                time.sleep(0.05)
            assert again.status_code == 200, again.text
            assert time.monotonic() - started < 5
            outputs = {o["name"]: o for o in again.json()["outputs"]}
            assert outputs["predict"]["data"] == [0]  # argmax of [0.5, 0]
            errors = [line for line in c.get("/metrics").text.splitlines()
                      if line.startswith("mlops_prediction_errors_total{")
                      and 'model_name="looper"' in line]
            assert errors and float(errors[0].rsplit(" ", 1)[1]) == 1.0, errors  # the model's
            assert c.get("/v2/models/looper/ready").json()["ready"] is True
            assert triton.is_model_ready("looper") is True
    finally:
        triton.close()
        srv.stop(timeout=30)


def _waiting_model(release: threading.Event, stoppable: bool) -> ServedModel:
    """A model whose predict waits for ``release`` (one that cannot be stopped, unless
    ``stoppable``: then stopping it releases it, as onnxruntime's terminate flag does)."""
    def predict(x: Any) -> np.ndarray:
        if not release.wait(30):
            raise RuntimeError("never released")
        return np.zeros(len(x), dtype=np.int64)

    def stop() -> int:
        release.set()
        return 1

    model = LoadedModel(flavor="sklearn", raw=None, predict_fn=predict,
                        stop_fn=stop if stoppable else None)
    return ServedModel("waiter", "1.0.0", model, Schema(None))


def _one_row() -> Columns:
    return Columns.from_dense(["a"], np.zeros((1, 1)))


def test_a_call_that_cannot_be_stopped_refuses_the_versions_requests_until_it_returns(
        ) -> None:
    release = threading.Event()
    served = _waiting_model(release, stoppable=False)
    batcher = Batcher(predict_timeout=0.3)

    async def scenario() -> None:
        started = time.monotonic()
        with pytest.raises(PredictTimeout, match=r"did not predict within 0\.3 s"):
            await batcher.predict(served, _one_row(), False)
        assert 0.25 <= time.monotonic() - started < 2
        assert batcher.stuck(served)
        with pytest.raises(Overloaded, match=r"passed its 0\.3 s deadline") as busy:
            await batcher.predict(served, _one_row(), False)  # refused at once
        assert busy.value.retry_after
        release.set()
        for _ in range(100):  # the call returns: the lane takes requests again
            await asyncio.sleep(0.01)
            if not batcher.stuck(served):
                break
        assert not batcher.stuck(served)
        assert (await batcher.predict(served, _one_row(), False)).values.tolist() == [0]

    asyncio.run(scenario())
    batcher.close()


def test_a_call_that_can_be_stopped_is_stopped_at_its_deadline() -> None:
    release = threading.Event()
    served = _waiting_model(release, stoppable=True)
    batcher = Batcher(predict_timeout=0.3)

    async def scenario() -> None:
        with pytest.raises(PredictTimeout):
            await batcher.predict(served, _one_row(), False)
        assert release.is_set()  # the deadline stopped it
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not batcher.stuck(served):
                break
        assert (await batcher.predict(served, _one_row(), False)).values.tolist() == [0]

    asyncio.run(scenario())
    batcher.close()
