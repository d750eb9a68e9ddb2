"""The prediction log's spool: acknowledged rows survive a killed writer, exactly once."""

from __future__ import annotations

import atexit
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import pytest

from mlops.store.predlog import (
    FeedbackRecord,
    PredictionLog,
    PredictionRecord,
    read_feedback,
    read_predictions,
)
from mlops.store.predlog import spool as spool_module
from mlops.store.predlog import writer as writer_module
from mlops.store.predlog.spool import SUFFIX, SpoolSegment, claim_orphans

REPO = Path(__file__).resolve().parents[2]
TS = datetime(2024, 5, 17, 12, 30, tzinfo=UTC).timestamp()
DAY = 86_400.0


def rec(i: int, *, version: str = "1.0.0", ts: float = TS, model: str = "churn"
        ) -> PredictionRecord:
    return PredictionRecord(f"req-{i}", ts + i * 1e-3, model, version, "production", "stable",
                            None, 0, json.dumps({"x": i}), json.dumps(i % 2), float(i % 2),
                            [0.25, 0.75], 2.0, 200)


def ids(root: str | Path) -> list[str]:
    return sorted(read_predictions(str(root))["request_id"].to_pylist())


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob(f"*{SUFFIX}"))


def die(log: PredictionLog) -> None:
    """What a killed process leaves: its spool segment, unlocked; no final flush."""
    for batch in [log._open, *log._sealed]:
        if batch.segment is not None:
            batch.segment.release()
        batch.preds.clear()
        batch.feedback.clear()
        batch.requests.clear()
    log._pending = 0
    atexit.unregister(log._atexit)


def kill_after_logging(root: Path, spool: Path, n: int, *, feedback: int = 0) -> None:
    """A child process logs ``n`` rows (and ``feedback`` labels), says so, and is killed
    with SIGKILL before it flushes anything."""
    code = textwrap.dedent(f"""
        import json, os, signal, sys
        from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord
        log = PredictionLog({str(root)!r}, spool={str(spool)!r}, flush_seconds=3600,
                            flush_rows=10**9)
        log.start()
        for i in range({n}):
            log.log([PredictionRecord(f"req-{{i}}", {TS} + i, "churn", "1.0.0" if i % 3
                                      else "2.0.0", "production", "stable", None, 0, "{{}}",
                                      "1", 1.0, None, 2.0, 200)])
        for i in range({feedback}):
            log.log_feedback([FeedbackRecord(f"req-{{i}}", 0, "churn", "1", 1.0, {TS} + i)])
    """)
    run_until_killed(code)


def run_until_killed(code: str) -> str:
    """Run ``code`` in a child process that says "acknowledged" and kills itself with
    SIGKILL (no flush, no exit handler); returns what it printed."""
    code += '\nprint("acknowledged", flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n'
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "acknowledged" in done.stdout
    return done.stdout


def test_rows_of_a_killed_writer_are_written_by_the_next_start(tmp_path: Path) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    kill_after_logging(root, spool, 300, feedback=7)
    assert read_predictions(str(root)).num_rows == 0  # nothing reached Parquet
    assert len(segments(spool)) == 1
    log = PredictionLog(str(root), spool=spool, flush_seconds=0.05)
    log.start()
    log.close()
    assert log.replayed == 307 and log.pending == 0
    assert ids(root) == sorted(f"req-{i}" for i in range(300))
    assert read_feedback(str(root)).num_rows == 7
    assert segments(spool) == []
    # a third start finds nothing left to do
    again = PredictionLog(str(root), spool=spool)
    assert again.recover() == 0
    again.close()
    assert read_predictions(str(root)).num_rows == 300


def test_a_crash_after_the_parquet_write_does_not_duplicate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    log = PredictionLog(str(root), spool=spool)
    log.log([rec(i) for i in range(10)] + [rec(10 + i, version="2.0.0", ts=TS + DAY)
                                            for i in range(5)])
    # the process "dies" after writing the files and before deleting its segment
    monkeypatch.setattr(SpoolSegment, "discard", SpoolSegment.release)
    assert log.flush() == 15
    assert ids(root) == sorted(f"req-{i}" for i in range(15))
    assert len(segments(spool)) == 1
    monkeypatch.undo()
    fresh = PredictionLog(str(root), spool=spool)
    assert fresh.recover() == 15
    fresh.close()
    assert ids(root) == sorted(f"req-{i}" for i in range(15))  # each row once
    assert segments(spool) == []
    log.close()


