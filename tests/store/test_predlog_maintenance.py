"""The prediction log's upkeep: day partitions (listing, deleting, the purge journal) and
compaction, which must not change any query result, incremental readers' included, even
when it stops half-way."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.store.predlog import (
    FEEDBACK,
    PREDICTION_FILE_SCHEMA,
    PREDICTIONS,
    FeedbackRecord,
    LogCursor,
    Partition,
    PredictionLog,
    PredictionRecord,
    compact_log,
    compacted_file_ids,
    delete_partition,
    list_files,
    list_partitions,
    logged_rows,
    new_log_files,
    open_store,
    pending_purges,
    read_feedback,
    read_log_files,
    read_predictions,
    start_purge,
)
from mlops.store.predlog.layout import (
    CompactionManifest,
    manifest_name,
    parse_manifest,
    parse_part_name,
    part_name,
    partition_path,
)
from mlops.store.predlog.maintenance import (
    STALE_MANIFEST,
    compact_partition,
    finish_purge,
    parse_partition,
)
from mlops.store.predlog.records import feedback_table, prediction_table

DAY = timedelta(days=1)
#: data days; files "flushed" during them, long before NOW
T0 = datetime(2024, 5, 17, 8, tzinfo=UTC)
NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)
SETTLED = NOW - DAY
AWKWARD = "churn a/b c=d%"  # a space, a slash, '=' and '%': one folder level, URL-quoted


def rec(rid: str, ts: datetime, *, model: str = AWKWARD, version: str = "1",
        env: str = "production", x: int = 0, status: int = 200) -> PredictionRecord:
    return PredictionRecord(rid, ts.timestamp(), model, version, env, "stable", None, 0,
                            json.dumps({"x": x}), json.dumps(x % 3), float(x % 3),
                            [0.25, 0.75], 1.0 + x, status, 0.5, f"caller-{x % 2}",
                            0.1 * x)


def fb(rid: str, ts: datetime, *, model: str = AWKWARD) -> FeedbackRecord:
    return FeedbackRecord(rid, 0, model, "1", 1.0, ts.timestamp())


def put(root: Path | str, records: list[PredictionRecord] | list[FeedbackRecord],
        flushed: datetime, *, name: str | None = None) -> str:
    """Write one file of one partition with the flush time ``flushed`` in its name (as the
    writer would have at that time); returns its path."""
    first = records[0]
    day = datetime.fromtimestamp(first.ts, UTC).date().isoformat()
    if isinstance(first, PredictionRecord):
        folder = partition_path(PREDICTIONS, first.model, first.version, day)
        table = prediction_table(records)  # type: ignore[arg-type]
    else:
        folder = partition_path(FEEDBACK, first.model, None, day)
        table = feedback_table(records)  # type: ignore[arg-type]
    store = open_store(str(root))
    path = store.path(folder)
    store.fs.makedirs(path, exist_ok=True)
    file = f"{path}/{name or part_name(flushed, uuid.uuid4().hex)}"
    with store.fs.open(file, "wb") as fh:
        pq.write_table(table, fh, compression="lz4")
    return file


def populate(root: Path | str) -> None:
    """Two versions over two days, several small files per partition (flushed at their
    rows' time, in the past), feedback, and a second model; ts all distinct."""
    n = 0
    for day in range(2):
        for version in ("1", "2 b/c"):
            for flush in range(3):
                at = T0 + day * DAY + timedelta(minutes=10 * flush + (5 if version == "1"
                                                                      else 0))
                rows = []
                for i in range(4):
                    n += 1
                    rows.append(rec(f"r{n}", at - timedelta(seconds=30 - i), version=version,
                                    x=n, env="production" if n % 3 else "staging",
                                    status=500 if n % 7 == 0 else 200))
                put(root, rows, at)
                put(root, [fb(f"r{n - 1}", at), fb(f"r{n}", at + timedelta(seconds=1))],
                    at + timedelta(seconds=2))
    put(root, [rec("other", T0, model="other")], T0)
    put(root, [rec("other2", T0 + timedelta(minutes=1), model="other")],
        T0 + timedelta(minutes=1))


def rows(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda r: (str(r["request_id"]), r["row"],
                                                    str(r["ts"])))


def snapshot(uri: str) -> dict[str, Any]:
    """Every query the log offers, in forms that compare exactly."""
    start = LogCursor.starting(T0 - DAY)
    inc = new_log_files(uri, AWKWARD, start, now=NOW)
    fb_inc = new_log_files(uri, AWKWARD, start, kind=FEEDBACK, now=NOW)
    return {
        "all": rows(read_predictions(uri)),
        "model": rows(read_predictions(uri, AWKWARD)),
        "version": rows(read_predictions(uri, AWKWARD, "2 b/c")),
        "since": rows(read_predictions(uri, AWKWARD, since=T0 + DAY)),
        "env": rows(read_predictions(uri, AWKWARD, environment="staging")),
        "columns": rows(read_predictions(uri, AWKWARD, columns=["request_id", "row", "ts",
                                                                 "caller", "cpu_ms"])),
        "feedback": rows(read_feedback(uri)),
        "feedback_since": rows(read_feedback(uri, AWKWARD, since=T0 + DAY)),
        "logged": logged_rows(uri, AWKWARD, start=T0, end=T0 + 2 * DAY, limit=5),
        "logged_by_version": logged_rows(uri, AWKWARD, start=T0, end=T0 + 2 * DAY,
                                         limit=3, by_version=True),
        "logged_env": logged_rows(uri, AWKWARD, start=T0, end=T0 + 2 * DAY,
                                  environment="production", version="1"),
        "increment": rows(read_log_files(uri, inc.files, environment="production",
                                         since=T0)),
        "increment_cursor": inc.cursor,
        "feedback_increment": rows(read_log_files(uri, fb_inc.files, kind=FEEDBACK)),
    }


def data_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("part-*.parquet"))


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------------------- partitions


