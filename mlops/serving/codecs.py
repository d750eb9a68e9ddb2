"""Request bodies of the three protocols -> validated columns; predictions -> responses.

Every problem with a request becomes a :class:`~mlops.errors.BadRequest` naming the field
and what was expected, never a 500.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence, Set
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from mlops.errors import BadRequest, UnsupportedMediaType, shown
from mlops.flavors.signature import ColumnSpec
from mlops.serving.binary import RawTensors, tensor_bytes
from mlops.serving.datatypes import v2_datatype
from mlops.serving.tensors import Tensor, read_input

__all__ = [
    "Columns",
    "Schema",
    "decode_mlflow",
    "decode_v1",
    "decode_v2",
    "encode_plain",
    "encode_v2",
]

_FLOAT_DTYPES = {"float64", "float32"}


@dataclass(frozen=True)
class Schema:
    """The input columns a served model expects (from its signature or its estimator)."""

    columns: list[ColumnSpec] | None  # None: unknown, accept any width

    @cached_property
    def names(self) -> list[str] | None:
        return None if self.columns is None else [c.name for c in self.columns]

    @cached_property
    def all_float(self) -> bool:
        """Every input is a float column (the dense-matrix fast paths)."""
        return self.columns is not None and all(c.dtype in _FLOAT_DTYPES
                                                for c in self.columns)


class Columns:
    """A validated request: one 1-D array per column, all of length ``n``; ``dense`` is the
    float64 [n, len(names)] block when every column is numeric (the columns are then views
    of it, made only when asked for)."""

    __slots__ = ("_data", "dense", "n", "names")

    def __init__(self, names: list[str], data: dict[str, np.ndarray] | None, n: int,
                 dense: np.ndarray | None = None) -> None:
        if data is None and dense is None:
            raise ValueError("Columns needs its columns or its dense block")
        self.names = names
        self._data = data
        self.n = n
        self.dense = dense

    @classmethod
    def from_dense(cls, names: list[str], dense: np.ndarray) -> Columns:
        return cls(names, None, dense.shape[0], dense)

    @property
    def data(self) -> dict[str, np.ndarray]:
        if self._data is None:
            dense = self.dense
            assert dense is not None
            self._data = {c: dense[:, j] for j, c in enumerate(self.names)}
        return self._data

    def kind(self) -> tuple[Any, ...]:
        """The column names and dtypes: requests of one kind can share a predict call."""
        if self.dense is not None:
            return ("float64", *self.names)
        return tuple((c, self.data[c].dtype.str) for c in self.names)

    def __repr__(self) -> str:
        return f"Columns(names={self.names!r}, n={self.n}, dense={self.dense is not None})"

    def matrix(self) -> np.ndarray:
        """Rows x columns; float64 when every column is numeric, else object."""
        if self.dense is not None:
            return self.dense
        arrays = [self.data[c] for c in self.names]
        if all(a.dtype.kind in "fiub" for a in arrays):
            return np.column_stack([a.astype(np.float64, copy=False) for a in arrays]) \
                if arrays else np.empty((self.n, 0))
        return np.column_stack([a.astype(object) for a in arrays])

    def block(self) -> np.ndarray | dict[str, list[Any]]:
        """The values as the prediction log takes them: the dense block (rows x names)
        when there is one, else each column as a list."""
        if self.dense is not None:
            return self.dense
        return {c: self.data[c].tolist() for c in self.names}

    def value(self, column: str, row: int = 0) -> Any:
        if self.dense is not None:
            if column not in self.names or row >= self.n:
                return None
            return self.dense[row, self.names.index(column)].item()
        arr = self.data.get(column)
        return None if arr is None or row >= len(arr) else arr[row].item() \
            if hasattr(arr[row], "item") else arr[row]


# ---------------------------------------------------------------------- column coercion
def _coerce(name: str, values: Sequence[Any] | np.ndarray, spec: ColumnSpec | None) -> np.ndarray:
    """One column's values to the dtype its spec wants, or a BadRequest naming the problem."""
    arr = values if isinstance(values, np.ndarray) else _column_array(name, values)
    dtype = spec.dtype if spec is not None else None
    nullable = spec.nullable if spec is not None else False
    if dtype in {"float64", "float32", "int64"}:
        if arr.dtype.kind == "b":
            raise BadRequest(f"Input {name!r} expects numbers ({dtype}), got booleans.",
                             fix=f"Send numbers for {name!r}.")
        if arr.dtype.kind in "US":
            bad = next(((i, v) for i, v in enumerate(values) if isinstance(v, str)),
                       (0, str(arr.flat[0])))
            raise BadRequest(f"Input {name!r} expects numbers ({dtype}), got text "
                             f"{shown(bad[1])} in row {bad[0]}.",
                             fix=f"Send numbers for {name!r}.")
        if arr.dtype.kind == "O":
            arr = _numeric_object(name, arr, dtype)
        out = arr.astype(np.float64, copy=False)
        infinite = np.isinf(out)
        if infinite.any():
            rows = np.flatnonzero(infinite)[:5].tolist()
            raise BadRequest(f"Input {name!r} has infinite values in rows {rows}.",
                             fix=f"Send finite numbers for {name!r}.")
        missing = np.isnan(out)
        if missing.any():
            if not nullable:
                rows = np.flatnonzero(missing)[:5].tolist()
                raise BadRequest(
                    f"Input {name!r} has missing values (null/NaN) in rows {rows}; the model "
                    "was registered without missing values in this column.",
                    fix=f"Send a number for {name!r} in every row.")
            return out
        if dtype == "int64":
            if not np.all(np.mod(out, 1) == 0):
                bad = out[np.mod(out, 1) != 0][0]
                raise BadRequest(f"Input {name!r} expects integers, got {bad}.",
                                 fix=f"Send whole numbers for {name!r}.")
            return out.astype(np.int64)
        return out.astype(np.float32) if dtype == "float32" else out
    if dtype == "bool":
        if arr.dtype.kind == "b":
            return arr
        if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
            return arr.astype(bool)
        raise BadRequest(f"Input {name!r} expects booleans (true/false).",
                         fix=f"Send true or false for {name!r}.")
    if dtype in {"string", "category"}:
        if arr.dtype.kind in "US":
            return arr.astype(object)
        if arr.dtype.kind == "O":
            if not nullable and any(v is None for v in arr):
                raise BadRequest(f"Input {name!r} has missing values (null).",
                                 fix=f"Send a text value for {name!r} in every row.")
            if all(v is None or isinstance(v, str) for v in arr):
                return arr
        raise BadRequest(f"Input {name!r} expects text, got {arr.dtype.name} values.",
                         fix=f"Send strings for {name!r}.")
    # unknown spec: keep numbers numeric, text as object
    if arr.dtype.kind == "O":
        try:
            return _numeric_object(name, arr, "float64")
        except BadRequest:
            return arr
    return arr.astype(object) if arr.dtype.kind in "US" else arr


