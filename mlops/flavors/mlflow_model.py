"""MLflow model directories, read as data: the ``MLmodel`` file names the model file, the
flavor, the signature and the input example.

Nothing here imports mlflow or runs anything a directory names. ``MLmodel`` is parsed with
``yaml.safe_load``; the model file it points to is then loaded like any other file (see
:mod:`mlops.flavors.files`): a cloudpickle file is just a pickle, so it passes only if every
global it imports is on the allow list. A model that needs its own code (a ``python_function``
model with a custom ``python_model`` or ``loader_module``) is refused: loading it means
running that code.

Supported flavors: ``sklearn`` (skops, pickle or cloudpickle), ``xgboost`` (JSON, UBJSON or
the old binary format), ``lightgbm`` (a Booster's text file, or a pickled/skops scikit-learn
wrapper) and ``onnx``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import yaml

from mlops.errors import FlavorError, MlopsError, UnknownFlavor, UnsafeModel, shown
from mlops.flavors.signature import ColumnSpec, Signature

if TYPE_CHECKING:
    import pandas as pd  # imported where a frame is made: CLI commands start sooner

__all__ = [
    "MAX_COLUMNS",
    "MLMODEL",
    "PYFUNC_FIX",
    "MlflowModel",
    "check_declared_format",
    "is_mlflow_model_dir",
    "merge_signature",
    "read_mlflow_model",
]

MLMODEL = "MLmodel"

#: The flavors read, in order of preference when a directory declares several.
NATIVE_FLAVORS = ("sklearn", "xgboost", "lightgbm", "onnx")

#: The key of each flavor's block that names the model file (older MLflow versions first).
_FILE_KEYS = {"sklearn": ("pickled_model",), "xgboost": ("data", "xgb_model"),
              "lightgbm": ("data", "lgb_model"), "onnx": ("data", "onnx_model")}

#: The file formats (:data:`mlops.flavors.files.FORMATS`) each flavor may hold.
_FORMATS = {"sklearn": {"skops", "pickle", "joblib"}, "xgboost": {"xgboost"},
            "lightgbm": {"lightgbm", "skops", "pickle", "joblib"}, "onnx": {"onnx"}}
#: what each ``serialization_format`` a sklearn flavor declares is, as mlops tells files
#: apart
_SERIALIZED = {"skops": {"skops"}, "pickle": {"pickle", "joblib"},
               "cloudpickle": {"pickle", "joblib"}}

_COLUMN_TYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int64",
                 "boolean": "bool", "string": "string", "binary": "string",
                 "datetime": "datetime"}

_MAX_MLMODEL = 1 << 20          # an MLmodel file is a few KB
_MAX_EXAMPLE = 32 << 20         # the input example is a handful of rows
#: The most columns a signature may declare (beyond, it is not read: no table is that wide)
MAX_COLUMNS = 100_000

PYFUNC_FIX = (
    "A python_function model runs its own Python code when it is loaded (a cloudpickled "
    "PythonModel class or a loader module), and mlops never runs code from a model file. "
    "Save the model in a flavor that is data: for scikit-learn, "
    "mlflow.sklearn.save_model(model, path, serialization_format=\"skops\") (or log_model "
    "with the same argument); for XGBoost or LightGBM, mlflow.xgboost / mlflow.lightgbm; or "
    "export it to ONNX (skl2onnx, onnxmltools) and log it with mlflow.onnx.log_model."
)


@dataclass(frozen=True)
class MlflowModel:
    """What an MLflow model directory holds: the model file to load and what describes it.

    ``input_example`` is a DataFrame (a ``dataframe`` example) or a 2-D array (an
    ``ndarray`` example), or None. ``info`` is what is worth keeping on the version (the
    flavor, the MLflow version that saved it, its ``model_uuid``, the library version).
    """

    root: Path
    file: Path
    label: str  # what messages call it: the directory, or the URI it came from
    flavor: str
    serialization: str | None = None
    signature: Signature | None = None
    input_example: Any = None
    run_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def is_mlflow_model_dir(path: str | os.PathLike[str]) -> bool:
    """Is ``path`` a directory with an ``MLmodel`` file?"""
    p = Path(path)
    return p.is_dir() and (p / MLMODEL).is_file()


def read_mlflow_model(path: str | os.PathLike[str], *, label: str | None = None
                      ) -> MlflowModel:
    """Read an MLflow model directory: which file to load, its signature and input example.
    ``label`` names it in messages (e.g. the ``models:/`` URI it was downloaded from).

    Raises :class:`~mlops.errors.UnsafeModel` for a model that needs its own code (or an
    ``MLmodel`` that links outside its directory),
    :class:`~mlops.errors.UnknownFlavor` for a flavor mlops does not read, and
    :class:`~mlops.errors.FlavorError` for a broken ``MLmodel``.
    """
    root = Path(path)
    where = label or str(root)
    try:
        return _read(root, where)
    except MlopsError:
        raise
    except (RecursionError, MemoryError, AttributeError, TypeError, ValueError,
            OSError) as exc:  # a shape of MLmodel no check foresaw: still the file's fault
        raise FlavorError(f"The MLmodel of {where} is malformed: {type(exc).__name__}: "
                          f"{str(exc)[:200]}.", fix="Save the model again with mlflow.",
                          path=where) from exc


def _read(root: Path, where: str) -> MlflowModel:
    spec = _read_mlmodel(root, where)
    flavors = spec.get("flavors")
    if not isinstance(flavors, dict) or not flavors:
        raise FlavorError(f"The MLmodel of {where} declares no flavors.",
                          fix="Save the model with mlflow.<flavor>.save_model.", path=where)
    flavor = next((f for f in NATIVE_FLAVORS if isinstance(flavors.get(f), dict)), None)
    if flavor is None:
        _refuse_custom_code(where, flavors)
    block: dict[str, Any] = flavors[flavor]
    name = next((block[k] for k in _FILE_KEYS[flavor] if isinstance(block.get(k), str)), None)
    if name is None:
        raise FlavorError(f"The {flavor} flavor in the MLmodel of {where} names no model file "
                          f"({' or '.join(_FILE_KEYS[flavor])}).",
                          fix="Save the model again with mlflow.", path=where)
    file = _inside(root, where, name, "model file")
    if not file.is_file():
        raise FlavorError(f"The MLmodel of {where} names the model file {name!r}, which is missing "
                          "or a directory.", fix="Copy the complete model directory.",
                          path=str(file))
    signature = _signature(where, spec.get("signature"))
    serialization = block.get("serialization_format")
    info = {"flavor": flavor, "mlflow_version": spec.get("mlflow_version"),
            "model_uuid": spec.get("model_uuid"),
            "serialization_format": serialization if isinstance(serialization, str) else None,
            "library_version": next((block[k] for k in block if isinstance(k, str)
                                     and k.endswith("_version")
                                     and isinstance(block[k], str)), None),
            "model_class": block.get("model_class")}
    run_id = spec.get("run_id")
    if run_id is not None and not isinstance(run_id, str | int):
        raise FlavorError(f"The MLmodel of {where} has a run_id that is not text.",
                          fix="Save the model again with mlflow.", path=where)
    return MlflowModel(
        root=root, file=file, label=where, flavor=flavor,
        serialization=serialization if isinstance(serialization, str) else None,
        signature=signature,
        input_example=_input_example(root, where, spec.get("saved_input_example_info"),
                                     signature),
        run_id=str(run_id) if run_id else None,
        info={k: str(v) for k, v in info.items() if isinstance(v, str | int | float)},
    )


def check_declared_format(model: MlflowModel, fmt: str) -> None:
    """The file's format (found from its bytes) must be one its flavor can hold."""
    if fmt not in _FORMATS[model.flavor]:
        raise FlavorError(
            f"The MLmodel of {model.label} declares a {model.flavor} model, but "
            f"{model.file.name} is a {fmt} file.",
            fix="Save the model again with mlflow; do not edit the directory by hand.",
            path=str(model.file))
    declared = _SERIALIZED.get(model.serialization or "") if model.flavor == "sklearn" \
        else None  # mlflow.lightgbm writes one for its native files too
    if declared is not None and fmt not in declared:
        raise FlavorError(
            f"The MLmodel of {model.label} declares serialization_format "
            f"{model.serialization}, but {model.file.name} is a {fmt} file.",
            fix="Save the model again with mlflow; do not edit the directory by hand.",
            path=str(model.file))