def test_a_crash_between_two_partitions_writes_the_missing_one_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    log = PredictionLog(str(root), spool=spool)
    log.log([rec(i) for i in range(4)] + [rec(4 + i, version="2.0.0") for i in range(3)])
    real = writer_module.PredictionLog._write_file

    def second_fails(self: PredictionLog, directory: str, file_id: str, table: object) -> None:
        if "version=2.0.0" in directory:
            raise OSError("disk gone")
        real(self, directory, file_id, table)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module.PredictionLog, "_write_file", second_fails)
    with pytest.raises(Exception, match="disk gone"):
        log.flush()
    assert ids(root) == [f"req-{i}" for i in range(4)]
    die(log)  # the process dies here
    monkeypatch.undo()
    fresh = PredictionLog(str(root), spool=spool)
    fresh.recover()
    fresh.close()
    assert ids(root) == sorted(f"req-{i}" for i in range(7))


def test_a_retried_put_that_had_landed_is_not_written_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"memory://spool-{uuid.uuid4().hex}"
    log = PredictionLog(uri, spool=False)
    fs = fsspec.filesystem("memory")
    real = fs.pipe_file
    calls = []

    def lands_then_fails(path: str, data: bytes, **kw: object) -> None:
        calls.append(path)
        real(path, data)
        if len(calls) == 1:
            raise ConnectionError("timeout after the object landed")

    monkeypatch.setattr(log._store.fs, "pipe_file", lands_then_fails)
    log.log([rec(i) for i in range(5)])
    with pytest.raises(Exception, match="timeout"):
        log.flush()
    assert log.flush() == 5  # the retry sees the file and does not PUT it again
    log.close()
    assert len(calls) == 1
    assert ids(uri) == [f"req-{i}" for i in range(5)]
    fs.rm("/" + uri.removeprefix("memory://"), recursive=True)