def _column_array(name: str, values: Sequence[Any]) -> np.ndarray:
    """A column's values as an array: as objects when some are null, or booleans among
    other values (numpy would read ``[true, 0.5]`` as ``[1.0, 0.5]``), so that each value
    is checked; else as numpy reads them."""
    kinds = set(map(type, values))
    if type(None) in kinds or (bool in kinds and len(kinds) > 1):
        return np.asarray(values, dtype=object)
    return _asarray(name, values)


def _asarray(name: str, values: Sequence[Any]) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"Input {name!r} has values of mixed shapes.",
                         fix="Send one scalar per row and column.") from exc
    if arr.ndim != 1:
        raise BadRequest(f"Input {name!r} must hold one scalar per row, got shape "
                         f"{list(arr.shape)}.", fix="Send a flat list per column.")
    return arr


def _numeric_object(name: str, arr: np.ndarray, dtype: str) -> np.ndarray:
    out = np.empty(len(arr), dtype=np.float64)
    for i, v in enumerate(arr):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, bool) or not isinstance(v, int | float):
            raise BadRequest(f"Input {name!r} expects numbers ({dtype}), got {shown(v)} in "
                             f"row {i}.",
                             fix=f"Send numbers for {name!r}.")
        else:
            out[i] = v
    return out


def _from_matrix(rows: Any, schema: Schema, what: str) -> Columns:
    """A [N, F] table (list of lists or array) in schema column order."""
    quick = _dense_rows(rows, schema)
    if quick is not None:
        return quick
    names = schema.names
    try:
        arr = np.asarray(rows, dtype=object)
    except ValueError as exc:
        raise BadRequest(f"{what} rows have different lengths.",
                         fix="Send the same number of values in every row.") from exc
    if arr.ndim == 1 and len(arr) and isinstance(arr[0], list | tuple):
        raise BadRequest(f"{what} rows have different lengths "
                         f"{sorted({len(r) for r in arr if isinstance(r, list | tuple)})}.",
                         fix="Send the same number of values in every row.")
    if arr.ndim == 1 and names is not None and len(names) == len(arr) and len(arr):
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise BadRequest(f"{what} must be a list of rows (2-D), got shape {list(arr.shape)}.",
                         fix="Send [[v1, v2, ...], ...], one list per row.")
    n, width = arr.shape
    if n == 0:
        raise BadRequest(f"{what} is empty.", fix="Send at least one row.")
    if names is None:
        names = [f"f{i}" for i in range(width)]
    elif width != len(names):
        raise BadRequest(f"{what} rows have {width} values; the model expects {len(names)}: "
                         f"{', '.join(names)}.", fix="Send the values in this column order.")
    specs = schema.columns or [None] * width  # type: ignore[list-item]
    data = {c: _coerce(c, _column_values(arr[:, j]), specs[j]) for j, c in enumerate(names)}
    return Columns(list(names), data, n)


