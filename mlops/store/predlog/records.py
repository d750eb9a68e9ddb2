"""The records the log holds, and their two encodings: Arrow (files) and compact rows (spool).

A :class:`PredictionRecord` is one predicted row of one request; a :class:`FeedbackRecord`
the observed label of one. The writer's buffer holds each as a plain tuple of its fields in
declaration order (a *row*: :data:`PREDICTION_FIELDS`, :data:`FEEDBACK_FIELDS`); the Arrow
columns are the rows transposed. The spool keeps the same rows as JSON, non-finite floats of
the scalar float fields as strings so that they come back as they were.

The gateway hands over a whole request instead (a *request*: :data:`REQUEST_FIELDS`, its
inputs and outputs still arrays), so that the request path does no work per row: the spool
keeps it as one JSON array (:func:`request_payload`, numpy arrays encoded in one call), and
:func:`requests_table` makes its rows when they are written, in bulk and off the request path.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
import orjson
import pyarrow as pa

from mlops.store.predlog.layout import (
    FEEDBACK_FILE_SCHEMA,
    PREDICTION_FILE_SCHEMA,
)

__all__ = [
    "FEEDBACK_FIELDS",
    "PREDICTION_FIELDS",
    "REQUEST_FIELDS",
    "FeedbackRecord",
    "PredictionRecord",
    "Record",
    "Request",
    "Row",
    "convert",
    "feedback_rows_table",
    "feedback_table",
    "from_row",
    "prediction_rows_table",
    "prediction_table",
    "request_from_payload",
    "request_payload",
    "requests_table",
    "row_of",
    "spool_rows",
]

_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()
_F64 = pa.float64()


@dataclass(slots=True)
class PredictionRecord:
    """One predicted row of one request."""

    request_id: str
    ts: float
    model: str
    version: str
    environment: str
    route: str
    unit_hash: str | None
    row: int
    inputs: str
    prediction: str
    prediction_num: float | None
    proba: list[float] | None
    latency_ms: float
    status: int
    propensity: float | None = None  # probability that the routing sent it to this version
    caller: str | None = None  # who asked: the token's identity, or the client address
    cpu_ms: float | None = None  # CPU time the model spent on this row (its share of the batch)


@dataclass(slots=True)
class FeedbackRecord:
    """The observed label of one predicted row."""

    request_id: str
    row: int
    model: str
    actual: str
    actual_num: float | None
    ts: float


Record = TypeVar("Record", PredictionRecord, FeedbackRecord)
#: a record's field values in declaration order (see the module docstring)
Row = tuple[Any, ...]
#: one request's rows as the gateway hands them over (:data:`REQUEST_FIELDS`)
Request = tuple[Any, ...]

#: A request's fields. ``names`` are the input columns; ``inputs`` is either the dense block
#: (rows x names, an array or a list of row lists) or a mapping of each name to its column
#: as a list; ``values`` the predicted values (one per row) and ``proba`` their class
#: probabilities (rows x classes) or None; ``cpu_ms`` the model's CPU per row. The other
#: fields are a :class:`PredictionRecord`'s, the same for every row of the request.
REQUEST_FIELDS = ("request_id", "ts", "model", "version", "environment", "route",
                  "unit_hash", "names", "inputs", "values", "proba", "latency_ms", "status",
                  "propensity", "caller", "cpu_ms")

PREDICTION_FIELDS = tuple(f.name for f in fields(PredictionRecord))
FEEDBACK_FIELDS = tuple(f.name for f in fields(FeedbackRecord))
_PRED_FLOATS = tuple(PREDICTION_FIELDS.index(n) for n in ("ts", "prediction_num",
                                                          "latency_ms", "propensity", "cpu_ms"))
_FB_FLOATS = tuple(FEEDBACK_FIELDS.index(n) for n in ("actual_num", "ts"))


# ---------------------------------------------------------------------------- rows


_PRED_GET = operator.attrgetter(*PREDICTION_FIELDS)
_FB_GET = operator.attrgetter(*FEEDBACK_FIELDS)


def row_of(record: PredictionRecord | FeedbackRecord) -> Row:
    """The record as a row: its field values in declaration order."""
    return _PRED_GET(record) if isinstance(record, PredictionRecord) else _FB_GET(record)


def _spool_row(values: Sequence[Any], floats: tuple[int, ...]) -> Sequence[Any]:
    for i in floats:
        v = values[i]
        if isinstance(v, float) and not math.isfinite(v):
            out = list(values)
            for j in floats:
                if isinstance(out[j], float) and not math.isfinite(out[j]):
                    out[j] = repr(out[j])
            return out
    return values


def spool_rows(rows: Sequence[Row], feedback: bool) -> Sequence[Sequence[Any]]:
    """Rows as the spool encodes them: non-finite floats as the strings ``'nan'``,
    ``'inf'``, ``'-inf'`` (JSON has no such numbers); the rows themselves when none has one."""
    floats = _FB_FLOATS if feedback else _PRED_FLOATS
    for row in rows:
        for i in floats:
            v = row[i]
            if isinstance(v, float) and not math.isfinite(v):
                return [_spool_row(r, floats) for r in rows]
    return rows


def from_row(cls: type[Record], values: Sequence[Any]) -> Record:
    """A record back from a spooled row (see :func:`spool_rows`)."""
    floats = _PRED_FLOATS if cls is PredictionRecord else _FB_FLOATS
    items = list(values)
    for i in floats:
        if i < len(items) and items[i] in ("nan", "inf", "-inf"):
            items[i] = float(items[i])
    return cls(*items)


# ---------------------------------------------------------------------------- requests

_R_INPUTS, _R_VALUES, _R_PROBA = (REQUEST_FIELDS.index(n) for n in ("inputs", "values", "proba"))
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: what counts as a number for ``prediction_num`` (numpy's scalars too: an object array of
#: them is written the same from memory and from the spool)
_NUMBERS = (int, float, np.number, np.bool_)


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def _wide(value: Any) -> Any:
    """Floats narrower than float64 widened, as ``tolist()`` gives them (orjson would
    write float32 at its own shortest, another value)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype.itemsize < 8:
        return value.astype(np.float64)
    return value