def merge_signature(declared: Signature | None, inferred: Signature | None
                    ) -> Signature | None:
    """The declared (MLflow) inputs, with the outputs and classes found by running the
    model on the input example when there is one."""
    if declared is None or inferred is None:
        return declared or inferred
    if declared.positional and len(declared.inputs) == len(inferred.inputs) \
            and not inferred.positional:
        inputs = [ColumnSpec(i.name, d.dtype, d.nullable)
                  for d, i in zip(declared.inputs, inferred.inputs, strict=True)]
        return Signature(inputs, inferred.outputs or declared.outputs, inferred.classes)
    return Signature(declared.inputs, inferred.outputs or declared.outputs,
                     inferred.classes, positional=declared.positional)


# ---------------------------------------------------------------------------- internals
def _read_mlmodel(root: Path, where: str) -> dict[str, Any]:
    mlmodel = root / MLMODEL
    if not mlmodel.is_file():
        raise FlavorError(f"{where} is not an MLflow model directory (no MLmodel file).",
                          fix="Point at the folder that holds MLmodel, e.g. the 'model' folder "
                              "of a run's artifacts.", path=where)
    if not mlmodel.resolve().is_relative_to(root.resolve()):  # a link out of the directory
        raise UnsafeModel(f"The MLmodel file of {where} is a link to a file outside the model "
                          "directory; it was not read.", offending=["MLmodel link"],
                          fix="Copy the model directory with its real files (not links to "
                              "files elsewhere) and register the copy.", path=where)
    if mlmodel.stat().st_size > _MAX_MLMODEL:
        raise FlavorError(f"The MLmodel of {where} is larger than {_MAX_MLMODEL} bytes.",
                          fix="An MLmodel file is a short YAML file; save the model again.",
                          path=str(mlmodel))
    try:
        spec = yaml.load(mlmodel.read_text(encoding="utf-8"), Loader=_MlmodelLoader)
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise FlavorError(f"The MLmodel of {where} is not valid YAML: {exc}.",
                          fix="Save the model again with mlflow.", path=str(mlmodel)) from exc
    if not isinstance(spec, dict):
        raise FlavorError(f"The MLmodel of {where} is not a YAML mapping.",
                          fix="Save the model again with mlflow.", path=str(mlmodel))
    return spec