def _dense_rows(rows: Any, schema: Schema, order: list[str] | None = None
                ) -> Columns | None:
    """Rows of plain numbers for a model whose inputs are all float columns (in schema
    order, or in ``order``, a permutation of it): the [N, F] block in one conversion.
    Anything unusual (None, booleans, text, ragged rows, a non-finite value, unknown or
    missing columns) takes the checked path, which names the problem."""
    names = schema.names
    if names is None or not schema.all_float or type(rows) is not list or not rows \
            or (order is not None and (len(order) != len(names)
                                       or set(order) != set(names))) \
            or not all(type(r) is list and len(r) == len(names) for r in rows) \
            or not set(map(type, chain.from_iterable(rows))) <= _NUMBERS:
        return None
    try:
        dense = np.array(rows, dtype=np.float64)
    except OverflowError:
        return None
    if not np.isfinite(dense).all():
        return None
    if order is not None and order != names:
        dense = np.ascontiguousarray(dense[:, [order.index(c) for c in names]])
    return Columns.from_dense(list(names), dense)


def _column_values(col: np.ndarray) -> np.ndarray | list[Any]:
    values = col.tolist()
    if any(v is None for v in values):
        return np.asarray(values, dtype=object)
    return values


def _from_records(records: Sequence[Any], schema: Schema, what: str) -> Columns:
    if not records:
        raise BadRequest(f"{what} is empty.", fix="Send at least one record.")
    if not all(isinstance(r, dict) for r in records):
        raise BadRequest(f"{what} must be a list of objects ({{column: value}}).",
                         fix="Send [{\"col\": value, ...}, ...].")
    names = schema.names or list(records[0])
    known = set(names)
    for i, rec in enumerate(records):
        missing = [c for c in names if c not in rec]
        if missing:
            raise BadRequest(f"Record {i} is missing input(s) {missing}.",
                             fix=f"Send every column: {', '.join(names)}.")
        extra = [c for c in rec if c not in known]
        if extra and schema.names is not None:
            raise BadRequest(f"Record {i} has unknown input(s) {extra}.",
                             fix=f"The model takes {', '.join(names)}.")
    specs = {c.name: c for c in schema.columns or []}
    data = {c: _coerce(c, [r[c] for r in records], specs.get(c)) for c in names}
    return Columns(list(names), data, len(records))


def _from_column_lists(columns: dict[str, Any], schema: Schema, what: str) -> Columns:
    names = schema.names or list(columns)
    missing = [c for c in names if c not in columns]
    if missing:
        raise BadRequest(f"{what} is missing input(s) {missing}.",
                         fix=f"Send every column: {', '.join(names)}.")
    extra = [c for c in columns if c not in set(names)]
    if extra:
        raise BadRequest(f"{what} has unknown input(s) {extra}.",
                         fix=f"The model takes {', '.join(names)}.")
    specs = {c.name: c for c in schema.columns or []}
    data = {c: _coerce(c, columns[c], specs.get(c)) for c in names}
    lengths = {len(a) for a in data.values()}
    if len(lengths) != 1:
        raise BadRequest(f"{what} columns have different lengths {sorted(lengths)}.",
                         fix="Send the same number of values for every column.")
    n = lengths.pop()
    if n == 0:
        raise BadRequest(f"{what} is empty.", fix="Send at least one row.")
    return Columns(list(names), data, n)


