"""Incremental joins for rollout analysis: rows waiting for their other half.

A prediction waits for its label (feedback arrives late, sometimes before the prediction's
file is flushed), and in shadow mode a stable answer waits for the shadow answer to the
same request. :class:`KeyIndex` keeps the waiting rows keyed by a 64-bit hash of
``(request_id, row)`` (:func:`row_keys`, computed by DuckDB) in sorted runs (a small log-structured merge: new
rows form a run, runs of similar size merge), so each tick costs O(new rows x log) and
never re-reads history.

**The bound.** A waiting row is matched only while it is at most ``window`` seconds old
(by its ``ts``): a label that arrives later than ``window`` after its prediction is not
counted, and a label whose prediction never arrives is dropped after ``window`` seconds
(both counted in :attr:`KeyIndex.dropped`). At most ``capacity`` rows wait per index;
beyond that the oldest go first (down to 90% of it), which shortens the window under very
high traffic. A waiting prediction takes about 45 bytes, so the default capacity of 10
million rows is about 450 MB at most (a gateway at 100 requests/s fills a day's window
with 8.6 million).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

__all__ = ["DEFAULT_CAPACITY", "Columns", "Dtypes", "KeyIndex", "row_keys", "text_hashes"]

DEFAULT_CAPACITY = 10_000_000
Columns = dict[str, npt.NDArray[Any]]
Dtypes = dict[str, np.dtype[Any]]
_U64 = np.uint64
_local = threading.local()


def _hash(columns: dict[str, pa.Array | pa.ChunkedArray], expression: str
          ) -> npt.NDArray[np.uint64]:
    """DuckDB's 64-bit ``hash`` of each row (about 20 times faster than hashing Python
    strings; the keys live in this process only, so its exact function does not matter)."""
    connection = getattr(_local, "duckdb", None)
    if connection is None:
        connection = _local.duckdb = duckdb.connect()
    found = connection.from_arrow(pa.table(columns)).project(f"hash({expression}) AS k")
    return np.asarray(found.fetchnumpy()["k"], dtype=_U64)


def text_hashes(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """64-bit hashes of strings (null as the text ``None``, as pandas' ``astype(str)``)."""
    return _hash({"v": values}, "coalesce(v, 'None')")


def row_keys(request_ids: pa.Array | pa.ChunkedArray, rows: pa.Array | pa.ChunkedArray
             ) -> npt.NDArray[np.uint64]:
    """The join key of each (request_id, row): a 64-bit hash (the chance that any label
    meets a wrong row is about 10^-5 with 10 million rows waiting and as many labels)."""
    return _hash({"r": request_ids, "i": rows}, "r, i")


@dataclass
class _Run:
    keys: npt.NDArray[np.uint64]  # sorted
    ts: npt.NDArray[np.int64]  # microseconds
    cols: Columns
    alive: npt.NDArray[np.bool_]
    newest: int  # the largest ts

    @property
    def size(self) -> int:
        return int(self.keys.size)

    @property
    def live(self) -> int:
        return int(self.alive.sum())


def _run(keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64], cols: Columns) -> _Run:
    order = np.argsort(keys, kind="stable")
    return _Run(keys[order], ts[order], {k: v[order] for k, v in cols.items()},
                np.ones(keys.size, dtype=bool), int(ts.max()) if ts.size else 0)


