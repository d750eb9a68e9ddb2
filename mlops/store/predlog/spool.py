"""The local spool that makes acknowledged records survive a killed process.

A writer appends every micro-batch it accepts to its current *segment*, a local file
``{spool_dir}/{segment id}.spool``, before the request that produced it is answered. The
segment is memory-mapped (``MAP_SHARED``): an append is a copy into the page cache, with no
system call and no ``fsync``. A killed process (``kill -9``, an out-of-memory kill, a crash)
loses nothing, since the kernel keeps the pages and writes them out; a power cut can lose
them. When the rows of a segment are all in Parquet files the segment is deleted.

Ownership is an exclusive ``flock`` held on the segment for as long as its writer lives;
the kernel drops it when the process dies, however it dies. A writer *claims* every
segment it can lock (its writer is gone) that belongs to the same store, and writes its
rows again (:mod:`~mlops.store.predlog.writer` makes that idempotent). A segment appears
under its final name only once it is locked and has its header, so it is never claimed
while being created. Its space is reserved with ``posix_fallocate`` when it is made or
grown, so a full disk fails there (the rows are then logged without a spool) and never
while a request writes into the mapping.

File format: ``MAGIC``, then frames of ``<u32 little-endian payload length><u8 kind>
<payload>``, then zeros up to the reserved size. The first frame is the JSON header
(kind 0: format version, store URI, pid, creation time), the others JSON arrays of record
rows (kind 1 predictions, kind 2 feedback, see
:func:`~mlops.store.predlog.records.spool_rows`) or one request's predictions (kind 3, see
:func:`~mlops.store.predlog.records.request_payload`; format 3, which reads format 2 too). A frame's payload is copied before its length,
so a frame cut short by a kill reads as the end of the segment: its request was never
answered.

POSIX only (``fcntl.flock``); elsewhere spooling is off and the writer says so once.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import struct
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlops.store.predlog.records import (
    FeedbackRecord,
    PredictionRecord,
    Request,
    from_row,
    request_from_payload,
)

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FRAME_FEEDBACK",
    "FRAME_PREDICTIONS",
    "FRAME_REQUEST",
    "SPOOL_SUPPORTED",
    "ClaimedSegment",
    "SegmentContent",
    "SpoolSegment",
    "claim_orphans",
    "claim_segment",
    "read_segment",
]

logger = logging.getLogger("mlops.store.predlog")

SPOOL_SUPPORTED = fcntl is not None
MAGIC = b"MLOPSPL2"
SUFFIX = ".spool"
#: Space a new segment reserves; it doubles when full.
INITIAL_SIZE = 8 << 20
_HEADER = 0
#: the kinds of record frames (:meth:`SpoolSegment.append`)
FRAME_PREDICTIONS, FRAME_FEEDBACK, FRAME_REQUEST = 1, 2, 3
_KINDS = frozenset({_HEADER, FRAME_PREDICTIONS, FRAME_FEEDBACK, FRAME_REQUEST})
_FRAME = struct.Struct("<IB")
_FORMAT = 3
_READS = frozenset({2, _FORMAT})  # format 2 has no request frames


def _lock(fd: int) -> bool:
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SpoolSegment:
    """One segment file, memory-mapped for appending and locked by this process."""

    def __init__(self, path: Path, fd: int, segment_id: str, mm: mmap.mmap | None = None,
                 pos: int = 0) -> None:
        self.path = path
        self.fd = fd
        self.id = segment_id
        self.broken = False  # no more appends (a failed growth, or a claimed segment)
        self._mm = mm
        self._pos = pos

    @classmethod
    def create(cls, directory: Path, uri: str, size: int | None = None) -> SpoolSegment:
        """A new, locked segment with its header and ``size`` bytes reserved (default
        :data:`INITIAL_SIZE`); raises ``OSError`` when it cannot be made (e.g. the folder
        is not writable or the disk is full)."""
        size = size or INITIAL_SIZE
        if fcntl is None:
            raise OSError("file locks (fcntl) are not available on this platform")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        segment_id = uuid.uuid4().hex
        tmp = directory / f".{segment_id}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        mm = None
        try:
            if not _lock(fd):  # pragma: no cover - a fresh unique name
                raise OSError(f"cannot lock {tmp}")
            os.posix_fallocate(fd, 0, size)
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            mm[:len(MAGIC)] = MAGIC
            segment = cls(directory / f"{segment_id}{SUFFIX}", fd, segment_id, mm, len(MAGIC))
            segment._frame(orjson.dumps({"format": _FORMAT, "uri": uri, "pid": os.getpid(),
                                         "created": time.time()}), _HEADER)
            os.replace(tmp, segment.path)  # visible to claimers only now: locked, with header
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if mm is not None:
                mm.close()
            os.close(fd)
            raise
        return segment

    def _frame(self, payload: bytes, kind: int) -> None:
        assert self._mm is not None
        start, end = self._pos, self._pos + _FRAME.size + len(payload)
        if end > len(self._mm):
            self._grow(end)
        mm = self._mm
        mm[start + _FRAME.size:end] = payload
        _FRAME.pack_into(mm, start, len(payload), kind)  # last: a torn frame reads as the end
        self._pos = end

    def _grow(self, needed: int) -> None:
        assert self._mm is not None
        size = len(self._mm)
        while size < needed:
            size *= 2
        os.posix_fallocate(self.fd, 0, size)  # reserve first: no SIGBUS on a full disk
        self._mm.resize(size)

    def append(self, payload: bytes, kind: int) -> None:
        """Append one frame of records of a ``FRAME_*`` kind (page cache, no system call
        but when the segment grows); raises ``OSError`` (the segment is then ``broken``)."""
        if self.broken or self._mm is None:
            raise OSError("the spool segment takes no more appends")
        try:
            self._frame(payload, kind)
        except (OSError, ValueError) as exc:
            self.broken = True
            raise OSError(f"cannot append to the spool segment {self.path}: {exc}") from exc

    def discard(self) -> None:
        """Delete the segment (its rows are in Parquet) and release it."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.release()

    def release(self) -> None:
        """Unmap and close the file (the lock goes with it); it stays for a later claim."""
        if self._mm is not None:
            with contextlib.suppress(OSError, ValueError, BufferError):
                self._mm.close()
            self._mm = None
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