class _MlmodelLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (``*name``): MLflow never writes them, and a few
    nested ones expand a 1 KB file into gigabytes (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted in an MLmodel file",
                self.peek_event().start_mark)
        return super().compose_node(parent, index)


def _refuse_custom_code(where: str, flavors: dict[str, Any]) -> NoReturn:
    pyfunc = flavors.get("python_function")
    if isinstance(pyfunc, dict):
        if pyfunc.get("python_model"):
            what = (f"a custom PythonModel class (cloudpickled in {pyfunc['python_model']})")
        elif pyfunc.get("loader_module"):
            what = f"the loader module {pyfunc['loader_module']}"
        else:
            what = "custom code"
        code = f" and the code directory {pyfunc['code']}" if pyfunc.get("code") else ""
        raise UnsafeModel(
            f"{where} is an MLflow python_function model: loading it runs {what}{code}.",
            offending=[f"python_function: {what}"], fix=PYFUNC_FIX, path=where)
    raise UnknownFlavor(
        f"The MLmodel of {where} has the flavor(s) {', '.join(sorted(map(str, flavors)))}; mlops "
        f"reads {', '.join(NATIVE_FLAVORS)}.",
        fix="Save the model with mlflow.sklearn (serialization_format=\"skops\"), "
            "mlflow.xgboost, mlflow.lightgbm or mlflow.onnx.", path=where)


def _inside(root: Path, where: str, name: str, what: str) -> Path:
    """``root / name``, refused unless it stays inside ``root`` (symlinks resolved)."""
    if "\x00" in name or len(name) > 1024:
        raise FlavorError(f"The MLmodel of {where} names a {what} that is not a file name: "
                          f"{shown(name)}.", fix="Save the model again with mlflow.",
                          path=where)
    base = root.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(base):
        raise UnsafeModel(f"The MLmodel of {where} names a {what} outside the model "
                          f"directory: {name!r}.", offending=[f"{what} path {name}"],
                          fix="Model directories may only refer to their own files.",
                          path=where)
    return target


