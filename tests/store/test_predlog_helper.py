"""The prediction log's helper process: it writes the segments a busy writer hands over,
exactly once, and the writer takes over when it fails or dies."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops.store.predlog import PredictionLog, read_predictions
from mlops.store.predlog import writer as writer_module
from mlops.store.predlog.spool import SUFFIX
from tests.store.test_predlog_spool import run_until_killed

REPO = Path(__file__).resolve().parents[2]
TS = 1_715_949_000.0


def request(i: int) -> tuple[Any, ...]:
    rows = 1 + i % 2
    return (f"req-{i}", TS + i, "churn", "1.0.0" if i % 3 else "2.0.0", "production",
            "stable", None, ["a", "b"], np.array([[i * 0.5, -i]] * rows),
            np.array([i % 2] * rows), np.array([[0.5, 0.5]] * rows), 2.0, 200, None, None,
            0.01)


def rows_of(n: int) -> int:
    return sum(1 + i % 2 for i in range(n))


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def ids(root: Path) -> list[str]:
    return sorted(set(read_predictions(str(root))["request_id"].to_pylist()))


def helper_pid(log: PredictionLog) -> int:
    helper = log._helper
    assert helper is not None and helper._proc is not None
    return helper._proc.pid


def no_writes_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process must not write any file: the helper (another process) does."""
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the writer wrote a batch the helper should have written")
    monkeypatch.setattr(writer_module.PredictionLog, "_write_file", refuse)


def test_a_busy_log_hands_its_batches_to_the_helper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    no_writes_here(monkeypatch)
    log = PredictionLog(str(root), spool=spool, flush_seconds=0.05, helper_rows=1)
    log.start()
    for i in range(300):
        log.log_request(request(i))
    wait_for(lambda: log.written == rows_of(300))
    assert log.pending == 0 and log.dropped == 0
    assert ids(root) == sorted(f"req-{i}" for i in range(300))
    # what is left is the open batch's segment, made ahead (empty)
    assert len(list(spool.glob(f"*{SUFFIX}"))) <= 1
    helper = log._helper
    log.close()
    assert not list(spool.glob(f"*{SUFFIX}"))
    assert log._helper is None and helper is not None and helper._proc is not None
    assert helper._proc.returncode == 0  # it finished and stopped with its writer


def test_a_quiet_log_does_not_start_the_helper(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "artifacts"), spool=tmp_path / "spool",
                        flush_seconds=0.05, helper_rows=1_000)
    log.start()
    log.log_request(request(0))
    wait_for(lambda: log.written == 1)
    assert log._helper is not None and not log._helper.started
    log.close()


def test_a_helper_killed_mid_work_loses_and_duplicates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    log = PredictionLog(str(root), spool=spool, flush_seconds=0.05, helper_rows=1)
    log.start()
    log.log_request(request(0))
    wait_for(lambda: log.written == 1)
    os.kill(helper_pid(log), signal.SIGKILL)
    for i in range(1, 200):
        log.log_request(request(i))
    wait_for(lambda: log._helper is None)  # noticed: this process writes from now on
    wait_for(lambda: log.pending == 0 and len(ids(root)) == 200)
    log.close()
    assert ids(root) == sorted(f"req-{i}" for i in range(200))


def test_a_write_the_helper_cannot_make_is_retried_from_the_spool(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    root.mkdir()
    (root / "predictions").write_text("a file where the log's folder goes")
    monkeypatch.setattr(writer_module, "CLAIM_SECONDS", 0.3)
    log = PredictionLog(str(root), spool=spool, flush_seconds=0.05, helper_rows=1)
    log.start()
    for i in range(20):
        log.log_request(request(i))
    wait_for(lambda: log._helper is not None and log._helper.started
             and not log._helper.outstanding and log.pending == 0)
    assert log.written == 0 and log._helper is not None  # it failed, and lives on
    assert len(list(spool.glob(f"*{SUFFIX}"))) >= 1  # kept for the retry
    (root / "predictions").unlink()
    wait_for(lambda: len(ids(root)) == 20)
    log.close()
    assert ids(root) == sorted(f"req-{i}" for i in range(20))
    assert log.pending == 0 and not list(spool.glob(f"*{SUFFIX}"))


def test_records_that_are_not_in_the_spool_are_written_here(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "artifacts"
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    log = PredictionLog(str(root), spool=blocked / "spool", flush_seconds=0.05,
                        helper_rows=1)  # the spool cannot be made: nothing to hand over
    log.start()
    for i in range(10):
        log.log_request(request(i))
    wait_for(lambda: log.written == rows_of(10))
    assert log._helper is not None and not log._helper.started
    log.close()


def test_the_helper_ends_when_its_writer_is_killed(tmp_path: Path) -> None:
    root, spool = tmp_path / "artifacts", tmp_path / "spool"
    code = textwrap.dedent(f"""
        import os, signal, sys, time
        sys.path.insert(0, {str(REPO / "tests" / "store")!r})
        from test_predlog_helper import request
        from mlops.store.predlog import PredictionLog
        log = PredictionLog({str(root)!r}, spool={str(spool)!r}, flush_seconds=0.05,
                            helper_rows=1)
        log.start()
        for i in range(50):
            log.log_request(request(i))
        while log.written < 75:
            time.sleep(0.02)
        for i in range(50, 80):
            log.log_request(request(i))
        print(log._helper._proc.pid, flush=True)
    """)
    out = run_until_killed(code)
    pid = int(out.split()[0])

    def gone() -> bool:  # exited (a zombie when nothing reaps orphans here)
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except (FileNotFoundError, ProcessLookupError):
            return True
    wait_for(gone)  # its input closed with its writer
    log = PredictionLog(str(root), spool=spool)
    log.start()
    log.close()
    assert ids(root) == sorted(f"req-{i}" for i in range(80))


def test_a_busy_log_makes_its_next_segment_ahead_and_not_in_a_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The request that comes first after a flush does not pay for making (and faulting
    in) a segment: the flush thread made it already."""
    from mlops.store.predlog.spool import SpoolSegment

    made: list[tuple[str, bool]] = []
    real = SpoolSegment.create.__func__  # type: ignore[attr-defined]

    def create(cls: type[SpoolSegment], *args: Any, **kwargs: Any) -> SpoolSegment:
        import threading
        made.append((threading.current_thread().name, kwargs.get("prefault", False)))
        return real(cls, *args, **kwargs)
    monkeypatch.setattr(SpoolSegment, "create", classmethod(create))
    log = PredictionLog(str(tmp_path / "artifacts"), spool=tmp_path / "spool",
                        flush_seconds=0.05, helper_rows=2)
    log.start()
    log.log_request(request(1))  # two rows: busy enough
    wait_for(lambda: log.written == 2)
    log.log_request(request(2))
    wait_for(lambda: log.written == 3)
    log.close()
    assert made[0] == ("MainThread", False)  # the very first segment: its request makes it
    assert made[1:] and all(m == ("mlops-predlog-flush", True) for m in made[1:])
