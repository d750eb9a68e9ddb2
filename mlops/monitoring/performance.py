"""Model performance over time, computed with DuckDB straight from the prediction log.

The log's files and its DuckDB reader belong to :mod:`mlops.store.predlog`: only the files
of the model, of the wanted versions and of the days that overlap the window are listed,
and every value reaches DuckDB as a bound parameter. This module owns the definitions
below. Aggregates are computed in SQL, one query for all time buckets and/or versions;
ROC-AUC and log loss pull only the labelled ``(proba, actual)`` rows into numpy for
scikit-learn.

Definitions (one window = predictions with ``start <= ts < end``; without ``end``, every
prediction up to ``now``):

- **requests** are distinct ``request_id`` values (a request may have several rows);
  ``error_rate`` is the share of requests with a row of status >= 500, ``client_error_rate``
  the share with a 4xx row; ``throughput_rps`` is requests per second of the window.
- **latency** quantiles (linear interpolation) are over successful requests (status < 400),
  one value per request (its rows share it; the largest if they differ).
- **labels**: a successful prediction is *mature* when ``ts <= now - label_delay``; it is
  *labelled* when feedback for its ``(request_id, row)`` was logged at or before ``now``.
  When several feedback records exist for the same row (at-least-once delivery, corrected
  labels) the one with the latest feedback ``ts`` wins. Feedback for unknown requests is
  ignored. Quality metrics use the mature labelled rows only; ``label_coverage`` is
  ``n_labeled / n_mature``.
- **task**: regression when every labelled row has a numeric prediction and label and some
  value is fractional (the rule of :mod:`mlops.deployment.analysis`), classification
  otherwise; ``task=`` overrides it. It is decided once over all rows of a query, so the
  windows of one series or one version comparison agree.
- **classification**: labels compare numerically when both sides are numeric, as JSON text
  otherwise. With at most two classes the task is binary and the *positive class is the
  larger label* (1 for 0/1, ``true`` for booleans, the lexicographically last string);
  precision, recall and F1 are then those of the positive class, otherwise macro averages
  over the classes present in the window (scikit-learn's definitions, ``zero_division=0``).
  ``roc_auc`` (binary, or one-vs-rest macro) and ``log_loss`` need logged probabilities for
  every labelled row of the window whose columns match the sorted classes (``log_loss`` also
  rows that sum to 1); they are omitted, never guessed, otherwise.
- **regression**: ``mae``, ``rmse``, ``r2`` (``r2`` omitted when the labels are constant).
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlops.errors import ArtifactError, MonitoringError
from mlops.monitoring.window import window_time
from mlops.store.predlog import (
    FEEDBACK,
    PREDICTIONS,
    LogFile,
    LogReader,
    LogStore,
    Scan,
    bind,
    feedback_scan,
    list_files,
    open_store,
    prediction_scan,
)

__all__ = [
    "LABELLED_SCHEMA",
    "TASKS",
    "PerformanceWindow",
    "labelled_rows",
    "per_version_windows",
    "performance_series",
    "performance_window",
]

TASKS = ("classification", "regression")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MAX_BUCKETS = 100_000

#: Columns of :func:`labelled_rows`.
LABELLED_SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("row", pa.int64()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("version", pa.string()),
    ("environment", pa.string()),
    ("prediction", pa.string()),
    ("prediction_num", pa.float64()),
    ("proba", pa.list_(pa.float64())),
    ("actual", pa.string()),
    ("actual_num", pa.float64()),
    ("latency_ms", pa.float64()),
    ("status", pa.int32()),
    ("labelled_at", pa.timestamp("us", tz="UTC")),  # when the (latest) label arrived
])


@dataclass(frozen=True)
class PerformanceWindow:
    """Serving and model-quality figures of one model over one time window."""

    model: str
    version: str | None  # None = all versions
    environment: str | None  # None = all environments
    start: datetime
    end: datetime
    task: str | None  # "classification" | "regression" | None (no labels)
    n_predictions: int
    n_requests: int
    n_errors: int
    error_rate: float
    client_error_rate: float
    throughput_rps: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    n_mature: int
    n_labeled: int
    label_coverage: float
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


# ---------------------------------------------------------------------------- inputs


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


@dataclass(frozen=True)
class _Query:
    model: str
    version: str | None
    environment: str | None
    start: datetime | None
    end: datetime | None
    now: datetime
    cut: datetime  # mature when ts <= cut
    task: str | None


def _query(model: str, version: str | None, environment: str | None, start: datetime | None,
           end: datetime | None, label_delay: timedelta, now: datetime | None,
           task: str | None) -> _Query:
    if task is not None and task not in TASKS:
        raise MonitoringError(f"Unknown task {task!r}.",
                              fix="Pass task='classification', task='regression' or leave it "
                                  "out to detect it from the labels.", model=model)
    if not isinstance(label_delay, timedelta) or label_delay < timedelta(0):
        raise MonitoringError(f"label_delay must be a non-negative timedelta, got "
                              f"{label_delay!r}.", fix="Pass e.g. label_delay=timedelta(hours=1).",
                              model=model)
    start = None if start is None else window_time(start, "start")
    end = None if end is None else window_time(end, "end")
    if start is not None and end is not None and start >= end:
        raise MonitoringError(f"The window is empty: start {start.isoformat()} is not before "
                              f"end {end.isoformat()}.", fix="Pass a start before the end.",
                              model=model)
    now = datetime.now(UTC) if now is None else window_time(now, "now")
    return _Query(model, version, environment, start, end, now, now - label_delay, task)


# ---------------------------------------------------------------------------- files


@dataclass(frozen=True)
class _Files:
    store: LogStore
    predictions: list[LogFile]
    feedback: list[LogFile]


def _files(artifacts_uri: str, q: _Query) -> _Files:
    """The files a window needs: its versions' day folders, and feedback from a day before
    the window (feedback is logged after its prediction; a day of slack covers clock skew)."""
    try:
        store = open_store(artifacts_uri)
    except ArtifactError as exc:
        raise MonitoringError(exc.message, fix=exc.fix, model=q.model) from exc
    first = None if q.start is None else q.start.date().isoformat()
    last = ((q.end - _US).date() if q.end is not None else q.now.date()).isoformat()
    preds = list_files(store, PREDICTIONS, q.model,
                       versions=None if q.version is None else [q.version], first_day=first,
                       last_day=last)
    fb_first = None if q.start is None else (q.start - timedelta(days=1)).date().isoformat()
    feedback = list_files(store, FEEDBACK, q.model, first_day=fb_first,
                          last_day=q.now.date().isoformat())
    return _Files(store, preds, feedback)


@contextmanager
def _reader(con: duckdb.DuckDBPyConnection | None, files: _Files, model: str
            ) -> Iterator[LogReader]:
    """The log's DuckDB reader; its errors become :class:`MonitoringError`."""
    try:
        with LogReader(files.store, con) as reader:
            yield reader
    except ArtifactError as exc:
        raise MonitoringError(f"Cannot read the prediction log of {model!r}: {exc.message}",
                              fix=exc.fix, model=model) from exc


