"""The records the log holds, and their two encodings: Arrow (files) and compact rows (spool).

A :class:`PredictionRecord` is one predicted row of one request; a :class:`FeedbackRecord`
the observed label of one. The spool keeps each record as a plain tuple of its fields in
declaration order (JSON), non-finite floats of the scalar float fields as strings so that
they come back as they were.
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
    "FeedbackRecord",
    "PredictionRecord",
    "Record",
    "convert",
    "feedback_table",
    "from_row",
    "prediction_table",
    "to_row",
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

_PRED_FIELDS = tuple(f.name for f in fields(PredictionRecord))
_FB_FIELDS = tuple(f.name for f in fields(FeedbackRecord))
_PRED_FLOATS = tuple(_PRED_FIELDS.index(n) for n in ("ts", "prediction_num", "latency_ms",
                                                     "propensity", "cpu_ms"))
_FB_FLOATS = tuple(_FB_FIELDS.index(n) for n in ("actual_num", "ts"))


# ---------------------------------------------------------------------------- spool rows


_PRED_GET = operator.attrgetter(*_PRED_FIELDS)
_FB_GET = operator.attrgetter(*_FB_FIELDS)


def to_row(record: PredictionRecord | FeedbackRecord) -> tuple[Any, ...] | list[Any]:
    """The record's field values in declaration order (the spool's encoding); non-finite
    floats as the strings ``'nan'``, ``'inf'``, ``'-inf'`` (JSON has no such numbers)."""
    if isinstance(record, PredictionRecord):
        values, floats = _PRED_GET(record), _PRED_FLOATS
    else:
        values, floats = _FB_GET(record), _FB_FLOATS
    for i in floats:
        v = values[i]
        if isinstance(v, float) and not math.isfinite(v):
            out = list(values)
            for j in floats:
                if isinstance(out[j], float) and not math.isfinite(out[j]):
                    out[j] = repr(out[j])
            return out
    return values


def from_row(cls: type[Record], values: Sequence[Any]) -> Record:
    """A record back from :func:`to_row`'s values."""
    floats = _PRED_FLOATS if cls is PredictionRecord else _FB_FLOATS
    items = list(values)
    for i in floats:
        if i < len(items) and items[i] in ("nan", "inf", "-inf"):
            items[i] = float(items[i])
    return cls(*items)


# ---------------------------------------------------------------------------- Arrow


def _ts_array(recs: Sequence[PredictionRecord | FeedbackRecord]) -> pa.Array:
    secs = np.fromiter((r.ts for r in recs), dtype=np.float64, count=len(recs))
    return pa.array(np.rint(secs * 1e6).astype(np.int64), type=_TS)


def prediction_table(recs: Sequence[PredictionRecord]) -> pa.Table:
    """The records as a table of :data:`~mlops.store.predlog.layout.PREDICTION_FILE_SCHEMA`.

    One list per column (no tuple per row: fewer objects for the garbage collector)."""
    arrays = [
        pa.array([r.request_id for r in recs], _STR),
        _ts_array(recs),
        pa.array([r.environment for r in recs], _STR),
        pa.array([r.route for r in recs], _STR),
        pa.array([r.unit_hash for r in recs], _STR),
        pa.array([r.row for r in recs], pa.int64()),
        pa.array([r.inputs for r in recs], _STR),
        pa.array([r.prediction for r in recs], _STR),
        pa.array([r.prediction_num for r in recs], _F64),
        pa.array([r.proba for r in recs], pa.list_(_F64)),
        pa.array([r.latency_ms for r in recs], _F64),
        pa.array([r.status for r in recs], pa.int32()),
        pa.array([r.propensity for r in recs], _F64),
        pa.array([r.caller for r in recs], _STR),
        pa.array([r.cpu_ms for r in recs], _F64),
    ]
    return pa.Table.from_arrays(arrays, schema=PREDICTION_FILE_SCHEMA)


def feedback_table(recs: Sequence[FeedbackRecord]) -> pa.Table:
    """The records as a table of :data:`~mlops.store.predlog.layout.FEEDBACK_FILE_SCHEMA`."""
    arrays = [
        pa.array([r.request_id for r in recs], _STR),
        pa.array([r.row for r in recs], pa.int64()),
        pa.array([r.actual for r in recs], _STR),
        pa.array([r.actual_num for r in recs], _F64),
        _ts_array(recs),
    ]
    return pa.Table.from_arrays(arrays, schema=FEEDBACK_FILE_SCHEMA)


def convert(group: list[Record], build: Callable[[Sequence[Record]], pa.Table]
            ) -> tuple[pa.Table | None, list[Record], int]:
    """Arrow table of a group; malformed records are filtered out (and counted) if needed.
    Returns (table or None when nothing is left, the records kept, how many were dropped)."""
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
