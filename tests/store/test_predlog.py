"""Tests of the non-blocking Parquet prediction log: layout, buffering, failures, readers."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from mlops.errors import ArtifactError
from mlops.store.predlog import (
    FEEDBACK_SCHEMA,
    PREDICTION_FIELDS,
    PREDICTION_SCHEMA,
    FeedbackRecord,
    PredictionLog,
    PredictionRecord,
    read_feedback,
    read_predictions,
)
from mlops.store.predlog import writer as predlog

TS = datetime(2024, 5, 17, 12, 30, tzinfo=UTC).timestamp()
DAY = 86_400.0


def rec(i: int, *, model: str = "churn", version: str = "1.2.0", ts: float = TS,
        request_id: str | None = None) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id or f"req-{i}", ts=ts + i * 1e-3, model=model, version=version,
        environment="production", route="stable" if i % 2 else "candidate",
        unit_hash=None if i % 3 == 0 else f"{i:064x}", row=i % 7,
        inputs=json.dumps({"age": i, "plan": "pro"}), prediction=json.dumps(i % 2),
        prediction_num=float(i % 2), proba=None if i % 5 == 0 else [0.25, 0.75],
        latency_ms=1.5 + i, status=200,
    )


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def as_rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: (str(r["request_id"]), r["row"]))


@pytest.fixture
def memory_uri() -> Iterator[str]:
    root = f"memory://predlog-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = root.removeprefix("memory://")
    if fs.exists(f"/{path}"):
        fs.rm(f"/{path}", recursive=True)


def test_round_trip_values_types_and_layout(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    records = [rec(i) for i in range(20)]
    records += [rec(100 + i, version="2.0.0", ts=TS + DAY) for i in range(5)]
    log = PredictionLog(str(root))
    log.start()
    assert log.log(records) == 25
    log.close()
    assert (log.written, log.pending, log.dropped) == (25, 0, 0)

    table = read_predictions(str(root))
    assert table.schema == PREDICTION_SCHEMA
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    rows = as_rows(table)
    assert len(rows) == 25
    for r, row in zip(sorted(records, key=lambda r: r.request_id), rows, strict=True):
        assert row["ts"].timestamp() == pytest.approx(r.ts, abs=1e-6)
        assert row["date"] == datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%d")
        expected = {f: getattr(r, f) for f in PredictionRecord.__dataclass_fields__ if f != "ts"}
        assert {k: v for k, v in row.items() if k not in ("ts", "date")} == expected

    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert len(files) == 2
    assert files[0].startswith("predictions/model=churn/version=1.2.0/date=2024-05-17/part-")
    assert files[1].startswith("predictions/model=churn/version=2.0.0/date=2024-05-18/part-")
    # partition columns live in the path only
    inner = pq.read_schema(root / files[0])
    assert "model" not in inner.names and "version" not in inner.names

    # filters and plain pyarrow hive discovery
    assert read_predictions(str(root), model="churn", version="2.0.0").num_rows == 5
    assert read_predictions(str(root), version="1.2.0").num_rows == 20
    assert read_predictions(str(root), model="other").num_rows == 0
    hive = ds.dataset(root / "predictions", format="parquet", partitioning="hive").to_table()
    assert hive.num_rows == 25


def test_since_skips_old_day_partitions_and_rows(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    log = PredictionLog(str(root))
    log.start()
    log.log([rec(i, ts=TS - 5 * DAY) for i in range(10)] + [rec(100 + i) for i in range(4)])
    log.close()
    old = next((root / "predictions").rglob("date=2024-05-12"))
    for part in old.glob("*.parquet"):  # a corrupt old file would break a full read ...
        part.write_bytes(b"not parquet")
    recent = read_predictions(str(root), model="churn", since=TS)  # ... but is never opened
    assert sorted(recent.column("request_id").to_pylist()) == [f"req-{100 + i}"
                                                              for i in range(4)]
    assert read_predictions(str(root), model="churn", since=TS + 0.1025).num_rows == 1


def test_empty_store_reads_empty_tables(tmp_path: Path) -> None:
    assert read_predictions(str(tmp_path / "none")).schema == PREDICTION_SCHEMA
    assert read_predictions(str(tmp_path / "none")).num_rows == 0
    assert read_feedback(str(tmp_path / "none")).schema == FEEDBACK_SCHEMA


def test_flushes_by_row_count_without_flush_call(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_rows=100, flush_seconds=60)
    log.start()
    for b in range(5):
        assert log.log([rec(b * 50 + i) for i in range(50)]) == 50
    wait_for(lambda: log.written >= 200, timeout=10)  # far sooner than flush_seconds
    assert read_predictions(str(tmp_path)).num_rows >= 200  # more may land meanwhile
    log.close()
    assert read_predictions(str(tmp_path)).num_rows == log.written == 250
    assert read_predictions(str(tmp_path)).num_rows == 250


def test_flushes_by_time_without_flush_call(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), flush_rows=1_000_000, flush_seconds=0.05)
    log.start()
    log.log([rec(i) for i in range(3)])
    wait_for(lambda: log.written == 3)
    assert log.pending == 0
    assert read_predictions(str(tmp_path)).num_rows == 3
    log.log([rec(10)])
    wait_for(lambda: log.written == 4)
    log.close()


def test_full_buffer_drops_and_reports(tmp_path: Path) -> None:
    drops: list[int] = []
    log = PredictionLog(str(tmp_path), max_buffer=10, on_drop=drops.append)
    assert log.log([rec(i) for i in range(6)]) == 6
    assert log.log([rec(i) for i in range(6, 12)]) == 4
    assert log.log([rec(99)]) == 0
    assert log.dropped == 3 and drops == [2, 1] and log.pending == 10
    assert log.flush() == 10
    assert log.log([rec(50)]) == 1  # room again after the flush
    log.close()
    assert sorted(read_predictions(str(tmp_path))["request_id"].to_pylist()) == sorted(
        [f"req-{i}" for i in range(10)] + ["req-50"])
    assert log.log([rec(51)]) == 0  # closed: nothing accepted, counted as dropped
    assert log.dropped == 4 and drops == [2, 1, 1]


def test_on_drop_errors_do_not_escape(tmp_path: Path) -> None:
    def boom(n: int) -> None:
        raise RuntimeError("metrics down")

    log = PredictionLog(str(tmp_path), max_buffer=1, on_drop=boom)
    assert log.log([rec(0), rec(1)]) == 1
    assert log.log(None) == 0  # type: ignore[arg-type]  # never raises
    log.close()


def test_close_under_concurrent_logging_loses_nothing(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), max_buffer=3_000, flush_rows=500, flush_seconds=0.02)
    log.start()
    accepted = [0] * 4
    attempted = [0] * 4
    go = threading.Event()

    def worker(t: int) -> None:
        go.wait()
        i = 0
        while i < 40_000:
            batch = [rec(i + k, request_id=f"t{t}-{i + k}") for k in range(1 + i % 4)]
            accepted[t] += log.log(batch)
            i += len(batch)
        attempted[t] = i

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    go.set()
    time.sleep(0.3)
    log.close()
    for th in threads:
        th.join()
    table = read_predictions(str(tmp_path))
    assert table.num_rows == sum(accepted) == log.written
    assert len(set(table["request_id"].to_pylist())) == table.num_rows
    assert sum(accepted) + log.dropped == sum(attempted)
    assert log.pending == 0


def test_failing_target_keeps_rows_and_recovers(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a folder should be")
    root = blocker / "logs"
    drops: list[int] = []
    log = PredictionLog(str(root), max_buffer=15, flush_seconds=0.05, on_drop=drops.append)
    caplog.set_level(logging.ERROR, logger="mlops.store.predlog")
    log.start()
    assert log.log([rec(i) for i in range(10)]) == 10
    wait_for(lambda: any(r.name == "mlops.store.predlog" for r in caplog.records))
    time.sleep(0.2)  # several failed attempts
    assert log.written == 0 and log.pending == 10 and log.dropped == 0
    # rows in flight still count against max_buffer
    assert log.log([rec(i) for i in range(10, 20)]) == 5
    assert log.dropped == 5 and drops == [5]
    with pytest.raises(ArtifactError):
        log.flush()
    assert log.pending == 15

    blocker.unlink()
    wait_for(lambda: log.written == 15)
    log.close()
    got = sorted(read_predictions(str(root))["request_id"].to_pylist())
    assert got == sorted(f"req-{i}" for i in range(15))


def test_close_raises_when_final_write_fails_and_can_retry(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    log = PredictionLog(str(blocker / "logs"))
    log.log([rec(0)])
    with pytest.raises(ArtifactError):
        log.close()
    assert log.pending == 1
    blocker.unlink()
    log.close()
    assert log.written == 1 and log.pending == 0
    log.close()  # idempotent


def test_malformed_records_are_dropped_not_retried(tmp_path: Path) -> None:
    drops: list[int] = []
    log = PredictionLog(str(tmp_path), on_drop=drops.append)
    bad_ts = rec(1)
    bad_ts.ts = "yesterday"  # type: ignore[assignment]
    bad_status = rec(2)
    bad_status.status = "ok"  # type: ignore[assignment]
    bad_model = rec(3)
    bad_model.model = None  # type: ignore[assignment]
    assert log.log([rec(0), bad_ts, bad_status, bad_model, rec(4)]) == 5
    assert log.flush() == 2
    assert log.dropped == 3 and sum(drops) == 3 and log.pending == 0
    log.close()
    assert sorted(read_predictions(str(tmp_path))["request_id"].to_pylist()) == ["req-0", "req-4"]


@pytest.mark.parametrize("model", ["my model", "team/churn", "k=v", "100% & ü", ".hidden"])
def test_awkward_model_names_round_trip(tmp_path: Path, model: str) -> None:
    log = PredictionLog(str(tmp_path))
    log.log([rec(0, model=model, version="1.0 rc/=1"), rec(1, model="plain")])
    log.log_feedback([FeedbackRecord("req-0", 0, model, "1", 1.0, TS)])
    log.close()
    table = read_predictions(str(tmp_path), model=model)
    assert table["model"].to_pylist() == [model]
    assert table["version"].to_pylist() == ["1.0 rc/=1"]
    assert sorted(read_predictions(str(tmp_path))["model"].to_pylist()) == sorted([model, "plain"])
    assert read_feedback(str(tmp_path), model=model)["model"].to_pylist() == [model]
    # one folder level per partition, whatever the name contains
    for p in (tmp_path / "predictions").rglob("*.parquet"):
        assert len(p.relative_to(tmp_path / "predictions").parts) == 4


def test_feedback_round_trip(tmp_path: Path) -> None:
    fb = [FeedbackRecord(f"req-{i}", i % 3, "churn", json.dumps(i % 2), float(i % 2), TS + i)
          for i in range(6)]
    fb.append(FeedbackRecord("req-x", 0, "fraud", json.dumps("yes"), None, TS + DAY))
    log = PredictionLog(str(tmp_path))
    assert log.log_feedback(fb) == 7
    log.log([rec(0)])
    assert log.flush() == 8
    log.close()
    table = read_feedback(str(tmp_path))
    assert table.schema == FEEDBACK_SCHEMA
    rows = as_rows(table)
    assert [(r["request_id"], r["row"], r["model"], r["actual"], r["actual_num"]) for r in rows] \
        == sorted((f.request_id, f.row, f.model, f.actual, f.actual_num) for f in fb)
    assert {r["date"] for r in rows} == {"2024-05-17", "2024-05-18"}
    assert rows[0]["ts"].timestamp() == pytest.approx(TS)
    assert read_feedback(str(tmp_path), model="fraud").num_rows == 1
    assert sorted(p.relative_to(tmp_path).parts[:3] for p in tmp_path.rglob("*.parquet")
                  if p.parts[-4] == "feedback" or "feedback" in p.parts) == [
        ("feedback", "model=churn", "date=2024-05-17"),
        ("feedback", "model=fraud", "date=2024-05-18"),
    ]


def test_files_appear_atomically_and_temp_files_are_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        assert Path(src).exists() and not Path(dst).exists()
        replaced.append((src, dst))
        real_replace(src, dst)

    monkeypatch.setattr(predlog.os, "replace", spy)
    log = PredictionLog(str(tmp_path), spool=False)  # spool segments are renamed into place too
    log.log([rec(i) for i in range(5)])
    log.log_feedback([FeedbackRecord("req-0", 0, "churn", "1", 1.0, TS)])
    log.close()
    assert len(replaced) == 2
    for src, dst in replaced:
        assert Path(src).parent == Path(dst).parent
        assert Path(src).name.startswith(".") and Path(dst).name.startswith("part-")
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith((".", "_"))]

    # leftovers of a crashed writer and other non-data files are skipped by the readers
    folder = Path(replaced[0][1]).parent
    (folder / ".part-crashed.parquet.tmp").write_bytes(b"half a file")
    (folder / ".part-hidden.parquet").write_bytes(b"junk")
    (folder / "_tmp.parquet").write_bytes(b"junk")
    (folder / "notes.txt").write_text("junk")
    assert read_predictions(str(tmp_path)).num_rows == 5
    assert read_feedback(str(tmp_path)).num_rows == 1
    assert ds.dataset(tmp_path / "predictions", format="parquet",
                      partitioning="hive", exclude_invalid_files=True).count_rows() == 5


def test_memory_fsspec_url(memory_uri: str) -> None:
    log = PredictionLog(memory_uri, flush_seconds=0.05)
    log.start()
    log.log([rec(i, model="m 1/x") for i in range(7)])
    log.log_feedback([FeedbackRecord("req-1", 1, "m 1/x", "0", 0.0, TS)])
    wait_for(lambda: log.written == 8)
    log.close()
    table = read_predictions(memory_uri, model="m 1/x")
    assert table.num_rows == 7 and set(table["model"].to_pylist()) == {"m 1/x"}
    assert table.schema == PREDICTION_SCHEMA
    assert read_feedback(memory_uri).num_rows == 1
    fs = fsspec.filesystem("memory")
    names = fs.find(memory_uri.removeprefix("memory:/"))
    assert len(names) == 2 and all(n.rsplit("/", 1)[1].startswith("part-") for n in names)


def test_start_and_close_are_idempotent(tmp_path: Path) -> None:
    before = set(threading.enumerate())  # other tests of this worker may have left theirs
    log = PredictionLog(str(tmp_path), flush_seconds=0.05)
    log.start()
    log.start()
    log.log([rec(0)])
    log.close()
    log.close()
    log.start()  # no-op once closed
    assert log.written == 1
    assert not [t for t in threading.enumerate() if t.name == "mlops-predlog-flush"
                and t not in before]


def test_bad_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(predlog.ConfigError):
        PredictionLog(str(tmp_path), flush_rows=0)
    with pytest.raises(ArtifactError):
        PredictionLog("nosuchproto-xyz://bucket/logs")


def test_rows_logged_as_tuples_read_back_as_the_same_records(tmp_path: Path) -> None:
    """The gateway logs rows (a record's fields in order, no object per row): they are
    written exactly as the same records logged through ``log``."""
    as_records, as_tuples = tmp_path / "records", tmp_path / "tuples"
    records = [rec(i) for i in range(12)]
    first = PredictionLog(str(as_records))
    assert first.log(records) == 12
    first.close()
    second = PredictionLog(str(as_tuples))
    rows = [tuple(getattr(r, name) for name in PREDICTION_FIELDS) for r in records]
    assert second.log_rows(rows) == 12
    second.close()
    assert as_rows(read_predictions(str(as_tuples))) == \
        as_rows(read_predictions(str(as_records)))


def test_what_is_not_a_record_is_dropped_and_counted(tmp_path: Path) -> None:
    drops: list[int] = []
    log = PredictionLog(str(tmp_path), on_drop=drops.append)
    assert log.log([rec(0), "not a record", rec(1)]) == 2  # type: ignore[list-item]
    assert (log.dropped, drops) == (1, [1])
    log.close()
    assert read_predictions(str(tmp_path)).num_rows == 2
