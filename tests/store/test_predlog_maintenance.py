"""The prediction log's upkeep: day partitions (listing, deleting, the purge journal) and
compaction, which must not change any query result, incremental readers' included, at any
moment (during the grace its sources are kept, after they are deleted), even when it stops
half-way; files a reader listed before a merge stay readable, and recent files are never
merged (the rollout controller would count them twice)."""

from __future__ import annotations

import json
import os
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
    COMPACT_MIN_AGE,
    SOURCE_GRACE,
    STALE_MANIFEST,
    clean_compacted,
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


def manifests(root: Path) -> list[Path]:
    return sorted(root.rglob("_compaction-*.json"))


def live_files(uri: str) -> list[str]:
    """The data files readers see (sources a merge replaced left out)."""
    store = open_store(uri)
    return sorted(f.path for kind in (PREDICTIONS, FEEDBACK) for f in list_files(store, kind))


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
    assert {o.delete_after for o in done} == {NOW + SOURCE_GRACE}
    # 4 prediction partitions of 3 files, 2 feedback partitions of 6, "other" of 2 -> 1 each
    assert len(files_before) == 4 * 3 + 2 * 6 + 2 and len(live_files(uri)) == 4 + 2 + 1
    # the sources stay, hidden, for the grace: readers see the merged files only
    assert set(files_before) < set(data_files(tmp_path)) and len(manifests(tmp_path)) == 7
    assert snapshot(uri) == before

    during = compact_log(store, settled_before=SETTLED, now=NOW + SOURCE_GRACE / 2)
    assert {o.status for o in during} == {"waiting"} and len(during) == 7
    assert sum(o.sources_waiting for o in during) == len(files_before)
    assert set(files_before) < set(data_files(tmp_path)) and snapshot(uri) == before

    dry = compact_log(store, settled_before=SETTLED, now=NOW + SOURCE_GRACE, dry_run=True)
    assert {o.status for o in dry} == {"would_clean"}
    assert sum(o.sources_deleted for o in dry) == len(files_before)
    assert len(manifests(tmp_path)) == 7 and snapshot(uri) == before

    after = compact_log(store, settled_before=SETTLED, now=NOW + SOURCE_GRACE)
    assert {o.status for o in after} == {"cleaned"}
    assert sum(o.sources_deleted for o in after) == len(files_before)
    assert len(data_files(tmp_path)) == 4 + 2 + 1
    assert not [p for p in everything(tmp_path) if "_compaction-" in p or p.endswith(".tmp")]
    assert snapshot(uri) == before
    assert compact_log(store, settled_before=SETTLED, now=NOW + SOURCE_GRACE) == []  # done
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
    [merged] = [Path(p) for p in live_files(str(tmp_path))]
    parsed = parse_part_name(merged.name)
    assert parsed is not None and parsed.flushed_at == late and merged.name == outcome.merged
    assert pq.read_table(merged)["request_id"].to_pylist() == ["a", "b", "c", "d"]
    ids = {parse_part_name(Path(p).name).file_id for p in (a, b)}  # type: ignore[union-attr]
    assert compacted_file_ids(store, outcome.partition.relative) == ids
    clean_compacted(store, now=NOW + SOURCE_GRACE)  # the sources go; the ids stay known
    assert not Path(a).exists() and not Path(b).exists()
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