# ---------------------------------------------------------------------------- SQL


def _predictions_sql(files: _Files, q: _Query, bucket_us: int | None, by_version: bool
                     ) -> Scan:
    """The window's prediction rows with their group keys (bucket index, version or NULL)."""
    end, inclusive = (q.end, False) if q.end is not None else (q.now, True)
    scan = prediction_scan(files.predictions, start=q.start, end=end, end_inclusive=inclusive,
                           environment=q.environment,
                           versions=None if q.version is None else [q.version])
    params = dict(scan.params)
    g_bucket = "0"
    if bucket_us is not None and q.start is not None:
        g_bucket = "(epoch_us(ts) - $bucket_origin) // $bucket_us"
        params.update(bucket_origin=_us(q.start), bucket_us=bucket_us)
    g_version = "version" if by_version else "NULL::VARCHAR"
    return Scan(f"SELECT {g_bucket} AS g_bucket, {g_version} AS g_version, request_id, row, "
                "ts, version, environment, prediction, prediction_num, proba, latency_ms, "
                f"status FROM ({scan.sql})", params)


_LAB_COLUMNS = ("g_bucket, g_version, prediction_num, proba, actual_num, "
                "CASE WHEN prediction_num IS NULL THEN prediction END AS prediction, "
                "CASE WHEN actual_num IS NULL THEN actual END AS actual")


