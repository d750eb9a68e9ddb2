"""Non-blocking prediction and feedback log for the inference gateway.

The request path only appends records to a bounded in-memory buffer
(:meth:`PredictionLog.log`, :meth:`PredictionLog.log_feedback`): a lock is held for the
append alone, never during I/O, and nothing raises. A daemon thread converts the buffer to
Arrow and writes hive-partitioned Parquet files to the artifact store (any fsspec URL)::

    {root}/predictions/model={model}/version={version}/date={YYYY-MM-DD}/part-{utc}-{uuid}.parquet
    {root}/feedback/model={model}/date={YYYY-MM-DD}/part-{utc}-{uuid}.parquet

Partition values are URL-quoted (``quote(value, safe="")``) so model names with spaces,
``/`` or ``=`` are safe; ``date`` is the UTC day of ``ts``. Partition columns are not stored
inside the files; :func:`read_predictions` / :func:`read_feedback` restore them as strings
(pyarrow's hive partitioning with ``segment_encoding="uri"`` and DuckDB's
``hive_partitioning=true`` read the same layout).

Each file appears atomically: locally it is written under a hidden ``.part-*.tmp`` name in
the target folder and ``os.replace``-d into place; on other filesystems it is one PUT.
A failed write keeps its rows buffered and retries at the next interval. The buffer
capacity (``max_buffer``) counts rows being written too, so a failed write can always put
its rows back; only new rows are dropped when the buffer is full (counted in
:attr:`PredictionLog.dropped` and reported to ``on_drop``). Rows that cannot be converted to
Arrow (malformed records) are dropped and counted the same way. Delivery is at least once:
a remote PUT that fails after the object landed is retried and may duplicate rows.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from mlops.errors import ArtifactError, ConfigError

__all__ = [
    "FEEDBACK_SCHEMA",
    "PREDICTION_SCHEMA",
    "FeedbackRecord",
    "PredictionLog",
    "PredictionRecord",
    "read_feedback",
    "read_predictions",
]

logger = logging.getLogger("mlops.serving.predlog")

_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()
_F64 = pa.float64()
_PROBA = pa.list_(pa.float64())
_DAY_SECONDS = 86_400
_PREDICTIONS = "predictions"
_FEEDBACK = "feedback"


@dataclass(slots=True)
class PredictionRecord:
    """One predicted row of one request."""

    request_id: str
    ts: float
    model: str
    version: str
    environment: str
    route: str
    unit_hash: str | None
    row: int
    inputs: str
    prediction: str
    prediction_num: float | None
    proba: list[float] | None
    latency_ms: float
    status: int
    propensity: float | None = None  # probability that the routing sent it to this version


@dataclass(slots=True)
class FeedbackRecord:
    """The observed label of one predicted row."""

    request_id: str
    row: int
    model: str
    actual: str
    actual_num: float | None
    ts: float


#: Columns of the table :func:`read_predictions` returns (``model``, ``version`` and ``date``
#: are hive partition columns restored from the path).
PREDICTION_SCHEMA = pa.schema([
    ("request_id", _STR),
    ("ts", _TS),
    ("model", _STR),
    ("version", _STR),
    ("environment", _STR),
    ("route", _STR),
    ("unit_hash", _STR),
    ("row", pa.int64()),
    ("inputs", _STR),
    ("prediction", _STR),
    ("prediction_num", _F64),
    ("proba", _PROBA),
    ("latency_ms", _F64),
    ("status", pa.int32()),
    ("propensity", _F64),
    ("date", _STR),
])

#: Columns of the table :func:`read_feedback` returns (``model`` and ``date`` from the path).
FEEDBACK_SCHEMA = pa.schema([
    ("request_id", _STR),
    ("row", pa.int64()),
    ("model", _STR),
    ("actual", _STR),
    ("actual_num", _F64),
    ("ts", _TS),
    ("date", _STR),
])

_PRED_PARTS = pa.schema([("model", _STR), ("version", _STR), ("date", _STR)])
_FB_PARTS = pa.schema([("model", _STR), ("date", _STR)])
_PRED_FILE_SCHEMA = pa.schema([f for f in PREDICTION_SCHEMA if f.name not in _PRED_PARTS.names])
_FB_FILE_SCHEMA = pa.schema([f for f in FEEDBACK_SCHEMA if f.name not in _FB_PARTS.names])

_R = TypeVar("_R", PredictionRecord, FeedbackRecord)


# ---------------------------------------------------------------------------- conversion


def _quote(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"partition value must be a str, not {type(value).__name__}")
    return quote(value, safe="")


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")


def _ts_array(recs: Sequence[PredictionRecord | FeedbackRecord]) -> pa.Array:
    secs = np.fromiter((r.ts for r in recs), dtype=np.float64, count=len(recs))
    return pa.array(np.rint(secs * 1e6).astype(np.int64), type=_TS)


def _prediction_table(recs: Sequence[PredictionRecord]) -> pa.Table:
    arrays = [
        pa.array([r.request_id for r in recs], _STR),
        _ts_array(recs),
        pa.array([r.environment for r in recs], _STR),
        pa.array([r.route for r in recs], _STR),
        pa.array([r.unit_hash for r in recs], _STR),
        pa.array([r.row for r in recs], pa.int64()),
        pa.array([r.inputs for r in recs], _STR),
        pa.array([r.prediction for r in recs], _STR),
        pa.array([r.prediction_num for r in recs], _F64),
        pa.array([r.proba for r in recs], _PROBA),
        pa.array([r.latency_ms for r in recs], _F64),
        pa.array([r.status for r in recs], pa.int32()),
        pa.array([r.propensity for r in recs], _F64),
    ]
    return pa.Table.from_arrays(arrays, schema=_PRED_FILE_SCHEMA)


def _feedback_table(recs: Sequence[FeedbackRecord]) -> pa.Table:
    arrays = [
        pa.array([r.request_id for r in recs], _STR),
        pa.array([r.row for r in recs], pa.int64()),
        pa.array([r.actual for r in recs], _STR),
        pa.array([r.actual_num for r in recs], _F64),
        _ts_array(recs),
    ]
    return pa.Table.from_arrays(arrays, schema=_FB_FILE_SCHEMA)


def _group(recs: list[_R], key: Callable[[_R], tuple[Any, ...]],
           ) -> tuple[dict[tuple[Any, ...], list[_R]], list[_R]]:
    """Split records by ``key`` (partition values + UTC day); unusable ones come back apart."""
    groups: dict[tuple[Any, ...], list[_R]] = {}
    bad: list[_R] = []
    r: _R
    for r in recs:
        try:
            k = key(r)
            group = groups.get(k)
        except Exception:
            bad.append(r)
            continue
        if group is None:
            groups[k] = [r]
        else:
            group.append(r)
    return groups, bad


def _pred_key(r: PredictionRecord) -> tuple[Any, ...]:
    return r.model, r.version, int(r.ts // _DAY_SECONDS)


def _fb_key(r: FeedbackRecord) -> tuple[Any, ...]:
    return r.model, int(r.ts // _DAY_SECONDS)


def _partition_dir(names: tuple[str, ...], key: tuple[Any, ...]) -> str:
    """``k1=v1/k2=v2/date=YYYY-MM-DD`` for a group key (values URL-quoted)."""
    *values, day = key
    parts = [f"{n}={_quote(v)}" for n, v in zip(names, values, strict=True)]
    return "/".join([*parts, f"date={_date(day)}"])


def _open(uri: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        fs, root = fsspec.core.url_to_fs(uri, **storage_options)
    except (ImportError, ValueError) as exc:
        raise ArtifactError(
            f"Cannot open artifact store {uri!r}: {exc}.",
            fix="Use a local folder or an fsspec URL whose driver is installed (e.g. s3fs for s3://).",
        ) from exc
    return fs, str(root).rstrip("/")


# ---------------------------------------------------------------------------- writer


class PredictionLog:
    """Buffer prediction/feedback records in memory and write them as Parquet in the background.

    ``log()``/``log_feedback()`` never raise and never touch I/O. ``start()`` runs the daemon
    flush thread (every ``flush_rows`` buffered rows or ``flush_seconds``); ``close()`` writes
    what is left. ``on_drop(n)`` is called (from the calling or flush thread) whenever ``n``
    records are dropped.
    """

    def __init__(self, artifacts_uri: str, *, max_buffer: int = 200_000, flush_rows: int = 20_000,
                 flush_seconds: float = 2.0, on_drop: Callable[[int], None] | None = None,
                 **storage_options: Any) -> None:
        for name, value in (("max_buffer", max_buffer), ("flush_rows", flush_rows),
                            ("flush_seconds", flush_seconds)):
            if not value > 0:
                raise ConfigError(f"PredictionLog {name} must be positive, got {value!r}.",
                                  fix=f"Pass a {name} greater than 0.")
        self.uri = artifacts_uri
        self._fs, self._root = _open(artifacts_uri, storage_options)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._max_buffer = int(max_buffer)
        self._flush_rows = int(flush_rows)
        self._flush_seconds = float(flush_seconds)
        self._on_drop = on_drop

        self._lock = threading.Lock()         # guards the fields below; held for O(1) work only
        self._preds: list[PredictionRecord] = []
        self._feedback: list[FeedbackRecord] = []
        self._pending = 0                     # buffered + in flight (what max_buffer bounds)
        self._inflight = 0
        self._dropped = 0
        self._written = 0
        self._closed = False

        self._flush_lock = threading.Lock()   # one flush (I/O) at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        ref = weakref.ref(self)

        def _close_at_exit() -> None:
            log = ref()
            if log is not None:
                try:
                    log.close()
                except Exception:
                    logger.exception("Prediction log %s lost rows at interpreter exit.", log.uri)

        self._atexit = _close_at_exit
        atexit.register(_close_at_exit)

    # -- request path -----------------------------------------------------------------------

    def log(self, records: Sequence[PredictionRecord]) -> int:
        """Buffer prediction records; return how many were accepted (the rest are dropped)."""
        return self._append(records, False)

    def log_feedback(self, records: Sequence[FeedbackRecord]) -> int:
        """Buffer feedback records; return how many were accepted (the rest are dropped)."""
        return self._append(records, True)

    def _append(self, records: Sequence[Any], feedback: bool) -> int:
        try:
            n = len(records)
            if n == 0:
                return 0
            with self._lock:
                free = 0 if self._closed else self._max_buffer - self._pending
                buf = self._feedback if feedback else self._preds
                if n <= free:
                    buf.extend(records)
                    accepted = n
                else:
                    accepted = max(free, 0)
                    if accepted:
                        buf.extend(records[:accepted])
                    self._dropped += n - accepted
                self._pending += accepted
                full = self._pending - self._inflight >= self._flush_rows
            if full and not self._wake.is_set():
                self._wake.set()
            if accepted < n:
                self._notify_drop(n - accepted)
            return accepted
        except Exception:  # never fail a response because of logging
            logger.debug("Prediction log rejected a batch.", exc_info=True)
            return 0

    def _notify_drop(self, n: int) -> None:
        if self._on_drop is not None:
            try:
                self._on_drop(n)
            except Exception:
                logger.exception("Prediction log on_drop callback failed.")

    # -- counters ---------------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        """Records dropped so far (buffer full, log closed or malformed)."""
        return self._dropped

    @property
    def written(self) -> int:
        """Prediction + feedback rows written so far."""
        return self._written

    @property
    def pending(self) -> int:
        """Accepted rows not written yet (buffered or being written)."""
        return self._pending

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon flush thread (idempotent; a no-op once closed)."""
        with self._lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="mlops-predlog-flush",
                                            daemon=True)
            self._thread.start()

    def flush(self) -> int:
        """Write everything buffered now; return rows written.

        Raises :class:`ArtifactError` when a write fails; its rows stay buffered for a retry.
        """
        written, error = self._flush_once()
        if error is not None:
            raise ArtifactError(
                f"Could not write prediction log rows to {self.uri}: {error}",
                fix="Check that the artifact store is reachable and writable; "
                    f"{self.pending} rows stay buffered and are retried.",
                path=self.uri,
            ) from error
        return written

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting records, stop the thread and write what is left (idempotent).

        Raises :class:`ArtifactError` if the final write fails (rows stay pending: calling
        ``close()`` again retries) or the thread does not stop within ``timeout`` seconds.
        """
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise ArtifactError(
                    f"Prediction log flush thread did not stop within {timeout} s; "
                    f"{self.pending} rows are still pending.",
                    fix="Check the artifact store's latency or pass a longer timeout to close().",
                    path=self.uri,
                )
        if self._pending:
            self.flush()
        atexit.unregister(self._atexit)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                self._stop.wait(self._flush_seconds)  # back off: ignore row-count wake-ups
            else:
                self._wake.wait(self._flush_seconds)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                _, error = self._flush_once()
            except Exception as exc:  # a bug must not kill the thread
                error = exc
            if error is None:
                if failures:
                    logger.info("Prediction log writes to %s recovered.", self.uri)
                failures = 0
                continue
            failures += 1
            if failures == 1:
                logger.error("Prediction log could not write to %s (%d rows kept, retrying "
                             "every %.3g s): %s", self.uri, self._pending, self._flush_seconds,
                             error, exc_info=error)
            else:
                logger.error("Prediction log still cannot write to %s (%d rows kept, attempt "
                             "%d): %s", self.uri, self._pending, failures, error)

    # -- flushing ---------------------------------------------------------------------------

    def _flush_once(self) -> tuple[int, BaseException | None]:
        """Swap the buffers out and write them; failed partitions go back to the buffer."""
        with self._flush_lock:
            with self._lock:
                preds, self._preds = self._preds, []
                feedback, self._feedback = self._feedback, []
                self._inflight = len(preds) + len(feedback)
            if not preds and not feedback:
                with self._lock:
                    self._inflight = 0
                return 0, None
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            written = bad = 0
            error: BaseException | None = None
            retry_p: list[PredictionRecord] = []
            retry_f: list[FeedbackRecord] = []
            try:
                w, b, error = self._write_kind(preds, retry_p, _PREDICTIONS, stamp,
                                               _prediction_table, _pred_key, ("model", "version"))
                written, bad = written + w, bad + b
                w, b, err = self._write_kind(feedback, retry_f, _FEEDBACK, stamp,
                                             _feedback_table, _fb_key, ("model",))
                written, bad, error = written + w, bad + b, error or err
            finally:
                with self._lock:
                    if retry_p:
                        self._preds[:0] = retry_p
                    if retry_f:
                        self._feedback[:0] = retry_f
                    self._inflight = 0
                    self._pending -= written + bad
                    self._written += written
                    self._dropped += bad
            if bad:
                logger.error("Prediction log dropped %d malformed records.", bad)
                self._notify_drop(bad)
            return written, error

    def _write_kind(self, recs: list[_R], retry: list[_R], kind: str, stamp: str,
                    build: Callable[[Sequence[_R]], pa.Table],
                    key: Callable[[_R], tuple[Any, ...]], names: tuple[str, ...],
                    ) -> tuple[int, int, BaseException | None]:
        """Write one kind of record; returns (written, dropped as malformed, last error)."""
        if not recs:
            return 0, 0, None
        groups, bad_recs = _group(recs, key)
        written, bad = 0, len(bad_recs)
        error: BaseException | None = None
        for k, group in groups.items():
            try:
                parts = _partition_dir(names, k)
                table, group, n_bad = _convert(group, build)
            except Exception:
                bad += len(group)
                continue
            bad += n_bad
            if table is None:
                continue
            try:
                self._write_file(f"{self._root}/{kind}/{parts}", f"part-{stamp}-"
                                 f"{uuid.uuid4().hex}.parquet", table)
            except Exception as exc:
                retry.extend(group)
                error = exc
            else:
                written += len(group)
        return written, bad, error

    def _write_file(self, directory: str, name: str, table: pa.Table) -> None:
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="lz4")
        data = sink.getvalue()
        path = f"{directory}/{name}"
        if not self._local:
            self._fs.pipe_file(path, data.to_pybytes())  # one PUT: atomic on object stores
            return
        os.makedirs(directory, exist_ok=True)
        tmp = f"{directory}/.{name}.tmp"  # hidden: readers skip it
        try:
            with open(tmp, "wb") as fh:
                fh.write(memoryview(data))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _convert(group: list[_R], build: Callable[[Sequence[_R]], pa.Table],
             ) -> tuple[pa.Table | None, list[_R], int]:
    """Arrow table of a group; malformed records are filtered out (and counted) if needed."""
    try:
        return build(group), group, 0
    except Exception:
        good = []
        for r in group:
            try:
                build([r])
            except Exception:
                continue
            good.append(r)
        n_bad = len(group) - len(good)
        return (build(good) if good else None), good, n_bad


# ---------------------------------------------------------------------------- readers


def _read(uri: str, storage_options: dict[str, Any], kind: str, sub: str,
          partitions: pa.Schema, schema: pa.Schema, since: float | None = None) -> pa.Table:
    fs, root = _open(uri, storage_options)
    first_day = None if since is None else _date(int(since // _DAY_SECONDS) - 1)
    base = f"{root}/{kind}"
    try:
        found = fs.find(f"{base}{sub}")
    except (FileNotFoundError, NotADirectoryError):
        found = []
    files = []
    for path in sorted(str(p) for p in found):
        rel = path[len(base) + 1:] if path.startswith(base + "/") else path
        parts = rel.split("/")
        if not path.endswith(".parquet") or any(s[:1] in (".", "_") for s in parts):
            continue
        day = next((s[5:] for s in parts if s.startswith("date=")), None)
        if first_day is not None and day is not None and day < first_day:
            continue  # a day partition older than ``since`` (one day of slack for skew)
        files.append(path)
    if not files:
        return schema.empty_table()
    try:
        dataset = ds.dataset(files, schema=schema, format="parquet", filesystem=fs,
                             partitioning=ds.HivePartitioning(partitions, segment_encoding="uri"),
                             partition_base_dir=base)
        if since is None:
            return dataset.to_table()
        cut = pa.scalar(int(since * 1e6), type=pa.int64()).cast(_TS)
        return dataset.to_table(filter=ds.field("ts") >= cut)
    except (OSError, pa.ArrowException) as exc:
        raise ArtifactError(f"Cannot read the {kind} log under {uri!r}: {exc}",
                            fix="Check the artifact store; remove corrupt part files.",
                            path=base) from exc


def read_predictions(artifacts_uri: str, model: str | None = None, version: str | None = None,
                     *, since: float | None = None, **storage_options: Any) -> pa.Table:
    """Logged prediction rows (optionally of one model/version, and logged at or after the
    epoch second ``since``: older day partitions are not read) as :data:`PREDICTION_SCHEMA`."""
    sub = ""
    if model is not None:
        sub = f"/model={_quote(model)}"
        if version is not None:
            sub += f"/version={_quote(version)}"
    table = _read(artifacts_uri, storage_options, _PREDICTIONS, sub, _PRED_PARTS,
                  PREDICTION_SCHEMA, since)
    if model is None and version is not None:
        table = table.filter(pc.equal(table["version"], version))
    return table


def read_feedback(artifacts_uri: str, model: str | None = None, *, since: float | None = None,
                  **storage_options: Any) -> pa.Table:
    """Logged feedback rows (optionally of one model, and received at or after ``since``) as
    :data:`FEEDBACK_SCHEMA`."""
    sub = "" if model is None else f"/model={_quote(model)}"
    return _read(artifacts_uri, storage_options, _FEEDBACK, sub, _FB_PARTS, FEEDBACK_SCHEMA,
                 since)
