"""Leader election for the background loops (rollout controller, monitoring evaluator).

Each loop takes its own named :class:`Lease`, so with several ``mlops serve`` processes
exactly one of them acts:

- **PostgreSQL**: a session advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection (:mod:`mlops.store.dedicated`). The server releases it when that connection
  ends, so a crashed leader is replaced as soon as its session goes (at most about 11 s
  after its host vanished, through the connection's TCP keepalives); nothing expires while
  the leader is alive, however long a pass takes.
- **SQLite**: a lease row (holder, ``expires_at``) renewed before it expires; a crashed
  holder is replaced within ``seconds``.

Either way a clean shutdown hands the lease over at once (:meth:`Lease.release`).

**Heartbeat.** :meth:`Lease.heartbeat` renews the lease from a background thread every
``seconds / 3`` while a pass runs (:func:`leader_loop` wraps every pass in it), so a long
pass does not outlive its lease. A renewal that finds the lease gone (expired and taken,
or the advisory lock's connection lost) marks it lost.

**Fencing.** A pass calls :meth:`Lease.check` inside each of its write transactions: it
raises :class:`LeaseLost` unless this process still holds the lease, checked in the same
transaction as the write (the row's holder and expiry on SQLite; the advisory lock in
``pg_locks`` on PostgreSQL). Metadata writes are serialised (:meth:`MetadataStore.write`),
so a pass that lost its lease writes nothing after a new leader's first write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.orm import Session

from mlops.errors import LeaseLost, StoreError
from mlops.store.db import WRITE_LOCK_KEY, MetadataStore
from mlops.store.dedicated import dedicated_connection, supports_dedicated
from mlops.store.schema import LeaseRow

__all__ = ["Lease", "LeaseKind", "advisory_key", "current_leader", "leader_loop"]

log = logging.getLogger("mlops.store")
T = TypeVar("T")


class LeaseKind(StrEnum):
    ADVISORY = "advisory"  # PostgreSQL session advisory lock
    ROW = "row"  # lease row with an expiry (SQLite)


def advisory_key(name: str) -> int:
    """The 63-bit advisory lock key of lease ``name``."""
    key = int.from_bytes(hashlib.sha256(f"mlops lease {name}".encode()).digest()[:8], "big")
    key &= 0x7FFFFFFFFFFFFFFF
    return key if key != WRITE_LOCK_KEY else key ^ 1


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Lease:
    """A named lease in the metadata store (see the module docstring)."""

    def __init__(self, store: MetadataStore, name: str, *, seconds: float = 15.0,
                 holder: str | None = None, kind: LeaseKind | None = None) -> None:
        self.store = store
        self.name = name
        self.seconds = seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.kind = kind or (LeaseKind.ADVISORY if supports_dedicated(store) else LeaseKind.ROW)
        #: held as far as this process knows (set by acquire, cleared by a failed renewal)
        self.held = False
        #: fresh acquisitions so far: a pass can tell whether it still runs under its own
        self.epoch = 0
        self._lock = threading.RLock()
        self._conn: Any = None  # advisory: the connection holding the session lock
        self._pid: int | None = None

    # ------------------------------------------------------------------ public
    @property
    def backend_pid(self) -> int | None:
        """The server process of the connection holding the advisory lock (None for a
        lease row, or while not connected)."""
        return self._pid

    def acquire(self) -> bool:
        """Take or renew the lease; False when another live process holds it."""
        with self._lock:
            was = self.held
            ok = self._advisory_acquire() if self.kind is LeaseKind.ADVISORY \
                else self._row_acquire()
            if ok and not was:
                self.epoch += 1
            self.held = ok
            return ok

    def renew(self) -> bool:
        """Extend a lease this process holds (the heartbeat); False, and the lease counts
        as lost, when it is no longer ours."""
        with self._lock:
            if not self.held:
                return False
            try:
                ok = self._advisory_alive() if self.kind is LeaseKind.ADVISORY \
                    else self._row_renew()
            except StoreError:
                ok = False
            if not ok:
                self.held = False
                log.warning("lease %s of %s was lost", self.name, self.holder)
            return ok

    def check(self, session: Session) -> None:
        """Raise :class:`LeaseLost` unless this process holds the lease; call it inside the
        write transaction it protects."""
        ok = self.held and (self._advisory_check(session) if self.kind is LeaseKind.ADVISORY
                            else self._row_check(session))
        if not ok:
            raise LeaseLost(f"{self.holder} no longer holds the {self.name} lease; this pass "
                            "stops without writing.",
                            fix="Nothing to do: the process that holds the lease now carries "
                                "on. If this repeats, make passes shorter than the lease or "
                                "check the database's latency.", lease=self.name)

    def release(self) -> None:
        """Give the lease up (on shutdown) so that another process takes over at once."""
        with self._lock:
            self.held = False
            if self.kind is LeaseKind.ADVISORY:
                self._advisory_release()
                return
            with self.store.write() as s:
                row = s.get(LeaseRow, self.name)
                if row is not None and row.holder == self.holder:
                    s.delete(row)

    @contextlib.contextmanager
    def heartbeat(self, every: float | None = None) -> Iterator[None]:
        """Renew the lease every ``every`` seconds (default ``seconds / 3``) from a
        background thread while the block runs."""
        stop = threading.Event()
        period = every if every is not None else max(self.seconds / 3.0, 0.05)

        def beat() -> None:
            while not stop.wait(period):
                if self.held and not self.renew():
                    return  # lost: the pass finds out at its next write

        thread = threading.Thread(target=beat, name=f"lease-heartbeat-{self.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(period + 5.0)

    # ------------------------------------------------------------------ lease row
    def _row_acquire(self) -> bool:
        now = datetime.now(UTC)
        with self.store.write() as s:
            row = s.get(LeaseRow, self.name)
            if row is None:
                s.add(LeaseRow(name=self.name, holder=self.holder,
                               expires_at=now + timedelta(seconds=self.seconds)))
                return True
            if row.holder != self.holder and _utc(row.expires_at) > now:
                return False
            row.holder = self.holder
            row.expires_at = now + timedelta(seconds=self.seconds)
            return True

    def _row_renew(self) -> bool:
        now = datetime.now(UTC)
        with self.store.write() as s:
            row = s.get(LeaseRow, self.name)
            if row is None or row.holder != self.holder or _utc(row.expires_at) <= now:
                return False
            row.expires_at = now + timedelta(seconds=self.seconds)
            return True

    def _row_check(self, session: Session) -> bool:
        row = session.get(LeaseRow, self.name, populate_existing=True)
        return row is not None and row.holder == self.holder \
            and _utc(row.expires_at) > datetime.now(UTC)

    # ------------------------------------------------------------------ advisory lock
    def _advisory_acquire(self) -> bool:
        import psycopg

        if self._conn is not None and self.held:
            if self._advisory_alive():
                return True
            self.held = False
        try:
            if self._conn is None or self._conn.closed:
                # the holder in the session's application_name: who leads, for operators
                self._conn = dedicated_connection(self.store,
                                                  f"{self.name} lease {self.holder}")
                self._pid = int(self._conn.execute("SELECT pg_backend_pid()").fetchone()[0])
            got = self._conn.execute("SELECT pg_try_advisory_lock(%s)",
                                     [advisory_key(self.name)]).fetchone()
            return bool(got and got[0])
        except psycopg.Error as exc:
            log.warning("lease %s: the lock connection failed: %s", self.name, exc)
            self._drop()
            return False

    def _advisory_alive(self) -> bool:
        import psycopg

        try:
            self._conn.execute("SELECT 1")
            return True
        except (psycopg.Error, AttributeError):
            self._drop()
            return False

    def _advisory_check(self, session: Session) -> bool:
        key = advisory_key(self.name)
        found = session.execute(text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = :pid AND classid = :hi AND objid = :lo AND objsubid = 1"),
            {"pid": self._pid, "hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        return bool(found)

    def _advisory_release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(Exception):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", [advisory_key(self.name)])
        self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._pid = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()  # the server releases the session lock with the session


def current_leader(store: MetadataStore, name: str) -> str | None:
    """Who holds lease ``name`` now (``host:pid``), or None: on PostgreSQL the session that
    holds the advisory lock (its application_name names the holder), else the unexpired
    lease row."""
    with store.read() as s:
        if supports_dedicated(store):
            key = advisory_key(name)
            app = s.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"),
                {"k": key}).scalar()
            prefix = f"mlops {name} lease "
            return str(app)[len(prefix):] if app and str(app).startswith(prefix) else None
        row = s.get(LeaseRow, name)
        if row is None or _utc(row.expires_at) <= datetime.now(UTC):
            return None
        return row.holder


async def leader_loop(name: str, lease: Lease, interval: float,
                      run_once: Callable[[], list[T]], report: Callable[[T], None],
                      on_stop: Callable[[], None] | None = None) -> None:
    """Call ``run_once`` (which takes or renews ``lease`` and does nothing without it) every
    ``interval`` seconds in a worker thread, with the lease's heartbeat running, and
    ``report`` each result; a failed pass is logged and retried at the next one, a pass
    that lost the lease stops (:class:`LeaseLost`). On cancellation the lease is handed
    over at once."""
    def guarded() -> list[T]:
        with lease.heartbeat():
            return run_once()

    try:
        while True:
            try:
                for item in await asyncio.to_thread(guarded):
                    report(item)
            except LeaseLost as exc:
                log.warning("%s pass stopped: %s", name, exc.message)
            except Exception:  # keep going; the next pass retries
                log.exception("%s pass failed", name)
            await asyncio.sleep(interval)
    finally:
        try:
            await asyncio.to_thread(lease.release)
            if on_stop is not None:
                await asyncio.to_thread(on_stop)
        except Exception:  # shutting down: the lease expires on its own
            log.warning("could not release the %s lease", name, exc_info=True)