def _signature(where: str, block: Any) -> Signature | None:
    """MLflow's ``signature.inputs``/``outputs`` (JSON text) as a :class:`Signature`; None
    when there is none or the inputs are not a table (several tensors, nested types)."""
    if not isinstance(block, dict) or not block.get("inputs"):
        return None
    try:
        inputs = json.loads(block["inputs"])
        outputs = json.loads(block["outputs"]) if block.get("outputs") else []
    except (TypeError, ValueError, RecursionError) as exc:
        raise FlavorError(f"The signature in the MLmodel of {where} is not valid JSON: {exc}.",
                          fix="Log the model again with a signature (or without one).",
                          path=where) from exc
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        return None
    columns = _columns(inputs)
    if columns is None:
        return None
    specs, positional = columns
    out = _columns(outputs)
    out_specs = [ColumnSpec("prediction", out[0][0].dtype)] if out and len(out[0]) == 1 \
        else (out[0] if out else [])
    return Signature(specs, out_specs, positional=positional)


def _columns(specs: list[Any]) -> tuple[list[ColumnSpec], bool] | None:
    """Column specs (named or positional), or one ``[-1, N]`` tensor as N positional
    columns; None for anything that is not a flat table."""
    if len(specs) == 1 and isinstance(specs[0], dict) and specs[0].get("type") == "tensor":
        tensor = specs[0].get("tensor-spec")
        if not isinstance(tensor, dict):
            return None
        shape = tensor.get("shape")
        if not isinstance(shape, list) or len(shape) != 2 or not isinstance(shape[1], int) \
                or not 0 < shape[1] <= MAX_COLUMNS:
            return None
        dtype = _tensor_dtype(str(tensor.get("dtype", "")))
        return [ColumnSpec(f"f{i}", dtype) for i in range(shape[1])], True
    out: list[ColumnSpec] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) \
                or spec["type"] not in _COLUMN_TYPES or i >= MAX_COLUMNS:
            return None
        out.append(ColumnSpec(str(spec.get("name", f"f{i}")), _COLUMN_TYPES[spec["type"]],
                              nullable=spec.get("required") is False))
    positional = bool(out) and all("name" not in s for s in specs)
    return (out, positional) if out else None


def _tensor_dtype(name: str) -> str:
    try:
        kind = np.dtype(name).kind
    except TypeError:
        return "string"
    if kind == "f":
        return "float32" if np.dtype(name) == np.float32 else "float64"
    return {"i": "int64", "u": "int64", "b": "bool"}.get(kind, "string")


def _input_example(root: Path, where: str, info: Any, signature: Signature | None) -> Any:
    """The saved input example as a DataFrame or 2-D array; None when there is none, or it
    is a kind mlops cannot use (JSON objects, sparse matrices, named tensors)."""
    import pandas as pd

    if not isinstance(info, dict) or not isinstance(info.get("artifact_path"), str):
        return None
    file = _inside(root, where, info["artifact_path"], "input example")
    if not file.is_file() or file.stat().st_size > _MAX_EXAMPLE:
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FlavorError(f"The input example {info['artifact_path']} of {where} is not valid "
                          f"JSON: {exc}.",
                          fix="Log the model again with an input example (or without one).",
                          path=str(file)) from exc
    if info.get("params") and isinstance(data, dict):
        data = data.get("inputs")  # an example saved with its inference params
    names = [c.name for c in signature.inputs] if signature and not signature.positional \
        else None
    kind = info.get("type")
    try:
        if kind == "dataframe":
            return _frame(data, names)
        if kind == "ndarray":
            if isinstance(data, dict) and set(data) == {"inputs"}:
                data = data["inputs"]
            arr = np.asarray(data)
            if arr.ndim != 2 or arr.dtype == object:
                return None
            return pd.DataFrame(arr, columns=names) if names and len(names) == arr.shape[1] \
                else arr
    except (ValueError, TypeError, KeyError):
        return None  # an example mlops cannot read is no reason to refuse the model
    return None


def _frame(data: Any, names: list[str] | None) -> pd.DataFrame | None:
    """A ``dataframe`` example in any of the orients MLflow has written."""
    import pandas as pd

    if isinstance(data, dict) and "data" in data:  # "split" (MLflow 2.x and later)
        columns, rows = data.get("columns") or names, data["data"]
    elif isinstance(data, list) and data and isinstance(data[0], dict):  # "records"
        return pd.DataFrame.from_records(data)
    elif isinstance(data, list) and data and isinstance(data[0], list):  # "values"
        columns, rows = names, data
    else:
        return None
    frame = pd.DataFrame(rows)
    if columns is not None and len(columns) == frame.shape[1]:
        frame.columns = pd.Index([str(c) for c in columns])
    return frame
