"""A rollout's new prediction-log rows, each read once: a cursor per arm and one for labels.

Built on :mod:`mlops.store.predlog.increments` (the log's own module knows its layout). Each
cursor is that module's horizon (every file completed before it has been read) plus the
paths of the files read after it: a pass lists the files completed after the horizon,
reads the ones it has not read yet, as soon as they are visible, and then moves the
horizon to ``now - settle`` (forgetting the paths it covers). So a file is never read
twice, none is read late, and a file that appears up to ``settle`` after the time in its
name is still read (see the increments module for the guarantee).

The first pass of a rollout (a new controller, or a new leader after a failover) reads
everything since the rollout started; every later pass reads only new files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from mlops.store.predlog import (
    FEEDBACK,
    LATE,
    PREDICTIONS,
    SETTLE,
    Kind,
    LogCursor,
    LogFile,
    new_log_files,
    read_log_files,
)

__all__ = ["LogPosition", "RolloutTraffic"]


@dataclass
class LogPosition:
    """Files completed up to ``horizon.until`` are read, and so are those in ``recent``."""

    horizon: LogCursor
    recent: dict[str, datetime] = field(default_factory=dict)  # path -> completed at

    def take(self, files: Sequence[LogFile]) -> list[LogFile]:
        fresh = [f for f in files if f.path not in self.recent]
        self.recent.update((f.path, f.flushed_at) for f in fresh if f.flushed_at is not None)
        return fresh

    def advance(self, horizon: datetime) -> None:
        if horizon > self.horizon.until:
            self.horizon = LogCursor(horizon)
            self.recent = {p: at for p, at in self.recent.items() if at > horizon}


class RolloutTraffic:
    """The new log rows of one rollout (its model, environment and two versions)."""

    def __init__(self, artifacts_uri: str, model: str, environment: str,
                 versions: Sequence[str], since: datetime, *, columns: Sequence[str],
                 feedback_columns: Sequence[str], settle: timedelta = SETTLE,
                 late: timedelta = LATE) -> None:
        self.uri, self.model, self.environment = artifacts_uri, model, environment
        self.since = since
        self.columns, self.feedback_columns = list(columns), list(feedback_columns)
        self.settle, self.late = settle, late
        start = LogCursor.starting(since)
        #: one position per arm (prediction files are partitioned by version)
        self.arms = {version: LogPosition(start) for version in dict.fromkeys(versions)}
        self.labels = LogPosition(start)
        self.files_read = 0

    def read_new(self, files_per_read: int = 16) -> Iterator[tuple[pa.Table, pa.Table]]:
        """(new prediction rows of this environment, new feedback rows of the model), a
        few files at a time (a first pass over a long rollout never holds its whole log).
        The cursors move when the files are listed: a caller that fails half-way starts
        again from scratch (new cursors and aggregates)."""
        now = datetime.now(UTC)
        files: list[LogFile] = []
        for version, position in self.arms.items():
            files += self._fresh(position, PREDICTIONS, now, [version])
        feedback = self._fresh(self.labels, FEEDBACK, now, None)
        self.files_read += len(files) + len(feedback)
        for start in range(0, max(len(files), len(feedback), 1), files_per_read):
            part, labels = files[start:start + files_per_read], \
                feedback[start:start + files_per_read]
            yield (read_log_files(self.uri, part, columns=self.columns,
                                  environment=self.environment, since=self.since),
                   read_log_files(self.uri, labels, kind=FEEDBACK,
                                  columns=self.feedback_columns, since=self.since))

    def _fresh(self, position: LogPosition, kind: Kind, now: datetime,
               versions: list[str] | None) -> list[LogFile]:
        increment = new_log_files(self.uri, self.model, position.horizon, kind=kind,
                                  versions=versions, now=now, settle=timedelta(0),
                                  late=self.late)
        fresh = position.take(increment.files)
        position.advance(now - self.settle)
        return fresh
