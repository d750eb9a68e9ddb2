"""Change notification: learn that a change counter (:mod:`mlops.store.counters`) moved.

- **PostgreSQL**: the feed ``LISTEN``-s on the counter's channel on a dedicated
  connection; a writer's bump sends ``NOTIFY`` at commit. :meth:`ChangeFeed.changed`
  drains the connection's socket buffer (no query reaches the database) and
  :meth:`ChangeFeed.wait` blocks on it, so a listener switches as soon as the change
  commits. When the connection breaks, the feed reports a change (one may have been
  missed) and listens again on a new connection.
- **SQLite** (one machine): the feed reads the counter, one indexed row, at most every
  ``poll_seconds``.

The first call of :meth:`ChangeFeed.changed` answers True: the listener has seen nothing
yet. A feed is used from one thread at a time.

>>> feed = ChangeFeed(store, ROUTING)            # doctest: +SKIP
>>> if feed.changed(): reload_routes()           # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from enum import StrEnum
from typing import Any

from mlops.errors import ConfigError, StoreError
from mlops.store.counters import channel, read_counter
from mlops.store.db import MetadataStore
from mlops.store.dedicated import dedicated_connection, supports_dedicated

__all__ = ["ChangeFeed", "FeedKind"]

log = logging.getLogger("mlops.store")


class FeedKind(StrEnum):
    LISTEN = "listen"  # PostgreSQL LISTEN/NOTIFY
    POLL = "poll"  # the counter's value, read every poll_seconds


class ChangeFeed:
    """Tells a listener that counter ``name`` may have moved since it last asked."""

    def __init__(self, store: MetadataStore, name: str, *, poll_seconds: float = 0.25,
                 listen: bool | None = None) -> None:
        self.store = store
        self.name = name
        self.poll_seconds = poll_seconds
        if listen and not supports_dedicated(store):
            raise ConfigError("Change notification by LISTEN needs PostgreSQL (through "
                              "psycopg), and this store is not.",
                              fix="Set MLOPS_CHANGE_FEED to auto or poll.")
        use_listen = supports_dedicated(store) if listen is None else listen
        self.kind = FeedKind.LISTEN if use_listen else FeedKind.POLL
        self._conn: Any = None
        self._seen: int | None = None  # the counter value last reported (poll)
        self._fresh = True  # nothing reported yet, or the listen connection was replaced

    # ------------------------------------------------------------------ public
    def changed(self) -> bool:
        """Has the counter moved since the last True? Never blocks on a change."""
        return self._listen(0.0) if self.kind is FeedKind.LISTEN else self._poll()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a change; True as soon as there is one."""
        if self.kind is FeedKind.LISTEN:
            return self._listen(timeout)
        deadline = time.monotonic() + timeout
        while True:
            if self._poll():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(self.poll_seconds, left))

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listen connection (None when polling or not
        connected)."""
        conn = self._conn
        return None if conn is None or conn.closed else int(conn.info.backend_pid)

    def counter(self) -> int:
        """The counter's value now (one read)."""
        with self.store.read() as s:
            return read_counter(s, self.name)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # already broken: nothing to release
                log.debug("closing the %s listen connection failed", self.name, exc_info=True)

    # ------------------------------------------------------------------ backends
    def _poll(self) -> bool:
        value = self.counter()
        if value == self._seen:
            return False
        self._seen = value
        return True

    def _connect(self) -> None:
        """A new listen connection; what it may have missed counts as a change."""
        self._conn = dedicated_connection(self.store, f"{self.name} listener")
        self._conn.execute(f"LISTEN {channel(self.name)}")
        self._fresh = True

    def _listen(self, timeout: float) -> bool:
        import psycopg

        errors = (psycopg.Error, OSError, StoreError)
        try:
            if self._conn is None or self._conn.closed:
                self._connect()
            if self._fresh:
                self._fresh = False
                for _ in self._conn.notifies(timeout=0):  # the caller reads after this
                    pass
                return True
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # coalesce a burst of notifications into one change
                for _ in self._conn.notifies(timeout=0):
                    pass
            return got
        except errors as exc:
            log.warning("the %s listen connection failed (%s); listening again", self.name, exc)
            self.close()
            try:
                self._connect()
                self._fresh = False  # reported now: the caller reads after this
            except errors:
                self.close()
                self._fresh = True
                if timeout:
                    time.sleep(min(timeout, 1.0))
            return True
