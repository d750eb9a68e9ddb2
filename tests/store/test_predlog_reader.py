"""The prediction log's readers: listing with pruning, the DuckDB reader's bound parameters,
typed queries, and incremental reads by cursor."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.errors import ArtifactError, ConfigError
from mlops.store.predlog import (
    FEEDBACK,
    PREDICTION_FILE_SCHEMA,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    FeedbackRecord,
    LogCursor,
    LogReader,
    PredictionLog,
    PredictionRecord,
    list_files,
    logged_rows,
    new_log_files,
    open_store,
    prediction_scan,
    read_log_files,
    read_predictions,
)
from mlops.store.predlog.layout import parse_part_name, part_name

T0 = datetime(2024, 5, 17, 12, tzinfo=UTC)
DAY = timedelta(days=1)
HOSTILE = "x' OR '1'='1"


def rec(rid: str, ts: datetime, *, version: str = "1", env: str = "production",
        status: int = 200, x: int = 0, model: str = "m") -> PredictionRecord:
    return PredictionRecord(rid, ts.timestamp(), model, version, env, "stable", None, 0,
                            json.dumps({"x": x}), json.dumps(x % 2), float(x % 2), None, 1.0,
                            status)


def write(root: Path, records: list[PredictionRecord],
          feedback: list[FeedbackRecord] | None = None) -> None:
    log = PredictionLog(str(root), spool=False)
    log.log(records)
    log.log_feedback(feedback or [])
    log.close()


def test_names_carry_the_flush_time_and_id() -> None:
    at = datetime(2024, 5, 17, 1, 2, 3, 456789, tzinfo=UTC)
    name = part_name(at, "ab" * 16)
    assert name == "part-20240517T010203456789Z-" + "ab" * 16 + ".parquet"
    parsed = parse_part_name(name)
    assert parsed is not None and parsed.flushed_at == at and parsed.file_id == "ab" * 16
    assert parse_part_name("part-broken.parquet") is None
    with pytest.raises(ValueError):
        part_name(at, "not-hex")


def test_listing_prunes_models_versions_and_days(tmp_path: Path) -> None:
    write(tmp_path, [rec("a", T0), rec("b", T0 + DAY, version="2 b/c"),
                     rec("c", T0 + 2 * DAY), rec("d", T0, model="other")],
          [FeedbackRecord("a", 0, "m", "1", 1.0, (T0 + DAY).timestamp())])
    store = open_store(str(tmp_path))
    every = list_files(store, PREDICTIONS, "m")
    assert sorted((f.version, f.day) for f in every) == [
        ("1", "2024-05-17"), ("1", "2024-05-19"), ("2 b/c", "2024-05-18")]
    assert every == sorted(every, key=lambda f: (f.flushed_at, f.path))  # oldest flush first
    assert all(f.flushed_at is not None and f.model == "m" for f in every)
    assert [f.day for f in list_files(store, PREDICTIONS, "m", versions=["1"],
                                      first_day="2024-05-18")] == ["2024-05-19"]
    assert [f.version for f in list_files(store, PREDICTIONS, "m", versions=["2 b/c"])] == \
        ["2 b/c"]
    assert list_files(store, PREDICTIONS, "m", versions=["nope"]) == []
    assert {f.model for f in list_files(store, PREDICTIONS)} == {"m", "other"}
    assert [f.day for f in list_files(store, FEEDBACK, "m")] == ["2024-05-18"]
    assert list_files(open_store(str(tmp_path / "none")), PREDICTIONS, "m") == []


def test_values_reach_duckdb_as_parameters_never_as_sql(tmp_path: Path) -> None:
    write(tmp_path, [rec("a", T0, env=HOSTILE, version=HOSTILE), rec("b", T0, env="prod")])
    store = open_store(str(tmp_path))
    files = list_files(store, PREDICTIONS, "m")
    scan = prediction_scan(files, environment=HOSTILE, versions=[HOSTILE], start=T0,
                           end=T0 + DAY)
    assert HOSTILE not in scan.sql and str(tmp_path) not in scan.sql
    with LogReader(store) as reader:
        got = reader.fetchall(f"SELECT request_id, version FROM ({scan.sql})", scan.params)
    assert got == [("a", HOSTILE)]
    assert read_predictions(str(tmp_path), "m", HOSTILE)["request_id"].to_pylist() == ["a"]
    assert read_predictions(str(tmp_path), environment=HOSTILE).num_rows == 1


def test_readers_are_separate_connections_that_read_in_parallel(tmp_path: Path) -> None:
    """Readers share one database per filesystem (cheap to open) but not their connection:
    a temp table or a setting of one is not another's, and threads read at once."""
    write(tmp_path, [rec(f"r{i}", T0, x=i) for i in range(200)])
    store = open_store(str(tmp_path))
    scan = prediction_scan(list_files(store, PREDICTIONS, "m"))
    with LogReader(store) as one, LogReader(store) as two:
        one.execute(f"CREATE TEMP TABLE mine AS SELECT * FROM ({scan.sql})", scan.params)
        assert one.fetchall("SELECT count(*) FROM mine") == [(200,)]
        with pytest.raises(ArtifactError):
            two.fetchall("SELECT count(*) FROM mine")

    def count(_: int) -> int:
        with LogReader(store) as reader:
            return int(reader.fetchall(f"SELECT sum(x) FROM (SELECT json_extract(inputs, "
                                       f"'$.x')::INT AS x FROM ({scan.sql}))",
                                       scan.params)[0][0])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(count, range(16))) == [sum(range(200))] * 16
    memory = open_store("memory://reader-a"), open_store("memory://reader-b")
    with LogReader(memory[0]) as a, LogReader(memory[1]) as b:
        assert a.fetchall("SELECT 1") == b.fetchall("SELECT 1") == [(1,)]