def test_a_crash_at_any_step_of_deleting_the_sources_reads_every_row_once(
        tmp_path: Path) -> None:
    """The states a run deleting the sources after the grace can stop in: some sources
    gone, all gone but the manifest left. Readers see every row once; the next run
    finishes."""
    uri = str(tmp_path)
    populate(tmp_path)
    clean = snapshot(uri)
    store = open_store(uri)
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    folder = Path(store.path(target.relative))
    [merge] = compact_partition(store, target, settled_before=SETTLED, now=NOW)
    assert merge.status == "compacted" and len(merge.sources) == 3
    [manifest] = folder.glob("_compaction-*.json")
    assert len(list(folder.glob("part-*.parquet"))) == 4  # 3 sources + merged
    assert snapshot(uri) == clean  # the manifest hides the sources

    (folder / merge.sources[0]).unlink()  # stopped after deleting one source
    assert snapshot(uri) == clean
    later = NOW + SOURCE_GRACE
    [done] = compact_partition(store, target, settled_before=SETTLED, now=later)
    assert done.status == "cleaned" and "deleted the 2 source files" in done.message
    assert sorted(p.name for p in folder.iterdir()) == [merge.merged]
    assert snapshot(uri) == clean

    manifest.write_bytes(CompactionManifest(  # stopped before deleting the manifest
        str(merge.merged), merge.sources, NOW).to_json())
    assert snapshot(uri) == clean
    [done] = compact_partition(store, target, settled_before=SETTLED, now=later)
    assert done.status == "cleaned" and "sources were gone already" in done.message
    assert sorted(p.name for p in folder.iterdir()) == [merge.merged]
    assert snapshot(uri) == clean


def test_a_failure_while_deleting_the_sources_is_finished_by_the_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops.errors import ArtifactError
    from mlops.store.predlog import maintenance

    uri = str(tmp_path)
    populate(tmp_path)
    clean = snapshot(uri)
    store = open_store(uri)
    compact_log(store, settled_before=SETTLED, now=NOW)
    real_remove = maintenance._remove
    calls = {"n": 0}

    def flaky(store: Any, path: str) -> None:  # the store fails after one deletion
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError("connection reset")
        real_remove(store, path)

    monkeypatch.setattr("mlops.store.predlog.maintenance._remove", flaky)
    later = NOW + SOURCE_GRACE
    with pytest.raises(ArtifactError, match="connection reset") as err:
        compact_log(store, settled_before=SETTLED, now=later)
    assert err.value.fix and "again" in err.value.fix
    assert len(manifests(tmp_path)) == 7
    assert snapshot(uri) == clean  # one source gone, the others hidden: every row once
    monkeypatch.setattr("mlops.store.predlog.maintenance._remove", real_remove)
    outcomes = compact_log(store, settled_before=SETTLED, now=later)
    assert outcomes[0].status == "cleaned" and "deleted the 2 source files" in \
        outcomes[0].message
    assert {o.status for o in outcomes[1:]} == {"cleaned"}
    assert not manifests(tmp_path)
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
    (folder / f".{merged}.tmp").write_bytes(b"half a parquet file")  # as put_file names it
    assert snapshot(uri) == clean

    for dry_run in (True, False):
        busy = compact_partition(store, target, settled_before=SETTLED,
                                 now=NOW + timedelta(minutes=5), dry_run=dry_run)
        assert [o.status for o in busy] == ["skipped"] and "in progress" in busy[0].message
    assert tuple(sorted(p.name for p in folder.glob("part-*.parquet"))) == sources

    dry = compact_partition(store, target, settled_before=SETTLED, now=NOW + STALE_MANIFEST,
                            dry_run=True)
    assert [o.status for o in dry] == ["would_recover", "would_compact"]
    later = compact_partition(store, target, settled_before=SETTLED, now=NOW + STALE_MANIFEST)
    assert [o.status for o in later] == ["recovered", "compacted"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*sources, str(later[1].merged), manifest_name(
            parse_part_name(str(later[1].merged)).file_id)])  # type: ignore[union-attr]
    assert snapshot(uri) == clean
    clean_compacted(store, now=NOW + STALE_MANIFEST + SOURCE_GRACE)
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
    assert len(live_files(uri)) == 2 and len(data_files(tmp_path)) == 8
    clean_compacted(open_store(uri), now=now + SOURCE_GRACE)
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
    cleaned = compact_log(store, settled_before=SETTLED, now=NOW + SOURCE_GRACE)
    assert {o.status for o in cleaned} == {"cleaned"}
    assert not store.fs.glob(store.path("**/_compaction-*.json"))
    assert snapshot(memory_uri) == before
    parts = list_partitions(store, FEEDBACK)
    assert all(delete_partition(store, p) for p in parts)
    assert read_feedback(memory_uri).num_rows == 0
    assert list_partitions(store, FEEDBACK) == []


