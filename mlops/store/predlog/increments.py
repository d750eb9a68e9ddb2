"""Incremental reading: the log files that became complete since a cursor, and their rows.

For readers that keep running aggregates (the rollout controller's per-arm counts, sums and
sequential-test state) and must cost O(new rows) per pass, not O(history)::

    cursor = LogCursor.starting(rollout_started)             # once, stored with the rollout
    ...
    inc = new_log_files(uri, "churn", cursor, versions=[stable, candidate])
    rows = read_log_files(uri, inc.files, columns=["request_id", "row", "version", "status",
                                                   "prediction_num"],
                          environment="production", since=rollout_started)
    ... add ``rows`` to the aggregates ...
    cursor = inc.cursor                                      # store it with the aggregates

How it stays correct: every data file's name carries the time it was completed (see
:mod:`~mlops.store.predlog.layout`), and a file appears atomically under that name (a rename
locally, one PUT elsewhere). A pass reports the files completed in ``(cursor, horizon]``
with ``horizon = now - settle`` and moves the cursor to the horizon. ``settle`` covers a
file that was named before it became visible (the few microseconds before a local rename,
the duration of a PUT to an object store) and the clock skew between the processes that
write and the one that reads: a file can only be missed if it appears more than ``settle``
after the time in its name. Files are never reported twice; a file written again after a
crash has the same id (its rows are the same rows) and is never written twice.

Rows land in the ``date=`` folder of their own timestamp, and rows that a restarted writer
replays from its spool land in a file completed after the restart. Only the day folders
from ``cursor - late`` on are listed, so a replay more than ``late`` (default one day)
after the rows were logged is not seen. Files whose name carries no flush time (not written
by :class:`~mlops.store.predlog.writer.PredictionLog`) are never reported.

``environment`` is a column, not a partition: :func:`read_log_files` filters it in the
query (Parquet statistics let DuckDB skip row groups of other environments).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from mlops.errors import ConfigError
from mlops.store.predlog.layout import (
    FEEDBACK,
    PREDICTIONS,
    Kind,
    LogFile,
    day_name,
    list_files,
    open_store,
)
from mlops.store.predlog.queries import read_feedback_files, read_prediction_files

__all__ = [
    "LATE",
    "SETTLE",
    "LogCursor",
    "LogIncrement",
    "new_log_files",
    "read_log_files",
]

#: Default delay before a completed file is reported (write duration + clock skew).
SETTLE = timedelta(seconds=10)
#: Default age of rows that a replay may still add to earlier day folders.
LATE = timedelta(days=1)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class LogCursor:
    """Every file completed at or before ``until`` has been reported."""

    until: datetime

    @classmethod
    def starting(cls, since: datetime, skew: timedelta = SETTLE) -> LogCursor:
        """A cursor for a reader that wants rows logged from ``since`` on: files completed
        before ``since - skew`` cannot hold such rows."""
        return cls(_utc(since) - skew)

    def to_json(self) -> str:
        """The cursor as text, to store (ISO 8601, microseconds, UTC)."""
        return self.until.isoformat()

    @classmethod
    def from_json(cls, text: str) -> LogCursor:
        try:
            return cls(_utc(datetime.fromisoformat(text)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{text!r} is not a prediction log cursor.",
                              fix="Store LogCursor.to_json() and read it back unchanged, or "
                                  "start again with LogCursor.starting(since).") from exc


@dataclass(frozen=True)
class LogIncrement:
    """The files completed in ``(cursor.until, horizon]`` of one pass, oldest first, and the
    cursor to keep once their rows are added (``cursor.until == horizon``)."""

    files: list[LogFile]
    cursor: LogCursor
    horizon: datetime


def new_log_files(artifacts_uri: str, model: str, cursor: LogCursor, *,
                  kind: Kind = PREDICTIONS, versions: Iterable[str] | None = None,
                  now: datetime | None = None, settle: timedelta = SETTLE,
                  late: timedelta = LATE,
                  storage_options: Mapping[str, Any] | None = None) -> LogIncrement:
    """The ``kind`` files of ``model`` (prediction files of ``versions`` only, when given)
    completed after ``cursor`` and at least ``settle`` before ``now`` (see the module
    docstring). Lists folder names only; reads no file."""
    if settle < timedelta(0) or late < timedelta(0):
        raise ConfigError("settle and late must not be negative.",
                          fix="Pass e.g. settle=timedelta(seconds=10), late=timedelta(days=1).")
    now = datetime.now(UTC) if now is None else _utc(now)
    horizon = now - settle
    if horizon <= cursor.until:
        return LogIncrement([], cursor, cursor.until)
    store = open_store(artifacts_uri, storage_options)
    files = list_files(store, kind, model, versions=versions,
                       first_day=day_name(cursor.until - late), flushed_after=cursor.until)
    fresh = [f for f in files if f.flushed_at is not None and f.flushed_at <= horizon]
    return LogIncrement(fresh, LogCursor(horizon), horizon)


def read_log_files(artifacts_uri: str, files: Sequence[LogFile], *,
                   kind: Kind = PREDICTIONS,
                   columns: Sequence[str] | None = None, environment: str | None = None,
                   since: datetime | None = None,
                   storage_options: Mapping[str, Any] | None = None) -> pa.Table:
    """The rows of the given files, all of one kind (as :func:`new_log_files` returns
    them), all of ``kind``: ``columns`` of :data:`PREDICTION_SCHEMA` or
    :data:`FEEDBACK_SCHEMA` (default all), rows logged at or after ``since``, predictions
    of ``environment`` only. No files give an empty table of ``kind``'s columns."""
    if any(f.kind != kind for f in files):
        raise ValueError(f"read_log_files(kind={kind!r}) was given files of another kind")
    store = open_store(artifacts_uri, storage_options)
    if kind == FEEDBACK:
        return read_feedback_files(store, files, columns=columns, since=since)
    return read_prediction_files(store, files, columns=columns, since=since,
                                 environment=environment)
