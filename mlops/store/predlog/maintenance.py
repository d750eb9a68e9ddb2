"""File-level upkeep of the prediction log: day partitions, deleting them, merging their files.

The policy (what is expired, who may act, the audit event) lives in
:mod:`mlops.governance.retention`; this module only knows the files
(:mod:`~mlops.store.predlog.layout` names them).

**Partitions.** :func:`list_partitions` finds the ``date=YYYY-MM-DD`` folders of a kind;
folders that are not partitions (other names, a ``date=`` that is not a real ISO day, plain
files) are never returned, so never deleted. :func:`delete_partition` removes one folder
(a symbolic link is unlinked, its target left alone).

**Purge journal.** Deleting files cannot share a transaction with the audit event that
records it, so a retention run first writes a journal ``predictions/_retention-{run}.json``
listing the partitions it is about to delete (:func:`start_purge`), deletes them, records
its audit event and only then removes the journal (:func:`finish_purge`). A run that
stopped half-way leaves the journal: the next run finds it (:func:`pending_purges`),
completes the deletions and records them.

**Compaction.** :func:`compact_log` merges each partition's small files into one, rows
sorted by ``ts``, without changing what any reader sees, at any moment:

- Only files whose name carries a flush time (:func:`~layout.parse_part_name`) and that
  were flushed before ``settled_before`` are merged, and ``settled_before`` must be at
  least :data:`COMPACT_MIN_AGE` (one day, the log's :data:`~increments.LATE`) before
  ``now``: a later one is refused (:class:`ValueError`; tests that need old files pass an
  injected ``now``). Why a hard floor: the merged file is named with the *newest* flush
  time of its sources, and incremental readers (:mod:`~mlops.store.predlog.increments`,
  the rollout controller's :mod:`mlops.deployment.traffic`, which reads a file as soon as
  it is visible and remembers the ones it read after its horizon by path) take any file
  named after their cursor as new. A reader whose cursor is older than that name but which
  read some of the sources would count their rows again. With the floor the name is more
  than a day old, so the cursor of every reader that made a pass during the last day is
  past it and the merged file is never listed by it; a reader that starts again begins
  from its ``since``, before every source, and reads each row once, from the merged file.
  The contract for incremental readers is therefore: make a pass at least once a day, or
  start again from scratch.
- A merge writes a manifest ``_compaction-{id}.json`` (merged name, sources, creation
  time) first, then the merged file atomically (hidden temporary name, fsync, rename; one
  PUT elsewhere). Once the merged file is there, :func:`~layout.list_files` leaves out the
  sources the manifest names, so no row is read twice.
- The run that merges does *not* delete the sources: a reader that listed them just before
  the merged file appeared may still be about to read them (a rollout's first pass reads
  its files in chunks). They stay, hidden, until the manifest is :data:`SOURCE_GRACE` (one
  hour, far longer than a pass takes from listing its files to reading the last of them)
  old; the next compaction or retention run after that (:func:`clean_compacted`)
  deletes them and then the manifest. Until then neither the sources nor the merged file
  are merged again (merging the merged file and later deleting it before its manifest
  went would show those sources again).
- A crash at any step leaves a consistent log. Before the merged file appeared, the
  manifest hides nothing; a later run drops it (and the temporary file) once it is older
  than :data:`STALE_MANIFEST`, so that it never races a merge in progress. After, the
  sources are hidden and a later run deletes them. Half-way through deleting them, the
  manifest (deleted last) still hides those left, and the next run finishes.
- A partition with an unreadable file is skipped with a message; nothing in it changes.
- The merged file's metadata lists the ids of every file it holds
  (:func:`compacted_file_ids`), so a writer replaying a spool segment can tell that its
  file was already written and merged (during the grace the source is also still there
  under its own name).

Retention deletes an expired partition folder whole: sources, merged files and manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from mlops.errors import ArtifactError
from mlops.store.predlog.increments import LATE
from mlops.store.predlog.layout import (
    FEEDBACK,
    MANIFEST_PREFIX,
    PREDICTIONS,
    CompactionManifest,
    Kind,
    LogStore,
    is_data_file,
    manifest_name,
    parquet_bytes,
    parse_manifest,
    parse_part_name,
    part_name,
)

__all__ = [
    "COMPACTED_FROM_KEY",
    "COMPACT_MIN_AGE",
    "COMPACT_TARGET_BYTES",
    "SOURCE_GRACE",
    "STALE_MANIFEST",
    "CompactionOutcome",
    "CompactionStatus",
    "Partition",
    "PurgeJournal",
    "clean_compacted",
    "compact_log",
    "compact_partition",
    "compacted_file_ids",
    "delete_partition",
    "finish_purge",
    "list_partitions",
    "parse_partition",
    "pending_purges",
    "start_purge",
]

#: Files flushed less than this long ago are never merged, whatever the caller asks (see
#: the module docstring): every incremental reader has read them by then.
COMPACT_MIN_AGE = LATE
#: The sources of a merge stay (hidden) this long after its manifest was created, for the
#: readers that listed them before the merged file appeared.
SOURCE_GRACE = timedelta(hours=1)
#: A merge stops adding sources once they hold this many bytes (files this big stay alone).
COMPACT_TARGET_BYTES = 128 * 1024 * 1024
#: A manifest without its merged file older than this belongs to a merge that stopped.
STALE_MANIFEST = timedelta(hours=1)
#: Parquet key-value metadata of a merged file: JSON list of the file ids it holds.
COMPACTED_FROM_KEY = b"mlops.compacted_from"

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_JOURNAL = re.compile(r"^_retention-([0-9a-f]{32})\.json$")
_KEYS: dict[Kind, tuple[str, ...]] = {PREDICTIONS: ("model", "version"), FEEDBACK: ("model",)}


# ---------------------------------------------------------------------------- partitions


@dataclass(frozen=True)
class Partition:
    """One day folder of the log: ``relative`` is its path under the store root as it is
    on disk (values URL-quoted), the other fields what the path says (decoded)."""

    kind: Kind
    model: str
    version: str | None  # None for feedback
    day: str             # YYYY-MM-DD
    relative: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "version": self.version,
                "date": self.day, "path": self.relative}


def _is_day(text: str) -> bool:
    if not _DAY.match(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _children(store: LogStore, folder: str, key: str) -> list[tuple[str, str]]:
    """(decoded value, folder name) of the ``key=..`` children of ``folder``."""
    return [(unquote(n[len(key) + 1:]), n) for n in store.names(folder)
            if n.startswith(f"{key}=") and len(n) > len(key) + 1]


def list_partitions(store: LogStore, kind: Kind, model: str | None = None, *,
                    before_day: str | None = None) -> list[Partition]:
    """The day partitions of ``kind`` (of one model, or all), those of days before
    ``before_day`` only when given, ordered by path. Folders that are not partitions are
    left out."""
    found: list[Partition] = []
    base = store.path(kind)
    for model_name, model_dir in _children(store, base, "model"):
        if model is not None and model_name != model:
            continue
        levels: list[tuple[str | None, str]] = [(None, f"{kind}/{model_dir}")]
        if kind == PREDICTIONS:
            levels = [(v, f"{kind}/{model_dir}/{d}")
                      for v, d in _children(store, store.path(f"{kind}/{model_dir}"),
                                            "version")]
        for version, rel in levels:
            for name in store.names(store.path(rel)):
                day = name[5:]
                if not name.startswith("date=") or not _is_day(day) \
                        or (before_day is not None and day >= before_day):
                    continue
                if not _is_folder(store, store.path(f"{rel}/{name}")):
                    continue
                found.append(Partition(kind, model_name, version, day, f"{rel}/{name}"))
    found.sort(key=lambda p: p.relative)
    return found


def _is_folder(store: LogStore, path: str) -> bool:
    if store.local:
        return os.path.isdir(path)
    try:
        return bool(store.fs.isdir(path))
    except OSError:
        return False


def parse_partition(relative: str) -> Partition | None:
    """The partition a relative path names (``None`` when the path is not exactly
    ``{kind}/model=../[version=../]date=YYYY-MM-DD``: a journal cannot point elsewhere)."""
    parts = relative.split("/")
    if not parts or parts[0] not in _KEYS:
        return None
    kind: Kind = PREDICTIONS if parts[0] == PREDICTIONS else FEEDBACK
    keys = _KEYS[kind]
    if len(parts) != len(keys) + 2:
        return None
    values: list[str] = []
    for key, part in zip(keys, parts[1:-1], strict=True):
        if not part.startswith(f"{key}=") or len(part) == len(key) + 1:
            return None
        values.append(unquote(part[len(key) + 1:]))
    last = parts[-1]
    if not last.startswith("date=") or not _is_day(last[5:]):
        return None
    return Partition(kind, values[0], values[1] if kind == PREDICTIONS else None, last[5:],
                     relative)


def delete_partition(store: LogStore, partition: Partition) -> bool:
    """Delete one partition folder and everything in it; ``False`` when it was gone
    already. Raises :class:`ArtifactError` when it cannot be deleted."""
    path = store.path(partition.relative)
    try:
        if store.local:
            if os.path.islink(path):
                os.unlink(path)
                return True
            if not os.path.exists(path):
                return False
            for attempt in range(2):  # a file written into it meanwhile: once more
                try:
                    shutil.rmtree(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if attempt:
                        raise
            return True
        if not store.fs.exists(path):
            return False
        store.fs.rm(path, recursive=True)
        return True
    except OSError as exc:
        raise ArtifactError(
            f"Cannot delete the prediction log partition {partition.relative!r}: {exc}",
            fix="Check the permissions of the artifact store and run `mlops retention apply` "
                "again: it finishes what was started.", path=path) from exc


# ---------------------------------------------------------------------------- journal


@dataclass(frozen=True)
class PurgeJournal:
    """The partitions a retention run set out to delete (``run`` is its id)."""

    run: str
    partitions: tuple[Partition, ...]
    created: datetime


def _journal_path(store: LogStore, run: str) -> str:
    return store.path(f"{PREDICTIONS}/_retention-{run}.json")


def _put(store: LogStore, path: str, data: bytes) -> None:
    """Write a file so that it appears whole (temporary name, fsync, rename; one PUT)."""
    if not store.local:
        store.fs.pipe_file(path, data)
        return
    folder, name = path.rsplit("/", 1)
    os.makedirs(folder, exist_ok=True)
    tmp = f"{folder}/.{name}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _cat(store: LogStore, path: str) -> bytes:
    if store.local:
        with open(path, "rb") as fh:
            return fh.read()
    return bytes(store.fs.cat_file(path))


def _remove(store: LogStore, path: str) -> None:
    """Delete one file; gone already is fine."""
    with contextlib.suppress(FileNotFoundError):
        if store.local:
            os.unlink(path)
        else:
            store.fs.rm_file(path)


def start_purge(store: LogStore, run: str, partitions: Sequence[Partition], *,
                now: datetime | None = None) -> PurgeJournal:
    """Record that run ``run`` (32 hex digits) is about to delete ``partitions``."""
    if not re.fullmatch(r"[0-9a-f]{32}", run):
        raise ValueError(f"run id must be 32 hex digits, got {run!r}")
    journal = PurgeJournal(run, tuple(partitions), now or datetime.now(UTC))
    body = json.dumps({"format": 1, "run": run, "created": journal.created.isoformat(),
                       "partitions": [p.relative for p in partitions]}, sort_keys=True)
    try:
        _put(store, _journal_path(store, run), body.encode())
    except OSError as exc:
        raise ArtifactError(f"Cannot write the retention journal under {store.uri!r}: {exc}",
                            fix="Check that the artifact store is writable; nothing was "
                                "deleted.", path=store.uri) from exc
    return journal


def pending_purges(store: LogStore) -> list[PurgeJournal]:
    """Journals of retention runs that stopped before recording their audit event, oldest
    first. Entries that do not name a partition are ignored (never deleted)."""
    out: list[PurgeJournal] = []
    for name in store.names(store.path(PREDICTIONS)):
        m = _JOURNAL.match(name)
        if m is None:
            continue
        try:
            path = store.path(f"{PREDICTIONS}/{name}")
            raw = json.loads(_cat(store, path))
            created = datetime.fromisoformat(raw["created"])
            entries = raw["partitions"]
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if not isinstance(entries, list):
            continue
        parts = tuple(p for p in (parse_partition(e) for e in entries if isinstance(e, str))
                      if p is not None)
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        out.append(PurgeJournal(m.group(1), parts, created))
    out.sort(key=lambda j: (j.created, j.run))
    return out


def finish_purge(store: LogStore, run: str) -> None:
    """Remove the journal of run ``run`` (its deletions are recorded)."""
    try:
        _remove(store, _journal_path(store, run))
    except OSError as exc:
        raise ArtifactError(f"Cannot remove the retention journal of run {run}: {exc}",
                            fix="Check that the artifact store is writable; the next "
                                "`mlops retention apply` removes it.", path=store.uri) from exc


# ---------------------------------------------------------------------------- compaction

# ---------------------------------------------------------------------------- compaction

CompactionStatus = Literal["compacted", "would_compact", "waiting", "cleaned", "would_clean",
                           "recovered", "would_recover", "skipped"]
_WAITING = ("compacted", "would_compact", "waiting")
_CLEANED = ("cleaned", "would_clean")


@dataclass(frozen=True)
class CompactionOutcome:
    """What happened to one partition (or one group of its files).

    - ``compacted`` (``would_compact``): ``sources`` were merged into ``merged``; they stay,
      hidden, until ``delete_after``.
    - ``waiting``: the ``sources`` of an earlier merge still there, hidden, until
      ``delete_after``.
    - ``cleaned`` (``would_clean``): the ``sources`` of an earlier merge, past their grace,
      were deleted, then its manifest.
    - ``recovered`` (``would_recover``): the manifest of a merge that stopped before its
      file appeared was dropped (its sources are intact).
    - ``skipped``: the partition was left alone; ``message`` says why.
    """

    partition: Partition
    status: CompactionStatus
    sources: tuple[str, ...] = ()
    merged: str | None = None
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    message: str = ""
    delete_after: datetime | None = None

    @property
    def sources_waiting(self) -> int:
        """Source files that stay (hidden) after the run, until :attr:`delete_after`."""
        return len(self.sources) if self.status in _WAITING else 0

    @property
    def sources_deleted(self) -> int:
        """Source files of an earlier merge the run deleted (or would delete)."""
        return len(self.sources) if self.status in _CLEANED else 0

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition.to_dict(), "status": self.status,
                "sources": list(self.sources), "merged": self.merged, "rows": self.rows,
                "bytes_before": self.bytes_before, "bytes_after": self.bytes_after,
                "message": self.message,
                "delete_after": None if self.delete_after is None
                else self.delete_after.isoformat()}


@dataclass
class _Folder:
    """A partition folder's children: sizes of the data files, names of the rest."""

    sizes: dict[str, int] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    def discard(self, name: str) -> None:
        self.names.discard(name)
        self.sizes.pop(name, None)


