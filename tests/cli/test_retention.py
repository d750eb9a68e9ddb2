"""``mlops retention show|apply|compact``: the policy and what is expired, --dry-run and
--json, the audit event, the compacted sources waiting for deletion, exit code 1 when
compaction had to skip a partition and 2 for a min age under a day."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from mlops.cli.retention import retention_app
from mlops.registry.service import ModelRegistry
from mlops.store.audit import list_events, verify_chain
from mlops.store.predlog import (
    PREDICTIONS,
    PredictionRecord,
    list_files,
    list_partitions,
    open_store,
)
from mlops.store.predlog.layout import (
    CompactionManifest,
    parse_manifest,
    part_name,
    partition_path,
)
from mlops.store.predlog.records import prediction_table

MODEL = "churn a/b"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(retention_app, list(args))


def text(r: Result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(r.output.split())


def put(uri: str, rid: str, day: date, flushed: datetime, model: str = MODEL) -> Path:
    """One prediction file of ``day``'s partition, flushed at ``flushed``."""
    ts = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    record = PredictionRecord(rid, ts.timestamp(), model, "1", "production", "stable", None,
                              0, "{}", "1", 1.0, None, 1.0, 200)
    folder = Path(uri) / partition_path(PREDICTIONS, model, "1", day.isoformat())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / part_name(flushed, uuid.uuid4().hex)
    pq.write_table(prediction_table([record]), path)
    return path


@pytest.fixture
def uri(monkeypatch: pytest.MonkeyPatch) -> str:
    """The configured store (MLOPS_HOME of the test), predictions kept 30 days: a file of
    the day before the cutoff, two of the cutoff day (flushed two days ago)."""
    monkeypatch.setenv("MLOPS_RETENTION_PREDICTIONS_DAYS", "30")
    artifacts = ModelRegistry().settings.artifacts_uri
    today = datetime.now(UTC).date()
    old = datetime.now(UTC) - timedelta(days=2)
    put(artifacts, "expired", today - timedelta(days=31), old)
    put(artifacts, "kept-1", today - timedelta(days=30), old)
    put(artifacts, "kept-2", today - timedelta(days=30), old + timedelta(minutes=1))
    return artifacts


def days(uri: str) -> list[str]:
    return sorted(p.day for p in list_partitions(open_store(uri), PREDICTIONS))


def test_show_prints_the_policy_and_what_is_expired(uri: str) -> None:
    cutoff = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()
    r = invoke("show")
    assert r.exit_code == 0, r.output
    assert "Retention policy" in r.output and cutoff in r.output and "365" in r.output
    assert "1 prediction and 0 feedback day partitions" in r.output
    r = invoke("show", "--json")
    data = json.loads(r.stdout)
    assert data["cutoffs"]["predictions"] == cutoff and data["dry_run"] is True
    assert [p["model"] for p in data["partitions"]] == [MODEL]
    assert len(days(uri)) == 2


def test_apply_dry_run_then_apply_records_an_audit_event(uri: str) -> None:
    before = days(uri)
    r = invoke("apply", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["partitions"]) == 1 and days(uri) == before
    r = invoke("apply")
    assert r.exit_code == 0, r.output
    assert "deleted: 1 prediction" in r.output and "audit event #" in r.output
    assert days(uri) == before[1:]
    r = invoke("apply", "--json")
    again = json.loads(r.stdout)
    assert again["partitions"] == [] and again["audit_seq"] is not None
    with ModelRegistry().store.read() as s:
        assert len(list_events(s, action="retention.apply")) == 2
        assert verify_chain(s).ok


def test_compact_merges_and_a_corrupt_file_exits_1_with_a_message(uri: str) -> None:
    r = invoke("compact", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    dry = json.loads(r.stdout)
    assert (dry["files_before"], dry["files_after"]) == (2, 1)
    assert dry["sources_waiting"] == 2 and dry["sources_deleted"] == 0
    r = invoke("compact", "--model", MODEL)
    assert r.exit_code == 0, r.output
    assert "merged 2 files into 1" in r.output
    assert "2 source files wait for deletion" in text(r)
    folder = Path(uri) / partition_path(PREDICTIONS, MODEL, "1", days(uri)[1])
    assert len(list(folder.glob("part-*.parquet"))) == 3  # the sources stay, hidden, ...
    assert len(list_files(open_store(uri), PREDICTIONS)) == 2  # ... (+ the expired day)
    r = invoke("apply", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "0 would be deleted" in text(r) and "2 waiting for deletion" in text(r)

    # the grace over (the manifest is older than SOURCE_GRACE): the next run deletes them
    [path] = folder.glob("_compaction-*.json")
    manifest = parse_manifest(path.read_bytes())
    assert manifest is not None
    path.write_bytes(CompactionManifest(manifest.merged, manifest.sources,
                                        manifest.created - timedelta(hours=2)).to_json())
    r = invoke("compact", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "would delete 2 source files" in text(r)
    assert len(list(folder.glob("part-*.parquet"))) == 3
    r = invoke("compact")
    assert r.exit_code == 0, r.output
    assert "deleted 2 source files" in text(r) and "0 source files wait" in text(r)
    assert len(list(folder.glob("part-*.parquet"))) == 1 and not list(folder.glob("_*"))

    old = datetime.now(UTC) - timedelta(days=3)
    (folder / part_name(old, uuid.uuid4().hex)).write_bytes(b"not parquet at all")
    r = invoke("compact", "--json")
    assert r.exit_code == 1
    assert "cannot be read" in r.stderr and "nothing in this partition was changed" in r.stderr
    assert len(list(folder.glob("part-*.parquet"))) == 2
    assert invoke("compact", "--model", "nobody").exit_code == 0


def test_names_are_printed_as_they_are_never_as_markup(
        uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops.cli.output import console

    monkeypatch.setattr(console, "width", 200)  # no folded cells
    hostile = "[bold red]x[/]"
    old = datetime.now(UTC) - timedelta(days=2)
    for i in range(2):
        put(uri, f"h{i}", datetime.now(UTC).date() - timedelta(days=40), old, model=hostile)
    r = invoke("show")
    assert r.exit_code == 0, r.output
    assert hostile in r.output
    r = invoke("compact", "--dry-run")
    assert r.exit_code == 0, r.output
    assert hostile in r.output


def test_bad_options_are_usage_errors() -> None:
    assert invoke("compact", "--min-age-hours", "0").exit_code == 2
    assert invoke("apply", "--nope").exit_code == 2


@pytest.mark.parametrize("hours", ["0.01", "1", "23.99"])
def test_a_min_age_under_a_day_is_refused_without_a_traceback(uri: str, hours: str) -> None:
    """Files younger than a day may have been read by a rollout controller, which would
    count them again from a merged file."""
    r = invoke("compact", "--min-age-hours", hours)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit)
    assert "Traceback" not in r.output and "--min-age-hours" in r.output
    assert "24" in r.output
    folder = Path(uri) / partition_path(PREDICTIONS, MODEL, "1", days(uri)[1])
    assert len(list(folder.glob("part-*.parquet"))) == 2 and not list(folder.glob("_*"))
    assert invoke("compact", "--min-age-hours", "24", "--dry-run").exit_code == 0
