"""The one DuckDB reader of the prediction log.

:class:`LogReader` holds a DuckDB connection that can read the store's files (a local
folder directly, any other fsspec URL through its filesystem registered with DuckDB) and
runs SQL with **bound parameters only**: file lists, times, versions and environments are
never pasted into SQL text. Callers compose their SQL over :class:`Scan` subqueries, which
read the files :func:`~mlops.store.predlog.layout.list_files` chose (partition pruning by
model, version and day) and filter rows with parameters::

    files = list_files(store, PREDICTIONS, "churn", versions=["1.2.0"], first_day="2024-05-17")
    scan = prediction_scan(files, start=t0, end=t1, environment="production")
    with LogReader(store) as reader:
        n = reader.fetchall(f"SELECT count(*) FROM ({scan.sql})", scan.params)

A read error (a corrupt file, an unreachable store) is an :class:`ArtifactError` whose
cause is the DuckDB error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import duckdb
import pyarrow as pa

from mlops.errors import ArtifactError
from mlops.store.predlog.layout import HIVE_TYPES, LogFile, LogStore

__all__ = ["LogReader", "Scan", "bind", "feedback_scan", "prediction_scan"]



def _hive(columns: tuple[str, ...]) -> str:
    return "hive_partitioning = true, hive_types = {" + ", ".join(
        f"'{k}': {HIVE_TYPES[k]}" for k in columns) + "}"


_PRED_HIVE = _hive(("model", "version", "date"))
_FB_HIVE = _hive(("model", "date"))


@dataclass(frozen=True)
class Scan:
    """A ``SELECT`` over log files, to be used as a subquery, with its bound parameters
    (named ``${name}_...``, so that scans of different names combine)."""

    sql: str
    params: dict[str, Any]


def bind(*scans: Scan, **params: Any) -> dict[str, Any]:
    """The parameters of several scans and of the caller's own SQL, merged (a name used
    twice is an error, never a silent override)."""
    out: dict[str, Any] = {}
    for source in (*(s.params for s in scans), params):
        for key, value in source.items():
            if key in out:
                raise ValueError(f"query parameter ${key} is bound twice")
            out[key] = value
    return out


def _paths(files: Sequence[LogFile]) -> list[str]:
    if not files:
        raise ValueError("a scan needs at least one file; check for an empty listing first")
    return [f.path for f in files]


def prediction_scan(files: Sequence[LogFile], *, name: str = "p",
                    start: datetime | None = None, end: datetime | None = None,
                    end_inclusive: bool = False, versions: Iterable[str] | None = None,
                    environment: str | None = None, ok_only: bool = False,
                    union_by_name: bool = False) -> Scan:
    """Prediction rows of ``files`` (every column, ``model``/``version``/``date`` from the
    path) with ``start <= ts < end`` (``<= end`` when ``end_inclusive``), in ``versions``,
    of ``environment``, and with status 200 when ``ok_only``. ``union_by_name`` reads
    files written before a column existed (NULL there) at some cost."""
    params: dict[str, Any] = {f"{name}_files": _paths(files)}
    where = []
    if start is not None:
        params[f"{name}_start"] = start
        where.append(f"ts >= ${name}_start")
    if end is not None:
        params[f"{name}_end"] = end
        where.append(f"ts {'<=' if end_inclusive else '<'} ${name}_end")
    if versions is not None:
        params[f"{name}_versions"] = sorted(set(versions))
        where.append(f"list_contains(${name}_versions, version)")
    if environment is not None:
        params[f"{name}_environment"] = environment
        where.append(f"environment = ${name}_environment")
    if ok_only:
        where.append("status = 200")
    union = ", union_by_name = true" if union_by_name else ""
    sql = f"SELECT * FROM read_parquet(${name}_files, {_PRED_HIVE}{union})"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return Scan(sql, params)


def feedback_scan(files: Sequence[LogFile], *, name: str = "f",
                  since: datetime | None = None, until: datetime | None = None,
                  with_partitions: bool = False) -> Scan:
    """Feedback rows of ``files`` received in ``[since, until]`` (``model`` and ``date``
    columns only ``with_partitions``)."""
    params: dict[str, Any] = {f"{name}_files": _paths(files)}
    where = []
    if since is not None:
        params[f"{name}_since"] = since
        where.append(f"ts >= ${name}_since")
    if until is not None:
        params[f"{name}_until"] = until
        where.append(f"ts <= ${name}_until")
    hive = _FB_HIVE if with_partitions else "hive_partitioning = false"
    sql = f"SELECT * FROM read_parquet(${name}_files, {hive})"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return Scan(sql, params)


#: per filesystem, one in-memory DuckDB database the readers open connections to: a new
#: database costs ~10 ms, a connection to an open one ~0.03 ms (a page reads the log 3-5
#: times). Each filesystem has its own, so two stores with one protocol (two S3 endpoints)
#: never share a registration; the entry holds the filesystem, so its id is not reused.
_DATABASES: dict[int, tuple[object, duckdb.DuckDBPyConnection]] = {}
_DATABASES_LOCK = threading.Lock()


def _cursor(store: LogStore) -> duckdb.DuckDBPyConnection:
    """A new connection (own temp tables and settings) to the store's shared database."""
    key = 0 if store.local else id(store.fs)
    with _DATABASES_LOCK:
        entry = _DATABASES.get(key)
        if entry is None or (key and entry[0] is not store.fs):
            entry = _DATABASES[key] = (store.fs, duckdb.connect())
        return entry[1].cursor()