def test_partitions_are_only_real_day_folders(tmp_path: Path) -> None:
    populate(tmp_path)
    pred = tmp_path / "predictions"
    (pred / "junk").mkdir()
    (pred / "model=other" / "notaversion").mkdir()
    for bad in ("date=garbage", "date=2024-13-40", "date=2024-5-1", "date=20240517",
                "date=", "notadate"):
        (pred / "model=other" / "version=1" / bad).mkdir()
    (pred / "model=other" / "version=1" / "date=2024-05-01").write_text("a file, no folder")
    store = open_store(str(tmp_path))
    found = list_partitions(store, PREDICTIONS)
    assert sorted((p.model, p.version, p.day) for p in found) == sorted(
        [(AWKWARD, v, d) for v in ("1", "2 b/c") for d in ("2024-05-17", "2024-05-18")]
        + [("other", "1", "2024-05-17")])
    awkward = next(p for p in found if p.model == AWKWARD)
    assert "/" not in awkward.relative.split("/")[1][len("model="):] and " " not in \
        awkward.relative  # quoted on disk, decoded in the fields
    assert [p.day for p in list_partitions(store, PREDICTIONS, AWKWARD,
                                           before_day="2024-05-18")] == ["2024-05-17"] * 2
    assert {p.day for p in list_partitions(store, FEEDBACK)} == {"2024-05-17", "2024-05-18"}
    assert all(p.version is None for p in list_partitions(store, FEEDBACK))
    assert list_partitions(open_store(str(tmp_path / "none")), PREDICTIONS) == []