# ---------------------------------------------------------------------- protocols
def decode_v2(body: Any, schema: Schema, raw: RawTensors | None = None
              ) -> tuple[Columns, list[str] | None]:
    """Open Inference Protocol request -> columns and the requested output names.

    ``raw`` is the bytes after the JSON header when the body uses the binary tensor
    extension; inputs with ``binary_data_size`` read from it, in order, and every byte must
    belong to one."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) \
            or not body["inputs"]:
        raise BadRequest("The request needs a non-empty 'inputs' list.",
                         fix='Send {"inputs": [{"name", "shape", "datatype", "data"}]}.')
    outputs = body.get("outputs")
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
            raise BadRequest("'outputs' must be a list of objects with a 'name'.",
                             fix='Send "outputs": [{"name": "predict"}, '
                                 '{"name": "predict_proba"}], or leave it out.')
        requested = [o["name"] for o in outputs] or None
    if raw is None and len(body["inputs"]) > 1:
        quick = _json_columns(body["inputs"], schema)
        if quick is not None:
            return quick, requested
    tensors = [read_input(i, t, raw) for i, t in enumerate(body["inputs"])]
    if raw is not None:
        raw.finish()
    if len(tensors) == 1:
        tensor = tensors[0]
        arr = tensor.array()
        fast = _dense_fast_path(arr, schema)
        if fast is not None:
            return fast, requested
        if arr.ndim == 2 and (schema.names is None or tensor.name not in schema.names
                              or len(schema.names) != 1):
            return _from_matrix(arr, schema, f"Input {tensor.name!r}"), requested
    by_name = {t.name: t for t in tensors}
    if len(by_name) != len(tensors):
        twice = sorted({t.name for t in tensors if sum(u.name == t.name for u in tensors) > 1})
        raise BadRequest(f"The request names input(s) {twice} more than once.",
                         fix="Send each column once.")
    fast = _columns_fast_path(tensors, by_name, schema)
    if fast is not None:
        return fast, requested
    columns: dict[str, Any] = {}
    for tensor in tensors:
        arr = tensor.array()
        if arr.ndim == 2:
            if arr.shape[1] != 1:
                raise BadRequest(
                    f"Input {tensor.name!r} has shape {tensor.shape}; with several inputs each "
                    "must be one column ([N] or [N, 1]).",
                    fix="Send one [N, F] tensor, or one [N] tensor per column.")
            arr = arr[:, 0]
        columns[tensor.name] = arr
    return _from_column_lists(columns, schema, "The request"), requested


_QUICK_TYPES = frozenset({"FP64", "FP32"})
_NUMBERS = frozenset({int, float})


def _json_columns(inputs: list[Any], schema: Schema) -> Columns | None:
    """The common per-column request, checked in bulk: one flat FP64/FP32 JSON tensor per
    float column, all [N] (or [N, 1]), numbers only. The matrix is built in one conversion;
    anything else (None) goes through the per-input checks, which name the problem."""
    names = schema.names
    if names is None or not schema.all_float or len(inputs) != len(names):
        return None
    try:
        if any(type(t) is not dict or "parameters" in t for t in inputs):
            return None
        shapes = [t["shape"] for t in inputs]
        first = shapes[0]
        if type(first) is not list or not 1 <= len(first) <= 2 or first[0] < 1 \
                or (len(first) == 2 and first[1] != 1) \
                or not all(type(shape) is list and shape == first for shape in shapes) \
                or set(map(type, chain.from_iterable(shapes))) != {int}:
            return None
        datatypes = {t["datatype"] for t in inputs}
        if not datatypes <= _QUICK_TYPES:
            return None
        rows = first[0]
        by_name = {t["name"]: t["data"] for t in inputs}
        if len(by_name) != len(names):
            return None
        data = [by_name[c] for c in names]
    except (KeyError, TypeError):
        return None
    if not all(type(d) is list and len(d) == rows for d in data) \
            or not set(map(type, chain.from_iterable(data))) <= _NUMBERS:
        return None
    try:
        dense = np.array(data, dtype=np.float64)
    except OverflowError:
        return None
    limit = np.finfo(np.float32 if "FP32" in datatypes else np.float64).max
    if not np.abs(dense).max() <= limit:  # NaN (it propagates), infinities, FP32's range
        return None  # (NaN and infinities from gRPC's typed contents): the checks name it
    return Columns.from_dense(list(names), np.ascontiguousarray(dense.T))


def _dense_fast_path(arr: np.ndarray, schema: Schema) -> Columns | None:
    """A numeric [N, F] tensor for a model whose inputs are all float columns: one
    conversion, no per-column work. Anything unusual takes the checked slow path."""
    if arr.ndim != 2 or arr.dtype.kind not in "fiu" or arr.shape[0] == 0 \
            or not schema.all_float or len(schema.columns or ()) != arr.shape[1]:
        return None
    dense = arr.astype(np.float64, copy=False)
    if not np.isfinite(dense).all():
        return None  # the checked path names the column and rows
    return Columns.from_dense(list(schema.names or ()), dense)


def _columns_fast_path(tensors: list[Tensor], by_name: dict[str, Tensor],
                       schema: Schema) -> Columns | None:
    """One numeric tensor per column, every column a float one: the [N, C] matrix in one
    conversion of all the columns together. Anything unusual takes the checked path."""
    names = schema.names
    if names is None or not schema.all_float or len(names) != len(tensors) \
            or by_name.keys() != set(names):
        return None
    rows = tensors[0].shape[0]
    if rows == 0 or not all(t.plain_column and t.shape[0] == rows for t in tensors):
        return None
    dense = np.ascontiguousarray(
        np.array([by_name[c].values for c in names], dtype=np.float64).reshape(len(names), rows).T)
    if not np.isfinite(dense).all():
        return None  # the checked path names the column and rows
    return Columns.from_dense(list(names), dense)


def decode_v1(body: Any, schema: Schema) -> Columns:
    """KServe V1 ``{"instances": [...]}`` (lists or records) or ``{"inputs": [...]}``."""
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.",
                         fix='Send {"instances": [[...], ...]}.')
    rows = body.get("instances", body.get("inputs"))
    if not isinstance(rows, list):
        raise BadRequest("The request needs an 'instances' list.",
                         fix='Send {"instances": [[v1, v2, ...], ...]} or a list of records.')
    if rows and isinstance(rows[0], dict):
        return _from_records(rows, schema, "instances")
    return _from_matrix(rows, schema, "instances")


def decode_mlflow(body: bytes, content_type: str, schema: Schema,
                  loads: Any) -> Columns:
    """MLflow scoring server bodies: JSON (dataframe_split, dataframe_records, instances,
    inputs) or text/csv."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "text/csv":
        return _from_csv(body, schema)
    if ctype != "application/json":
        raise UnsupportedMediaType(
            f"Content type {content_type or '(none)'!r} is not accepted.",
            fix="Send application/json or text/csv, as MLflow's scoring server does.")
    doc = loads(body)
    if not isinstance(doc, dict):
        raise BadRequest("The JSON body must be an object.",
                         fix="Use one of dataframe_split, dataframe_records, instances, inputs.")
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in doc]
    if len(keys) != 1:
        raise BadRequest(
            f"The body must have exactly one of dataframe_split, dataframe_records, instances, "
            f"inputs; it has {keys or 'none'}.", fix="Send one of them.")
    key = keys[0]
    value = doc[key]
    if key == "dataframe_split":
        if not isinstance(value, dict) or "data" not in value:
            raise BadRequest("dataframe_split needs 'columns' and 'data'.",
                             fix='Send {"dataframe_split": {"columns": [...], "data": [[...]]}}.')
        cols = value.get("columns")
        data = value["data"]
        if cols is not None and (not isinstance(cols, list)
                                 or not all(isinstance(c, str) for c in cols)):
            raise BadRequest("dataframe_split.columns must be a list of column names.",
                             fix='Send "columns": ["a", "b", ...].')
        if cols is not None:
            _refuse_duplicates(cols, "dataframe_split.columns")
        if cols is None:
            return _from_matrix(data, schema, "dataframe_split.data")
        quick = _dense_rows(data, schema, cols)
        if quick is not None:
            return quick
        if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
            raise BadRequest("dataframe_split.data must be a list of rows.",
                             fix="Send data as [[v1, v2, ...], ...].")
        if any(len(r) != len(cols) for r in data):
            raise BadRequest(f"dataframe_split rows must have {len(cols)} values (the columns).",
                             fix="Send one value per column in every row.")
        return _from_column_lists({c: [r[j] for r in data] for j, c in enumerate(cols)}, schema,
                                  "dataframe_split")
    if key == "dataframe_records" or (isinstance(value, list) and value
                                      and isinstance(value[0], dict)):
        if not isinstance(value, list):
            raise BadRequest(f"{key} must be a list of records.", fix="Send [{...}, ...].")
        return _from_records(value, schema, key)
    if isinstance(value, dict):
        return _from_column_lists({k: v if isinstance(v, list) else [v]
                                   for k, v in value.items()}, schema, key)
    return _from_matrix(value, schema, key)


