"""A helper process that writes the spool segments a writer hands over.

Making a flushed batch into Parquet (each row's inputs as JSON text, Arrow columns, zstd)
costs a few microseconds per row, and most of it holds the GIL: in a busy gateway that time
is taken from the event loop. Everything a batch holds is already in its spool segment, so
a busy :class:`~mlops.store.predlog.writer.PredictionLog` (see its ``helper_rows``) hands
each complete segment to this process instead of writing it. The writer releases its lock
on the segment and sends its path; the helper claims the segment (the same claim that
recovers the segments of killed writers), writes its rows with the same file ids, deletes
it and answers with what it wrote.

So a segment is written exactly once whoever writes it. When the helper fails to write a
segment, it leaves it unlocked in the spool, and the writer's next claim (every
``CLAIM_SECONDS``) hands it over again. When the helper dies, its segments are claimed the
same way and the writer writes in its own thread from then on.

Protocol (the helper's standard input and output, one JSON document per line): first the
store ``{"uri", "spool", "storage_options"}``, then ``{"path", "check"}`` for each segment
(``check``: some of its files may exist already); the helper answers
``{"path", "written", "dropped", "error"}`` for each. It stops when its input
closes, for instance when its writer's process dies. The helper's own loop is
:mod:`~mlops.store.predlog.helper_main`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["HelperProcess", "Outcome"]

logger = logging.getLogger("mlops.store.predlog")


@dataclass(frozen=True)
class Outcome:
    """What the helper did with one segment it was handed (``rows`` of them)."""

    path: str
    rows: int
    written: int
    dropped: int
    error: str | None


class HelperProcess:
    """The writer's side of the helper: start it, hand it segments, read its answers."""

    def __init__(self, uri: str, spool_dir: Path,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.uri, self.spool_dir = uri, spool_dir
        self._options = dict(storage_options or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._partial = b""
        self._handed: dict[str, int] = {}  # path -> rows, until answered
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the process (it imports for a moment; segments handed meanwhile wait)."""
        if self._proc is not None:
            return
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlops.store.predlog.helper_main"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, close_fds=True)
        assert proc.stdin is not None and proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self._proc = proc
        self._send({"uri": self.uri, "spool": str(self.spool_dir),
                    "storage_options": self._options})

    @property
    def started(self) -> bool:
        return self._proc is not None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def outstanding(self) -> dict[str, int]:
        """The segments handed and not answered yet (path -> rows)."""
        return dict(self._handed)

    def hand(self, path: Path, rows: int, *, check_written: bool) -> bool:
        """Send a segment (unlocked by the caller) of ``rows`` rows; ``check_written`` when
        some of its files may exist already. False when the helper is gone."""
        if not self._send({"path": str(path), "check": check_written}):
            return False
        self._handed[str(path)] = self._handed.get(str(path), 0) + rows
        return True

    def forget(self) -> int:
        """Give up on what was handed and not answered (its segments stay in the spool, to
        be claimed again); returns its rows."""
        rows = sum(self._handed.values())
        self._handed.clear()
        return rows

    def _send(self, doc: Any) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.poll() is not None:
            return False
        try:
            proc.stdin.write(orjson.dumps(doc) + b"\n")
            proc.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def answers(self) -> list[Outcome]:
        """The answers that have arrived (never blocks)."""
        proc = self._proc
        if proc is None or proc.stdout is None:
            return []
        with self._lock:
            try:
                data = proc.stdout.read() or b""
            except (BlockingIOError, ValueError):
                data = b""
            *lines, self._partial = (self._partial + data).split(b"\n")
        out = []
        for line in lines:
            try:
                doc = orjson.loads(line)
                path = str(doc["path"])
                out.append(Outcome(path, self._handed.pop(path, 0), int(doc["written"]),
                                   int(doc["dropped"]), doc.get("error")))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                logger.error("Prediction log helper answered %r, which is not an answer.",
                             line[:200])
        return out

    def stop(self, timeout: float) -> list[Outcome]:
        """Close its input, wait up to ``timeout`` s for it to finish what it was handed,
        and return its last answers (it is killed when it does not finish in time)."""
        proc = self._proc
        if proc is None:
            return []
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.error("Prediction log helper did not finish within %.3g s; what it was "
                         "handed stays in the spool and is claimed again.", timeout)
            proc.kill()
            proc.wait()
        out = self.answers()
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdout is not None
            proc.stdout.close()
        return out
