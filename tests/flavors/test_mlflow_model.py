"""MLmodel files read as data: flavors, signatures, input examples, and refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops.errors import FlavorError, UnknownFlavor, UnsafeModel
from mlops.flavors.mlflow_model import (
    PYFUNC_FIX,
    check_declared_format,
    merge_signature,
    read_mlflow_model,
)
from mlops.flavors.signature import ColumnSpec, Signature


def write(root: Path, spec: dict[str, Any], files: dict[str, bytes | str] | None = None
          ) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLmodel").write_text(yaml.safe_dump(spec))
    for name, content in ({"model.pkl": b"\x80\x04N."} if files is None else files).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def sklearn_spec(**extra: Any) -> dict[str, Any]:
    return {"flavors": {"python_function": {"loader_module": "mlflow.sklearn"},
                        "sklearn": {"pickled_model": "model.pkl",
                                    "serialization_format": "cloudpickle",
                                    "sklearn_version": "1.5.0"}},
            "mlflow_version": "2.14.0", "run_id": "abc", **extra}


def test_colspec_signature_and_split_example(tmp_path: Path) -> None:
    inputs = [{"type": "double", "name": "a", "required": True},
              {"type": "long", "name": "b", "required": False},
              {"type": "string", "name": "c"}]
    spec = sklearn_spec(
        signature={"inputs": json.dumps(inputs), "outputs": json.dumps([{"type": "long"}])},
        saved_input_example_info={"artifact_path": "input_example.json", "type": "dataframe",
                                  "pandas_orient": "split"})
    example = {"columns": ["a", "b", "c"], "data": [[1.5, 2, "x"], [0.5, None, "y"]]}
    root = write(tmp_path / "m", spec, {"model.pkl": b"\x80\x04N.",
                                        "input_example.json": json.dumps(example)})
    model = read_mlflow_model(root)
    assert model.flavor == "sklearn" and model.file == (root / "model.pkl").resolve()
    assert model.run_id == "abc" and model.serialization == "cloudpickle"
    assert model.info["mlflow_version"] == "2.14.0" and model.info["flavor"] == "sklearn"
    assert model.signature == Signature(
        [ColumnSpec("a", "float64"), ColumnSpec("b", "int64", nullable=True),
         ColumnSpec("c", "string")], [ColumnSpec("prediction", "int64")])
    assert isinstance(model.input_example, pd.DataFrame)
    assert list(model.input_example.columns) == ["a", "b", "c"]
    assert len(model.input_example) == 2


def test_tensor_signature_and_ndarray_example(tmp_path: Path) -> None:
    tensor = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]
    spec = {"flavors": {"onnx": {"data": "model.onnx", "onnx_version": "1.16"}},
            "signature": {"inputs": json.dumps(tensor)},
            "saved_input_example_info": {"artifact_path": "ex.json", "type": "ndarray"}}
    root = write(tmp_path / "m", spec, {"model.onnx": b"onnx", "ex.json": "[[1, 2, 3]]"})
    model = read_mlflow_model(root)
    assert model.signature is not None and model.signature.positional
    assert [(c.name, c.dtype) for c in model.signature.inputs] == \
        [("f0", "float32"), ("f1", "float32"), ("f2", "float32")]
    assert isinstance(model.input_example, np.ndarray) and model.input_example.shape == (1, 3)


def test_signatures_that_are_not_a_table_are_left_to_inference(tmp_path: Path) -> None:
    nested = [{"type": "array", "items": {"type": "double"}, "name": "v"}]
    root = write(tmp_path / "m", sklearn_spec(signature={"inputs": json.dumps(nested)}))
    assert read_mlflow_model(root).signature is None
    broken = write(tmp_path / "b", sklearn_spec(signature={"inputs": "[not json"}))
    with pytest.raises(FlavorError, match="not valid JSON"):
        read_mlflow_model(broken)


def test_merge_keeps_declared_inputs_and_inferred_outputs() -> None:
    declared = Signature([ColumnSpec("a", "float64"), ColumnSpec("b", "int64", True)],
                         [ColumnSpec("prediction", "int64")])
    inferred = Signature([ColumnSpec("a", "float64"), ColumnSpec("b", "float64")],
                         [ColumnSpec("prediction", "int64"),
                          ColumnSpec("probabilities", "float64")], classes=[0, 1])
    merged = merge_signature(declared, inferred)
    assert merged is not None
    assert merged.inputs == declared.inputs and merged.outputs == inferred.outputs
    assert merged.classes == [0, 1]
    assert merge_signature(None, inferred) is inferred
    assert merge_signature(declared, None) is declared


def test_pyfunc_models_are_refused_with_the_way_out(tmp_path: Path) -> None:
    custom = write(tmp_path / "custom", {"flavors": {"python_function": {
        "loader_module": "mlflow.pyfunc.model", "python_model": "python_model.pkl",
        "cloudpickle_version": "3.0.0"}}}, {"python_model.pkl": b"\x80\x04N."})
    with pytest.raises(UnsafeModel) as err:
        read_mlflow_model(custom)
    assert "custom PythonModel class" in err.value.message
    assert err.value.fix == PYFUNC_FIX
    assert 'serialization_format="skops"' in PYFUNC_FIX and "ONNX" in PYFUNC_FIX
    loader = write(tmp_path / "loader", {"flavors": {"python_function": {
        "loader_module": "my_team.loader", "code": "code", "data": "weights"}}},
        {"code/my_team/loader.py": "import os\n"})
    with pytest.raises(UnsafeModel, match=r"loader module my_team\.loader and the code"):
        read_mlflow_model(loader)


def test_unknown_flavors_are_named(tmp_path: Path) -> None:
    root = write(tmp_path / "m", {"flavors": {"pytorch": {"model_data": "data"}}})
    with pytest.raises(UnknownFlavor, match="pytorch"):
        read_mlflow_model(root)


@pytest.mark.parametrize("name", ["../outside.pkl", "/etc/passwd", "link.pkl"])
def test_files_outside_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "outside.pkl").write_bytes(b"\x80\x04N.")
    spec = sklearn_spec()
    spec["flavors"]["sklearn"]["pickled_model"] = name
    root = write(tmp_path / "m", spec, {})
    (root / "link.pkl").symlink_to(tmp_path / "outside.pkl")
    with pytest.raises(UnsafeModel, match="outside the model directory"):
        read_mlflow_model(root)


def test_an_mlmodel_linked_from_outside_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET: [unclosed\n")
    root = tmp_path / "m"
    root.mkdir()
    (root / "MLmodel").symlink_to(secret)
    with pytest.raises(UnsafeModel, match="outside the model directory") as err:
        read_mlflow_model(root)
    assert "TOPSECRET" not in str(err.value)
    inside = write(tmp_path / "ok", sklearn_spec())  # a link within the directory is fine
    (inside / "MLmodel").rename(inside / "real-MLmodel")
    (inside / "MLmodel").symlink_to(inside / "real-MLmodel")
    assert read_mlflow_model(inside).flavor == "sklearn"


def test_broken_mlmodel_files_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FlavorError, match="no MLmodel file"):
        read_mlflow_model(tmp_path)
    (tmp_path / "MLmodel").write_text("flavors: [unclosed")
    with pytest.raises(FlavorError, match="not valid YAML"):
        read_mlflow_model(tmp_path)
    (tmp_path / "MLmodel").write_text("!!python/object/apply:os.system ['touch x']")
    with pytest.raises(FlavorError, match="not valid YAML"):
        read_mlflow_model(tmp_path)  # safe_load: YAML tags never call anything
    assert not (tmp_path / "x").exists()
    missing = write(tmp_path / "missing", sklearn_spec(), {})
    with pytest.raises(FlavorError, match="missing"):
        read_mlflow_model(missing)


def test_the_declared_flavor_must_match_the_file(tmp_path: Path) -> None:
    model = read_mlflow_model(write(tmp_path / "m", sklearn_spec()))
    check_declared_format(model, "pickle")
    with pytest.raises(FlavorError, match=r"declares a sklearn model, but model\.pkl is a "
                                          r"xgboost file"):
        check_declared_format(model, "xgboost")


# ---------------------------------------------------------------------------- hostile MLmodels
def _raw(root: Path, text: str, files: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLmodel").write_text(text)
    for name, content in (files or {"model.pkl": b"\x80\x04N."}).items():
        (root / name).write_bytes(content)
    return root


BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
       f"*{chr(97 + i)}]" for i in range(8)]
    + ["run_id: *i",
       "flavors: {sklearn: {pickled_model: model.pkl, serialization_format: pickle}}"])


@pytest.mark.parametrize(("text", "message"), [
    (BILLION_LAUGHS, "aliases (*name) are not accepted"),
    ("flavors:\n  sklearn: {pickled_model: model.pkl, 1: x, sklearn_version: '1.5'}\n"
     "run_id: [1, 2]\n", "run_id that is not text"),
    ("flavors:\n  sklearn: {pickled_model: \"model\\0.pkl\"}\n", "not a file name"),
    ("flavors:\n  sklearn: {pickled_model: " + "a" * 5000 + "}\n", "not a file name"),
    ("flavors: " + "[" * 100_000 + "]" * 100_000 + "\n", "not valid YAML"),
])
def test_hostile_mlmodel_files_are_flavor_errors(tmp_path: Path, text: str,
                                                 message: str) -> None:
    with pytest.raises(FlavorError, match=re.escape(message)):
        read_mlflow_model(_raw(tmp_path / "m", text))


@pytest.mark.parametrize("inputs", [
    [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 300_000_000]}}],
    [{"type": "tensor", "tensor-spec": "abc"}],
    [{"type": ["double"], "name": "a"}],
])
def test_signatures_too_wide_or_malformed_are_not_read(tmp_path: Path,
                                                       inputs: list[Any]) -> None:
    root = write(tmp_path / "m", sklearn_spec(signature={"inputs": json.dumps(inputs)}))
    assert read_mlflow_model(root).signature is None


def test_deeply_nested_signature_or_example_is_a_flavor_error(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    root = write(tmp_path / "s", sklearn_spec(signature={"inputs": deep}))
    with pytest.raises(FlavorError, match="not valid JSON"):
        read_mlflow_model(root)
    spec = sklearn_spec(saved_input_example_info={"artifact_path": "ex.json",
                                                  "type": "ndarray"})
    root = write(tmp_path / "e", spec, {"model.pkl": b"\x80\x04N.", "ex.json": deep})
    with pytest.raises(FlavorError, match="not valid JSON"):
        read_mlflow_model(root)


def test_the_declared_serialization_must_match_the_file(tmp_path: Path) -> None:
    """A skops-declared directory holding a pickle was registered as pickle, its record
    still saying skops."""
    spec = sklearn_spec()
    spec["flavors"]["sklearn"]["serialization_format"] = "skops"
    model = read_mlflow_model(write(tmp_path / "m", spec))
    check_declared_format(model, "skops")
    with pytest.raises(FlavorError, match="declares serialization_format skops, but "
                                          r"model\.pkl is a pickle file"):
        check_declared_format(model, "pickle")