def _from_csv(body: bytes, schema: Schema) -> Columns:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("The CSV body is not UTF-8.", fix="Encode the CSV as UTF-8.") from exc
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
    except csv.Error as exc:
        raise BadRequest(f"The CSV body cannot be read: {exc}.",
                         fix="Send RFC 4180 CSV: quote fields that hold commas, quotes or "
                             "line breaks, and keep each field under 128 KB.") from exc
    if len(rows) < 2:
        raise BadRequest("The CSV needs a header row and at least one data row.",
                         fix="Send 'col1,col2\\n1,2\\n'.")
    header, data = rows[0], rows[1:]
    _refuse_duplicates(header, "The CSV header")
    if any(len(r) != len(header) for r in data):
        raise BadRequest("CSV rows have a different number of fields than the header.",
                         fix="Send one value per header column in every row.")
    specs = {c.name: c for c in schema.columns or []}
    columns: dict[str, list[Any]] = {}
    for j, col in enumerate(header):
        spec = specs.get(col)
        raw = [r[j] for r in data]
        if spec is not None and spec.dtype in {"string", "category"}:
            columns[col] = raw
        else:
            columns[col] = [_csv_number(col, v) for v in raw]
    return _from_column_lists(columns, schema, "The CSV")


def _refuse_duplicates(names: list[str], what: str) -> None:
    if len(set(names)) != len(names):
        twice = sorted(c for c, k in Counter(names).items() if k > 1)
        raise BadRequest(f"{what} names {', '.join(shown(c) for c in twice[:5])} more than "
                         "once.", fix="Name each column once.")