def _labelled_sql(files: _Files, q: _Query, preds: Scan, columns: str) -> Scan:
    """Mature successful predictions joined with their latest feedback (latest ts wins)."""
    fb = feedback_scan(files.feedback, until=q.now)
    return Scan(f"WITH p AS ({preds.sql}), "
                "f AS (SELECT request_id, row, "
                "arg_max(struct_pack(actual := actual, actual_num := actual_num, ts := ts), "
                f"ts) AS a FROM ({fb.sql}) GROUP BY request_id, row) "
                f"SELECT {columns} FROM (SELECT p.*, f.a.actual AS actual, f.a.actual_num AS "
                "actual_num, f.a.ts AS labelled_at FROM p JOIN f ON p.request_id = f.request_id "
                "AND p.row = f.row WHERE p.status < 400 AND p.ts <= $cut)",
                bind(preds, fb, cut=q.cut))


_SYSTEM_SQL = """
WITH r AS (
    SELECT g_bucket, g_version, request_id, count(*) AS n,
           bool_or(status >= 500) AS error, bool_or(status >= 400 AND status < 500) AS client,
           max(latency_ms) FILTER (WHERE status < 400) AS latency,
           count(*) FILTER (WHERE status < 400 AND ts <= $cut) AS n_mature,
           epoch_us(min(ts)) AS first_us
    FROM ({preds}) GROUP BY g_bucket, g_version, request_id)
SELECT g_bucket, g_version, sum(n)::BIGINT, count(*), count(*) FILTER (WHERE error),
       count(*) FILTER (WHERE client), quantile_cont(latency, [0.5, 0.95, 0.99]),
       sum(n_mature)::BIGINT, min(first_us)
FROM r GROUP BY g_bucket, g_version
"""

_TASK_SQL = """
SELECT count(*) FILTER (WHERE actual_num IS NULL OR prediction_num IS NULL),
       coalesce(bool_or(actual_num % 1 <> 0 OR prediction_num % 1 <> 0), false)
FROM {lab}
"""

_REGRESSION_SQL = """
SELECT g_bucket, g_version, count(*) AS n, avg(abs(prediction_num - actual_num)) AS mae,
       avg(pow(prediction_num - actual_num, 2)) AS mse, var_pop(actual_num) AS var
FROM {lab} WHERE actual_num IS NOT NULL AND prediction_num IS NOT NULL
GROUP BY g_bucket, g_version
"""

_CONFUSION_SQL = """
SELECT g_bucket, g_version, actual_num, actual, prediction_num, prediction, count(*),
       count(proba)
FROM {lab} GROUP BY ALL
"""

_PROBA_SQL = """
SELECT g_bucket, g_version, actual_num, actual, proba FROM {lab} WHERE proba IS NOT NULL
"""

_Key = tuple[int, str | None]  # (bucket, version)
_Label = tuple[int, float, str]  # numbers sort before strings


def _label(num: float | None, text: str | None) -> _Label:
    return (0, float(num), "") if num is not None else (1, 0.0, str(text))


# ---------------------------------------------------------------------------- metrics


def _classification(cells: dict[tuple[_Label, _Label], int], positive: _Label | None
                    ) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from confusion counts (positive set = binary)."""
    n = sum(cells.values())
    if not n:
        return {}
    labels = sorted({a for a, _ in cells} | {p for _, p in cells})
    out = {"accuracy": sum(c for (a, p), c in cells.items() if a == p) / n}

    def prf(k: _Label) -> tuple[float, float, float]:
        tp = cells.get((k, k), 0)
        fp = sum(c for (a, p), c in cells.items() if p == k and a != k)
        fn = sum(c for (a, p), c in cells.items() if a == k and p != k)
        return (tp / (tp + fp) if tp + fp else 0.0, tp / (tp + fn) if tp + fn else 0.0,
                2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)

    scores = np.array([prf(positive)] if positive is not None else [prf(k) for k in labels])
    precision, recall, f1 = scores.mean(axis=0)
    out.update(precision=float(precision), recall=float(recall), f1=float(f1))
    return out


def _probability_metrics(y: np.ndarray, proba: np.ndarray, positive: int | None
                         ) -> dict[str, float]:
    """ROC-AUC (scikit-learn) and log loss; undefined values are left out."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    labels = list(range(proba.shape[1]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        # one class only in the window: AUC is undefined and left out, not reported as 0.5
        with contextlib.suppress(ValueError, UndefinedMetricWarning):
            if positive is not None:
                auc = roc_auc_score(y == positive, proba[:, positive])
            else:
                auc = roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels)
            if np.isfinite(auc):
                out["roc_auc"] = float(auc)
    if np.allclose(proba.sum(axis=1), 1.0, rtol=0.0, atol=1e-4):  # else scores: no log loss
        # scikit-learn's log_loss (probabilities clipped to [eps, 1 - eps]) without its
        # one-hot encoding of the labels, which dominates its time on millions of rows
        eps = np.finfo(proba.dtype).eps
        p_true = np.clip(proba[np.arange(len(y)), y], eps, 1 - eps)
        out["log_loss"] = float(-np.mean(np.log(p_true)))
    return out


