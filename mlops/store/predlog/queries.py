"""Typed queries over the prediction log, for the gateway's tests, rollouts and monitoring.

Each lists only the files it needs (:func:`~mlops.store.predlog.layout.list_files`: model,
version and day folders) and reads them with the one DuckDB reader
(:class:`~mlops.store.predlog.reader.LogReader`), values bound as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from mlops.store.predlog.layout import (
    FEEDBACK,
    FEEDBACK_SCHEMA,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    LogFile,
    LogStore,
    day_name,
    list_files,
    open_store,
)
from mlops.store.predlog.reader import LogReader, feedback_scan, prediction_scan

__all__ = [
    "LoggedRows",
    "logged_rows",
    "read_feedback",
    "read_feedback_files",
    "read_prediction_files",
    "read_predictions",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(value: float | datetime) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return _EPOCH + timedelta(microseconds=round(float(value) * 1e6))


def _columns(schema: pa.Schema, columns: Sequence[str] | None) -> pa.Schema:
    if columns is None:
        return schema
    unknown = [c for c in columns if c not in schema.names]
    if unknown or not columns:
        raise ValueError(f"unknown log columns {unknown}; use some of {schema.names}")
    return pa.schema([schema.field(c) for c in dict.fromkeys(columns)])


_SQL_TYPES = {pa.string(): "VARCHAR", pa.float64(): "DOUBLE", pa.int64(): "BIGINT",
              pa.int32(): "INTEGER"}


def _select(schema: pa.Schema, present: set[str] | None = None) -> str:
    """The schema's columns; those not in ``present`` (files older than the column) as
    typed NULLs. Identifiers come from the fixed schema, never from callers."""
    return ", ".join(
        f'"{f.name}"' if present is None or f.name in present
        else f'CAST(NULL AS {_SQL_TYPES.get(f.type, "VARCHAR")}) AS "{f.name}"'
        for f in schema)


def read_prediction_files(store: LogStore, files: Sequence[LogFile], *,
                          columns: Sequence[str] | None = None,
                          since: float | datetime | None = None,
                          environment: str | None = None,
                          versions: Iterable[str] | None = None) -> pa.Table:
    """Rows of the given prediction files (``columns`` of :data:`PREDICTION_SCHEMA`, default
    all), logged at or after ``since``, of ``environment`` and ``versions`` when given.
    Files written before a column existed read as NULL there."""
    schema = _columns(PREDICTION_SCHEMA, columns)
    if not files:
        return schema.empty_table()
    scan = prediction_scan(files, start=None if since is None else _utc(since),
                           environment=environment, versions=versions, union_by_name=True)
    with LogReader(store) as reader:
        table = reader.arrow(f"SELECT {_select(schema, reader.columns(scan))} "
                             f"FROM ({scan.sql})", scan.params)
    return table.cast(schema)


def read_predictions(artifacts_uri: str, model: str | None = None, version: str | None = None,
                     *, since: float | datetime | None = None, environment: str | None = None,
                     columns: Sequence[str] | None = None,
                     storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Logged prediction rows as :data:`PREDICTION_SCHEMA` (or its ``columns``): of one
    model/version or all, of one environment or all, logged at or after ``since`` (epoch
    seconds or a datetime; older day partitions are not read, with one day of slack for
    clock skew)."""
    store = open_store(artifacts_uri, storage_options)
    first = None if since is None else day_name(_utc(since) - timedelta(days=1))
    files = list_files(store, PREDICTIONS, model,
                       versions=None if version is None else [version], first_day=first)
    if version is not None:
        files = [f for f in files if f.version == version]
    return read_prediction_files(store, files, columns=columns, since=since,
                                 environment=environment)


def read_feedback(artifacts_uri: str, model: str | None = None, *,
                  since: float | datetime | None = None,
                  storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """Logged feedback rows (of one model or all, received at or after ``since``) as
    :data:`FEEDBACK_SCHEMA`."""
    store = open_store(artifacts_uri, storage_options)
    first = None if since is None else day_name(_utc(since) - timedelta(days=1))
    return read_feedback_files(store, list_files(store, FEEDBACK, model, first_day=first),
                               since=since)


def read_feedback_files(store: LogStore, files: Sequence[LogFile], *,
                        columns: Sequence[str] | None = None,
                        since: float | datetime | None = None) -> pa.Table:
    """Rows of the given feedback files (``columns`` of :data:`FEEDBACK_SCHEMA`, default
    all), received at or after ``since``."""
    schema = _columns(FEEDBACK_SCHEMA, columns)
    if not files:
        return schema.empty_table()
    scan = feedback_scan(files, since=None if since is None else _utc(since),
                         with_partitions=True)
    with LogReader(store) as reader:
        table = reader.arrow(f"SELECT {_select(schema)} FROM ({scan.sql})", scan.params)
    return table.cast(schema)


@dataclass(frozen=True)
class LoggedRows:
    """The newest successful rows of one version (or of all) in a window, newest first."""

    version: str | None
    inputs: list[str]        # JSON objects, one per row
    predictions: list[str]   # JSON values, one per row
    n_total: int             # successful rows in the window (before the limit)


def logged_rows(artifacts_uri: str, model: str, *, start: datetime, end: datetime,
                version: str | None = None, environment: str | None = None,
                limit: int = 50_000, by_version: bool = False,
                storage_options: Mapping[str, Any] | None = None) -> list[LoggedRows]:
    """Successful (status 200) rows of ``model`` with ``start <= ts < end``: the newest
    ``limit`` of them (one :class:`LoggedRows`, ``version`` as asked), or with
    ``by_version`` the newest ``limit`` of each version (one per version that has rows,
    ordered by version)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    start, end = _utc(start), _utc(end)
    store = open_store(artifacts_uri, storage_options)
    files = list_files(store, PREDICTIONS, model,
                       versions=None if version is None else [version],
                       first_day=day_name(start), last_day=day_name(end - timedelta(
                           microseconds=1)))
    if not files:
        return [] if by_version else [LoggedRows(version, [], [], 0)]
    scan = prediction_scan(files, start=start, end=end, environment=environment,
                           versions=None if version is None else [version], ok_only=True)
    if by_version:
        sql = ("SELECT version, inputs, prediction, n FROM ("
               "SELECT version, inputs, prediction, ts, count(*) OVER (PARTITION BY version) "
               "AS n, row_number() OVER (PARTITION BY version ORDER BY ts DESC) AS k "
               f"FROM ({scan.sql})) WHERE k <= $limit ORDER BY version, ts DESC")
    else:  # a top-N: no full sort
        sql = ("SELECT version, inputs, prediction, count(*) OVER () AS n "
               f"FROM ({scan.sql}) ORDER BY ts DESC LIMIT $limit")
    with LogReader(store) as reader:
        rows = reader.fetchall(sql, {**scan.params, "limit": int(limit)})
    if not by_version:
        if not rows:
            return [LoggedRows(version, [], [], 0)]
        return [LoggedRows(version, [r[1] for r in rows], [r[2] for r in rows],
                           int(rows[0][3]))]
    out: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        out.setdefault(r[0], []).append(r)
    return [LoggedRows(v, [r[1] for r in rs], [r[2] for r in rs], int(rs[0][3]))
            for v, rs in sorted(out.items())]
