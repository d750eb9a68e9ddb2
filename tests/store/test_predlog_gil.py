"""The flush thread builds its columns with short GIL turns, and puts the interval back."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlops.store.predlog import SHORT_TURN, PredictionLog, read_predictions, short_turns
from mlops.store.predlog import writer as writer_module
from tests.store.test_predlog_requests import request


@pytest.fixture
def interval() -> Iterator[float]:
    """The process's switch interval set to CPython's default for the test, then restored."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        yield 0.005
    finally:
        sys.setswitchinterval(before)


def test_short_turns_lower_the_interval_only_inside(interval: float) -> None:
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(SHORT_TURN, rel=0.02)
    assert sys.getswitchinterval() == pytest.approx(interval, rel=0.02)


def test_an_interval_already_shorter_is_kept(interval: float) -> None:
    sys.setswitchinterval(0.0001)
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.02)
    assert sys.getswitchinterval() == pytest.approx(0.0001, rel=0.02)


def test_overlapping_users_put_the_interval_back_once_the_last_leaves(
        interval: float) -> None:
    """Two logs flushing at once: the first to leave must not restore the long turns
    under the other, nor the last leave them short."""
    inside, leave = threading.Event(), threading.Event()
    seen: list[float] = []

    def other() -> None:
        with short_turns():
            inside.set()
            leave.wait(10)
            seen.append(sys.getswitchinterval())

    thread = threading.Thread(target=other)
    thread.start()
    assert inside.wait(10)
    with short_turns():
        assert sys.getswitchinterval() == pytest.approx(SHORT_TURN, rel=0.02)
    assert sys.getswitchinterval() == pytest.approx(SHORT_TURN, rel=0.02)  # the other is still in
    leave.set()
    thread.join(10)
    assert seen == [pytest.approx(SHORT_TURN, rel=0.02)]
    assert sys.getswitchinterval() == pytest.approx(interval, rel=0.02)


def test_an_error_inside_still_puts_the_interval_back(interval: float) -> None:
    with pytest.raises(RuntimeError), short_turns():
        raise RuntimeError("a build that fails")
    assert sys.getswitchinterval() == pytest.approx(interval, rel=0.02)


def test_the_flush_builds_the_requests_columns_with_short_turns(
        tmp_path: Path, interval: float, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    build = writer_module.requests_table

    def watched(requests: Sequence[Any]) -> pa.Table:
        seen.append(sys.getswitchinterval())
        return build(requests)

    monkeypatch.setattr(writer_module, "requests_table", watched)
    uri = str(tmp_path / "artifacts")
    log = PredictionLog(uri, spool=tmp_path / "spool")
    assert log.log_request(request("r1", np.array([[1.0, 2.0, 3.0]]), np.array([1]))) == 1
    log.close()
    assert seen == [pytest.approx(SHORT_TURN, rel=0.02)]
    assert sys.getswitchinterval() == pytest.approx(interval, rel=0.02)
    assert read_predictions(uri, "churn").num_rows == 1