def _scan(store: LogStore, path: str) -> _Folder:
    out = _Folder()
    if store.local:
        with os.scandir(path) as it:
            for entry in it:
                out.names.add(entry.name)
                if is_data_file(entry.name) and entry.is_file(follow_symlinks=False):
                    out.sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
        return out
    for info in store.listing(path):
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        out.names.add(name)
        if is_data_file(name) and info.get("type") == "file":
            out.sizes[name] = int(info.get("size") or 0)
    return out


def _read(store: LogStore, path: str) -> pa.Table:
    if store.local:
        return pq.ParquetFile(path).read()
    with store.fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).read()


def compacted_file_ids(store: LogStore, relative: str) -> set[str]:
    """The ids of every file that merged files in the partition folder ``relative`` hold
    (a writer replaying a spool segment checks these before writing its file again).
    Reads the footers of the folder's data files."""
    ids: set[str] = set()
    path = store.path(relative)
    for name in store.names(path):
        if not is_data_file(name):
            continue
        try:
            if store.local:
                meta = pq.read_metadata(f"{path}/{name}").metadata
            else:
                with store.fs.open(f"{path}/{name}", "rb") as fh:
                    meta = pq.read_metadata(fh).metadata
        except (OSError, pa.ArrowException):
            continue
        raw = (meta or {}).get(COMPACTED_FROM_KEY)
        if raw:
            with contextlib.suppress(ValueError):
                ids.update(str(i) for i in json.loads(raw))
    return ids


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _manifests(store: LogStore, partition: Partition, folder: _Folder, now: datetime,
               dry_run: bool) -> tuple[list[CompactionOutcome], set[str], str | None]:
    """Settle the partition's compaction manifests: delete the sources of merges whose
    :data:`SOURCE_GRACE` has passed, then their manifests; drop the manifests of merges that
    stopped before their file appeared (older than :data:`STALE_MANIFEST`). ``folder`` is
    updated to what is left (with ``dry_run``, to what would be). Returns the outcomes, the
    files that must not be merged now (the sources and merged file of merges in their
    grace) and, when the partition must be left alone, why."""
    out: list[CompactionOutcome] = []
    reserved: set[str] = set()
    base = store.path(partition.relative)
    for name in sorted(n for n in folder.names if n.startswith(MANIFEST_PREFIX)):
        path = f"{base}/{name}"
        try:
            manifest = parse_manifest(_cat(store, path))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return out, reserved, f"cannot read {name}: {exc}"
        if manifest is None:
            return out, reserved, (f"{name} is not a valid compaction manifest; move it out "
                                   f"of {partition.relative} to compact this partition")
        left = tuple(s for s in manifest.sources if s in folder.names)
        delete_after = manifest.created + SOURCE_GRACE
        if manifest.merged in folder.names:
            if left and now < delete_after:
                reserved.update(left)
                reserved.add(manifest.merged)
                out.append(CompactionOutcome(
                    partition, "waiting", left, manifest.merged, delete_after=delete_after,
                    message=f"{len(left)} source files of the merge of "
                            f"{_when(manifest.created)} stay, hidden, until "
                            f"{_when(delete_after)} (readers that listed them before may "
                            "still read them); a compaction or retention run after that "
                            "deletes them"))
                continue
            if not dry_run:
                for source in left:  # the sources first: the manifest hides those left
                    _remove(store, f"{base}/{source}")
                _remove(store, path)
            for source in left:
                folder.discard(source)
            folder.discard(name)
            verb = "would delete" if dry_run else "deleted"
            out.append(CompactionOutcome(
                partition, "would_clean" if dry_run else "cleaned", left, manifest.merged,
                message=f"{verb} the {len(left)} source files of the merge of "
                        f"{_when(manifest.created)} (their grace of {SOURCE_GRACE} has "
                        "passed), then its manifest" if left else
                        f"{verb} the manifest of the merge of {_when(manifest.created)} "
                        "(its sources were gone already)"))
        elif now - manifest.created >= STALE_MANIFEST:
            if not dry_run:
                _remove(store, f"{base}/.{manifest.merged}.tmp")  # a local write cut short
                _remove(store, path)
            folder.discard(name)
            out.append(CompactionOutcome(
                partition, "would_recover" if dry_run else "recovered", manifest.sources,
                None, message=f"{'would drop' if dry_run else 'dropped'} the manifest of a "
                              "merge that stopped before its file appeared (the sources are "
                              "intact)"))
        else:
            return out, reserved, (f"a merge started at {_when(manifest.created)} is in "
                                   "progress")
    return out, reserved, None


