"""Read the logged inputs and outputs of a time window back as a frame (for drift checks).

DuckDB reads only the day partitions of the window from the Parquet prediction log and
keeps the newest ``limit`` successful rows; their ``inputs`` JSON becomes columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pandas as pd

# the log's file layout and SQL helpers are shared with the performance windows
from mlops.monitoring.performance import (
    _HIVE,
    _connection,
    _files,
    _list_sql,
    _query,
    _str_sql,
    _ts_sql,
)

__all__ = ["LoggedWindow", "read_window"]


@dataclass(frozen=True)
class LoggedWindow:
    """Inputs (one column per feature) and predictions of the newest rows of a window."""

    inputs: pd.DataFrame
    predictions: pd.Series
    n_total: int  # successful rows in the window (before the limit)


def read_window(artifacts_uri: str, model: str, *, start: datetime, end: datetime,
                version: str | None = None, environment: str | None = None,
                limit: int = 50_000) -> LoggedWindow:
    """The newest ``limit`` successful logged rows of ``model`` in ``[start, end)``.

    The files are found the way :mod:`~mlops.monitoring.performance` finds them (version
    and day folders pruned, any fsspec store), so both read the same rows.
    """
    q = _query(model, version, environment, start, end, timedelta(0), end, None)
    files = _files(artifacts_uri, q)
    if not files.predictions:
        return LoggedWindow(pd.DataFrame(), pd.Series(dtype=object), 0)
    where = ["status = 200", f"ts >= {_ts_sql(q.start or start)}",
             f"ts < {_ts_sql(q.end or end)}"]
    if version is not None:
        where.append(f"version = {_str_sql(version)}")
    if environment is not None:
        where.append(f"environment = {_str_sql(environment)}")
    sql = (f"SELECT inputs, prediction, count(*) OVER () AS n "
           f"FROM read_parquet({_list_sql(files.predictions)}, {_HIVE}) "
           f"WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT {int(limit)}")
    with _connection(None, files, model) as db:
        rows = db.execute(sql).fetchall()
    if not rows:
        return LoggedWindow(pd.DataFrame(), pd.Series(dtype=object), 0)
    inputs = pd.DataFrame.from_records([orjson.loads(r[0]) for r in rows])
    predictions = pd.Series([orjson.loads(r[1]) for r in rows], name="prediction")
    return LoggedWindow(inputs, predictions, int(rows[0][2]))