class LogReader:
    """A DuckDB connection over one store's log files (see the module docstring).

    Pass ``con`` to reuse a connection (it is left open and, apart from the store's
    filesystem being registered, as it was); otherwise the reader opens one (to the
    process's database for that filesystem) and closes it with :meth:`close` or at the end
    of a ``with`` block.
    """

    def __init__(self, store: LogStore, con: duckdb.DuckDBPyConnection | None = None) -> None:
        self.store = store
        self._own = con is None
        self.con = _cursor(store) if con is None else con
        if not store.local:
            protocols = store.fs.protocol
            protocol = protocols if isinstance(protocols, str) else protocols[0]
            try:
                if protocol not in self.con.list_filesystems():
                    self.con.register_filesystem(store.fs)
            except duckdb.Error as exc:
                self.close()
                raise self._error(exc) from exc

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self.con.close()

    def _error(self, exc: duckdb.Error) -> ArtifactError:
        return ArtifactError(f"Cannot read the prediction log under {self.store.uri!r}: {exc}",
                             fix="Check that the artifact store is reachable; move corrupt "
                                 "part-*.parquet files out of the log.", path=self.store.uri)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (e.g. ``CREATE TEMP TABLE ... AS``)."""
        try:
            self.con.execute(sql, dict(params or {}))
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def columns(self, scan: Scan) -> set[str]:
        """The columns a scan yields: files written before a column existed lack it (when
        every file does, even ``union_by_name`` cannot add it). Reads footers only."""
        return {str(r[0]) for r in self.fetchall(f"DESCRIBE SELECT * FROM ({scan.sql})",
                                                 scan.params)}

    def fetchall(self, sql: str, params: Mapping[str, Any] | None = None
                 ) -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(sql, dict(params or {})).fetchall()
        except duckdb.Error as exc:
            raise self._error(exc) from exc

    def arrow(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """The result as an Arrow table."""
        try:
            rel = self.con.sql(sql, params=dict(params or {}))
            if rel is None:
                return pa.table({})
            fetch = getattr(rel, "to_arrow_table", None) or rel.fetch_arrow_table  # duckdb 2/1
            table: pa.Table = fetch()
        except duckdb.Error as exc:
            raise self._error(exc) from exc
        return table
