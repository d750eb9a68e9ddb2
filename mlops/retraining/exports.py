"""The data a retraining job gets: Parquet exports of what the platform recorded.

- :func:`export_labelled_window`: the recent labelled window of a model: its successful
  predictions in one environment (shadow copies left out) joined with their latest label,
  one row per predicted row: the input columns as the caller sent them, ``label`` (the
  observed value), and ``prediction``, ``version``, ``ts`` for reference. The newest
  ``limit`` rows at most. Its SHA-256 names the data in the new version's lineage, and the
  pipeline's gates (the champion gate included) judge the retrained version on it.
- :func:`split_window`: the window split by time: the older rows for training, the newest
  ``HOLDOUT_SHARE`` held out; the job never sees them, so the gates judge the retrained
  version (against production, on the same rows) on data it was not fitted to.
- :func:`judging_set`: the window as the gates judge a retrained version on it: the input
  columns and the label only, each distinct row once (repeated requests would otherwise
  weigh as many times as they were sent, and trip the duplicate-rows check).
- :func:`export_reference`: the training data the production version's lineage names,
  when that file is readable here (CSV or Parquet), as Parquet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from mlops.store.predlog import (
    FEEDBACK,
    PREDICTIONS,
    LogReader,
    bind,
    feedback_scan,
    list_files,
    open_store,
    prediction_scan,
)
from mlops.store.predlog.layout import day_name

__all__ = ["HOLDOUT_SHARE", "LABEL", "RESERVED", "Export", "export_labelled_window", "export_reference",
           "file_sha256", "judging_set", "split_window"]

#: the newest share of the labelled window, held out from training to judge the result
HOLDOUT_SHARE = 0.3

#: the label column of the labelled window
LABEL = "label"
#: columns of the window that are not model inputs (besides the label)
RESERVED = ("prediction", "version", "ts")


@dataclass(frozen=True)
class Export:
    """A Parquet file written for a job: where, how many rows, its SHA-256, the period."""

    path: Path
    rows: int
    sha256: str
    start: datetime | None = None
    end: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rows": self.rows, "sha256": self.sha256,
                "start": None if self.start is None else self.start.isoformat(),
                "end": None if self.end is None else self.end.isoformat()}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_WINDOW_SQL = """
WITH p AS ({preds}),
f AS (SELECT request_id, row, arg_max(actual, ts) AS actual,
             arg_max(actual_num, ts) AS actual_num FROM ({labels}) GROUP BY request_id, row)
SELECT p.inputs, p.prediction, p.version, p.ts, f.actual, f.actual_num
FROM p JOIN f ON p.request_id = f.request_id AND p.row = f.row
WHERE p.route <> 'shadow'
ORDER BY p.ts DESC LIMIT $limit
"""


def export_labelled_window(artifacts_uri: str, model: str, start: datetime, end: datetime,
                           out: Path, *, environment: str = "production",
                           limit: int = 200_000) -> Export:
    """Write the labelled window of ``model`` in ``[start, end)`` to ``out`` (Parquet)."""
    store = open_store(artifacts_uri)
    preds = list_files(store, PREDICTIONS, model, first_day=day_name(start),
                       last_day=day_name(end))
    labels = list_files(store, FEEDBACK, model, first_day=day_name(start))
    frame = pd.DataFrame()
    if preds and labels:
        p = prediction_scan(preds, start=start, end=end, environment=environment,
                            ok_only=True)
        f = feedback_scan(labels, since=start)
        with LogReader(store) as reader:
            rows = reader.fetchall(_WINDOW_SQL.format(preds=p.sql, labels=f.sql),
                                   bind(p, f, limit=int(limit)))
        if rows:
            inputs = pd.DataFrame.from_records([orjson.loads(r[0]) for r in rows])
            inputs = inputs.drop(columns=[c for c in (LABEL, *RESERVED) if c in inputs])
            inputs[LABEL] = [r[5] if r[5] is not None else orjson.loads(r[4]) for r in rows]
            inputs["prediction"] = [orjson.loads(r[1]) for r in rows]
            inputs["version"] = [r[2] for r in rows]
            inputs["ts"] = [r[3] for r in rows]
            frame = inputs.iloc[::-1].reset_index(drop=True)  # oldest first
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return Export(out, len(frame), file_sha256(out), start, end)


def export_reference(training_data: str | None, out: Path) -> Export | None:
    """The production version's recorded training data as Parquet, when it is a CSV or
    Parquet file readable here (None otherwise: the job trains without it)."""
    if not training_data:
        return None
    source = Path(training_data)
    if not source.is_file():
        return None
    try:
        if source.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(source)
        elif source.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(source)
        else:
            return None
    except (OSError, ValueError):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    return Export(out, len(frame), file_sha256(out))


def judging_set(window: Export, out: Path) -> Export:
    """The window's input columns and label, each distinct row once (see the module)."""
    frame = pd.read_parquet(window.path)
    frame = frame.drop(columns=[c for c in RESERVED if c in frame.columns])
    frame = frame.drop_duplicates(ignore_index=True)
    frame.to_parquet(out, index=False)
    return Export(out, len(frame), file_sha256(out), window.start, window.end)


def split_window(window: Export, train_out: Path, holdout_out: Path,
                 share: float = HOLDOUT_SHARE) -> tuple[Export, Export]:
    """The window (oldest first) split into its older rows and its newest ``share``."""
    frame = pd.read_parquet(window.path)
    cut = len(frame) - round(len(frame) * share)
    train, holdout = frame.iloc[:cut], frame.iloc[cut:]
    train.to_parquet(train_out, index=False)
    holdout.to_parquet(holdout_out, index=False)
    return (Export(train_out, len(train), file_sha256(train_out), window.start, window.end),
            Export(holdout_out, len(holdout), file_sha256(holdout_out), window.start,
                   window.end))