@dataclass
class ClaimedSegment:
    """A segment whose writer is gone, now locked by this process, with its rows."""

    segment: SpoolSegment
    predictions: list[PredictionRecord] = field(default_factory=list)
    feedback: list[FeedbackRecord] = field(default_factory=list)
    torn: bool = False  # it ended in a frame that cannot be read (a crash mid-append)
    requests: list[Request] = field(default_factory=list)
    bad: int = 0  # frames skipped: they hold no records a writer makes


@dataclass
class SegmentContent:
    """What a segment's bytes hold."""

    header: dict[str, Any] | None = None
    predictions: list[PredictionRecord] = field(default_factory=list)
    feedback: list[FeedbackRecord] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    torn: bool = False  # it ends in a frame that cannot be read (a crash mid-append)
    bad: int = 0  # whole frames that hold no records a writer makes: skipped


def read_segment(data: bytes | mmap.mmap) -> SegmentContent:
    """What a segment's bytes hold: its header and records, and whether it is torn."""
    out = SegmentContent()
    preds, feedback = out.predictions, out.feedback
    if data[:len(MAGIC)] != MAGIC:
        out.torn = bool(len(data))
        return out
    pos, end = len(MAGIC), len(data)
    while pos + _FRAME.size <= end:
        size, kind = _FRAME.unpack_from(data, pos)
        if size == 0:
            return out  # the end of what was written
        body = data[pos + _FRAME.size:pos + _FRAME.size + size]
        if len(body) < size:
            out.torn = True
            return out
        pos += _FRAME.size + size
        if kind not in _KINDS:
            out.torn = True  # not a frame: what follows cannot be trusted either
            return out
        try:  # a whole frame that does not read is skipped: the next one starts after it
            doc = orjson.loads(body)
            if kind == _HEADER:
                out.header = doc if isinstance(doc, dict) else None
            elif kind == FRAME_PREDICTIONS:
                preds.extend([from_row(PredictionRecord, row) for row in doc])
            elif kind == FRAME_FEEDBACK:
                feedback.extend([from_row(FeedbackRecord, row) for row in doc])
            else:
                out.requests.append(request_from_payload(doc))
        except (orjson.JSONDecodeError, TypeError, ValueError, RecursionError):
            out.bad += 1
    out.torn = pos < end
    return out


def _read(fd: int) -> SegmentContent:
    size = os.fstat(fd).st_size
    if size == 0:
        return read_segment(b"")
    with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
        return read_segment(mm)


def claim_segment(path: Path, uri: str) -> ClaimedSegment | None:
    """Lock and read one segment of the store ``uri`` whose writer is gone; None when it is locked (a live writer), gone, or another store's
    (or format's). An unreadable one is logged and left in place."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # claimed and finished by another process meanwhile
    keep = False
    try:
        if not _lock(fd) or os.fstat(fd).st_nlink == 0:
            return None  # a live writer, or deleted by the process that claimed it first
        content = _read(fd)
        header = content.header
        fmt = header.get("format") if header is not None else None
        if header is not None and (header.get("uri") != uri or type(fmt) is not int
                                   or fmt not in _READS):
            return None  # another store's (or format's) segment: its own writer replays it
        segment = SpoolSegment(path, fd, path.name[:-len(SUFFIX)])
        segment.broken = True  # never appended to again
        keep = True
        return ClaimedSegment(segment, content.predictions, content.feedback, content.torn,
                              content.requests, content.bad)
    except Exception as exc:  # one unreadable segment must not stop the others' claim
        logger.error("Cannot read the prediction log spool segment %s: %s", path, exc)
        return None
    finally:
        if not keep:
            os.close(fd)


def claim_orphans(directory: Path, uri: str) -> list[ClaimedSegment]:
    """Lock and read every segment of ``directory`` whose writer is gone and that belongs
    to the store ``uri`` (:func:`claim_segment`)."""
    if fcntl is None:
        return []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return []
    claimed = (claim_segment(directory / name, uri) for name in names)
    return [c for c in claimed if c is not None]