def test_a_corrupt_file_is_an_artifact_error_naming_the_store(tmp_path: Path) -> None:
    write(tmp_path, [rec("a", T0)])
    folder = next((tmp_path / "predictions").rglob("date=*"))
    (folder / "part-broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="Cannot read the prediction log") as err:
        read_predictions(str(tmp_path))
    assert err.value.fix


def test_files_from_before_the_newer_columns_still_read(tmp_path: Path) -> None:
    write(tmp_path, [rec("new", T0)])
    folder = next((tmp_path / "predictions").rglob("date=*"))
    newer = {"propensity", "caller", "cpu_ms"}
    old_schema = pa.schema([f for f in PREDICTION_FILE_SCHEMA if f.name not in newer])
    table = pa.table({"request_id": ["old"], "ts": pa.array([T0], pa.timestamp("us", "UTC")),
                      "environment": ["production"], "route": ["stable"], "unit_hash": [None],
                      "row": [0], "inputs": ["{}"], "prediction": ["1"],
                      "prediction_num": [1.0], "proba": pa.array([None], pa.list_(pa.float64())),
                      "latency_ms": [1.0], "status": pa.array([200], pa.int32())},
                     schema=old_schema)
    pq.write_table(table, folder / "part-00000000T000000000000Z-0000.parquet")
    got = read_predictions(str(tmp_path)).to_pylist()
    assert {r["request_id"]: (r["propensity"], r["caller"], r["cpu_ms"]) for r in got} == {
        "old": (None, None, None), "new": (None, None, None)}
    for new in folder.glob("part-2*.parquet"):  # only files older than the columns left
        new.unlink()
    only_old = read_predictions(str(tmp_path))
    assert only_old.column_names == PREDICTION_SCHEMA.names
    assert only_old.to_pylist()[0]["caller"] is None and only_old.num_rows == 1


def test_logged_rows_keep_the_newest_per_version(tmp_path: Path) -> None:
    rows = [rec(f"a{i}", T0 + timedelta(seconds=i), x=i) for i in range(10)]
    rows += [rec(f"b{i}", T0 + timedelta(seconds=i), version="2", x=100 + i) for i in range(3)]
    rows += [rec("err", T0, status=500), rec("staging", T0, env="staging")]
    write(tmp_path, rows)
    [mixed] = logged_rows(str(tmp_path), "m", start=T0, end=T0 + DAY, limit=4,
                          environment="production")
    assert mixed.n_total == 13 and len(mixed.inputs) == 4
    assert [json.loads(i)["x"] for i in mixed.inputs] == [9, 8, 7, 6]  # newest first
    per = logged_rows(str(tmp_path), "m", start=T0, end=T0 + DAY, limit=4, by_version=True,
                      environment="production")
    assert [(r.version, r.n_total, len(r.inputs)) for r in per] == [("1", 10, 4), ("2", 3, 3)]
    assert [json.loads(i)["x"] for i in per[0].inputs] == [9, 8, 7, 6]
    [only] = logged_rows(str(tmp_path), "m", start=T0, end=T0 + DAY, version="2")
    assert only.version == "2" and only.n_total == 3
    assert logged_rows(str(tmp_path), "m", start=T0 - DAY, end=T0 - DAY / 2,
                       by_version=True) == []


# ---------------------------------------------------------------------------- increments

NOW = datetime.now(UTC)  # incremental readers list the day folders of recent rows only


def test_each_completed_file_is_reported_once(tmp_path: Path) -> None:
    uri = str(tmp_path)
    cursor = LogCursor.starting(datetime.now(UTC) - timedelta(minutes=1))
    write(tmp_path, [rec("a", NOW)])
    first = new_log_files(uri, "m", cursor, settle=timedelta(0))
    assert [f.version for f in first.files] == ["1"]
    assert read_log_files(uri, first.files, columns=["request_id"]).to_pylist() == [
        {"request_id": "a"}]
    again = new_log_files(uri, "m", first.cursor, settle=timedelta(0))
    assert again.files == []
    write(tmp_path, [rec("b", NOW), rec("c", NOW, version="2")])
    later = new_log_files(uri, "m", again.cursor, settle=timedelta(0), versions=["2"])
    assert [f.version for f in later.files] == ["2"]
    assert LogCursor.from_json(later.cursor.to_json()) == later.cursor
    with pytest.raises(ConfigError):
        LogCursor.from_json("yesterday")


def test_settle_holds_back_files_completed_too_recently(tmp_path: Path) -> None:
    cursor = LogCursor.starting(datetime.now(UTC) - timedelta(minutes=1))
    write(tmp_path, [rec("a", NOW)])
    held = new_log_files(str(tmp_path), "m", cursor, settle=timedelta(seconds=30))
    assert held.files == [] and held.cursor.until <= datetime.now(UTC) - timedelta(seconds=29)
    later = new_log_files(str(tmp_path), "m", held.cursor,
                          now=datetime.now(UTC) + timedelta(seconds=31))
    assert len(later.files) == 1


def test_a_replayed_file_in_an_old_day_folder_is_reported(tmp_path: Path) -> None:
    """A restart writes yesterday's spooled rows into yesterday's folder, with a new name."""
    now = datetime.now(UTC)
    cursor = LogCursor(now - timedelta(seconds=5))
    write(tmp_path, [rec("late", now - timedelta(hours=20), env="production")])
    inc = new_log_files(str(tmp_path), "m", cursor, settle=timedelta(0))
    assert len(inc.files) == 1
    rows = read_log_files(str(tmp_path), inc.files, columns=["request_id", "version"],
                          environment="production", since=now - DAY)
    assert rows.to_pylist() == [{"request_id": "late", "version": "1"}]
    assert read_log_files(str(tmp_path), inc.files, environment="staging").num_rows == 0


def test_files_without_a_flush_time_and_feedback(tmp_path: Path) -> None:
    cursor = LogCursor.starting(datetime.now(UTC) - timedelta(minutes=1))
    write(tmp_path, [rec("a", NOW)], [FeedbackRecord("a", 0, "m", "1", 1.0, NOW.timestamp())])
    folder = next((tmp_path / "predictions").rglob("date=*"))
    os.link(next(folder.glob("part-*")), folder / "part-handmade.parquet")
    inc = new_log_files(str(tmp_path), "m", cursor, settle=timedelta(0))
    assert [f.name.startswith("part-2") for f in inc.files] == [True]
    labels = new_log_files(str(tmp_path), "m", cursor, kind=FEEDBACK, settle=timedelta(0))
    got = read_log_files(str(tmp_path), labels.files, kind=FEEDBACK,
                         columns=["request_id", "actual_num"])
    assert got.to_pylist() == [{"request_id": "a", "actual_num": 1.0}]
    with pytest.raises(ValueError, match="another kind"):
        read_log_files(str(tmp_path), inc.files + labels.files)
    with pytest.raises(ValueError, match="another kind"):
        read_log_files(str(tmp_path), labels.files)  # feedback files read as predictions
    # no files: an empty table of the kind asked for (its columns), not of the other kind
    empty = read_log_files(str(tmp_path), [], kind=FEEDBACK, columns=["actual_num"])
    assert empty.num_rows == 0 and empty.column_names == ["actual_num"]
    with pytest.raises(ValueError, match="unknown log columns"):
        read_log_files(str(tmp_path), inc.files, columns=["nope"])