def _nonfinite(value: Any, path: list[int], out: list[list[Any]]) -> Any:
    """``value`` with its non-finite floats as nulls, each recorded in ``out`` as its index
    path and its repr."""
    if isinstance(value, float) and not math.isfinite(value):
        out.append([*path, repr(value)])
        return None
    if isinstance(value, list):
        return [_nonfinite(v, [*path, i], out) for i, v in enumerate(value)]
    return value


def request_payload(request: Request) -> bytes:
    """The request as the spool keeps it: one JSON array of its fields. Arrays orjson
    encodes natively (numeric, C-ordered) go in one call. Predictions that JSON cannot hold
    (NaN, infinities) travel beside the values (``{"values": [...], "nonfinite": [[index
    path..., repr], ...]}`` in place of the list) and come back as they were; non-finite
    inputs come back as nulls (as a row's inputs are logged anyway), probabilities as NaN.
    Raises ``TypeError``/``orjson.JSONEncodeError`` for values JSON cannot hold."""
    values, proba = _wide(request[_R_VALUES]), _wide(request[_R_PROBA])
    if not isinstance(values, np.ndarray) or values.dtype.kind == "O" or \
            (values.dtype.kind == "f" and not np.isfinite(values).all()):
        marks: list[list[Any]] = []
        plain = _nonfinite(_plain(values), [], marks)
        values = {"values": plain, "nonfinite": marks} if marks else plain
    if values is not request[_R_VALUES] or proba is not request[_R_PROBA]:
        fields = list(request)
        fields[_R_VALUES], fields[_R_PROBA] = values, proba
        request = tuple(fields)
    try:
        return orjson.dumps(request, option=_NUMPY)
    except orjson.JSONEncodeError:  # str arrays, or not C-ordered: as lists
        fields = list(request)
        for i in (_R_INPUTS, _R_VALUES, _R_PROBA):
            fields[i] = _plain(fields[i])
        return orjson.dumps(fields, option=_NUMPY)


def request_from_payload(doc: Any) -> Request:
    """A request back from its spooled JSON array (:func:`request_payload`); raises
    ``ValueError`` for one that no writer makes."""
    if not isinstance(doc, list) or len(doc) != len(REQUEST_FIELDS):
        raise ValueError(f"a spooled request has {len(REQUEST_FIELDS)} fields")
    values = doc[_R_VALUES]
    if isinstance(values, dict):
        values = doc[_R_VALUES] = _with_nonfinite(values)
    if not isinstance(values, list):
        raise ValueError("a spooled request's predictions are a list")
    return tuple(doc)


