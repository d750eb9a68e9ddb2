"""An ONNX file must be self-contained: a tensor whose data is "external" would be read from
a path relative to the loading process's working directory (or a memory address), bytes
that no digest covers. Every place a tensor can sit is checked."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from mlops.config import Settings
from mlops.errors import FlavorError
from mlops.flavors.onnx import load_onnx, refuse_external_data
from mlops.registry.service import ModelRegistry

N = 16


def _external(name: str, location: str = "secret.bin") -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[1, N])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(N))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _embedded(name: str) -> TensorProto:
    return helper.make_tensor(name, TensorProto.UINT8, [1, N], bytes(N), raw=True)


def _model(nodes: list[onnx.NodeProto], initializers: list[TensorProto],
           functions: list[onnx.FunctionProto] | None = None) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, N])
    y = helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, N])
    graph = helper.make_graph([*nodes, helper.make_node("Cast", ["W"], ["Wf"], to=1),
                               helper.make_node("Add", ["x", "Wf"], ["variable"])],
                              "g", [x], [y], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15),
                                                    helper.make_opsetid("local", 1)],
                              functions=functions or [])
    model.ir_version = 8
    return model.SerializeToString()


def _in_initializer(t: TensorProto) -> bytes:
    return _model([], [t])


def _in_constant_node(t: TensorProto) -> bytes:
    t.name = ""
    return _model([helper.make_node("Constant", [], ["W"], value=t)], [])


def _in_subgraph(t: TensorProto) -> bytes:
    then = helper.make_graph([helper.make_node("Identity", ["inner"], ["out"])], "then", [],
                             [helper.make_tensor_value_info("out", TensorProto.UINT8, [1, N])],
                             [t if t.name == "inner" else _renamed(t, "inner")])
    other = helper.make_graph([helper.make_node("Identity", ["inner2"], ["out2"])], "else", [],
                              [helper.make_tensor_value_info("out2", TensorProto.UINT8, [1, N])],
                              [_embedded("inner2")])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    return _model([helper.make_node("If", ["c"], ["W"], then_branch=then, else_branch=other)],
                  [cond])


def _in_function(t: TensorProto) -> bytes:
    t.name = ""
    fn = helper.make_function("local", "Weights", [], ["w"],
                              [helper.make_node("Constant", [], ["w"], value=t)],
                              [helper.make_opsetid("", 15)])
    return _model([helper.make_node("Weights", [], ["W"], domain="local")], [], [fn])


def _renamed(t: TensorProto, name: str) -> TensorProto:
    t.name = name
    return t


PLACES: dict[str, Callable[[TensorProto], bytes]] = {
    "initializer": _in_initializer, "Constant node": _in_constant_node,
    "If subgraph": _in_subgraph, "local function": _in_function}


@pytest.mark.parametrize("place", PLACES)
def test_external_data_is_refused_wherever_the_tensor_sits(place: str) -> None:
    hostile = PLACES[place](_external("W"))
    assert any(onnx.external_data_helper.uses_external_data(t)  # onnx agrees it is there
               for t in onnx.external_data_helper._get_all_tensors(
                   onnx.load_model_from_string(hostile)))
    with pytest.raises(FlavorError, match="keeps tensor data in external files"):
        refuse_external_data(hostile)
    refuse_external_data(PLACES[place](_embedded("W")))  # the same graph, self-contained


def test_the_memory_address_tag_is_refused_too() -> None:
    with pytest.raises(FlavorError, match="external files"):
        load_onnx(_in_initializer(_external("W", "*/_ORT_MEM_ADDR_/*")))


def test_a_registered_model_cannot_read_files_beside_the_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The red team's case: a relative location read the working directory's file, and the
    predictions returned its bytes."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.bin").write_bytes(b"DB_PASSWORD=hunter2")
    path = tmp_path / "evil.onnx"
    path.write_bytes(_in_initializer(_external("W")))
    registry = ModelRegistry(Settings(home=tmp_path / ".mlops", actor="tester"))
    with pytest.raises(FlavorError, match="external files"):
        registry.register("evil", path)
    assert registry.list_models() == []
    with pytest.raises(FlavorError):  # and a file that never was registered is not loaded
        load_onnx(path.read_bytes())
    fine = tmp_path / "fine.onnx"
    fine.write_bytes(_in_initializer(_embedded("W")))
    registry.register("fine", fine)
    out = registry.load_model("fine", "1.0.0").predict(np.zeros((1, N)))
    assert np.asarray(out).sum() == 0
    assert os.getcwd() == str(tmp_path)


@pytest.mark.parametrize("garbage", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x3a\x05ab"])
def test_a_broken_message_is_a_flavor_error(garbage: bytes) -> None:
    with pytest.raises(FlavorError, match="not a valid protobuf message"):
        refuse_external_data(garbage)


def loop_body() -> Any:
    """A Loop body that carries its one float value through each turn unchanged."""
    return helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])


def _endless_probabilities() -> bytes:
    """label = argmax(x); probabilities = x carried through a Loop of 10^15 turns."""
    graph = helper.make_graph(
        [helper.make_node("Loop", ["M", "", "x"], ["probabilities"], body=loop_body()),
         helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor("M", TensorProto.INT64, [], [10**15])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model.SerializeToString()


def test_loading_stops_a_graph_that_never_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading runs the graph on one row to read its class labels: a Loop of 10^15 turns
    hung registration for good; it is stopped and refused."""
    import time

    import mlops.flavors.onnx as flavor

    monkeypatch.setattr(flavor, "PROBE_SECONDS", 0.5)
    started = time.monotonic()
    with pytest.raises(FlavorError, match=r"did not predict one row within 0\.5 s"):
        load_onnx(_endless_probabilities())
    assert time.monotonic() - started < 10
