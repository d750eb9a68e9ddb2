"""A model that never answers: the gateway answers its batch 504 after ``--predict-timeout``,
refuses the version's other requests with 503 while the call runs on, keeps serving
everything else, and takes the version's requests again once the call returns.

The model is a real ONNX graph whose loop count is read from its input (a Loop over
``max(x)`` turns): quick on ordinary rows and on the one-row probe of loading, and as long
as the sender likes on a crafted row.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.config import Settings
from mlops.flavors.onnx import load_onnx
from mlops.registry.service import ModelRegistry
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


def _turns_for(seconds: float, graph: bytes) -> int:
    """Loop turns that take about ``seconds`` on this machine."""
    model = load_onnx(graph)
    turns = 200_000
    started = time.perf_counter()
    model.predict_fn(np.array([[turns, 0]], dtype=np.float32))
    return int(turns * seconds / max(time.perf_counter() - started, 1e-6))


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


def test_a_prediction_past_its_deadline_is_a_504_and_the_version_recovers(tmp_path: Path
                                                                         ) -> None:
    graph = _loop_from_input()
    path = tmp_path / "loop.onnx"
    path.write_bytes(graph)
    home = tmp_path / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    example = pd.DataFrame({"a": [0.1, 0.5], "b": [0.2, 0.3]}, dtype=np.float32)
    registry.register("looper", str(path), version="1.0.0", input_example=example)
    registry.promote("looper", "1.0.0", "production")
    turns = _turns_for(6.0, graph)  # runs on for about 6 s past a 1 s deadline
    grpc_port = free_port()
    srv = start_server(home, "--role", "gateway", "--predict-timeout", "1",
                       "--grpc-port", str(grpc_port))
    grpcclient = pytest.importorskip("tritonclient.grpc")
    triton = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        with srv.client() as c:
            ok = c.post("/v2/models/looper/infer", json=_body(0.5))
            assert ok.status_code == 200, ok.text
            answers: dict[str, object] = {}

            def crafted() -> None:
                started = time.monotonic()
                with srv.client() as own:
                    answers["crafted"] = own.post("/v2/models/looper/infer",
                                                  json=_body(float(turns)), timeout=60)
                answers["seconds"] = time.monotonic() - started

            sender = threading.Thread(target=crafted)
            sender.start()
            sender.join(30)
            late = answers["crafted"]
            assert late.status_code == 504, late.text  # type: ignore[attr-defined]
            assert "did not predict within 1 s" in late.text  # type: ignore[attr-defined]
            assert 0.9 <= answers["seconds"] < 5  # type: ignore[operator]

            busy = c.post("/v2/models/looper/infer", json=_body(0.5))
            assert busy.status_code == 503, busy.text
            assert "passed its 1 s deadline" in busy.json()["error"]
            assert busy.headers.get("retry-after")
            assert c.get("/v2/health/live").status_code == 200  # the loop never stopped
            not_ready = c.get("/v2/models/looper/ready")
            assert not_ready.status_code == 503 and not_ready.json()["ready"] is False
            assert triton.is_model_ready("looper") is False
            errors = [line for line in c.get("/metrics").text.splitlines()
                      if line.startswith("mlops_prediction_errors_total{")
                      and 'model_name="looper"' in line]
            assert errors and float(errors[0].rsplit(" ", 1)[1]) == 1.0, errors  # the model's

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the call returns after about 6 s
                again = c.post("/v2/models/looper/infer", json=_body(0.5))
                if again.status_code == 200:
                    break
                assert again.status_code == 503, again.text
                time.sleep(0.2)
            assert again.status_code == 200, again.text
            outputs = {o["name"]: o for o in again.json()["outputs"]}
            assert outputs["predict"]["data"] == [0]  # argmax of [0.5, 0]
            assert c.get("/v2/models/looper/ready").json()["ready"] is True
            assert triton.is_model_ready("looper") is True
    finally:
        triton.close()
        srv.stop(timeout=30)
