"""The prediction log's writer: never blocks a response, survives a killed process.

The request path (:meth:`PredictionLog.log_request`, the gateway's: a whole request, its
rows made when written; :meth:`PredictionLog.log`, :meth:`PredictionLog.log_feedback`)
appends records to a bounded in-memory buffer and, when spooling is on, the same records to the
local spool segment (:mod:`~mlops.store.predlog.spool`: a copy into a memory-mapped file,
that is into the page cache, with no system call and no ``fsync``). Both happen under a
lock held for that append alone; nothing raises. So when
the caller answers its request afterwards, the records are acknowledged: they survive
``kill -9`` of the process.

A daemon thread flushes every ``flush_seconds`` or ``flush_rows`` buffered rows: it seals
the current segment (new rows go to a fresh one), converts the sealed rows to Arrow and
writes one Parquet file per partition (:mod:`~mlops.store.predlog.layout`), then deletes
the segment. On the next start a writer claims the segments that dead writers left behind
and writes their rows the same way.

Exactly once: a file's id is derived from its segment and partition, so a file is the same
file whoever writes it. Before writing again what may already be written (rows of a claimed
segment, a retry after a failed write) the writer looks for a file with that id in the
partition folder and skips the write when it is there. Each file appears atomically:
locally it is written under a hidden ``.{id}.tmp`` name, fsynced and renamed into place, the
flush time in its name taken just before the rename; on other filesystems it is one PUT.

A failed write keeps its rows buffered (and spooled) and is retried at the next interval.
``max_buffer`` counts rows being written too, so only new rows are dropped when it is full
(counted in :attr:`PredictionLog.dropped`, reported to ``on_drop``). Rows that cannot be
converted to Arrow are dropped and counted the same way. A spool that cannot be written
(disk full, read-only folder) is logged and turned off for that segment; the rows are still
logged, just not crash-proof.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from mlops.errors import ArtifactError, ConfigError
from mlops.store.predlog.gil import short_turns
from mlops.store.predlog.layout import (
    FEEDBACK,
    PREDICTIONS,
    Kind,
    day_name,
    open_store,
    parquet_bytes,
    parse_part_name,
    part_name,
    partition_path,
)
from mlops.store.predlog.maintenance import compacted_file_ids
from mlops.store.predlog.records import (
    FEEDBACK_FIELDS,
    PREDICTION_FIELDS,
    REQUEST_FIELDS,
    FeedbackRecord,
    PredictionRecord,
    Request,
    Row,
    convert,
    feedback_rows_table,
    prediction_rows_table,
    request_payload,
    requests_table,
    row_of,
    spool_rows,
)
from mlops.store.predlog.spool import (
    FRAME_FEEDBACK,
    FRAME_PREDICTIONS,
    FRAME_REQUEST,
    SPOOL_SUPPORTED,
    SpoolSegment,
    claim_orphans,
)

__all__ = ["CLAIM_SECONDS", "PredictionLog", "default_spool_dir"]

logger = logging.getLogger("mlops.store.predlog")
_DAY = 86_400

#: How often a running writer looks for segments of writers that died meanwhile (a worker
#: of the same gateway, a replica on the same host), besides at its start.
CLAIM_SECONDS = 30.0


def default_spool_dir(artifacts_uri: str) -> Path:
    """Where a writer spools when not told: ``{root}/.spool`` for a local store, else
    ``$XDG_CACHE_HOME/mlops/spool/{hash of the URI}`` (``~/.cache`` by default)."""
    store = open_store(artifacts_uri)
    if store.local:
        return Path(store.root) / ".spool"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlops" / "spool" / hashlib.sha256(artifacts_uri.encode()).hexdigest()[:16]


#: where a row's partition key is: (model, version or None, ts) field positions
_PRED_KEY = tuple(PREDICTION_FIELDS.index(n) for n in ("model", "version", "ts"))
_FB_KEY = (FEEDBACK_FIELDS.index("model"), None, FEEDBACK_FIELDS.index("ts"))
_R_VALUES = REQUEST_FIELDS.index("values")
if REQUEST_FIELDS.index("model") != _PRED_KEY[0] or REQUEST_FIELDS.index("version") != \
        _PRED_KEY[1] or REQUEST_FIELDS.index("ts") != _PRED_KEY[2]:
    raise ImportError("a request's partition key must sit where a prediction row's does")


def _one(_row: Row) -> int:
    return 1


def _request_rows(request: Request) -> int:
    return len(request[_R_VALUES])


@dataclass(eq=False)
class _Batch:
    """Rows of one spool segment (or of one flush, without a spool)."""

    id: str
    segment: SpoolSegment | None = None
    preds: list[Row] = field(default_factory=list)
    feedback: list[Row] = field(default_factory=list)
    check_written: bool = False  # files of this batch may exist already: look before writing
    spool_failed: bool = False   # its segment could not be made: not retried per request
    requests: list[Request] = field(default_factory=list)  # the gateway's, rows made late

    @property
    def rows(self) -> int:
        return len(self.preds) + len(self.feedback) + \
            sum(len(r[_R_VALUES]) for r in self.requests)


class PredictionLog:
    """Buffer (and spool) prediction/feedback records; write them as Parquet in the background.

    ``log()``/``log_rows()``/``log_request()``/``log_feedback()`` never raise and do no
    I/O: the spool append is a copy into a memory-mapped file. ``start()``
    claims what dead writers left in the spool folder and runs the daemon flush thread
    (every ``flush_rows`` buffered rows or ``flush_seconds``); ``close()`` writes what is
    left. ``on_drop(n)`` is called (from the calling or flush thread) whenever ``n``
    records are dropped.

    ``spool``: ``True`` (default) spools to :func:`default_spool_dir`, a path spools there,
    ``False`` keeps records in memory only (lost if the process is killed).
    ``storage_options`` go to fsspec for the store.
    """

    def __init__(self, artifacts_uri: str, *, max_buffer: int = 200_000,
                 flush_rows: int = 20_000, flush_seconds: float = 2.0,
                 on_drop: Callable[[int], None] | None = None,
                 spool: bool | str | os.PathLike[str] = True,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        for name, value in (("max_buffer", max_buffer), ("flush_rows", flush_rows),
                            ("flush_seconds", flush_seconds)):
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"PredictionLog {name} must be positive, got {value!r}.",
                                  fix=f"Pass a {name} greater than 0.")
        self.uri = artifacts_uri
        self._store = open_store(artifacts_uri, storage_options)
        self._max_buffer = int(max_buffer)
        self._flush_rows = int(flush_rows)
        self._flush_seconds = float(flush_seconds)
        self._on_drop = on_drop
        self.spool_dir: Path | None = None
        if spool is not False:
            if not SPOOL_SUPPORTED:
                logger.warning("The prediction log cannot spool on this platform (no fcntl); "
                               "rows buffered when the process is killed are lost.")
            else:
                self.spool_dir = default_spool_dir(artifacts_uri) if spool is True \
                    else Path(spool)

        self._lock = threading.Lock()         # guards the fields below; held for O(1) work only
        self._open = _Batch(uuid.uuid4().hex)  # receives new records
        self._sealed: list[_Batch] = []       # waiting to be written (flush thread only)
        self._open_rows = 0
        self._pending = 0                     # accepted, not written or dropped yet
        self._dropped = 0
        self._written = 0
        self._replayed = 0
        self._spool_errors = 0
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
                    logger.exception("Prediction log %s could not write everything at "
                                     "interpreter exit; the spool keeps the rows.", log.uri)

        self._atexit = _close_at_exit
        atexit.register(_close_at_exit)

    # -- request path -----------------------------------------------------------------------

    def log(self, records: Sequence[PredictionRecord]) -> int:
        """Buffer (and spool) prediction records; return how many were accepted."""
        return self._append(self._rows_of(records), False)

    def log_rows(self, rows: list[Row]) -> int:
        """Buffer (and spool) prediction rows: :class:`PredictionRecord` field values in
        declaration order."""
        return self._append(rows, False)

    def log_request(self, request: Request) -> int:
        """Buffer (and spool) one request's predictions: a tuple of
        :data:`~mlops.store.predlog.records.REQUEST_FIELDS` (the gateway's form: its rows
        are made when written, so the request path does no work per row). All its rows are
        accepted or none; returns how many were."""
        try:
            n = len(request[_R_VALUES])
            frame = None
            if self.spool_dir is not None:
                try:
                    frame = request_payload(request)
                except Exception:  # values JSON cannot hold: logged, just not crash-proof
                    logger.debug("A prediction log request could not be spooled.",
                                 exc_info=True)
            return self._admit(n, True, self._put_request, request, frame)
        except Exception:  # never fail a response because of logging
            logger.debug("Prediction log rejected a request.", exc_info=True)
            return 0

    def _put_request(self, batch: _Batch, _accepted: int, request: Request,
                     frame: bytes | None) -> None:
        if self.spool_dir is not None:
            self._spool(batch, frame, FRAME_REQUEST)
        batch.requests.append(request)

    def log_feedback(self, records: Sequence[FeedbackRecord]) -> int:
        """Buffer (and spool) feedback records; return how many were accepted."""
        return self._append(self._rows_of(records), True)

    def _rows_of(self, records: Sequence[Any]) -> list[Row]:
        """The records' rows; what is not a record is dropped and counted (never raises)."""
        rows: list[Row] = []
        bad = 0
        try:
            for r in records:
                try:
                    rows.append(row_of(r))
                except Exception:
                    bad += 1
        except Exception:  # not even a sequence
            logger.debug("Prediction log rejected a batch.", exc_info=True)
        if bad:
            with self._lock:
                self._dropped += bad
            self._notify_drop(bad)
        return rows

    def _append(self, records: list[Row], feedback: bool) -> int:
        try:
            n = len(records)
            if n == 0:
                return 0
            frame = self._payload(records, feedback) if self.spool_dir is not None else None
            return self._admit(n, False, self._put_rows, records, frame, feedback)
        except Exception:  # never fail a response because of logging
            logger.debug("Prediction log rejected a batch.", exc_info=True)
            return 0

    def _put_rows(self, batch: _Batch, accepted: int, records: list[Row],
                  frame: bytes | None, feedback: bool) -> None:
        chunk = records if accepted == len(records) else records[:accepted]
        if self.spool_dir is not None:
            if frame is not None and chunk is not records:
                frame = self._payload(chunk, feedback)
            self._spool(batch, frame, FRAME_FEEDBACK if feedback else FRAME_PREDICTIONS)
        (batch.feedback if feedback else batch.preds).extend(chunk)

    def _admit(self, n: int, whole: bool, put: Callable[..., None], *args: Any) -> int:
        """Take ``n`` rows into the open batch (``whole``: all or none, else as many as the
        buffer has room for): ``put(batch, accepted, *args)`` spools and buffers them under
        the lock. Then wake the flush thread when the batch is full, and report what was
        dropped; returns how many rows were taken."""
        with self._lock:
            free = 0 if self._closed else max(self._max_buffer - self._pending, 0)
            accepted = (n if free >= n else 0) if whole else min(n, free)
            if accepted:
                put(self._open, accepted, *args)
                self._pending += accepted
                self._open_rows += accepted
            self._dropped += n - accepted
            full = self._open_rows >= self._flush_rows
        if full and not self._wake.is_set():
            self._wake.set()
        if accepted < n:
            self._notify_drop(n - accepted)
        return accepted

    @staticmethod
    def _payload(rows: list[Row], feedback: bool) -> bytes | None:
        """One spool frame's payload: the rows as JSON."""
        try:
            return orjson.dumps(spool_rows(rows, feedback), option=orjson.OPT_SERIALIZE_NUMPY)
        except Exception:  # values JSON cannot hold: logged, just not crash-proof
            logger.debug("Prediction log records could not be spooled.", exc_info=True)
            return None

    def _spool(self, batch: _Batch, payload: bytes | None, kind: int) -> None:
        """Append records to the open batch's segment (lock held); nothing when they have
        no payload (values JSON cannot hold: logged, just not crash-proof)."""
        if payload is None:
            return
        assert self.spool_dir is not None
        segment = batch.segment
        if segment is None:
            if batch.spool_failed:
                return
            try:
                segment = batch.segment = SpoolSegment.create(self.spool_dir, self.uri)
            except OSError as exc:
                batch.spool_failed = True
                self._spool_failed(exc)
                return
            batch.id = segment.id  # file ids derive from it, whoever writes the rows
        if segment.broken:
            return
        try:
            segment.append(payload, kind)
        except OSError as exc:
            self._spool_failed(exc)

    def _spool_failed(self, exc: OSError) -> None:
        self._spool_errors += 1
        if self._spool_errors == 1 or self._spool_errors % 10_000 == 0:
            logger.error("Prediction log cannot spool to %s (%d failures): %s; rows are "
                         "still logged but lost if the process is killed.", self.spool_dir,
                         self._spool_errors, exc)

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
        """Prediction + feedback rows written so far (replayed rows included)."""
        return self._written

    @property
    def pending(self) -> int:
        """Accepted rows not written yet (buffered or being written)."""
        return self._pending

    @property
    def replayed(self) -> int:
        """Rows claimed from the spool segments of dead writers."""
        return self._replayed

    @property
    def spool_errors(self) -> int:
        """Spool appends or segment creations that failed."""
        return self._spool_errors

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the daemon flush thread, which first claims the rows of dead writers
        (idempotent; a no-op once closed)."""
        with self._lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._run, name="mlops-predlog-flush",
                                            daemon=True)
            self._thread.start()

    def recover(self) -> int:
        """Claim the spool segments that dead writers of this store left behind; their rows
        are written at the next flush. Returns the rows claimed (``start()`` calls this)."""
        if self.spool_dir is None:
            return 0
        with self._flush_lock:
            claimed = claim_orphans(self.spool_dir, self.uri)
            rows = 0
            for c in claimed:
                batch = _Batch(c.segment.id, c.segment, [row_of(r) for r in c.predictions],
                               [row_of(r) for r in c.feedback], check_written=True,
                               requests=c.requests)
                if not batch.rows:
                    c.segment.discard()
                    continue
                self._sealed.append(batch)
                rows += batch.rows
            bad = sum(c.bad for c in claimed)
            with self._lock:
                self._pending += rows
                self._replayed += rows
                self._dropped += bad
        if bad:
            logger.error("Prediction log: %d spooled frames in %s hold no records this "
                         "version writes; they were skipped.", bad, self.spool_dir)
            self._notify_drop(bad)
        if rows:
            logger.warning("Prediction log: %d rows that a killed process had acknowledged "
                           "are being written from the spool %s.", rows, self.spool_dir)
        return rows

    def flush(self) -> int:
        """Write everything buffered now; return rows written.

        Raises :class:`ArtifactError` when a write fails; its rows stay buffered for a retry.
        """
        written, error = self._flush_once()
        if error is not None:
            raise ArtifactError(
                f"Could not write prediction log rows to {self.uri}: {error}",
                fix="Check that the artifact store is reachable and writable; "
                    f"{self.pending} rows stay buffered (and spooled) and are retried.",
                path=self.uri,
            ) from error
        return written

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting records, stop the thread and write what is left (idempotent).

        Raises :class:`ArtifactError` if the final write fails (rows stay pending: calling
        ``close()`` again retries; the spool keeps them for the next start) or the thread
        does not stop within ``timeout`` seconds.
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
        with self._flush_lock, self._lock:
            if self._open.segment is not None and not self._open.rows:
                self._open.segment.discard()
                self._open.segment = None
        atexit.unregister(self._atexit)

    def _claim(self) -> None:
        try:
            if self.recover():
                self._wake.set()
        except Exception:  # the log goes on; the segments stay for the next claim
            logger.exception("Prediction log could not claim the spool of %s", self.spool_dir)

    def _run(self) -> None:
        failures = 0
        self._claim()
        claimed_at = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - claimed_at >= CLAIM_SECONDS:
                self._claim()
                claimed_at = time.monotonic()
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

    def _seal(self) -> None:
        """Move the open batch to the sealed ones; new records go to a fresh batch."""
        with self._lock:
            if not self._open_rows:  # the open batch's rows, counted as they come
                return
            old = self._open
            self._open = _Batch(uuid.uuid4().hex)
            self._open_rows = 0
            self._sealed.append(old)

    def _flush_once(self) -> tuple[int, BaseException | None]:
        """Write every sealed batch; failed partitions stay in their batch for a retry."""
        with self._flush_lock:
            self._seal()
            written = bad = 0
            error: BaseException | None = None
            for batch in list(self._sealed):
                w, b, err = self._write_batch(batch)
                written, bad, error = written + w, bad + b, error or err
                if not batch.rows:
                    if batch.segment is not None:
                        batch.segment.discard()
                    self._sealed.remove(batch)
                else:
                    batch.check_written = True  # a retry: some files may have landed
                if err is not None:
                    break  # the store is failing: the later batches wait for the retry
            with self._lock:
                self._pending -= written + bad
                self._written += written
                self._dropped += bad
            if bad:
                logger.error("Prediction log dropped %d malformed records.", bad)
                self._notify_drop(bad)
            return written, error

    def _write_batch(self, batch: _Batch) -> tuple[int, int, BaseException | None]:
        parts = ((PREDICTIONS, batch.preds, prediction_rows_table, _one, ""),
                 (PREDICTIONS, batch.requests, requests_table, _request_rows, "requests"),
                 (FEEDBACK, batch.feedback, feedback_rows_table, _one, ""))
        written = bad = 0
        error: BaseException | None = None
        for kind, items, build, size, part in parts:
            w, b, e = self._write_kind(batch, kind, items, build, size, part)
            written, bad, error = written + w, bad + b, error or e
        return written, bad, error

    def _write_kind(self, batch: _Batch, kind: Kind, items: list[Any],
                    build: Callable[[Sequence[Any]], pa.Table], size: Callable[[Any], int],
                    part: str) -> tuple[int, int, BaseException | None]:
        """Write one kind of a batch's items (rows, or requests of ``size`` rows each), one
        file per partition (``part`` tells apart the files of the same partition that one
        batch writes); the items left in ``items`` are those to retry. Returns (rows
        written, rows dropped as malformed, last error)."""
        if not items:
            return 0, 0, None
        groups: dict[tuple[str, str | None, int], list[Any]] = {}
        bad = 0
        at_model, at_version, at_ts = _PRED_KEY if kind == PREDICTIONS else _FB_KEY
        for r in items:
            try:  # model, version (predictions), UTC day: the partition
                version = None if at_version is None else r[at_version]
                key = (r[at_model], version, int(r[at_ts] // _DAY))
                hash(key)  # a replayed row may hold anything
            except Exception:
                bad += size(r)
                continue
            group = groups.get(key)
            if group is None:
                groups[key] = [r]
            else:
                group.append(r)
        written = 0
        error: BaseException | None = None
        retry: list[Any] = []
        for (model, version, day), group in groups.items():
            try:
                folder = partition_path(kind, model, version, day_name(day))
                with short_turns():  # requests waiting meanwhile get the GIL sooner
                    table, kept, _ = convert(group, build)
            except Exception:
                bad += sum(map(size, group))
                continue
            kept_rows = sum(map(size, kept))
            bad += sum(map(size, group)) - kept_rows
            if table is None:
                continue
            name = f"{batch.id}\0{folder}" + (f"\0{part}" if part else "")
            file_id = hashlib.sha256(name.encode()).hexdigest()[:32]
            try:
                if not (batch.check_written and self._exists(folder, file_id)):
                    self._write_file(self._store.path(folder), file_id, table)
            except Exception as exc:
                retry.extend(kept)
                error = exc
            else:
                written += kept_rows
        items[:] = retry
        return written, bad, error

    def _exists(self, folder: str, file_id: str) -> bool:
        """Is a file with this id in the partition folder already, by itself or merged
        into a compacted file (a replay long after the write)?"""
        for name in self._store.names(self._store.path(folder)):
            parsed = parse_part_name(name)
            if parsed is not None and parsed.file_id == file_id:
                return True
        return file_id in compacted_file_ids(self._store, folder)

    def _write_file(self, directory: str, file_id: str, table: pa.Table) -> None:
        self._store.put_file(directory, part_name(datetime.now(UTC), file_id),
                             memoryview(parquet_bytes(table)))
