"""Read the logged inputs and outputs of a time window back as a frame (for drift checks).

The rows come from :func:`mlops.store.predlog.logged_rows` (only the day folders of the
window and the wanted version are read; the newest ``limit`` successful rows are kept);
their ``inputs`` JSON becomes columns. :func:`read_windows_by_version` keeps each version's
rows apart, so that each is compared with its own reference profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pandas as pd

from mlops.errors import ArtifactError, MonitoringError
from mlops.store.predlog import LoggedRows, logged_rows

__all__ = ["LoggedWindow", "read_window", "read_windows_by_version", "window_time"]


@dataclass(frozen=True)
class LoggedWindow:
    """Inputs (one column per feature) and predictions of the newest rows of a window."""

    inputs: pd.DataFrame
    predictions: pd.Series
    n_total: int  # successful rows in the window (before the limit)


def window_time(dt: datetime, name: str) -> datetime:
    """``dt`` in UTC (naive means UTC); a :class:`MonitoringError` naming ``name`` when it
    is not a datetime."""
    if not isinstance(dt, datetime):
        raise MonitoringError(f"{name} must be a datetime, got {type(dt).__name__}.",
                              fix=f"Pass {name} as a timezone-aware datetime in UTC.")
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _frame(rows: LoggedRows) -> LoggedWindow:
    if not rows.inputs:
        return LoggedWindow(pd.DataFrame(), pd.Series(dtype=object), rows.n_total)
    inputs = pd.DataFrame.from_records([orjson.loads(r) for r in rows.inputs])
    predictions = pd.Series([orjson.loads(p) for p in rows.predictions], name="prediction")
    return LoggedWindow(inputs, predictions, rows.n_total)


def _rows(artifacts_uri: str, model: str, start: datetime, end: datetime,
          version: str | None, environment: str | None, limit: int, by_version: bool
          ) -> list[LoggedRows]:
    start, end = window_time(start, "start"), window_time(end, "end")
    if start >= end:
        raise MonitoringError(f"The window is empty: start {start.isoformat()} is not before "
                              f"end {end.isoformat()}.", fix="Pass a start before the end.",
                              model=model)
    try:
        return logged_rows(artifacts_uri, model, start=start, end=end, version=version,
                           environment=environment, limit=limit, by_version=by_version)
    except ArtifactError as exc:
        raise MonitoringError(f"Cannot read the logged rows of {model!r}: {exc.message}",
                              fix=exc.fix, model=model) from exc


def read_window(artifacts_uri: str, model: str, *, start: datetime, end: datetime,
                version: str | None = None, environment: str | None = None,
                limit: int = 50_000) -> LoggedWindow:
    """The newest ``limit`` successful logged rows of ``model`` in ``[start, end)`` (of one
    version, or of all versions mixed)."""
    return _frame(_rows(artifacts_uri, model, start, end, version, environment, limit,
                        False)[0])


def read_windows_by_version(artifacts_uri: str, model: str, *, start: datetime,
                            end: datetime, environment: str | None = None,
                            limit: int = 50_000) -> dict[str, LoggedWindow]:
    """Per version with rows in ``[start, end)``, its newest ``limit`` successful rows."""
    return {r.version or "": _frame(r) for r in _rows(
        artifacts_uri, model, start, end, None, environment, limit, True)}