def test_delete_partition_removes_that_folder_only_and_never_follows_a_link(
        tmp_path: Path) -> None:
    populate(tmp_path)
    store = open_store(str(tmp_path))
    before = rows(read_predictions(str(tmp_path)))
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD)
                  if p.version == "1" and p.day == "2024-05-17")
    assert delete_partition(store, target) is True
    assert delete_partition(store, target) is False  # gone already: fine
    after = rows(read_predictions(str(tmp_path)))
    assert len(after) == len(before) - 12
    assert all(not (r["model"] == AWKWARD and r["version"] == "1"
                    and r["date"] == "2024-05-17") for r in after)

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    link = tmp_path / "predictions" / "model=other" / "version=1" / "date=2020-01-01"
    os.symlink(outside, link)
    linked = next(p for p in list_partitions(store, PREDICTIONS, "other")
                  if p.day == "2020-01-01")
    assert delete_partition(store, linked) is True
    assert not link.exists() and (outside / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("relative", [
    "predictions/../../etc/date=2024-01-01",
    "predictions/model=m/version=1/date=2024-01-01/..",
    "predictions/model=m/date=2024-01-01",
    "feedback/model=m/version=1/date=2024-01-01",
    "feedback/model=/date=2024-01-01",
    "feedback/model=m/date=../../x",
    "artifacts/model=m/date=2024-01-01",
    "",
])
def test_a_journal_cannot_name_anything_but_a_partition(relative: str) -> None:
    assert parse_partition(relative) is None


def test_the_purge_journal_round_trips_and_ignores_tampered_entries(tmp_path: Path) -> None:
    populate(tmp_path)
    store = open_store(str(tmp_path))
    parts = list_partitions(store, FEEDBACK)
    run = uuid.uuid4().hex
    start_purge(store, run, parts)
    journal = tmp_path / "predictions" / f"_retention-{run}.json"
    assert journal.exists()
    assert list_files(store, PREDICTIONS)  # readers are not bothered by it
    [found] = pending_purges(store)
    assert found.run == run and found.partitions == tuple(parts)
    raw = json.loads(journal.read_text())
    raw["partitions"] += ["predictions/../../etc", 7, "feedback/model=x/date=nope"]
    journal.write_text(json.dumps(raw))
    assert pending_purges(store)[0].partitions == tuple(parts)
    (tmp_path / "predictions" / f"_retention-{uuid.uuid4().hex}.json").write_text("{broken")
    assert [j.run for j in pending_purges(store)] == [run]
    finish_purge(store, run)
    finish_purge(store, run)  # idempotent
    assert not journal.exists()


# ---------------------------------------------------------------------------- compaction


def test_compaction_preserves_every_query_result(tmp_path: Path) -> None:
    populate(tmp_path)
    uri = str(tmp_path)
    before, files_before = snapshot(uri), data_files(tmp_path)
    store = open_store(uri)
    dry = compact_log(store, settled_before=SETTLED, now=NOW, dry_run=True)
    assert data_files(tmp_path) == files_before and {o.status for o in dry} == \
        {"would_compact"}

    done = compact_log(store, settled_before=SETTLED, now=NOW)
    assert {o.status for o in done} == {"compacted"}
    assert [(o.partition, o.sources, o.merged, o.rows) for o in done] == \
        [(o.partition, o.sources, o.merged, o.rows) for o in dry]
    after = data_files(tmp_path)
    # 4 prediction partitions of 3 files, 2 feedback partitions of 6, "other" of 2 -> 1 each
    assert len(files_before) == 4 * 3 + 2 * 6 + 2 and len(after) == 4 + 2 + 1
    assert snapshot(uri) == before
    assert not [p for p in everything(tmp_path) if "_compaction-" in p or p.endswith(".tmp")]
    assert compact_log(store, settled_before=SETTLED, now=NOW) == []  # nothing left to do
    assert snapshot(uri) == before


def test_merged_file_is_sorted_by_ts_named_by_its_newest_source_and_lists_their_ids(
        tmp_path: Path) -> None:
    late, early = T0 + timedelta(hours=2), T0 + timedelta(hours=1)
    a = put(tmp_path, [rec("b", T0 + timedelta(minutes=5)), rec("d", T0 + timedelta(
        minutes=50))], late)
    b = put(tmp_path, [rec("a", T0), rec("c", T0 + timedelta(minutes=10))], early)
    store = open_store(str(tmp_path))
    [outcome] = compact_log(store, settled_before=SETTLED, now=NOW)
    assert outcome.status == "compacted" and outcome.rows == 4
    assert outcome.sources == (Path(b).name, Path(a).name)  # oldest flush first
    [merged] = list((tmp_path / "predictions").rglob("part-*.parquet"))
    parsed = parse_part_name(merged.name)
    assert parsed is not None and parsed.flushed_at == late and merged.name == outcome.merged
    assert pq.read_table(merged)["request_id"].to_pylist() == ["a", "b", "c", "d"]
    ids = {parse_part_name(Path(p).name).file_id for p in (a, b)}  # type: ignore[union-attr]
    assert compacted_file_ids(store, outcome.partition.relative) == ids


def test_only_settled_named_files_and_partitions_of_two_or_more_are_merged(
        tmp_path: Path) -> None:
    old = put(tmp_path, [rec("old1", T0)], T0)
    put(tmp_path, [rec("old2", T0 + timedelta(minutes=1))], T0 + timedelta(minutes=1))
    fresh = put(tmp_path, [rec("fresh", T0 + timedelta(minutes=2))], NOW - timedelta(hours=1))
    nameless = put(tmp_path, [rec("nameless", T0 + timedelta(minutes=3))], T0,
                   name="part-written-by-someone-else.parquet")
    lonely = put(tmp_path, [rec("lonely", T0 + DAY)], T0 + DAY)
    store = open_store(str(tmp_path))
    [outcome] = compact_log(store, settled_before=SETTLED, now=NOW)
    assert len(outcome.sources) == 2 and Path(old).name in outcome.sources
    for kept in (fresh, nameless, lonely):
        assert Path(kept).exists()
    assert sorted(read_predictions(str(tmp_path))["request_id"].to_pylist()) == \
        ["fresh", "lonely", "nameless", "old1", "old2"]


def test_a_cursor_taken_before_compaction_sees_no_row_twice_and_misses_none(
        tmp_path: Path) -> None:
    uri = str(tmp_path)
    now = T0 + timedelta(hours=28)  # the next day; the files below are older than a day
    for i in range(4):  # flushed at T0 + i hours
        put(tmp_path, [rec(f"old{i}", T0 + timedelta(hours=i, minutes=-1))],
            T0 + timedelta(hours=i))
    start = LogCursor.starting(T0 - DAY)
    first = new_log_files(uri, AWKWARD, start, now=now)
    seen = read_log_files(uri, first.files)["request_id"].to_pylist()
    cursor = first.cursor  # now - SETTLE: past every file

    [outcome] = compact_log(open_store(uri), settled_before=now - DAY, now=now)
    assert outcome.status == "compacted" and len(outcome.sources) == 4
    # a late row of the same day, in the same partition as the merged file
    put(tmp_path, [rec("new", T0 + timedelta(hours=15))], now + timedelta(minutes=1))
    second = new_log_files(uri, AWKWARD, cursor, now=now + timedelta(minutes=5))
    assert [f.name for f in second.files] != [outcome.merged]
    seen += read_log_files(uri, second.files)["request_id"].to_pylist()
    assert sorted(seen) == ["new", "old0", "old1", "old2", "old3"]  # each once

    # a reader starting again (a new controller) reads every row once, from the merged file
    again = new_log_files(uri, AWKWARD, start, now=now + timedelta(minutes=5))
    assert sorted(read_log_files(uri, again.files)["request_id"].to_pylist()) == \
        sorted(seen)


def test_files_a_live_cursor_may_not_have_read_are_left_alone(tmp_path: Path) -> None:
    uri = str(tmp_path)
    now = T0 + timedelta(hours=6)
    for i in range(3):  # flushed within the last 6 hours: newer than the default day
        put(tmp_path, [rec(f"r{i}", T0 + timedelta(hours=i))], T0 + timedelta(hours=i))
    cursor = LogCursor(T0 + timedelta(hours=1, minutes=30))  # between the files
    before = read_log_files(uri, new_log_files(uri, AWKWARD, cursor, now=now).files)
    assert compact_log(open_store(uri), settled_before=now - DAY, now=now) == []
    after = read_log_files(uri, new_log_files(uri, AWKWARD, cursor, now=now).files)
    assert rows(after) == rows(before) and after.num_rows == 1


def _crash_after_publishing(tmp_path: Path) -> tuple[Path, Partition]:
    """Compact one partition, then put back its sources and the manifest: what a run that
    stopped right after the merged file appeared leaves."""
    populate(tmp_path)
    store = open_store(str(tmp_path))
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    folder = Path(store.path(target.relative))
    saved = tmp_path / "saved"
    shutil.copytree(folder, saved)
    [outcome] = compact_partition(store, target, settled_before=SETTLED, now=NOW)
    assert outcome.merged is not None
    for source in outcome.sources:
        shutil.copy2(saved / source, folder / source)
    parsed = parse_part_name(outcome.merged)
    assert parsed is not None
    (folder / manifest_name(parsed.file_id)).write_bytes(
        CompactionManifest(outcome.merged, outcome.sources, NOW).to_json())
    return folder, target


def test_a_crash_after_the_merged_file_appeared_reads_no_row_twice_and_the_next_run_finishes(
        tmp_path: Path) -> None:
    uri = str(tmp_path)
    populate(tmp_path)
    clean = snapshot(uri)
    shutil.rmtree(tmp_path / "predictions")
    shutil.rmtree(tmp_path / "feedback")
    folder, target = _crash_after_publishing(tmp_path)
    assert len(list(folder.glob("part-*.parquet"))) == 4  # 3 sources + merged
    assert snapshot(uri) == clean  # the manifest hides the sources

    store = open_store(uri)
    outcomes = compact_partition(store, target, settled_before=SETTLED, now=NOW)
    assert [o.status for o in outcomes] == ["recovered"]
    assert "deleted 3 source files" in outcomes[0].message
    assert sorted(p.name for p in folder.iterdir()) == [outcomes[0].merged]
    assert snapshot(uri) == clean


def test_a_failure_while_deleting_the_sources_is_finished_by_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops.errors import ArtifactError
    from mlops.store.predlog import maintenance

    uri = str(tmp_path)
    populate(tmp_path)
    clean = snapshot(uri)
    real_remove = maintenance._remove
    calls = {"n": 0}

    def flaky(store: Any, path: str) -> None:  # the store fails after one deletion
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("connection reset")
        real_remove(store, path)

    monkeypatch.setattr("mlops.store.predlog.maintenance._remove", flaky)
    store = open_store(uri)
    with pytest.raises(ArtifactError, match="connection reset") as err:
        compact_log(store, settled_before=SETTLED, now=NOW)
    assert err.value.fix and "again" in err.value.fix
    assert list((tmp_path / "predictions").rglob("_compaction-*.json"))
    assert snapshot(uri) == clean  # one source gone, the others hidden: every row once
    monkeypatch.setattr("mlops.store.predlog.maintenance._remove", real_remove)
    outcomes = compact_log(store, settled_before=SETTLED, now=NOW)
    assert outcomes[0].status == "recovered" and "deleted 2 source files" in \
        outcomes[0].message
    assert {o.status for o in outcomes[1:]} == {"compacted"}
    assert not list(tmp_path.rglob("_compaction-*.json"))
    assert len(data_files(tmp_path)) == 7 and snapshot(uri) == clean


def test_a_crash_before_the_merged_file_appeared_hides_nothing_and_is_dropped_later(
        tmp_path: Path) -> None:
    uri = str(tmp_path)
    populate(tmp_path)
    clean = snapshot(uri)
    store = open_store(uri)
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    folder = Path(store.path(target.relative))
    sources = tuple(sorted(p.name for p in folder.glob("part-*.parquet")))
    merged = part_name(T0, "ab" * 16)
    (folder / manifest_name("ab" * 16)).write_bytes(
        CompactionManifest(merged, sources, NOW).to_json())
    (folder / f".{'ab' * 16}.tmp").write_bytes(b"half a parquet file")
    assert snapshot(uri) == clean

    busy = compact_partition(store, target, settled_before=SETTLED, now=NOW + timedelta(
        minutes=5))
    assert [o.status for o in busy] == ["skipped"] and "in progress" in busy[0].message
    assert tuple(sorted(p.name for p in folder.glob("part-*.parquet"))) == sources

    later = compact_partition(store, target, settled_before=SETTLED, now=NOW + STALE_MANIFEST)
    assert [o.status for o in later] == ["recovered", "compacted"]
    assert sorted(p.name for p in folder.iterdir()) == [later[1].merged]
    assert snapshot(uri) == clean


def test_a_corrupt_file_skips_its_partition_with_a_message_and_loses_nothing(
        tmp_path: Path) -> None:
    populate(tmp_path)
    store = open_store(str(tmp_path))
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    folder = Path(store.path(target.relative))
    bad = folder / part_name(T0 + timedelta(minutes=1), "cd" * 16)
    bad.write_bytes(b"PAR1 definitely not parquet")
    names = sorted(p.name for p in folder.iterdir())
    for dry_run in (True, False):
        outcomes = compact_log(store, AWKWARD, settled_before=SETTLED, now=NOW,
                               dry_run=dry_run)
        [skipped] = [o for o in outcomes if o.partition == target]
        assert skipped.status == "skipped" and bad.name in skipped.message
        assert "nothing in this partition was changed" in skipped.message
        assert sorted(p.name for p in folder.iterdir()) == names
    # the other partitions were compacted
    assert {o.status for o in outcomes if o.partition != target} == {"compacted"}
    bad.unlink()
    assert rows(read_predictions(str(tmp_path), AWKWARD, "1"))  # still all there


def test_an_invalid_manifest_hides_nothing_and_blocks_compaction_with_a_fix(
        tmp_path: Path) -> None:
    populate(tmp_path)
    uri = str(tmp_path)
    clean = snapshot(uri)
    store = open_store(uri)
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    folder = Path(store.path(target.relative))
    existing = sorted(p.name for p in folder.glob("part-*.parquet"))
    for body in (b"{not json", json.dumps({"merged": "../../x.parquet", "sources": existing,
                                           "created": NOW.isoformat()}).encode()):
        (folder / manifest_name("ef" * 16)).write_bytes(body)
        assert parse_manifest(body) is None
        assert snapshot(uri) == clean
        [outcome] = compact_partition(store, target, settled_before=SETTLED, now=NOW)
        assert outcome.status == "skipped" and "move it out" in outcome.message
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == existing


def test_files_from_before_the_newer_columns_merge_with_new_ones(tmp_path: Path) -> None:
    put(tmp_path, [rec("new", T0 + timedelta(minutes=1))], T0 + timedelta(minutes=1))
    folder = next((tmp_path / "predictions").rglob("date=*"))
    newer = {"propensity", "caller", "cpu_ms"}
    old_schema = pa.schema([f for f in PREDICTION_FILE_SCHEMA if f.name not in newer])
    table = pa.table({"request_id": ["old"], "ts": pa.array([T0], pa.timestamp("us", "UTC")),
                      "environment": ["production"], "route": ["stable"], "unit_hash": [None],
                      "row": [0], "inputs": ["{}"], "prediction": ["1"],
                      "prediction_num": [1.0], "proba": pa.array([None], pa.list_(pa.float64())),
                      "latency_ms": [1.0], "status": pa.array([200], pa.int32())},
                     schema=old_schema)
    pq.write_table(table, folder / part_name(T0, "12" * 16))
    before = rows(read_predictions(str(tmp_path)))
    [outcome] = compact_log(open_store(str(tmp_path)), settled_before=SETTLED, now=NOW)
    assert outcome.status == "compacted"
    assert rows(read_predictions(str(tmp_path))) == before
    assert logged_rows(str(tmp_path), AWKWARD, start=T0, end=T0 + DAY)[0].n_total == 2


def test_files_the_writer_wrote_compact_too(tmp_path: Path) -> None:
    uri = str(tmp_path)
    log = PredictionLog(uri, spool=False)
    for i in range(3):
        log.log([rec(f"w{i}", T0 + timedelta(minutes=i), x=i)])
        log.log_feedback([fb(f"w{i}", T0 + timedelta(minutes=i, seconds=5))])
        log.flush()
    log.close()
    before = (rows(read_predictions(uri)), rows(read_feedback(uri)))
    now = datetime.now(UTC) + 2 * DAY
    outcomes = compact_log(open_store(uri), settled_before=now - DAY, now=now)
    assert [(o.partition.kind, len(o.sources)) for o in outcomes] == [(PREDICTIONS, 3),
                                                                       (FEEDBACK, 3)]
    assert (rows(read_predictions(uri)), rows(read_feedback(uri))) == before
    assert len(data_files(tmp_path)) == 2


@pytest.fixture
def memory_uri() -> Iterator[str]:
    root = f"memory://maintenance-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    path = "/" + root.removeprefix("memory://")
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_compaction_and_deletion_on_an_fsspec_store(memory_uri: str) -> None:
    populate(memory_uri)
    before = snapshot(memory_uri)
    store = open_store(memory_uri)
    outcomes = compact_log(store, settled_before=SETTLED, now=NOW)
    assert {o.status for o in outcomes} == {"compacted"} and len(outcomes) == 7
    assert len(list_files(store, PREDICTIONS)) == 5
    assert snapshot(memory_uri) == before
    parts = list_partitions(store, FEEDBACK)
    assert all(delete_partition(store, p) for p in parts)
    assert read_feedback(memory_uri).num_rows == 0
    assert list_partitions(store, FEEDBACK) == []
