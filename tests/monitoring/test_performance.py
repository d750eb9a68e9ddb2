"""Performance windows over real Parquet prediction logs, checked against pandas + sklearn."""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import fsspec
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
)

from mlops.errors import MonitoringError
from mlops.monitoring.performance import (
    LABELLED_SCHEMA,
    PerformanceWindow,
    labelled_rows,
    per_version_windows,
    performance_series,
    performance_window,
)
from mlops.store.predlog import (
    FeedbackRecord,
    PredictionLog,
    PredictionRecord,
    read_feedback,
    read_predictions,
)

T0 = datetime(2024, 5, 17, tzinfo=UTC)
NOW = T0 + timedelta(days=3)
HOUR = 3600.0


def write_log(root: str, records: list[PredictionRecord],
              labels: list[FeedbackRecord] | None = None) -> None:
    """Write what the gateway would have logged, flushed to real Parquet files."""
    log = PredictionLog(root, flush_rows=500)  # several part files per partition
    for i in range(0, len(records), 500):
        log.log(records[i:i + 500])
        log.flush()
    log.log_feedback(labels or [])
    log.close()


def pred(rid: str, ts: float, *, model: str = "m", version: str = "1", env: str = "production",
         row: int = 0, value: Any = 1, proba: list[float] | None = None, latency: float = 5.0,
         status: int = 200) -> PredictionRecord:
    ok = status < 400
    return PredictionRecord(
        rid, ts, model, version, env, "stable", None, row, "{}",
        json.dumps(value if ok else None),
        float(value) if ok and isinstance(value, int | float) else None,
        proba if ok else None, latency, status)


def label(rid: str, value: Any, ts: float, *, row: int = 0, model: str = "m") -> FeedbackRecord:
    return FeedbackRecord(rid, row, model, json.dumps(value),
                          float(value) if isinstance(value, int | float) else None, ts)


@dataclass
class Log:
    root: str
    n_unknown: int


def synthetic(root: str, n: int = 1500, seed: int = 0, proba: bool = True) -> Log:
    """Binary classifier traffic over 3 days: 2 versions, 2 environments, batch requests,
    5xx and 4xx, delayed (possibly late) labels, corrected duplicates, unknown ids."""
    rng = np.random.default_rng(seed)
    start = T0.timestamp()
    records, labels = [], []
    for i in range(n):
        rid = f"req-{i}"
        ts = start + float(rng.uniform(0, 3 * 24 * HOUR))
        version = "2" if rng.random() < 0.3 else "1"
        env = "staging" if rng.random() < 0.2 else "production"
        u = rng.random()
        status = 500 if u < 0.03 else 422 if u < 0.05 else 200
        latency = float(rng.gamma(4, 2.0))
        for row in range(3 if rng.random() < 0.1 else 1):
            p = float(rng.beta(2, 2))
            records.append(pred(rid, ts, version=version, env=env, row=row, value=int(p >= 0.5),
                                proba=[1 - p, p] if proba else None, latency=latency,
                                status=status))
            if rng.random() < 0.6:
                actual = int(rng.random() < p)
                fts = ts + float(rng.uniform(0, 6 * HOUR))
                if rng.random() < 0.05:  # a wrong label first, corrected later
                    labels.append(label(rid, 1 - actual, fts, row=row))
                    fts += 60.0
                labels.append(label(rid, actual, fts, row=row))
    labels += [label(f"ghost-{i}", 1, start + i) for i in range(20)]
    write_log(root, records, labels)
    return Log(root, 20)


@pytest.fixture(scope="module")
def binary_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    return synthetic(str(tmp_path_factory.mktemp("binary") / "artifacts")).root