def _proba_metrics(db: LogReader, lab: str, classes: list[_Label],
                   positive: _Label | None, complete: set[_Key]) -> dict[_Key, dict[str, float]]:
    """ROC-AUC / log loss per group whose every labelled row has a matching proba vector."""
    table = db.arrow(_PROBA_SQL.format(lab=lab))
    if [c[1] for c in classes] in ([0.0], [1.0]) and classes[0][0] == 0:
        classes = [(0, 0.0, ""), (0, 1.0, "")]  # a 0/1 problem that saw one class so far
    width = pc.list_value_length(table["proba"]).to_numpy(zero_copy_only=False)
    if not table.num_rows or not np.all(width == len(classes)):
        return {}
    nums = np.asarray([c[1] for c in classes if c[0] == 0], dtype=np.float64)
    texts = [c[2] for c in classes if c[0] == 1]
    a_num = table["actual_num"].to_numpy(zero_copy_only=False)
    y = np.searchsorted(nums, a_num)
    if texts:
        idx = pc.fill_null(pc.index_in(table["actual"], value_set=pa.array(texts)), 0)
        y = np.where(np.isnan(a_num), len(nums) + idx.to_numpy(), y)
    flat = pc.list_flatten(table["proba"]).to_numpy(zero_copy_only=False)
    proba = np.asarray(flat, dtype=np.float64).reshape(table.num_rows, len(classes))
    # group rows by (bucket, version) without a Python loop over rows
    versions = pc.dictionary_encode(table["g_version"]).combine_chunks()
    v_idx = pc.fill_null(versions.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    names = versions.dictionary.to_pylist()
    buckets = table["g_bucket"].to_numpy(zero_copy_only=False).astype(np.int64)
    codes = buckets * (len(names) + 1) + v_idx + 1
    if codes.min() == codes.max():
        order, splits = np.arange(len(codes)), np.zeros(0, dtype=np.int64)
    else:
        order = np.argsort(codes, kind="stable")
        splits = np.flatnonzero(np.diff(codes[order])) + 1
    pos = None if positive is None else classes.index(positive)
    out = {}
    for rows in np.split(order, splits):
        b, v = divmod(int(codes[rows[0]]), len(names) + 1)
        key: _Key = (b, names[v - 1] if v else None)
        if key in complete and np.all(np.isfinite(proba[rows])):
            out[key] = _probability_metrics(y[rows], proba[rows], pos)
    return out


def _quality(db: LogReader, lab: str, task: str | None
             ) -> tuple[str | None, dict[_Key, int], dict[_Key, dict[str, float]]]:
    """(task, labelled rows per group, metrics per group) from the labelled temp table."""
    n_other, fractional = db.fetchall(_TASK_SQL.format(lab=lab))[0]
    confusion = db.fetchall(_CONFUSION_SQL.format(lab=lab))
    n_labeled: dict[_Key, int] = {}
    for b, v, *_, n, _np in confusion:
        n_labeled[(b, v)] = n_labeled.get((b, v), 0) + n
    if not n_labeled:
        return task, {}, {}
    if task is None:
        task = "regression" if not n_other and fractional else "classification"
    metrics: dict[_Key, dict[str, float]] = {}
    if task == "regression":
        for b, v, n, mae, mse, var in db.fetchall(_REGRESSION_SQL.format(lab=lab)):
            m = {"mae": float(mae), "rmse": float(np.sqrt(mse))}
            if n > 1 and var > 0:
                m["r2"] = float(1.0 - mse / var)
            metrics[(b, v)] = m
        return task, n_labeled, metrics
    cells: dict[_Key, dict[tuple[_Label, _Label], int]] = {}
    with_proba: dict[_Key, int] = {}
    for b, v, a_num, a_txt, p_num, p_txt, n, n_proba in confusion:
        cell = (_label(a_num, a_txt), _label(p_num, p_txt))
        group = cells.setdefault((b, v), {})
        group[cell] = group.get(cell, 0) + n
        with_proba[(b, v)] = with_proba.get((b, v), 0) + n_proba
    classes = sorted({k for g in cells.values() for cell in g for k in cell})
    positive = None
    if len(classes) <= 2:
        positive = classes[-1] if classes != [(0, 0.0, "")] else (0, 1.0, "")
    for key, group in cells.items():
        metrics[key] = _classification(group, positive)
    complete = {k for k, n in with_proba.items() if n and n == n_labeled[k]}
    if complete:
        for key, m in _proba_metrics(db, lab, classes, positive, complete).items():
            metrics[key].update(m)
    return task, n_labeled, metrics


# ---------------------------------------------------------------------------- windows


def _compute(artifacts_uri: str, q: _Query, con: duckdb.DuckDBPyConnection | None,
             bucket_us: int | None, by_version: bool
             ) -> tuple[int | None, dict[_Key, dict[str, Any]], str | None]:
    """Per-group figures: (first prediction µs, {group: figures}, task)."""
    files = _files(artifacts_uri, q)
    if not files.predictions:
        return None, {}, q.task
    preds = _predictions_sql(files, q, bucket_us, by_version)
    with _reader(con, files, q.model) as db:
        system = db.fetchall(_SYSTEM_SQL.format(preds=preds.sql), bind(preds, cut=q.cut))
        groups: dict[_Key, dict[str, Any]] = {}
        first: int | None = None
        for b, v, n_pred, n_req, n_err, n_client, lat, n_mature, first_us in system:
            groups[(b, v)] = {"n_predictions": n_pred, "n_requests": n_req, "n_errors": n_err,
                              "n_client": n_client, "latency": lat, "n_mature": n_mature}
            first = first_us if first is None else min(first, first_us)
        task = q.task
        if files.feedback and groups:
            lab = f"_mlops_perf_{uuid.uuid4().hex}"
            labelled = _labelled_sql(files, q, preds, _LAB_COLUMNS)
            db.execute(f"CREATE TEMP TABLE {lab} AS {labelled.sql}", labelled.params)
            try:
                task, n_labeled, metrics = _quality(db, lab, q.task)
            finally:
                db.execute(f"DROP TABLE IF EXISTS {lab}")
            for key, n in n_labeled.items():
                groups[key]["n_labeled"] = n
                groups[key]["metrics"] = metrics.get(key, {})
    return first, groups, task


def _window(q: _Query, version: str | None, start: datetime, end: datetime, task: str | None,
            g: dict[str, Any] | None) -> PerformanceWindow:
    g = g or {}
    n_req, n_mature, n_labeled = g.get("n_requests", 0), g.get("n_mature", 0), g.get("n_labeled", 0)
    seconds = (end - start).total_seconds()
    lat = g.get("latency") or [None, None, None]
    return PerformanceWindow(
        model=q.model, version=version, environment=q.environment, start=start, end=end,
        task=task if n_labeled or q.task else None,
        n_predictions=g.get("n_predictions", 0), n_requests=n_req, n_errors=g.get("n_errors", 0),
        error_rate=g.get("n_errors", 0) / n_req if n_req else 0.0,
        client_error_rate=g.get("n_client", 0) / n_req if n_req else 0.0,
        throughput_rps=n_req / seconds if seconds > 0 else 0.0,
        latency_p50_ms=lat[0], latency_p95_ms=lat[1], latency_p99_ms=lat[2],
        n_mature=n_mature, n_labeled=n_labeled,
        label_coverage=n_labeled / n_mature if n_mature else 0.0,
        metrics=dict(g.get("metrics", {})))


def _bounds(q: _Query, first: int | None) -> tuple[datetime, datetime]:
    end = q.end if q.end is not None else q.now
    if q.start is not None:
        return q.start, end
    return (min(_EPOCH + first * _US, end) if first is not None else end), end


def performance_window(artifacts_uri: str, model: str, *, version: str | None = None,
                       environment: str | None = None, start: datetime | None = None,
                       end: datetime | None = None, label_delay: timedelta = timedelta(0),
                       now: datetime | None = None, task: str | None = None,
                       con: duckdb.DuckDBPyConnection | None = None) -> PerformanceWindow:
    """Figures of ``model`` (one version/environment or all) over ``[start, end)``.

    Without ``start`` the window opens at the first logged prediction; without ``end`` it
    closes at ``now`` (default: the current time). An empty log gives zeros, not an error.
    """
    q = _query(model, version, environment, start, end, label_delay, now, task)
    first, groups, task = _compute(artifacts_uri, q, con, None, False)
    lo, hi = _bounds(q, first)
    return _window(q, version, lo, hi, task, groups.get((0, None)))


def per_version_windows(artifacts_uri: str, model: str, *, version: str | None = None,
                        environment: str | None = None, start: datetime | None = None,
                        end: datetime | None = None, label_delay: timedelta = timedelta(0),
                        now: datetime | None = None, task: str | None = None,
                        con: duckdb.DuckDBPyConnection | None = None
                        ) -> dict[str, PerformanceWindow]:
    """One window per version with predictions in the window (same span for all), in one pass."""
    q = _query(model, version, environment, start, end, label_delay, now, task)
    first, groups, task = _compute(artifacts_uri, q, con, None, True)
    lo, hi = _bounds(q, first)
    return {v: _window(q, v, lo, hi, task, groups[(0, v)])
            for v in sorted(v for _, v in groups if v is not None)}


def performance_series(artifacts_uri: str, model: str, *, bucket: timedelta, start: datetime,
                       end: datetime, by_version: bool = False, version: str | None = None,
                       environment: str | None = None, label_delay: timedelta = timedelta(0),
                       now: datetime | None = None, task: str | None = None,
                       con: duckdb.DuckDBPyConnection | None = None
                       ) -> list[PerformanceWindow]:
    """Windows ``[start + i*bucket, start + (i+1)*bucket)`` (the last one ends at ``end``).

    Every bucket is returned, empty ones with zeros; with ``by_version`` one window per
    bucket and version that has predictions anywhere in ``[start, end)``, ordered by bucket
    start then version. All buckets come from one query.
    """
    if not isinstance(bucket, timedelta) or bucket < _US:
        raise MonitoringError(f"bucket must be a positive timedelta, got {bucket!r}.",
                              fix="Pass e.g. bucket=timedelta(hours=1).", model=model)
    q = _query(model, version, environment, start, end, label_delay, now, task)
    assert q.start is not None and q.end is not None
    bucket_us = bucket // _US
    n = -(-(_us(q.end) - _us(q.start)) // bucket_us)
    if n > _MAX_BUCKETS:
        raise MonitoringError(f"{n} buckets of {bucket} between {q.start.isoformat()} and "
                              f"{q.end.isoformat()} are too many (at most {_MAX_BUCKETS}).",
                              fix="Use a larger bucket or a shorter window.", model=model)
    _, groups, task = _compute(artifacts_uri, q, con, bucket_us, by_version)
    versions: list[str | None] = [None]
    if by_version:
        versions = [*sorted({v for _, v in groups if v is not None})]
    out = []
    for i in range(n):
        lo = q.start + i * bucket
        hi = min(lo + bucket, q.end)
        for v in versions:
            out.append(_window(q, v if by_version else version, lo, hi, task, groups.get((i, v))))
    return out


def labelled_rows(artifacts_uri: str, model: str, *, version: str | None = None,
                  environment: str | None = None, start: datetime | None = None,
                  end: datetime | None = None, label_delay: timedelta = timedelta(0),
                  now: datetime | None = None) -> pa.Table:
    """The mature successful predictions joined with their latest label
    (:data:`LABELLED_SCHEMA`, ordered by ``ts``), for drift and concept-drift analyses."""
    q = _query(model, version, environment, start, end, label_delay, now, None)
    files = _files(artifacts_uri, q)
    if not files.predictions or not files.feedback:
        return LABELLED_SCHEMA.empty_table()
    sql = _labelled_sql(files, q, _predictions_sql(files, q, None, False),
                        ", ".join(LABELLED_SCHEMA.names))
    with _reader(None, files, model) as db:
        table = db.arrow(f"{sql.sql} ORDER BY ts, request_id, row", sql.params)
    return table.cast(LABELLED_SCHEMA)