# ---------------------------------------------------------------------------- readers racing


def test_files_a_reader_listed_before_a_merge_can_still_be_read_right_after(
        tmp_path: Path) -> None:
    """A reader lists the files, compaction merges them, the reader reads what it listed:
    the sources must still be there (the merge keeps them for SOURCE_GRACE)."""
    populate(tmp_path)
    uri = str(tmp_path)
    store = open_store(uri)
    listed = list_files(store, PREDICTIONS, AWKWARD)
    inc = new_log_files(uri, AWKWARD, LogCursor.starting(T0 - DAY), now=NOW)
    fb_inc = new_log_files(uri, AWKWARD, LogCursor.starting(T0 - DAY), kind=FEEDBACK, now=NOW)
    expected = (rows(read_log_files(uri, inc.files)),
                rows(read_log_files(uri, fb_inc.files, kind=FEEDBACK)))

    assert {o.status for o in compact_log(store, settled_before=SETTLED, now=NOW)} == \
        {"compacted"}
    assert {f.path for f in list_files(store, PREDICTIONS, AWKWARD)}.isdisjoint(
        f.path for f in listed)  # a new listing sees only the merged files ...
    # ... but what was listed before the merge reads the same rows, once each
    assert (rows(read_log_files(uri, inc.files)),
            rows(read_log_files(uri, fb_inc.files, kind=FEEDBACK))) == expected
    assert rows(read_log_files(uri, listed)) == expected[0]


def test_a_rollout_first_pass_reading_in_chunks_survives_a_compaction(
        tmp_path: Path) -> None:
    """The rollout controller lists its files, then reads them a few at a time; a
    compaction between two chunks must not make the next read fail (which would pause the
    rollout)."""
    from mlops.deployment.traffic import RolloutTraffic

    uri = str(tmp_path)
    now = datetime.now(UTC)
    old = now - 2 * DAY
    for i in range(3):
        put(tmp_path, [rec(f"t{i}", old + timedelta(minutes=i))],
            old + timedelta(minutes=i, seconds=5))
    traffic = RolloutTraffic(uri, AWKWARD, "production", ["1"], now - 3 * DAY,
                             columns=["request_id"], feedback_columns=["request_id"])
    chunks = traffic.read_new(files_per_read=1)
    seen = next(chunks)[0]["request_id"].to_pylist()
    [outcome] = compact_log(open_store(uri), settled_before=now - COMPACT_MIN_AGE, now=now)
    assert outcome.status == "compacted" and len(outcome.sources) == 3
    for predictions, _ in chunks:
        seen += predictions["request_id"].to_pylist()
    assert sorted(seen) == ["t0", "t1", "t2"]
    for predictions, _ in traffic.read_new():  # the next pass: nothing new, no row again
        assert predictions.num_rows == 0


