"""Retention: only expired day partitions and snapshots go (the cutoff day stays), a dry run
changes nothing, every run is one audit event and the chain still verifies, a run that
stopped half-way is completed by the next; compaction through the same lease, never of
files less than a day old, and the sources it keeps for their grace deleted by a later
retention run."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from mlops.errors import GovernanceError, PermissionDenied
from mlops.governance import apply_retention, compact_prediction_log, retention_policy
from mlops.governance.retention import AUDIT_SUBJECT, LEASE_NAME
from mlops.identity import Principal, Role
from mlops.monitoring.alerts import Observation
from mlops.monitoring.snapshots import record_snapshots, snapshot_series
from mlops.registry.service import ModelRegistry
from mlops.store.audit import list_events, verify_chain
from mlops.store.leases import Lease
from mlops.store.predlog import (
    FEEDBACK,
    PREDICTIONS,
    FeedbackRecord,
    PredictionLog,
    PredictionRecord,
    delete_partition,
    list_partitions,
    open_store,
    read_feedback,
    read_predictions,
    start_purge,
)
from mlops.store.predlog.layout import part_name, partition_path
from mlops.store.predlog.maintenance import COMPACT_MIN_AGE, SOURCE_GRACE
from mlops.store.predlog.records import prediction_table

NOW = datetime(2025, 6, 30, 15, tzinfo=UTC)
AWKWARD = "risk a/b"
# predictions kept 30 days, feedback 10, snapshots 20: the first days kept
PRED_CUTOFF, FB_CUTOFF, SNAP_CUTOFF = date(2025, 5, 31), date(2025, 6, 20), date(2025, 6, 10)


def at(day: date, hour: int = 12) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def pred(rid: str, ts: datetime, model: str = "churn", version: str = "1.0.0"
         ) -> PredictionRecord:
    return PredictionRecord(rid, ts.timestamp(), model, version, "production", "stable", None,
                            0, "{}", "1", 1.0, None, 1.0, 200)


@pytest.fixture
def reg(registry: ModelRegistry, skops_file: Path) -> ModelRegistry:
    """A registry with the per-kind policy, a model, log days around each cutoff and
    snapshots around theirs."""
    settings = registry.settings.model_copy(update={
        "retention_predictions_days": 30, "retention_feedback_days": 10,
        "retention_snapshots_days": 20})
    reg = ModelRegistry(settings)
    reg.register("churn", str(skops_file))
    one_day = timedelta(days=1)
    log = PredictionLog(settings.artifacts_uri, spool=False)
    log.log([pred("p-expired", at(PRED_CUTOFF - one_day, 23)),
             pred("p-expired-2", at(PRED_CUTOFF - one_day, 0), model=AWKWARD, version="2 x"),
             pred("p-cutoff", at(PRED_CUTOFF, 0)),
             pred("p-recent", at(date(2025, 6, 29)))])
    log.log_feedback([FeedbackRecord("f-expired", 0, "churn", "1", 1.0,
                                     at(FB_CUTOFF - one_day, 23).timestamp()),
                      FeedbackRecord("f-cutoff", 0, "churn", "1", 1.0,
                                     at(FB_CUTOFF, 0).timestamp())])
    log.close()
    cut = at(SNAP_CUTOFF, 0)
    for end in (cut - timedelta(microseconds=1), cut, at(date(2025, 6, 29))):
        record_snapshots(reg, "churn", "1.0.0", "production", end - timedelta(hours=1), end,
                         {"accuracy": Observation(0.9, 100)})
    return reg


def days(reg: ModelRegistry) -> dict[str, set[str]]:
    store = open_store(reg.settings.artifacts_uri)
    return {kind: {f"{p.model}/{p.version}/{p.day}" for p in list_partitions(store, kind)}
            for kind in (PREDICTIONS, FEEDBACK)}


def snapshot_ends(reg: ModelRegistry) -> list[datetime]:
    return [s.window_end for s in snapshot_series(reg, "churn", "accuracy")]


def retention_events(reg: ModelRegistry) -> list[dict[str, Any]]:
    with reg.store.read() as s:
        return [e.payload for e in list_events(s, action="retention.apply")]


def test_the_policy_comes_from_the_settings(reg: ModelRegistry) -> None:
    policy = retention_policy(reg.settings)
    assert (policy.predictions_days, policy.feedback_days, policy.snapshots_days,
            policy.default_days) == (30, 10, 20, 365)
    assert policy.cutoffs(NOW.date()) == {"predictions": PRED_CUTOFF, "feedback": FB_CUTOFF,
                                          "snapshots": SNAP_CUTOFF}
    plain = retention_policy(reg.settings.model_copy(update={
        "retention_predictions_days": None, "retention_feedback_days": None,
        "retention_snapshots_days": None, "retention_days": 7}))
    assert {plain.days(k) for k in ("predictions", "feedback", "snapshots")} == {7}


def test_only_expired_days_go_and_the_cutoff_day_stays(reg: ModelRegistry) -> None:
    result = apply_retention(reg, now=NOW)
    assert not result.dry_run and result.audit_seq is not None
    assert result.cutoffs == {"predictions": PRED_CUTOFF, "feedback": FB_CUTOFF,
                              "snapshots": SNAP_CUTOFF}
    assert sorted((p.kind, p.model, p.version, p.day) for p in result.partitions) == [
        (FEEDBACK, "churn", None, "2025-06-19"),
        (PREDICTIONS, "churn", "1.0.0", "2025-05-30"),
        (PREDICTIONS, AWKWARD, "2 x", "2025-05-30")]
    assert result.snapshots == 1
    assert days(reg) == {PREDICTIONS: {"churn/1.0.0/2025-05-31", "churn/1.0.0/2025-06-29"},
                         FEEDBACK: {"churn/None/2025-06-20"}}
    uri = reg.settings.artifacts_uri
    assert sorted(read_predictions(uri)["request_id"].to_pylist()) == ["p-cutoff", "p-recent"]
    assert read_feedback(uri)["request_id"].to_pylist() == ["f-cutoff"]
    assert snapshot_ends(reg) == [at(SNAP_CUTOFF, 0), at(date(2025, 6, 29))]


def test_what_is_not_a_partition_is_never_deleted(reg: ModelRegistry) -> None:
    root = Path(reg.settings.artifacts_uri)
    junk = [root / "predictions" / "junk" / "date=2000-01-01",
            root / "predictions" / "model=churn" / "date=2000-01-01",
            root / "predictions" / "model=churn" / "version=1.0.0" / "date=2000-1-1",
            root / "feedback" / "model=churn" / "date=garbage",
            root / "elsewhere" / "model=churn" / "date=2000-01-01"]
    for folder in junk:
        folder.mkdir(parents=True)
        (folder / "keep.parquet").write_bytes(b"x")
    as_file = root / "feedback" / "model=churn" / "date=2000-01-02"
    as_file.write_text("a file named like a partition")
    result = apply_retention(reg, now=NOW)
    assert len(result.partitions) == 3
    assert all((folder / "keep.parquet").exists() for folder in junk) and as_file.exists()


def test_a_dry_run_lists_the_same_and_changes_nothing(reg: ModelRegistry) -> None:
    before, ends = days(reg), snapshot_ends(reg)
    with reg.store.read() as s:
        events = len(list_events(s, limit=10_000))
    dry = apply_retention(reg, dry_run=True, now=NOW)
    assert dry.dry_run and dry.audit_seq is None and dry.run is None
    assert days(reg) == before and snapshot_ends(reg) == ends
    with reg.store.read() as s:
        assert len(list_events(s, limit=10_000)) == events
    assert not list(Path(reg.settings.artifacts_uri).rglob("_retention-*"))
    real = apply_retention(reg, now=NOW)
    assert real.partitions == dry.partitions and real.snapshots == dry.snapshots == 1


def test_the_run_is_one_audit_event_and_the_chain_still_verifies(reg: ModelRegistry) -> None:
    with reg.store.read() as s:
        events_before = len(list_events(s, limit=10_000))
    result = apply_retention(reg, now=NOW)
    with reg.store.read() as s:
        [event] = list_events(s, action="retention.apply")
        assert len(list_events(s, limit=10_000)) == events_before + 1  # nothing purged
        assert verify_chain(s).ok
    assert event.seq == result.audit_seq and event.subject == AUDIT_SUBJECT
    assert event.actor == reg.actor
    payload = event.payload
    assert payload["policy"] == {"retention_days": 365, "predictions_days": 30,
                                 "feedback_days": 10, "snapshots_days": 20}
    assert payload["cutoffs"] == {"predictions": "2025-05-31", "feedback": "2025-06-20",
                                  "snapshots": "2025-06-10"}
    assert payload["snapshots_deleted"] == 1 and payload["run"] == result.run
    assert sorted(p["path"] for p in payload["partitions"]) == sorted(
        p.relative for p in result.partitions)
    assert any(p["model"] == AWKWARD and "risk%20a%2Fb" in p["path"]
               for p in payload["partitions"])
    assert not list(Path(reg.settings.artifacts_uri).rglob("_retention-*"))  # journal gone


def test_running_again_is_idempotent(reg: ModelRegistry) -> None:
    first = apply_retention(reg, now=NOW)
    left = days(reg), snapshot_ends(reg)
    second = apply_retention(reg, now=NOW)
    assert second.partitions == () and second.snapshots == 0 and second.resumed == ()
    assert (days(reg), snapshot_ends(reg)) == left
    assert [e["run"] for e in retention_events(reg)] == [second.run, first.run]
    with reg.store.read() as s:
        assert verify_chain(s).ok


def test_a_run_that_stopped_half_way_is_completed_and_recorded_by_the_next(
        reg: ModelRegistry) -> None:
    store = open_store(reg.settings.artifacts_uri)
    cutoff_day = next(p for p in list_partitions(store, PREDICTIONS) if p.day == "2025-05-31")
    expired = [p for p in list_partitions(store, PREDICTIONS) if p.day == "2025-05-30"]
    # a stopped run (say, under a shorter policy) had listed these and deleted one
    stopped = "ab" * 16
    start_purge(store, stopped, [*expired, cutoff_day], now=NOW)
    delete_partition(store, expired[0])
    result = apply_retention(reg, now=NOW)
    assert result.resumed == (stopped,)
    assert {p.relative for p in expired} <= {p.relative for p in result.partitions}
    assert result.abandoned == (cutoff_day,)  # not expired under this policy: kept
    assert "churn/1.0.0/2025-05-31" in days(reg)[PREDICTIONS]
    [payload] = retention_events(reg)
    assert payload["resumed"] == [stopped]
    assert [p["path"] for p in payload["abandoned"]] == [cutoff_day.relative]
    assert not list(Path(reg.settings.artifacts_uri).rglob("_retention-*"))


def test_a_run_that_stopped_after_its_event_is_not_recorded_twice(
        reg: ModelRegistry) -> None:
    first = apply_retention(reg, now=NOW)
    assert first.run is not None
    store = open_store(reg.settings.artifacts_uri)
    start_purge(store, first.run, first.partitions, now=NOW)  # as if its removal failed
    second = apply_retention(reg, now=NOW)
    assert second.resumed == () and second.partitions == ()
    assert not list(Path(reg.settings.artifacts_uri).rglob("_retention-*"))


def test_applying_needs_an_admin_and_the_lease(reg: ModelRegistry) -> None:
    viewer = reg.acting_as(Principal("ann", Role.APPROVER, "token"))
    with pytest.raises(PermissionDenied):
        apply_retention(viewer, now=NOW)
    with pytest.raises(PermissionDenied):
        compact_prediction_log(viewer, now=NOW)
    assert apply_retention(viewer, dry_run=True, now=NOW).partitions  # reading is fine
    other = Lease(reg.store, LEASE_NAME, holder="another-host:1", seconds=60)
    assert other.acquire()
    with pytest.raises(GovernanceError, match="lease") as err:
        apply_retention(reg, now=NOW)
    assert err.value.fix
    with pytest.raises(GovernanceError, match="lease"):
        compact_prediction_log(reg, now=NOW)
    assert days(reg)[PREDICTIONS] and not retention_events(reg)
    other.release()
    assert apply_retention(reg, now=NOW).partitions


def test_compaction_merges_files_without_changing_results_and_is_audited(
        reg: ModelRegistry) -> None:
    uri = reg.settings.artifacts_uri
    log = PredictionLog(uri, spool=False)
    for i in range(3):
        log.log([pred(f"c{i}", at(date(2025, 6, 29), i))])
        log.flush()
    log.close()
    before = sorted(read_predictions(uri).to_pylist(), key=lambda r: r["request_id"])
    soon = compact_prediction_log(reg)  # just flushed: nothing settled yet
    assert soon.merged == () and soon.audit_seq is None
    with pytest.raises(GovernanceError, match="min_age"):
        compact_prediction_log(reg, min_age=timedelta(seconds=1))
    later = datetime.now(UTC) + timedelta(days=2)
    dry = compact_prediction_log(reg, now=later, dry_run=True)
    assert (dry.files_before, dry.files_after) == (4, 1) and dry.audit_seq is None
    report = compact_prediction_log(reg, now=later)
    assert (report.files_before, report.files_after) == (4, 1)
    assert sorted(read_predictions(uri).to_pylist(), key=lambda r: r["request_id"]) == before
    with reg.store.read() as s:
        [event] = list_events(s, action="retention.compact")
        assert verify_chain(s).ok
    assert event.seq == report.audit_seq and event.payload["files_before"] == 4
    json.dumps(report.to_dict(), default=str)


@pytest.mark.parametrize("min_age", [timedelta(seconds=36), timedelta(hours=1),
                                     COMPACT_MIN_AGE - timedelta(seconds=1)])
def test_compaction_refuses_a_min_age_under_a_day(reg: ModelRegistry,
                                                  min_age: timedelta) -> None:
    """A merged file named after a rollout controller's horizon would be read as new and
    its rows counted twice: recent files are never merged."""
    for dry_run in (True, False):
        with pytest.raises(GovernanceError, match="min_age") as err:
            compact_prediction_log(reg, min_age=min_age, dry_run=dry_run, now=NOW)
        assert "count their rows again" in err.value.message
        assert err.value.fix and "--min-age-hours 24" in err.value.fix
    with reg.store.read() as s:
        assert not list_events(s, action="retention.compact")
    assert compact_prediction_log(reg, min_age=COMPACT_MIN_AGE, now=NOW).skipped == ()


def _put(uri: str, rid: str, ts: datetime, flushed: datetime) -> Path:
    record = pred(rid, ts)
    folder = Path(uri) / partition_path(PREDICTIONS, "churn", "1.0.0", ts.date().isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / part_name(flushed, uuid.uuid4().hex)
    pq.write_table(prediction_table([record]), path)
    return path


def test_retention_deletes_compacted_sources_after_their_grace_and_expired_days_whole(
        reg: ModelRegistry) -> None:
    uri = reg.settings.artifacts_uri
    kept_day, expired_day = date(2025, 6, 28), date(2025, 5, 1)
    kept = [_put(uri, f"k{i}", at(kept_day, i), at(kept_day, i) + timedelta(minutes=1))
            for i in range(3)]
    expired = [_put(uri, f"e{i}", at(expired_day, i), at(expired_day, i)) for i in range(2)]
    before = sorted(read_predictions(uri)["request_id"].to_pylist())
    report = compact_prediction_log(reg, now=NOW)
    assert (report.files_before, report.files_after) == (5, 2)
    assert report.sources_waiting == 5 and report.sources_deleted == 0
    assert all(p.exists() for p in kept + expired)  # kept, hidden, for the grace
    assert sorted(read_predictions(uri)["request_id"].to_pylist()) == before
    with reg.store.read() as s:
        [event] = list_events(s, action="retention.compact")
    assert event.payload["sources_waiting"] == 5

    soon = apply_retention(reg, now=NOW + timedelta(minutes=10))
    assert soon.sources_deleted == 0 and soon.sources_waiting == 3
    # the expired day went whole: sources, merged file and manifest
    assert not expired[0].parent.exists()
    assert all(p.exists() for p in kept)
    assert sorted(read_predictions(uri)["request_id"].to_pylist()) == \
        [r for r in before if not r.startswith(("e", "p-expired"))]
    after_expiry = sorted(read_predictions(uri)["request_id"].to_pylist())

    dry = apply_retention(reg, dry_run=True, now=NOW + SOURCE_GRACE)
    assert dry.sources_deleted == 3 and dry.sources_waiting == 0
    assert all(p.exists() for p in kept)
    later = apply_retention(reg, now=NOW + SOURCE_GRACE)
    assert later.sources_deleted == 3 and later.to_dict()["sources_deleted"] == 3
    assert not any(p.exists() for p in kept)
    assert not list(kept[0].parent.glob("_compaction-*"))
    assert len(list(kept[0].parent.glob("part-*.parquet"))) == 1
    assert sorted(read_predictions(uri)["request_id"].to_pylist()) == after_expiry
    assert retention_events(reg)[0]["compacted_sources_deleted"] == 3
    with reg.store.read() as s:
        assert verify_chain(s).ok