def _with_nonfinite(doc: dict[str, Any]) -> list[Any]:
    values, marks = doc.get("values"), doc.get("nonfinite")
    if not isinstance(values, list) or not isinstance(marks, list):
        raise ValueError("a spooled request's marked predictions are malformed")
    for mark in marks:
        if not isinstance(mark, list) or len(mark) < 2 or \
                mark[-1] not in ("nan", "inf", "-inf"):
            raise ValueError("a spooled request's non-finite mark is malformed")
        *path, text = mark
        where: Any = values
        try:
            for i in path[:-1]:
                where = where[i]
            if where[path[-1]] is not None:
                raise ValueError("a non-finite mark points at a value")
            where[path[-1]] = float(text)
        except (IndexError, TypeError, KeyError) as exc:
            raise ValueError("a spooled request's non-finite mark points nowhere") from exc
    return values


def requests_table(requests: Sequence[Request]) -> pa.Table:
    """The requests' rows as a table of
    :data:`~mlops.store.predlog.layout.PREDICTION_FILE_SCHEMA` (what logging each row as a
    record writes), built column by column: per row only its texts, no tuple or list that
    the garbage collector would have to walk. Raises ``ValueError``/``TypeError`` (or
    Arrow's errors) for a malformed request."""
    n_rows: list[int] = []
    ids, ts, envs, routes, units, latencies, statuses, propensities, callers, cpus = \
        [], [], [], [], [], [], [], [], [], []
    inputs: list[str] = []
    texts: list[str] = []
    numbers: list[float | None] = []
    probas: list[Any] = []
    dumps = orjson.dumps
    for (request_id, t, _model, _version, environment, route, unit_hash, names, block, values,
         proba, latency_ms, status, propensity, caller, cpu_ms) in requests:
        values = _plain(values)
        n = len(values)
        rows_in = _input_texts(names, block, n)
        if len(rows_in) != n or (proba is not None and len(proba) != n):
            raise ValueError(f"{len(rows_in)} input rows for {n} predictions")
        inputs += rows_in
        texts += [dumps(v, option=_NUMPY).decode() for v in values]
        numbers += [float(v) if isinstance(v, _NUMBERS) else None for v in values]
        probas.append(proba)
        n_rows.append(n)
        ids.append(request_id)
        ts.append(t)
        envs.append(environment)
        routes.append(route)
        units.append(unit_hash)
        latencies.append(latency_ms)
        statuses.append(status)
        propensities.append(propensity)
        callers.append(caller)
        cpus.append(cpu_ms)
    counts = np.asarray(n_rows, dtype=np.int64)
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    each = None if bool((counts == 1).all()) else \
        pa.array(np.repeat(np.arange(len(requests)), counts))  # each row's request

    def per_request(values: Sequence[Any] | pa.Array, kind: pa.DataType) -> pa.Array:
        array = values if isinstance(values, pa.Array) else pa.array(values, kind)
        return array if each is None else array.take(each)

    arrays = [
        per_request(ids, _STR),
        per_request(_ts_array(ts), _TS),
        per_request(envs, _STR),
        per_request(routes, _STR),
        per_request(units, _STR),
        pa.array(np.arange(total) - np.repeat(starts, counts), pa.int64()),
        pa.array(inputs, _STR),
        pa.array(texts, _STR),
        pa.array(numbers, _F64),
        _proba_array(probas, counts),
        per_request(latencies, _F64),
        per_request(statuses, pa.int32()),
        per_request(propensities, _F64),
        per_request(callers, _STR),
        per_request(cpus, _F64),
    ]
    return pa.Table.from_arrays(arrays, schema=PREDICTION_FILE_SCHEMA)


def _proba_array(probas: list[Any], counts: np.ndarray) -> pa.Array:
    """Each request's probabilities (rows x classes, or None) as one list column."""
    blocks, lengths, missing = [], [], []
    for proba, n in zip(probas, counts.tolist(), strict=True):
        if proba is None:
            lengths += [0] * n
            missing += [True] * n
            continue
        block = np.asarray(proba, dtype=np.float64)
        if block.ndim != 2 or block.shape[0] != n:
            raise ValueError(f"probabilities of shape {block.shape} for {n} rows")
        blocks.append(block.ravel())
        lengths += [block.shape[1]] * n
        missing += [False] * n
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(blocks) if blocks else np.empty(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, _F64),
                                    type=pa.list_(_F64),
                                    mask=pa.array(missing, pa.bool_()) if any(missing) else None)