def _prepare(store: LogStore, partition: Partition, now: datetime, dry_run: bool
             ) -> tuple[_Folder | None, list[CompactionOutcome], set[str]]:
    """Scan a partition and settle its manifests (:func:`_manifests`). No folder when it is
    gone or must be left alone (a ``skipped`` outcome says why)."""
    path = store.path(partition.relative)
    try:
        folder = _scan(store, path)
    except FileNotFoundError:
        return None, [], set()
    if not any(n.startswith(MANIFEST_PREFIX) for n in folder.names):
        return folder, [], set()
    try:
        out, reserved, problem = _manifests(store, partition, folder, now, dry_run)
    except OSError as exc:
        raise ArtifactError(
            f"Cannot delete the compacted source files of {partition.relative!r}: {exc}",
            fix="Check that the artifact store is writable and run `mlops retention "
                "compact` again: readers see every row once meanwhile, and the next run "
                "finishes the deletion.", path=path) from exc
    if problem is not None:
        return None, [*out, CompactionOutcome(partition, "skipped", message=problem)], reserved
    return folder, out, reserved


def _groups(sources: list[tuple[datetime, str, int]], target: int) -> list[list[str]]:
    """Consecutive runs (in flush order) of at least 2 files, each under ``target`` bytes
    in all; files of ``target`` bytes or more stay alone."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for _, name, nbytes in sources:
        if nbytes >= target:
            if len(current) >= 2:
                groups.append(current)
            current, size = [], 0
            continue
        if current and size + nbytes > target:
            if len(current) >= 2:
                groups.append(current)
            current, size = [], 0
        current.append(name)
        size += nbytes
    if len(current) >= 2:
        groups.append(current)
    return groups


def _unreadable(partition: Partition, name: str, exc: Exception) -> CompactionOutcome:
    return CompactionOutcome(
        partition, "skipped",
        message=f"{name} cannot be read ({exc}); nothing in this partition was changed. "
                f"Move the file out of {partition.relative} (or restore it) and compact "
                "again.")


def _footer_rows(store: LogStore, path: str) -> int:
    if store.local:
        return int(pq.read_metadata(path).num_rows)
    with store.fs.open(path, "rb") as fh:
        return int(pq.read_metadata(fh).num_rows)


def _merge(store: LogStore, partition: Partition, names: list[str], folder: _Folder,
           now: datetime, dry_run: bool) -> CompactionOutcome:
    base = store.path(partition.relative)
    before = sum(folder.sizes[n] for n in names)
    newest = max(p.flushed_at for p in (parse_part_name(n) for n in names) if p is not None)
    file_id = hashlib.sha256("\0".join(sorted(names)).encode()).hexdigest()[:32]
    target = part_name(newest, file_id)
    if target in folder.names:
        return CompactionOutcome(
            partition, "skipped", tuple(names), target,
            message=f"{target} exists already next to its sources without a manifest; "
                    "move one of them out of the partition (they hold the same rows).")
    delete_after = now + SOURCE_GRACE
    waiting = (f"the {len(names)} source files stay, hidden, until {_when(delete_after)}; a "
               "compaction or retention run after that deletes them")
    if dry_run:  # footers only
        rows = 0
        for name in names:
            try:
                rows += _footer_rows(store, f"{base}/{name}")
            except (OSError, pa.ArrowException) as exc:
                return _unreadable(partition, name, exc)
        return CompactionOutcome(partition, "would_compact", tuple(names), target, rows,
                                 before, message=waiting, delete_after=delete_after)
    tables: list[pa.Table] = []
    held: list[str] = []
    for name in names:
        try:
            table = _read(store, f"{base}/{name}")
        except (OSError, pa.ArrowException) as exc:
            return _unreadable(partition, name, exc)
        parsed = parse_part_name(name)
        assert parsed is not None
        held.append(parsed.file_id)
        meta = table.schema.metadata or {}
        if COMPACTED_FROM_KEY in meta:
            with contextlib.suppress(ValueError):
                held.extend(str(i) for i in json.loads(meta[COMPACTED_FROM_KEY]))
        tables.append(table.replace_schema_metadata(None))
    try:
        merged = pa.concat_tables(tables, promote_options="default")
        if "ts" not in merged.column_names:
            raise ValueError("the files have no ts column")
        merged = merged.sort_by([("ts", "ascending")])  # a stable sort
    except (pa.ArrowException, ValueError) as exc:
        return CompactionOutcome(
            partition, "skipped", tuple(names),
            message=f"the files do not merge ({exc}); nothing in this partition was changed.")
    rows = merged.num_rows
    merged = merged.replace_schema_metadata(
        {COMPACTED_FROM_KEY: json.dumps(sorted(set(held))).encode()})
    data = parquet_bytes(merged).to_pybytes()
    manifest = f"{base}/{manifest_name(file_id)}"
    _put(store, manifest, CompactionManifest(target, tuple(names), now).to_json())
    try:
        store.put_file(base, target, data)  # readers never see it half-written
    except OSError:  # the merged file did not appear: the manifest hides nothing, drop it
        with contextlib.suppress(OSError):
            _remove(store, manifest)
        raise
    # The sources stay: a reader may have listed them just before the merged file appeared.
    # From now on list_files leaves them out; a run after SOURCE_GRACE deletes them.
    folder.names.update((target, manifest_name(file_id)))
    return CompactionOutcome(partition, "compacted", tuple(names), target, rows, before,
                             len(data), message=waiting, delete_after=delete_after)


def _check_settled(settled_before: datetime, now: datetime) -> None:
    if settled_before > now - COMPACT_MIN_AGE:
        raise ValueError(
            f"Refusing to merge files flushed before {settled_before.isoformat()}: that is "
            f"less than {COMPACT_MIN_AGE} before now ({now.isoformat()}), so an incremental "
            "reader (the rollout controller) may have read some of them and would count "
            "their rows again from the merged file. Pass settled_before=now - "
            "COMPACT_MIN_AGE or earlier (to compact recent test files, pass a later `now`).")


def compact_partition(store: LogStore, partition: Partition, *, settled_before: datetime,
                      now: datetime | None = None, dry_run: bool = False,
                      target_bytes: int = COMPACT_TARGET_BYTES) -> list[CompactionOutcome]:
    """Settle the manifests of ``partition`` (delete the sources of merges past their
    :data:`SOURCE_GRACE`, drop those of merges that stopped), then merge its files flushed
    before ``settled_before`` (groups of at least 2, up to ``target_bytes`` each), leaving
    their sources, hidden, for the grace (see the module docstring). ``settled_before`` must
    be at least :data:`COMPACT_MIN_AGE` before ``now`` (:class:`ValueError` otherwise).
    Nothing is changed with ``dry_run``."""
    now = now or datetime.now(UTC)
    _check_settled(settled_before, now)
    folder, out, reserved = _prepare(store, partition, now, dry_run)
    if folder is None:
        return out
    candidates: list[tuple[datetime, str, int]] = []
    for name, size in folder.sizes.items():
        parsed = parse_part_name(name)
        if parsed is not None and parsed.flushed_at < settled_before and name not in reserved:
            candidates.append((parsed.flushed_at, name, size))
    candidates.sort()
    for group in _groups(candidates, target_bytes):
        try:
            out.append(_merge(store, partition, group, folder, now, dry_run))
        except OSError as exc:
            raise ArtifactError(
                f"Compaction of {partition.relative!r} failed: {exc}",
                fix="Check that the artifact store is writable and run `mlops retention "
                    "compact` again: readers see every row once meanwhile, and the next run "
                    "drops the interrupted merge.", path=store.path(partition.relative)
            ) from exc
    return out


def compact_log(store: LogStore, model: str | None = None, *,
                kinds: Iterable[Kind] = (PREDICTIONS, FEEDBACK),
                settled_before: datetime, now: datetime | None = None,
                dry_run: bool = False, target_bytes: int = COMPACT_TARGET_BYTES
                ) -> list[CompactionOutcome]:
    """:func:`compact_partition` over every partition of ``kinds`` (of one model or all)."""
    now = now or datetime.now(UTC)
    _check_settled(settled_before, now)
    out: list[CompactionOutcome] = []
    for kind in kinds:
        for partition in list_partitions(store, kind, model):
            out += compact_partition(store, partition, settled_before=settled_before, now=now,
                                     dry_run=dry_run, target_bytes=target_bytes)
    return out


def clean_compacted(store: LogStore, model: str | None = None, *,
                    kinds: Iterable[Kind] = (PREDICTIONS, FEEDBACK),
                    now: datetime | None = None, dry_run: bool = False,
                    exclude: Collection[str] = ()) -> list[CompactionOutcome]:
    """Delete the sources of merges past their :data:`SOURCE_GRACE` (then their manifests)
    and drop the manifests of merges that stopped, in every partition of ``kinds`` (of one
    model or all) whose relative path is not in ``exclude``; merges nothing (a retention
    run calls this). Only partitions holding a manifest have outcomes: ``waiting`` for
    sources still in their grace, ``skipped`` for a manifest that cannot be read or a merge
    in progress."""
    now = now or datetime.now(UTC)
    out: list[CompactionOutcome] = []
    for kind in kinds:
        for partition in list_partitions(store, kind, model):
            if partition.relative not in exclude:
                out += _prepare(store, partition, now, dry_run)[1]
    return out