def test_segments_of_live_writers_and_of_other_stores_are_left_alone(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    live = PredictionLog(str(tmp_path / "a"), spool=spool)
    live.log([rec(0)])
    other = PredictionLog(str(tmp_path / "b"), spool=spool)
    other.log([rec(1)])
    die(other)  # b's writer died
    newcomer = PredictionLog(str(tmp_path / "a"), spool=spool)
    assert newcomer.recover() == 0  # a's segment is locked by its live writer; b is not a's
    assert len(segments(spool)) == 2
    newcomer.close()
    live.close()
    assert ids(tmp_path / "a") == ["req-0"]
    b = PredictionLog(str(tmp_path / "b"), spool=spool)
    assert b.recover() == 1
    b.close()
    assert ids(tmp_path / "b") == ["req-1"] and segments(spool) == []


@pytest.mark.parametrize("torn", [False, True])
def test_a_frame_cut_short_by_a_kill_is_ignored(tmp_path: Path, torn: bool) -> None:
    spool = tmp_path / "spool"
    log = PredictionLog(str(tmp_path / "a"), spool=spool)
    log.log([rec(0), rec(1)])
    segment = log._open.segment
    assert segment is not None and segment._mm is not None
    mm, pos = segment._mm, segment._pos
    mm[pos + 5:pos + 16] = b'[["req-9", '  # killed while copying the payload: no length yet
    if torn:  # or with a length whose payload never made it
        mm[pos:pos + 5] = b"\x40\x00\x00\x00\x01"
    die(log)
    claimed = claim_orphans(spool, str(tmp_path / "a"))
    # a length whose payload does not read: that frame is skipped (and counted), not the rest
    assert [(c.torn, c.bad) for c in claimed] == [(False, 1 if torn else 0)]
    assert [r.request_id for r in claimed[0].predictions] == ["req-0", "req-1"]
    claimed[0].segment.release()
    fresh = PredictionLog(str(tmp_path / "a"), spool=spool)
    fresh.recover()
    fresh.close()
    assert ids(tmp_path / "a") == ["req-0", "req-1"]


def test_a_segment_grows_past_its_first_reservation(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "INITIAL_SIZE", 4096)
    spool = tmp_path / "spool"
    log = PredictionLog(str(tmp_path / "a"), spool=spool, flush_rows=10**6)
    for i in range(200):  # ~40 kB of frames
        log.log([rec(i)])
    segment = log._open.segment
    assert segment is not None and not segment.broken
    assert 32_768 <= segment.path.stat().st_size <= 131_072  # doubled from 4 kB as needed
    die(log)
    fresh = PredictionLog(str(tmp_path / "a"), spool=spool)
    assert fresh.recover() == 200
    fresh.close()
    assert len(ids(tmp_path / "a")) == 200


def test_an_unwritable_spool_still_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the spool folder should be")
    log = PredictionLog(str(tmp_path / "a"), spool=blocker / "spool")
    assert log.log([rec(0)]) == 1 and log.log([rec(1)]) == 1
    assert log.spool_errors == 1  # tried once per batch, not per request
    assert "cannot spool" in caplog.text
    log.close()
    assert ids(tmp_path / "a") == ["req-0", "req-1"]


def test_spooled_values_come_back_exactly(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    odd = PredictionRecord("r", TS + 0.123456, "m", "1", "prod", "stable", "ab" * 8, 3,
                           '{"é": "ü"}', '"yes"', math.nan, [0.1, 0.9], math.inf, 500, None)
    label = FeedbackRecord("r", 3, "m", '"yes"', -math.inf, TS + 1)
    log = PredictionLog(str(tmp_path / "a"), spool=spool)
    log.log([odd])
    log.log_feedback([label])
    die(log)
    [claimed] = claim_orphans(spool, str(tmp_path / "a"))
    got = claimed.predictions[0]
    assert (got.request_id, got.ts, got.unit_hash, got.row, got.inputs, got.proba,
            got.latency_ms, got.status) == ("r", odd.ts, odd.unit_hash, 3, odd.inputs,
                                            [0.1, 0.9], math.inf, 500)
    assert got.prediction_num is not None and math.isnan(got.prediction_num)
    assert claimed.feedback[0].actual_num == -math.inf
    claimed.segment.release()


def test_no_spool_when_asked(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), spool=False)
    log.log([rec(0)])
    assert log.spool_dir is None and not (tmp_path / ".spool").exists()
    log.close()


def test_default_spool_folder_is_beside_a_local_log(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path))
    log.log([rec(0)])
    assert log.spool_dir == tmp_path / ".spool" and len(segments(tmp_path / ".spool")) == 1
    log.close()
    assert segments(tmp_path / ".spool") == []


def test_interval_is_not_a_storage_option(tmp_path: Path) -> None:
    # it used to land in fsspec's storage options, silently: the interval never applied
    with pytest.raises(TypeError, match="interval"):
        PredictionLog(str(tmp_path), interval=1.0)  # type: ignore[call-arg]
    log = PredictionLog(str(tmp_path), flush_seconds=0.05, storage_options={"auto_mkdir": True})
    log.start()
    log.log([rec(0)])
    deadline = time.monotonic() + 10
    while log.written == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.written == 1  # flushed by the interval, without a flush() call
    log.close()


def test_a_running_writer_claims_the_segments_of_a_sibling_that_died(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "CLAIM_SECONDS", 0.05)
    spool, root = tmp_path / "spool", tmp_path / "a"
    survivor = PredictionLog(str(root), spool=spool, flush_seconds=0.02)
    survivor.start()
    sibling = PredictionLog(str(root), spool=spool, flush_seconds=3600)
    sibling.log([rec(i) for i in range(3)])
    die(sibling)  # the sibling worker is killed
    deadline = time.monotonic() + 10
    while survivor.replayed < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    survivor.close()
    assert survivor.replayed == 3 and ids(root) == ["req-0", "req-1", "req-2"]