def _input_texts(names: Sequence[str], inputs: Any, n: int) -> list[str]:
    """Each of the ``n`` input rows as the JSON object of its columns."""
    if not names:
        return ["{}"] * n
    rows = zip(*(_plain(inputs[c]) for c in names), strict=True) if isinstance(inputs, dict) \
        else _plain(inputs)
    dumps = orjson.dumps
    return [dumps(dict(zip(names, row, strict=True)), option=_NUMPY).decode() for row in rows]


# ---------------------------------------------------------------------------- Arrow


def _ts_array(secs: Sequence[Any]) -> pa.Array:
    values = np.fromiter(secs, dtype=np.float64, count=len(secs))
    return pa.array(np.rint(values * 1e6).astype(np.int64), type=_TS)


_P = {name: i for i, name in enumerate(PREDICTION_FIELDS)}
_F = {name: i for i, name in enumerate(FEEDBACK_FIELDS)}


def prediction_rows_table(rows: Sequence[Row]) -> pa.Table:
    """Prediction rows as a table of
    :data:`~mlops.store.predlog.layout.PREDICTION_FILE_SCHEMA` (the rows transposed: one
    tuple per column; the model and version are the partition's, not columns)."""
    c = list(zip(*rows, strict=True))
    arrays = [
        pa.array(c[_P["request_id"]], _STR),
        _ts_array(c[_P["ts"]]),
        pa.array(c[_P["environment"]], _STR),
        pa.array(c[_P["route"]], _STR),
        pa.array(c[_P["unit_hash"]], _STR),
        pa.array(c[_P["row"]], pa.int64()),
        pa.array(c[_P["inputs"]], _STR),
        pa.array(c[_P["prediction"]], _STR),
        pa.array(c[_P["prediction_num"]], _F64),
        pa.array(c[_P["proba"]], pa.list_(_F64)),
        pa.array(c[_P["latency_ms"]], _F64),
        pa.array(c[_P["status"]], pa.int32()),
        pa.array(c[_P["propensity"]], _F64),
        pa.array(c[_P["caller"]], _STR),
        pa.array(c[_P["cpu_ms"]], _F64),
    ]
    return pa.Table.from_arrays(arrays, schema=PREDICTION_FILE_SCHEMA)


def feedback_rows_table(rows: Sequence[Row]) -> pa.Table:
    """Feedback rows as a table of :data:`~mlops.store.predlog.layout.FEEDBACK_FILE_SCHEMA`."""
    c = list(zip(*rows, strict=True))
    arrays = [
        pa.array(c[_F["request_id"]], _STR),
        pa.array(c[_F["row"]], pa.int64()),
        pa.array(c[_F["actual"]], _STR),
        pa.array(c[_F["actual_num"]], _F64),
        _ts_array(c[_F["ts"]]),
    ]
    return pa.Table.from_arrays(arrays, schema=FEEDBACK_FILE_SCHEMA)


def prediction_table(recs: Sequence[PredictionRecord]) -> pa.Table:
    """The records as a table of :data:`~mlops.store.predlog.layout.PREDICTION_FILE_SCHEMA`."""
    return prediction_rows_table([_PRED_GET(r) for r in recs])


def feedback_table(recs: Sequence[FeedbackRecord]) -> pa.Table:
    """The records as a table of :data:`~mlops.store.predlog.layout.FEEDBACK_FILE_SCHEMA`."""
    return feedback_rows_table([_FB_GET(r) for r in recs])


T = TypeVar("T")


def convert(group: list[T], build: Callable[[Sequence[T]], pa.Table]
            ) -> tuple[pa.Table | None, list[T], int]:
    """Arrow table of a group (rows or records); malformed ones are filtered out (and
    counted) if needed. Returns (table or None when nothing is left, those kept, how many
    were dropped)."""
    try:
        return build(group), group, 0
    except Exception:
        good = []
        for r in group:
            try:
                build([r])
            except Exception:
                continue
            good.append(r)
        n_bad = len(group) - len(good)
        return (build(good) if good else None), good, n_bad
