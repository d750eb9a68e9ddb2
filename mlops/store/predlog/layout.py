"""The prediction log's layout: where its files live, what they are called, what they hold.

This is the only module that knows the layout; everything else asks it. Files are
hive-partitioned Parquet under the artifact store (any fsspec URL)::

    {root}/predictions/model={model}/version={version}/date={YYYY-MM-DD}/part-{flushed}-{id}.parquet
    {root}/feedback/model={model}/date={YYYY-MM-DD}/part-{flushed}-{id}.parquet

- Partition values are URL-quoted (``quote(value, safe="")``), so model names with spaces,
  ``/`` or ``=`` stay one folder level; DuckDB's ``hive_partitioning`` and pyarrow's
  ``HivePartitioning(segment_encoding="uri")`` decode them. ``date`` is the UTC day of the
  rows' ``ts``. Partition columns are not stored inside the files.
- ``{flushed}`` is the UTC time the file was completed, ``%Y%m%dT%H%M%S%fZ`` (so names sort
  by flush time); ``{id}`` is 32 hex digits. The writer derives the id from the spool
  segment and the partition, so a file written again after a crash or a retry has the same
  id (see :mod:`~mlops.store.predlog.writer`).
- Files are zstd-compressed (level 1: no slower to write than lz4 on the logged JSON inputs
  and half the size), with dictionaries only for the columns whose values repeat and
  statistics for every column but ``inputs`` (:func:`parquet_bytes`).
- Readers take ``part-*.parquet`` only: hidden ``.part-*.tmp`` files being written and
  anything starting with ``.`` or ``_`` are skipped.
- Compaction (:mod:`~mlops.store.predlog.maintenance`) merges a partition's files into one.
  Before the merged file appears it writes a manifest ``_compaction-{id}.json`` naming the
  merged file and its sources and when the merge started. While both the manifest and the
  merged file are there, :func:`list_files` leaves the sources out, so no row is read
  twice. That is the normal state for an hour after every merge (the maintenance module's
  ``SOURCE_GRACE``): the sources stay so that a reader that listed them just before the
  merged file appeared can still read them; a later run deletes them, then the manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from mlops.errors import ArtifactError

__all__ = [
    "FEEDBACK",
    "FEEDBACK_FILE_SCHEMA",
    "FEEDBACK_SCHEMA",
    "HIVE_TYPES",
    "MANIFEST_PREFIX",
    "PREDICTIONS",
    "PREDICTION_FILE_SCHEMA",
    "PREDICTION_SCHEMA",
    "CompactionManifest",
    "Kind",
    "LogFile",
    "LogStore",
    "PartName",
    "day_name",
    "day_of",
    "is_data_file",
    "list_files",
    "manifest_name",
    "open_store",
    "parquet_bytes",
    "parse_manifest",
    "parse_part_name",
    "part_name",
    "partition_path",
    "superseded_files",
]

Kind = Literal["predictions", "feedback"]
PREDICTIONS: Kind = "predictions"
FEEDBACK: Kind = "feedback"

_TS = pa.timestamp("us", tz="UTC")
_STR = pa.string()
_F64 = pa.float64()
_DAY_SECONDS = 86_400
_STAMP = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(r"^part-(\d{8}T\d{12}Z)-([0-9a-f]{32})\.parquet$")
#: Names of compaction manifests start with this (readers skip ``_`` names anyway).
MANIFEST_PREFIX = "_compaction-"
_MANIFEST = re.compile(r"^_compaction-([0-9a-f]{32})\.json$")

#: Columns of a prediction table as read back (``model``, ``version`` and ``date`` come from
#: the path).
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
    ("proba", pa.list_(_F64)),
    ("latency_ms", _F64),
    ("status", pa.int32()),
    ("propensity", _F64),
    ("caller", _STR),
    ("cpu_ms", _F64),
    ("date", _STR),
])

#: Columns of a feedback table as read back (``model`` and ``date`` from the path).
FEEDBACK_SCHEMA = pa.schema([
    ("request_id", _STR),
    ("row", pa.int64()),
    ("model", _STR),
    ("actual", _STR),
    ("actual_num", _F64),
    ("ts", _TS),
    ("date", _STR),
])

_PARTITIONS: dict[Kind, tuple[str, ...]] = {PREDICTIONS: ("model", "version", "date"),
                                            FEEDBACK: ("model", "date")}

#: Columns stored inside the files.
PREDICTION_FILE_SCHEMA = pa.schema([f for f in PREDICTION_SCHEMA
                                    if f.name not in _PARTITIONS[PREDICTIONS]])
FEEDBACK_FILE_SCHEMA = pa.schema([f for f in FEEDBACK_SCHEMA
                                  if f.name not in _PARTITIONS[FEEDBACK]])

#: DuckDB ``hive_types`` of the partition columns (all strings, never guessed).
HIVE_TYPES = {"model": "VARCHAR", "version": "VARCHAR", "date": "VARCHAR"}


# ---------------------------------------------------------------------------- names


def _quote(value: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"partition value must be a str, not {type(value).__name__}")
    return quote(value, safe="")


def day_of(ts: float) -> int:
    """The UTC day number (days since the epoch) of an epoch second."""
    return int(ts // _DAY_SECONDS)


def day_name(day: int | date | datetime) -> str:
    """``YYYY-MM-DD`` of a day number, a date or a datetime (its UTC day)."""
    if isinstance(day, datetime):
        return (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC).date() \
            .isoformat()
    if isinstance(day, date):
        return day.isoformat()
    return datetime.fromtimestamp(day * _DAY_SECONDS, UTC).strftime("%Y-%m-%d")


def partition_path(kind: Kind, model: str, version: str | None, day: str) -> str:
    """``{kind}/model=../[version=../]date=..`` relative to the root (values URL-quoted)."""
    parts = [kind, f"model={_quote(model)}"]
    if kind == PREDICTIONS:
        if version is None:
            raise TypeError("a prediction partition needs a version")
        parts.append(f"version={_quote(version)}")
    parts.append(f"date={day}")
    return "/".join(parts)


@dataclass(frozen=True)
class PartName:
    """What a data file's name says: when it was completed, and its id."""

    flushed_at: datetime
    file_id: str