class KeyIndex:
    """Rows waiting for their other half, findable by key (see the module docstring)."""

    def __init__(self, columns: Dtypes, *, capacity: int = DEFAULT_CAPACITY
                 ) -> None:
        self.columns = dict(columns)
        self.capacity = capacity
        self.dropped = 0  # rows that left unmatched: too old, or over capacity
        self._runs: list[_Run] = []
        self._live = 0
        self._min_ts: int | None = None  # rows older than this are as good as gone

    def __len__(self) -> int:
        return self._live

    def add(self, keys: npt.NDArray[np.uint64], ts: npt.NDArray[np.int64], cols: Columns
            ) -> None:
        """Add rows (``cols`` holds one array per column, aligned with ``keys``)."""
        if not keys.size:
            return
        self._runs.append(_run(np.asarray(keys, dtype=_U64), np.asarray(ts, dtype=np.int64),
                               {k: np.asarray(cols[k], dtype=d)
                                for k, d in self.columns.items()}))
        self._live += int(keys.size)
        while len(self._runs) >= 2 and self._runs[-2].size <= 2 * self._runs[-1].size:
            newer = self._runs.pop()
            self._runs[-1] = self._merge(self._runs[-1], newer)
        if self._live > self.capacity:  # the oldest rows go, down to 90% of the capacity
            ts = np.concatenate([r.ts[r.alive] for r in self._runs])
            excess = ts.size - int(self.capacity * 0.9)
            self.expire(int(np.partition(ts, excess)[excess]), compact=True)

    def take(self, keys: npt.NDArray[np.uint64], min_ts: int
             ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], Columns]:
        """Find and remove the rows of ``keys`` no older than ``min_ts`` (microseconds).
        Returns (found mask over ``keys``, their ts, their columns), aligned with
        ``keys[found]``."""
        found = np.zeros(keys.size, dtype=bool)
        ts = np.zeros(keys.size, dtype=np.int64)
        cols = {k: np.zeros(keys.size, dtype=d) for k, d in self.columns.items()}
        if not keys.size or not self._live:
            return found, ts[:0], {k: v[:0] for k, v in cols.items()}
        for run in reversed(self._runs):
            todo = np.flatnonzero(~found)
            if not todo.size:
                break
            if not run.size:
                continue
            at = np.minimum(np.searchsorted(run.keys, keys[todo]), run.size - 1)
            hit = (run.keys[at] == keys[todo]) & run.alive[at] & (run.ts[at] >= min_ts)
            if not hit.any():
                continue
            where, rows = todo[hit], at[hit]
            rows, first = np.unique(rows, return_index=True)  # one row answers one key
            where = where[first]
            found[where] = True
            ts[where] = run.ts[rows]
            for k in cols:
                cols[k][where] = run.cols[k][rows]
            run.alive[rows] = False
            self._live -= int(rows.size)
        return found, ts[found], {k: v[found] for k, v in cols.items()}

    def expire(self, min_ts: int, *, compact: bool = False) -> None:
        """Forget rows older than ``min_ts``: whole runs at once, the rest when runs merge
        or with ``compact`` (callers pass the same bound to :meth:`take` meanwhile)."""
        self._min_ts = min_ts if self._min_ts is None else max(self._min_ts, min_ts)
        kept = []
        for run in self._runs:
            if run.newest < self._min_ts:
                self._live -= run.live
                self.dropped += run.live
            elif compact:
                keep = run.alive & (run.ts >= self._min_ts)
                gone = run.live - int(keep.sum())
                self._live -= gone
                self.dropped += gone
                kept.append(_Run(run.keys[keep], run.ts[keep],
                                 {k: v[keep] for k, v in run.cols.items()},
                                 np.ones(int(keep.sum()), dtype=bool), run.newest))
            else:
                kept.append(run)
        self._runs = kept

    def _merge(self, older: _Run, newer: _Run) -> _Run:
        cut = self._min_ts
        keep_o = older.alive if cut is None else older.alive & (older.ts >= cut)
        keep_n = newer.alive if cut is None else newer.alive & (newer.ts >= cut)
        expired = int(older.alive.sum() - keep_o.sum() + newer.alive.sum() - keep_n.sum())
        self._live -= expired
        self.dropped += expired
        return _run(np.concatenate([older.keys[keep_o], newer.keys[keep_n]]),
                    np.concatenate([older.ts[keep_o], newer.ts[keep_n]]),
                    {k: np.concatenate([older.cols[k][keep_o], newer.cols[k][keep_n]])
                     for k in self.columns})
