"""The records the log holds, and their two encodings: Arrow (files) and compact rows (spool).

A :class:`PredictionRecord` is one predicted row of one request; a :class:`FeedbackRecord`
the observed label of one. The writer's buffer holds each as a plain tuple of its fields in
declaration order (a *row*: :data:`PREDICTION_FIELDS`, :data:`FEEDBACK_FIELDS`), which the
gateway builds directly: no object per row on the request path, and the Arrow columns are
the rows transposed. The spool keeps the same rows as JSON, non-finite floats of the scalar
float fields as strings so that they come back as they were.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from mlops.store.predlog.layout import (
    FEEDBACK_FILE_SCHEMA,
    PREDICTION_FILE_SCHEMA,
)

__all__ = [
    "FEEDBACK_FIELDS",
    "PREDICTION_FIELDS",
    "FeedbackRecord",
    "PredictionRecord",
    "Record",
    "Row",
    "convert",
    "feedback_rows_table",
    "feedback_table",
    "from_row",
    "prediction_rows_table",
    "prediction_table",
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