def test_merged_files_in_their_grace_are_not_merged_again(tmp_path: Path) -> None:
    """Merging a merged file, then deleting it, before its own manifest went would show its
    sources again: until then it and its sources stay out of new merges."""
    populate(tmp_path)
    uri = str(tmp_path)
    clean = snapshot(uri)
    store = open_store(uri)
    target = next(p for p in list_partitions(store, PREDICTIONS, AWKWARD) if p.version == "1")
    [first] = compact_partition(store, target, settled_before=SETTLED, now=NOW)
    late = [put(tmp_path, [rec(f"late{i}", T0 + timedelta(hours=5, minutes=i), x=100 + i)],
                T0 + timedelta(hours=5, minutes=i)) for i in range(2)]
    with_late = snapshot(uri)
    assert with_late != clean
    soon = NOW + timedelta(minutes=5)
    outcomes = compact_partition(store, target, settled_before=SETTLED, now=soon)
    assert [o.status for o in outcomes] == ["waiting", "compacted"]
    assert outcomes[1].sources == tuple(Path(p).name for p in late)  # the late files only
    assert snapshot(uri) == with_late

    # after the first merge's grace: its sources go, and its file may merge again
    outcomes = compact_partition(store, target, settled_before=SETTLED,
                                 now=NOW + SOURCE_GRACE)  # manifests come in no set order
    assert sorted(o.status for o in outcomes) == ["cleaned", "waiting"]
    assert snapshot(uri) == with_late
    outcomes = compact_partition(store, target, settled_before=SETTLED,
                                 now=soon + SOURCE_GRACE)
    assert sorted(o.status for o in outcomes) == ["cleaned", "compacted"]
    assert set(outcomes[1].sources) == {first.merged, outcomes[0].merged}
    assert snapshot(uri) == with_late
    clean_compacted(store, now=soon + 2 * SOURCE_GRACE)
    assert len(list(Path(store.path(target.relative)).iterdir())) == 1
    assert snapshot(uri) == with_late


# ---------------------------------------------------------------------------- the min age


def test_recent_files_are_never_merged_whatever_the_caller_asks(tmp_path: Path) -> None:
    """The reviewer's repro: a rollout controller makes a pass every 120 s (a fake clock);
    a compaction of files 36 s old would name the merged file after the controller's
    horizon, and the controller would read it as new: rows counted twice. Such a
    compaction is refused; at the floor (one day), each row is counted once."""
    from mlops.deployment.traffic import LogPosition
    from mlops.store.predlog import SETTLE

    uri = str(tmp_path)
    store = open_store(uri)
    position = LogPosition(LogCursor.starting(T0))
    counted: list[str] = []

    def controller_pass(now: datetime) -> None:  # as RolloutTraffic._fresh does it
        inc = new_log_files(uri, AWKWARD, position.horizon, now=now, settle=timedelta(0))
        counted.extend(read_log_files(uri, position.take(inc.files))["request_id"]
                       .to_pylist())
        position.advance(now - SETTLE)

    t = T0 + timedelta(minutes=30)
    for rid, second in (("a", 10), ("b", 50), ("c", 115)):
        put(tmp_path, [rec(rid, t + timedelta(seconds=second - 1))],
            t + timedelta(seconds=second))
    controller_pass(t + timedelta(seconds=120))  # reads a, b, c; remembers c by path
    compaction = t + timedelta(seconds=160)
    for too_short in (timedelta(seconds=36), COMPACT_MIN_AGE - timedelta(seconds=1)):
        with pytest.raises(ValueError, match="less than 1 day") as err:
            compact_log(store, settled_before=compaction - too_short, now=compaction)
        assert "COMPACT_MIN_AGE" in str(err.value)
        target = list_partitions(store, PREDICTIONS)[0]
        with pytest.raises(ValueError, match="Refusing"):
            compact_partition(store, target, settled_before=compaction - too_short,
                              now=compaction, dry_run=True)
    assert not manifests(tmp_path)
    controller_pass(t + timedelta(seconds=240))
    assert counted == ["a", "b", "c"]

    # a day on, the controller still making its passes: the files merge, nothing is new
    later = t + COMPACT_MIN_AGE + timedelta(minutes=5)
    controller_pass(later - timedelta(seconds=60))
    [outcome] = compact_log(store, settled_before=later - COMPACT_MIN_AGE, now=later)
    assert outcome.status == "compacted" and len(outcome.sources) == 3
    controller_pass(later + timedelta(seconds=60))
    assert counted == ["a", "b", "c"]