def reference(root: str, *, version: str | None = None, env: str | None = None,
              start: datetime | None = None, end: datetime | None = None,
              now: datetime = NOW, delay: timedelta = timedelta(0),
              model: str = "m") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(window predictions, mature labelled rows) computed with pyarrow + pandas."""
    p = read_predictions(root, model=model).to_pandas()
    f = read_feedback(root, model=model).to_pandas()
    keep = p.ts < end if end is not None else p.ts <= now
    if start is not None:
        keep &= p.ts >= start
    if version is not None:
        keep &= p.version == version
    if env is not None:
        keep &= p.environment == env
    p = p[keep]
    f = f[f.ts <= now].sort_values("ts").drop_duplicates(["request_id", "row"], keep="last")
    mature = p[(p.status < 400) & (p.ts <= now - delay)]
    joined = mature.merge(f[["request_id", "row", "actual", "actual_num"]],
                          on=["request_id", "row"])
    return p, joined


def check_system(w: PerformanceWindow, p: pd.DataFrame, joined: pd.DataFrame,
                 now: datetime = NOW, delay: timedelta = timedelta(0)) -> None:
    n_req = p.request_id.nunique()
    assert w.n_predictions == len(p)
    assert w.n_requests == n_req
    assert w.n_errors == p[p.status >= 500].request_id.nunique()
    assert w.error_rate == pytest.approx(w.n_errors / n_req)
    assert w.client_error_rate == pytest.approx(
        p[(p.status >= 400) & (p.status < 500)].request_id.nunique() / n_req)
    assert w.throughput_rps == pytest.approx(n_req / (w.end - w.start).total_seconds())
    ok = p[(p.status < 400) & (p.row == 0)].latency_ms.to_numpy()
    assert [w.latency_p50_ms, w.latency_p95_ms, w.latency_p99_ms] == pytest.approx(
        np.percentile(ok, [50, 95, 99]))
    n_mature = int(((p.status < 400) & (p.ts <= now - delay)).sum())
    assert (w.n_mature, w.n_labeled) == (n_mature, len(joined))
    assert w.label_coverage == pytest.approx(len(joined) / n_mature)


def binary_metrics(joined: pd.DataFrame, with_proba: bool = True) -> dict[str, float]:
    y, yp = joined.actual_num.to_numpy(), joined.prediction_num.to_numpy()
    out = {"accuracy": accuracy_score(y, yp),
           "precision": precision_score(y, yp, pos_label=1, zero_division=0),
           "recall": recall_score(y, yp, pos_label=1, zero_division=0),
           "f1": f1_score(y, yp, pos_label=1, zero_division=0)}
    if with_proba:
        proba = np.stack(list(joined.proba))
        out["roc_auc"] = roc_auc_score(y, proba[:, 1])
        out["log_loss"] = log_loss(y, proba, labels=[0, 1])
    return out


def assert_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k


def assert_same(a: PerformanceWindow, b: PerformanceWindow) -> None:
    """Equal windows (metrics up to float summation order)."""
    assert {**a.to_dict(), "metrics": None} == {**b.to_dict(), "metrics": None}
    assert_metrics(a.metrics, b.metrics)


# ---------------------------------------------------------------------------- whole windows


def test_binary_window_matches_pandas_and_sklearn(binary_log: str) -> None:
    w = performance_window(binary_log, "m", now=NOW)
    p, joined = reference(binary_log)
    assert (w.model, w.version, w.environment, w.task) == ("m", None, None, "classification")
    assert w.start == p.ts.min().to_pydatetime() and w.end == NOW
    check_system(w, p, joined)
    assert 0 < w.n_labeled < w.n_mature
    assert_metrics(w.metrics, binary_metrics(joined))
    d = w.to_dict()
    assert d["start"] == w.start.isoformat() and d["metrics"] == w.metrics
    json.dumps(d)


@pytest.mark.parametrize(("version", "env", "start", "end", "delay"), [
    ("2", None, None, None, timedelta(0)),
    (None, "staging", None, None, timedelta(0)),
    ("1", "production", T0 + timedelta(hours=20), T0 + timedelta(hours=44), timedelta(0)),
    (None, None, T0 + timedelta(days=1), None, timedelta(hours=30)),
])
def test_filters_match_pandas(binary_log: str, version: str | None, env: str | None,
                              start: datetime | None, end: datetime | None,
                              delay: timedelta) -> None:
    w = performance_window(binary_log, "m", version=version, environment=env, start=start,
                           end=end, label_delay=delay, now=NOW)
    p, joined = reference(binary_log, version=version, env=env, start=start, end=end,
                          delay=delay)
    assert (w.version, w.environment) == (version, env)
    assert set(p.version) == ({version} if version else {"1", "2"})
    assert w.start == (start or p.ts.min().to_pydatetime()) and w.end == (end or NOW)
    check_system(w, p, joined, delay=delay)
    assert_metrics(w.metrics, binary_metrics(joined))


def test_per_version_windows_match_single_version_windows(binary_log: str) -> None:
    start = T0 + timedelta(hours=6)
    both = per_version_windows(binary_log, "m", start=start, end=NOW, now=NOW)
    assert list(both) == ["1", "2"]
    for v, w in both.items():
        assert_same(w, performance_window(binary_log, "m", version=v, start=start, end=NOW,
                                          now=NOW))
    assert per_version_windows(binary_log, "m", version="2", now=NOW).keys() == {"2"}
    assert per_version_windows(binary_log, "nobody", now=NOW) == {}


def test_series_buckets_sum_to_the_window(binary_log: str) -> None:
    start, end = T0 + timedelta(minutes=30), NOW - timedelta(minutes=10)
    series = performance_series(binary_log, "m", bucket=timedelta(hours=1), start=start,
                                end=end, label_delay=timedelta(hours=2), now=NOW)
    whole = performance_window(binary_log, "m", start=start, end=end,
                               label_delay=timedelta(hours=2), now=NOW)
    assert len(series) == 72
    assert series[0].start == start and series[-1].end == end
    assert series[-1].end - series[-1].start == timedelta(minutes=20)
    assert all(a.end == b.start for a, b in itertools.pairwise(series))
    for field in ("n_predictions", "n_requests", "n_errors", "n_mature", "n_labeled"):
        assert sum(getattr(w, field) for w in series) == getattr(whole, field), field
    # every bucket is a window of its own
    w = series[30]
    assert_same(w, performance_window(binary_log, "m", start=w.start, end=w.end,
                                      label_delay=timedelta(hours=2), now=NOW))
    _, joined = reference(binary_log, start=w.start, end=w.end, delay=timedelta(hours=2))
    assert_metrics(w.metrics, binary_metrics(joined))
    # immature buckets have predictions but no labels yet
    assert series[-1].n_predictions and series[-1].n_mature == series[-1].n_labeled == 0
    assert series[-1].task is None and series[-1].metrics == {}


def test_series_by_version(binary_log: str) -> None:
    start, end = T0, T0 + timedelta(days=3)
    series = performance_series(binary_log, "m", bucket=timedelta(hours=6), start=start,
                                end=end, by_version=True, now=NOW)
    assert [(w.start - start, w.version) for w in series[:4]] == [
        (timedelta(0), "1"), (timedelta(0), "2"), (timedelta(hours=6), "1"),
        (timedelta(hours=6), "2")]
    assert len(series) == 24
    per_version = per_version_windows(binary_log, "m", start=start, end=end, now=NOW)
    for v, w in per_version.items():
        mine = [s for s in series if s.version == v]
        assert sum(s.n_labeled for s in mine) == w.n_labeled
        assert sum(s.n_requests for s in mine) == w.n_requests
    assert_same(series[5], performance_window(binary_log, "m", version=series[5].version,
                                              start=series[5].start, end=series[5].end,
                                              now=NOW))


# ---------------------------------------------------------------------------- labels


def test_delayed_label_join(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    now = T0 + timedelta(hours=10)
    t = T0.timestamp()
    records = [
        pred("old", t, value=1),                      # mature, labelled twice: latest wins
        pred("late", t + 60, value=0),                # mature, label arrives hours later
        pred("nolabel", t + 120, value=1),            # mature, never labelled
        pred("future", t + 180, value=1),             # mature, label logged after `now`
        pred("fresh", t + 9.5 * HOUR, value=1),       # immature (delay 1 h), labelled
        pred("err", t + 200, status=503),             # failed: no quality row
        pred("batch", t + 300, value=1, row=0),
        pred("batch", t + 300, value=0, row=1),       # row 1 labelled, row 0 not
    ]
    labels = [
        label("old", 0, t + 10), label("old", 1, t + 20),  # corrected: 1 counts
        label("late", 1, t + 5 * HOUR),
        label("future", 0, t + 11 * HOUR),
        label("fresh", 1, t + 9.6 * HOUR),
        label("err", 1, t + 400),
        label("batch", 0, t + 500, row=1),
        label("ghost", 1, t + 10), label("batch", 1, t + 10, row=7),  # unknown rows
    ]
    write_log(root, records, labels)
    w = performance_window(root, "m", label_delay=timedelta(hours=1), now=now)
    assert (w.n_predictions, w.n_requests, w.n_errors) == (8, 7, 1)
    assert (w.n_mature, w.n_labeled) == (6, 3)   # old, late, nolabel, future, batch x2
    assert w.label_coverage == pytest.approx(0.5)
    # old: 1 vs 1 right; late: 0 vs 1 wrong; batch/1: 0 vs 0 right
    assert w.metrics["accuracy"] == pytest.approx(2 / 3)
    assert w.metrics["precision"] == pytest.approx(1.0) and w.metrics["recall"] == 0.5
    rows = labelled_rows(root, "m", label_delay=timedelta(hours=1), now=now)
    assert rows.schema == LABELLED_SCHEMA
    assert [(r["request_id"], r["row"], r["actual"]) for r in rows.to_pylist()] == [
        ("old", 0, "1"), ("late", 0, "1"), ("batch", 1, "0")]
    # later, the late labels have arrived and the fresh prediction matured
    later = performance_window(root, "m", label_delay=timedelta(hours=1),
                               now=now + timedelta(hours=2))
    assert (later.n_mature, later.n_labeled) == (7, 5)
    got = labelled_rows(root, "m", now=now + timedelta(hours=2), start=T0 + timedelta(hours=1))
    assert got["request_id"].to_pylist() == ["fresh"]
    assert got["ts"].to_pylist()[0] == T0 + timedelta(hours=9.5)
    assert got["version"].to_pylist() == ["1"] and got["proba"].to_pylist() == [None]


def test_classification_without_probabilities_omits_auc(tmp_path: Path) -> None:
    root = synthetic(str(tmp_path / "a"), n=600, seed=3, proba=False).root
    w = performance_window(root, "m", now=NOW)
    _, joined = reference(root)
    assert w.task == "classification"
    assert "roc_auc" not in w.metrics and "log_loss" not in w.metrics
    assert_metrics(w.metrics, binary_metrics(joined, with_proba=False))


def test_multiclass_string_labels(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    rng = np.random.default_rng(7)
    classes = ["bird", "cat", "dog"]
    t = T0.timestamp()
    records, labels = [], []
    for i in range(900):
        p = rng.dirichlet([1, 1, 1])
        records.append(pred(f"r{i}", t + i, value=classes[int(np.argmax(p))], proba=list(p)))
        labels.append(label(f"r{i}", classes[int(rng.choice(3, p=p))], t + i + 5))
    write_log(root, records, labels)
    w = performance_window(root, "m", now=NOW)
    _, joined = reference(root)
    y, yp = joined.actual.map(json.loads), joined.prediction.map(json.loads)
    proba = np.stack(list(joined.proba))
    assert w.task == "classification"
    assert_metrics(w.metrics, {
        "accuracy": accuracy_score(y, yp),
        "precision": precision_score(y, yp, average="macro", zero_division=0),
        "recall": recall_score(y, yp, average="macro", zero_division=0),
        "f1": f1_score(y, yp, average="macro", zero_division=0),
        "roc_auc": roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes),
        "log_loss": log_loss(y, proba, labels=classes)})


def test_proba_that_does_not_match_the_classes_is_not_used(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    t = T0.timestamp()
    records = [pred(f"r{i}", t + i, value=i % 3, proba=[0.5, 0.5]) for i in range(30)]
    write_log(root, records, [label(f"r{i}", (i + 1) % 3, t + 100) for i in range(30)])
    w = performance_window(root, "m", now=NOW)
    assert w.metrics["accuracy"] == 0.0
    assert set(w.metrics) == {"accuracy", "precision", "recall", "f1"}


def test_regression(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    rng = np.random.default_rng(11)
    t = T0.timestamp()
    records, labels = [], []
    for i in range(800):
        target = float(rng.normal(50, 10))
        records.append(pred(f"r{i}", t + i * 60, version="1" if i % 2 else "2",
                            value=round(target + float(rng.normal(0, 3)), 3)))
        if i % 4:
            labels.append(label(f"r{i}", round(target, 2), t + i * 60 + 30))
    write_log(root, records, labels)
    w = performance_window(root, "m", now=NOW)
    _, joined = reference(root)
    y, yp = joined.actual_num, joined.prediction_num
    assert w.task == "regression" and w.n_labeled == 600
    assert_metrics(w.metrics, {"mae": mean_absolute_error(y, yp),
                               "rmse": np.sqrt(mean_squared_error(y, yp)),
                               "r2": r2_score(y, yp)})
    assert {v.task for v in per_version_windows(root, "m", now=NOW).values()} == {"regression"}
    # the override wins over the detection
    as_class = performance_window(root, "m", now=NOW, task="classification")
    assert as_class.task == "classification" and "accuracy" in as_class.metrics


def test_integer_regression_needs_the_task_override(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    t = T0.timestamp()
    records = [pred(f"r{i}", t + i, value=i) for i in range(50)]
    write_log(root, records, [label(f"r{i}", i + (i % 3), t + 100) for i in range(50)])
    assert performance_window(root, "m", now=NOW).task == "classification"
    w = performance_window(root, "m", now=NOW, task="regression")
    errors = np.array([i % 3 for i in range(50)], dtype=float)
    assert w.task == "regression"
    assert w.metrics["mae"] == pytest.approx(errors.mean())
    assert w.metrics["rmse"] == pytest.approx(np.sqrt((errors ** 2).mean()))


# ---------------------------------------------------------------------------- edge cases


def test_empty_log(tmp_path: Path) -> None:
    root = str(tmp_path / "nothing")
    w = performance_window(root, "m", now=NOW)
    assert (w.n_predictions, w.n_requests, w.n_errors, w.n_mature, w.n_labeled) == (0,) * 5
    assert (w.error_rate, w.throughput_rps, w.label_coverage) == (0.0, 0.0, 0.0)
    assert (w.latency_p50_ms, w.latency_p99_ms, w.task, w.metrics) == (None, None, None, {})
    assert w.start == w.end == NOW
    series = performance_series(root, "m", bucket=timedelta(hours=12), start=T0, end=NOW,
                                now=NOW)
    assert len(series) == 6 and all(s.n_predictions == 0 for s in series)
    assert performance_series(root, "m", bucket=timedelta(hours=12), start=T0, end=NOW,
                              by_version=True, now=NOW) == []
    assert labelled_rows(root, "m", now=NOW) == LABELLED_SCHEMA.empty_table()
    # predictions but no feedback at all; task given explicitly is kept
    write_log(root, [pred("a", T0.timestamp())])
    w = performance_window(root, "m", now=NOW, task="regression")
    assert (w.n_predictions, w.n_mature, w.n_labeled, w.task, w.metrics) == \
        (1, 1, 0, "regression", {})
    assert performance_window(root, "other", now=NOW).n_predictions == 0


def test_only_needed_files_are_read(tmp_path: Path) -> None:
    root = tmp_path / "a"
    t = T0.timestamp()
    write_log(str(root), [pred("d0", t), pred("d2", t + 2 * 24 * HOUR, version="x y/z")],
              [label("d0", 1, t + 1)])
    day2 = next((root / "predictions" / "model=m").glob("version=x%20y%2Fz/date=*"))
    (day2 / "part-broken.parquet").write_bytes(b"not parquet")
    (day2 / ".part-writing.parquet.tmp").write_bytes(b"half written")
    day0 = T0 + timedelta(days=1)
    assert performance_window(str(root), "m", end=day0, now=NOW).n_labeled == 1
    assert performance_window(str(root), "m", version="1", now=NOW).n_predictions == 1
    with pytest.raises(MonitoringError, match="Cannot read the prediction log") as err:
        performance_window(str(root), "m", now=NOW)
    assert isinstance(err.value.__cause__.__cause__, duckdb.Error) and err.value.fix
    os.remove(day2 / "part-broken.parquet")
    both = per_version_windows(str(root), "m", now=NOW)
    assert list(both) == ["1", "x y/z"] and both["x y/z"].n_predictions == 1


def test_given_connection_is_reused_and_left_clean(binary_log: str) -> None:
    con = duckdb.connect()
    try:
        w = performance_window(binary_log, "m", now=NOW, con=con)
        assert_same(w, performance_window(binary_log, "m", now=NOW))
        tables = con.sql("SELECT count(*) FROM duckdb_tables()").fetchall()
        assert tables == [(0,)]
        assert con.sql("SELECT 1").fetchall() == [(1,)]
    finally:
        con.close()


@pytest.fixture
def memory_uri() -> Iterator[str]:
    root = f"memory://perf-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = "/" + root.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_fsspec_store(memory_uri: str) -> None:
    t = T0.timestamp()
    write_log(memory_uri, [pred("a", t, value=1), pred("b", t + 1, value=0)],
              [label("a", 1, t + 2), label("b", 1, t + 2)])
    w = performance_window(memory_uri, "m", now=NOW)
    assert (w.n_predictions, w.n_labeled, w.metrics["accuracy"]) == (2, 2, 0.5)
    assert labelled_rows(memory_uri, "m", now=NOW).num_rows == 2


def test_invalid_arguments(binary_log: str) -> None:
    with pytest.raises(MonitoringError, match="Unknown task"):
        performance_window(binary_log, "m", task="ranking")
    with pytest.raises(MonitoringError, match="not before"):
        performance_window(binary_log, "m", start=NOW, end=T0)
    with pytest.raises(MonitoringError, match="label_delay"):
        performance_window(binary_log, "m", label_delay=timedelta(hours=-1))
    with pytest.raises(MonitoringError, match="bucket"):
        performance_series(binary_log, "m", bucket=timedelta(0), start=T0, end=NOW)
    with pytest.raises(MonitoringError, match="too many"):
        performance_series(binary_log, "m", bucket=timedelta(seconds=1), start=T0, end=NOW)
    naive = performance_window(binary_log, "m", start=T0.replace(tzinfo=None), end=NOW,
                               now=NOW)
    assert naive.start == T0 and naive.start.tzinfo is not None


def test_scores_that_are_not_probabilities_give_no_log_loss(tmp_path: Path) -> None:
    root = str(tmp_path / "a")
    t = T0.timestamp()
    scores = [[-s, s] for s in np.linspace(-2, 2, 40)]
    records = [pred(f"r{i}", t + i, value=int(s[1] > 0), proba=s) for i, s in enumerate(scores)]
    write_log(root, records, [label(f"r{i}", int(i % 3 != 0), t + 100) for i in range(40)])
    w = performance_window(root, "m", now=NOW)
    y = [int(i % 3 != 0) for i in range(40)]
    assert w.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, [s[1] for s in scores]))
    assert "log_loss" not in w.metrics