def _csv_number(col: str, value: str) -> Any:
    """A CSV field as a number when it is written as one in ASCII (no ``1_000``, no
    non-Latin digits, which Python's ``int`` would take), as a boolean for true/false,
    else as text (a numeric column then refuses it)."""
    if value == "":
        return None
    if not value.isascii() or "_" in value:
        return value
    try:
        number = int(value)
        return number if abs(number) < 2**63 else float(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            if value.lower() in {"true", "false"}:
                return value.lower() == "true"
            return value


# ---------------------------------------------------------------------- encoding
def encode_plain(values: np.ndarray) -> list[Any]:
    """Predictions as a JSON list (KServe V1 and MLflow bodies); objects as text."""
    return values.tolist() if values.dtype.kind != "O" else [str(v) for v in values]


def encode_v2(values: np.ndarray, proba: Any, requested: list[str] | None, model: str,
              binary: Set[str] = frozenset()) -> tuple[list[dict[str, Any]], list[bytes]]:
    """V2 output tensors: ``predict`` [N] and, when asked for, ``predict_proba`` [N, C];
    the outputs named in ``binary`` carry ``binary_data_size`` instead of ``data``, and
    their bytes come second, in order. ``model`` names the model in errors."""
    out: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name in requested or ["predict"]:
        if name == "predict":
            arr, datatype = values, v2_datatype(values)
        elif name == "predict_proba":
            if proba is None:
                raise BadRequest(f"Model {model} has no predict_proba.",
                                 fix="Request the 'predict' output.")
            arr, datatype = np.asarray(proba, dtype=np.float64), "FP64"
        else:
            raise BadRequest(f"Unknown output {name!r}.",
                             fix="Request 'predict' and/or 'predict_proba'.")
        tensor: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if name in binary:
            blob = tensor_bytes(arr, datatype)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = arr.ravel().tolist() if arr.dtype.kind != "O" \
                else [str(v) for v in arr.ravel()]
        out.append(tensor)
    return out, blobs