#: columns whose values repeat (a dictionary pays); the rest are mostly unique
_DICTIONARY = frozenset({"environment", "route", "caller", "prediction", "status", "actual"})
#: long unique text that no reader filters on: its min/max statistics would cost for nothing
_NO_STATISTICS = frozenset({"inputs"})


def parquet_bytes(table: pa.Table) -> pa.Buffer:
    """A log file's bytes: ``table`` as Parquet, written as every log file is."""
    names = table.column_names
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=1,
                   use_dictionary=[c for c in names if c in _DICTIONARY],
                   write_statistics=[c for c in names if c not in _NO_STATISTICS])
    return sink.getvalue()


def part_name(flushed_at: datetime, file_id: str) -> str:
    """The file name of a data file completed at ``flushed_at`` (UTC)."""
    if not re.fullmatch(r"[0-9a-f]{32}", file_id):
        raise ValueError(f"file id must be 32 hex digits, got {file_id!r}")
    return f"part-{flushed_at.astimezone(UTC).strftime(_STAMP)}-{file_id}.parquet"


def parse_part_name(name: str) -> PartName | None:
    """The flush time and id of a data file name (``None`` for other names)."""
    m = _NAME.match(name)
    if m is None:
        return None
    try:
        flushed = datetime.strptime(m.group(1), _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None
    return PartName(flushed, m.group(2))


def is_data_file(name: str) -> bool:
    """Is this file name one readers take (``part-*.parquet``)?"""
    return name.startswith("part-") and name.endswith(".parquet")


# ---------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class CompactionManifest:
    """A compaction's intent: ``merged`` (a data file name in the same folder) replaces
    ``sources`` once it exists. ``created`` is when the merge started (UTC): the sources
    are deleted, then the manifest, once it is the maintenance module's ``SOURCE_GRACE``
    old."""

    merged: str
    sources: tuple[str, ...]
    created: datetime

    def to_json(self) -> bytes:
        return json.dumps({"format": 1, "merged": self.merged, "sources": list(self.sources),
                           "created": self.created.astimezone(UTC).isoformat()},
                          sort_keys=True).encode()


def manifest_name(file_id: str) -> str:
    """The manifest name of the merge that produces the file with id ``file_id``."""
    if not re.fullmatch(r"[0-9a-f]{32}", file_id):
        raise ValueError(f"file id must be 32 hex digits, got {file_id!r}")
    return f"{MANIFEST_PREFIX}{file_id}.json"


def _plain_data_name(value: object) -> bool:
    return isinstance(value, str) and "/" not in value and "\\" not in value \
        and is_data_file(value)


def parse_manifest(data: bytes) -> CompactionManifest | None:
    """A manifest's content, or ``None`` when it is not a valid manifest (then it hides
    nothing)."""
    try:
        raw = json.loads(data)
        merged, sources = raw["merged"], raw["sources"]
        created = datetime.fromisoformat(raw["created"])
    except (ValueError, TypeError, KeyError, UnicodeDecodeError):
        return None
    if not _plain_data_name(merged) or parse_part_name(merged) is None \
            or not isinstance(sources, list) or not sources \
            or not all(_plain_data_name(n) for n in sources) or merged in sources:
        return None
    created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
    return CompactionManifest(merged, tuple(sources), created.astimezone(UTC))


def _read_manifest(store: LogStore, path: str) -> CompactionManifest | None:
    """Raises FileNotFoundError when the manifest went away meanwhile."""
    if store.local:
        with open(path, "rb") as fh:
            data = fh.read()
    else:
        data = bytes(store.fs.cat_file(path))
    return parse_manifest(data)


def superseded_files(store: LogStore, folder: str, names: Iterable[str]) -> set[str] | None:
    """The data files of ``folder`` (filesystem path; ``names`` its children) that a merged
    file replaces: the sources of every valid manifest whose merged file is in ``names``.
    ``None`` when a manifest vanished while being read (a run just deleted the sources it
    named: list the folder again)."""
    present = set(names)
    hidden: set[str] = set()
    for name in present:
        if not _MANIFEST.match(name):
            continue
        try:
            manifest = _read_manifest(store, f"{folder}/{name}")
        except FileNotFoundError:
            return None
        except OSError:
            continue  # unreadable: hides nothing
        if manifest is not None and manifest.merged in present:
            hidden.update(manifest.sources)
    return hidden


# ---------------------------------------------------------------------------- stores


@dataclass(frozen=True)
class LogStore:
    """The artifact store a log lives in: its fsspec filesystem and root folder."""

    uri: str
    fs: fsspec.AbstractFileSystem
    root: str
    local: bool

    def listing(self, path: str, *, detail: bool = True) -> list[Any]:
        """``fs.ls(path)`` without the client's cached listing (s3fs keeps one per process,
        which would hide the files other gateways write)."""
        self.fs.invalidate_cache(path)
        return list(self.fs.ls(path, detail=detail))

    def path(self, relative: str) -> str:
        """Filesystem path of a path relative to the root."""
        return f"{self.root}/{relative}"

    def url(self, path: str) -> str:
        """A path as readers outside fsspec take it (local path, or ``protocol://``)."""
        return path if self.local else str(self.fs.unstrip_protocol(path))

    def put_file(self, directory: str, name: str, data: bytes | memoryview) -> None:
        """Write ``directory/name`` whole: locally under a hidden temporary name (readers
        skip it), synced, then renamed into place; elsewhere in one PUT."""
        if not self.local:
            self.fs.pipe_file(f"{directory}/{name}", bytes(data))
            return
        os.makedirs(directory, exist_ok=True)
        tmp = f"{directory}/.{name}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, f"{directory}/{name}")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def names(self, path: str) -> list[str]:
        """Sorted child names of a folder (none when it does not exist), read afresh: an
        object store's client caches listings, and other processes add files."""
        try:
            if self.local:
                with os.scandir(path) as it:
                    return sorted(e.name for e in it)
            return sorted(str(p).rstrip("/").rsplit("/", 1)[-1]
                          for p in self.listing(path, detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []


def open_store(uri: str, storage_options: Mapping[str, Any] | None = None) -> LogStore:
    """The store of a local folder or fsspec URL; :class:`ArtifactError` if it cannot open."""
    try:
        fs, root = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
    except (ImportError, ValueError, TypeError) as exc:
        raise ArtifactError(
            f"Cannot open the prediction log store {uri!r}: {exc}.",
            fix="Use a local folder or an fsspec URL whose driver is installed (pip install "
                "\"mlops[s3]\" for s3://), with valid storage options.", path=uri) from exc
    return LogStore(uri, fs, str(root).rstrip("/"), isinstance(fs, LocalFileSystem))


# ---------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class LogFile:
    """One data file of the log and what its path says about it."""

    path: str                   # as DuckDB / pyarrow take it (local path or URL)
    kind: Kind
    model: str
    version: str | None         # None for feedback
    day: str                    # YYYY-MM-DD
    flushed_at: datetime | None  # None when the name does not carry it
    file_id: str | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def _values(store: LogStore, folder: str, key: str, wanted: Iterable[str] | None
            ) -> list[tuple[str, str]]:
    """(decoded value, folder) of the ``key=`` sub-folders of ``folder``."""
    if wanted is not None:
        out = []
        for value in sorted(set(wanted)):
            name = f"{key}={_quote(value)}"
            out.append((value, f"{folder}/{name}"))
        return out
    return [(unquote(n[len(key) + 1:]), f"{folder}/{n}") for n in store.names(folder)
            if n.startswith(f"{key}=")]


def _live_names(store: LogStore, folder: str) -> list[str]:
    """Children of a partition folder, without the sources a finished merge replaced."""
    for _ in range(3):
        names = store.names(folder)
        if not any(n.startswith(MANIFEST_PREFIX) for n in names):
            return names
        hidden = superseded_files(store, folder, names)
        if hidden is not None:
            return [n for n in names if n not in hidden]
    return names  # manifests keep vanishing: a compaction is running; take the listing


def list_files(store: LogStore, kind: Kind, model: str | None = None, *,
               versions: Iterable[str] | None = None, first_day: str | None = None,
               last_day: str | None = None, flushed_after: datetime | None = None
               ) -> list[LogFile]:
    """The data files of ``kind`` (one model or all; some versions or all; the ``date=``
    folders within ``[first_day, last_day]``, ISO days; with ``flushed_after``, only files
    whose name says they were completed after it), ordered by flush time then path.

    Only folder names are listed; no data file is opened (a compaction manifest is read
    only where one is present: the sources it names are left out once its merged file
    exists; they are deleted no sooner than an hour later, so files listed here can be
    read for that long). ``versions`` is ignored for feedback. Names sort by flush time, so files
    flushed earlier cost a string comparison only.
    """
    after = None if flushed_after is None else flushed_after.astimezone(UTC).strftime(_STAMP)
    out: list[LogFile] = []
    base = store.path(kind)
    models = _values(store, base, "model", None if model is None else [model])
    for model_name, model_dir in models:
        folders: list[tuple[str | None, str]] = [(None, model_dir)]
        if kind == PREDICTIONS:
            folders = [(v, d) for v, d in _values(store, model_dir, "version", versions)]
        for version, folder in folders:
            for name in store.names(folder):
                day = name[5:]
                if not name.startswith("date=") or (first_day is not None and day < first_day) \
                        or (last_day is not None and day > last_day):
                    continue
                for file in _live_names(store, f"{folder}/{name}"):
                    if not is_data_file(file) or (after is not None
                                                  and file[5:5 + len(after)] <= after):
                        continue
                    parsed = parse_part_name(file)
                    if flushed_after is not None and (parsed is None
                                                      or parsed.flushed_at <= flushed_after):
                        continue
                    out.append(LogFile(
                        store.url(f"{folder}/{name}/{file}"), kind, model_name, version, day,
                        parsed.flushed_at if parsed else None,
                        parsed.file_id if parsed else None))
    oldest = datetime.min.replace(tzinfo=UTC)
    out.sort(key=lambda f: (f.flushed_at or oldest, f.path))
    return out

