"""Read the logged inputs and outputs of a time window back as a frame (for drift checks).

DuckDB reads only the day partitions of the window from the Parquet prediction log and
keeps the newest ``limit`` successful rows; their ``inputs`` JSON becomes columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import orjson
import pandas as pd

from mlops.errors import MonitoringError

__all__ = ["LoggedWindow", "read_window"]


@dataclass(frozen=True)
class LoggedWindow:
    """Inputs (one column per feature) and predictions of the newest rows of a window."""

    inputs: pd.DataFrame
    predictions: pd.Series
    n_total: int  # successful rows in the window (before the limit)


def _local_root(artifacts_uri: str) -> Path:
    if "://" in artifacts_uri and not artifacts_uri.startswith("file://"):
        raise MonitoringError(
            f"Reading the prediction log from {artifacts_uri!r} is not supported yet.",
            fix="Monitor from a process whose MLOPS_ARTIFACTS_URI is a local folder.")
    return Path(artifacts_uri.removeprefix("file://"))


def _day_globs(base: Path, start: datetime, end: datetime) -> list[str]:
    days = []
    day = start.astimezone(UTC).date()
    while day <= end.astimezone(UTC).date():
        days.append(day.isoformat())
        day += timedelta(days=1)
    globs = []
    for d in days:
        found = list(base.glob(f"version=*/date={d}/part-*.parquet"))
        if found:
            globs.append(str(base / "version=*" / f"date={d}" / "part-*.parquet"))
    return globs


def read_window(artifacts_uri: str, model: str, *, start: datetime, end: datetime,
                version: str | None = None, environment: str | None = None,
                limit: int = 50_000) -> LoggedWindow:
    """The newest ``limit`` successful logged rows of ``model`` in ``[start, end)``."""
    base = _local_root(artifacts_uri) / "predictions" / f"model={quote(model, safe='')}"
    globs = _day_globs(base, start, end)
    empty = LoggedWindow(pd.DataFrame(), pd.Series(dtype=object), 0)
    if not globs:
        return empty
    where = ["status = 200", "ts >= ?", "ts < ?"]
    params: list[Any] = [start, end]
    if version is not None:
        where.append("version = ?")
        params.append(quote(version, safe=""))
    if environment is not None:
        where.append("environment = ?")
        params.append(environment)
    source = f"read_parquet({globs!r}, hive_partitioning = true, union_by_name = true)"
    sql = (f"SELECT inputs, prediction, count(*) OVER () AS n FROM {source} "
           f"WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT {int(limit)}")
    try:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone = 'UTC'")
            rows = con.execute(sql, params).fetchall()
        finally:
            con.close()
    except duckdb.Error as exc:
        raise MonitoringError(f"Cannot read the prediction log of {model!r}: {exc}",
                              fix="Check the artifact store; remove corrupt part files.",
                              model=model) from exc
    if not rows:
        return empty
    inputs = pd.DataFrame.from_records([orjson.loads(r[0]) for r in rows])
    predictions = pd.Series([orjson.loads(r[1]) for r in rows], name="prediction")
    return LoggedWindow(inputs, predictions, int(rows[0][2]))
