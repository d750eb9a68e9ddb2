"""The prediction log: the one owner of its layout, writer, spool and readers.

- :mod:`~mlops.store.predlog.layout` - where files live and what they are called; listing
  with partition pruning (local folders and any fsspec URL)
- :mod:`~mlops.store.predlog.records` - the records and their Arrow / spool encodings
- :mod:`~mlops.store.predlog.spool` - the local spool that survives a killed process
- :mod:`~mlops.store.predlog.writer` - :class:`PredictionLog`, the non-blocking writer
- :mod:`~mlops.store.predlog.gil` - short GIL turns while the writer builds its columns
- :mod:`~mlops.store.predlog.reader` - the one DuckDB reader (bound parameters only)
- :mod:`~mlops.store.predlog.queries` - typed queries (whole tables, logged rows of a window)
- :mod:`~mlops.store.predlog.increments` - files completed since a cursor, for O(new rows)
  passes
- :mod:`~mlops.store.predlog.maintenance` - day partitions, deleting them (retention) and
  merging their small files (compaction)

>>> log = PredictionLog(settings.artifacts_uri, spool=settings.home / "spool")  # doctest: +SKIP
>>> log.start(); log.log([PredictionRecord(...)])                               # doctest: +SKIP
>>> read_predictions(settings.artifacts_uri, "churn", since=time.time() - 3600)  # doctest: +SKIP
"""

from __future__ import annotations

from mlops.store.predlog.gil import SHORT_TURN, short_turns
from mlops.store.predlog.increments import (
    LATE,
    SETTLE,
    LogCursor,
    LogIncrement,
    new_log_files,
    read_log_files,
)
from mlops.store.predlog.layout import (
    FEEDBACK,
    FEEDBACK_FILE_SCHEMA,
    FEEDBACK_SCHEMA,
    PREDICTION_FILE_SCHEMA,
    PREDICTION_SCHEMA,
    PREDICTIONS,
    Kind,
    LogFile,
    LogStore,
    list_files,
    open_store,
)
from mlops.store.predlog.maintenance import (
    COMPACT_MIN_AGE,
    CompactionOutcome,
    Partition,
    PurgeJournal,
    compact_log,
    compact_partition,
    compacted_file_ids,
    delete_partition,
    finish_purge,
    list_partitions,
    pending_purges,
    start_purge,
)
from mlops.store.predlog.queries import (
    LoggedRows,
    logged_rows,
    read_feedback,
    read_feedback_files,
    read_prediction_files,
    read_predictions,
)
from mlops.store.predlog.reader import LogReader, Scan, bind, feedback_scan, prediction_scan
from mlops.store.predlog.records import (
    FEEDBACK_FIELDS,
    PREDICTION_FIELDS,
    REQUEST_FIELDS,
    FeedbackRecord,
    PredictionRecord,
    Request,
    Row,
)
from mlops.store.predlog.writer import PredictionLog, default_spool_dir

__all__ = [
    "COMPACT_MIN_AGE",
    "FEEDBACK",
    "FEEDBACK_FIELDS",
    "FEEDBACK_FILE_SCHEMA",
    "FEEDBACK_SCHEMA",
    "LATE",
    "PREDICTIONS",
    "PREDICTION_FIELDS",
    "PREDICTION_FILE_SCHEMA",
    "PREDICTION_SCHEMA",
    "REQUEST_FIELDS",
    "SETTLE",
    "SHORT_TURN",
    "CompactionOutcome",
    "FeedbackRecord",
    "Kind",
    "LogCursor",
    "LogFile",
    "LogIncrement",
    "LogReader",
    "LogStore",
    "LoggedRows",
    "Partition",
    "PredictionLog",
    "PredictionRecord",
    "PurgeJournal",
    "Request",
    "Row",
    "Scan",
    "bind",
    "compact_log",
    "compact_partition",
    "compacted_file_ids",
    "default_spool_dir",
    "delete_partition",
    "feedback_scan",
    "finish_purge",
    "list_files",
    "list_partitions",
    "logged_rows",
    "new_log_files",
    "open_store",
    "pending_purges",
    "prediction_scan",
    "read_feedback",
    "read_feedback_files",
    "read_log_files",
    "read_prediction_files",
    "read_predictions",
    "short_turns",
    "start_purge",
]
