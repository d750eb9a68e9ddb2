"""The metadata store: one SQLAlchemy engine per database URL, migrations on start.

Reads use ordinary transactions. Writes go through :meth:`MetadataStore.write`, which
serialises writers (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL) so that version numbers and the audit chain never race, and commits the row
and its audit event together or not at all. A write that loses to a serialization failure
or a deadlock raises :class:`~mlops.errors.ConcurrencyError`; :meth:`MetadataStore.run`
runs such a write again, a bounded number of times (tenacity): the writes nobody watches
go through it (a controller's rollout decisions, the evaluator's snapshots), while a
person's write that loses a race is refused with the advice to retry. A lost lease is
never retried. Migrations run under the same advisory lock, so processes that start at
once upgrade the schema once.

On PostgreSQL each process keeps one pool per URL (``db_pool_size`` connections, up to
``db_max_overflow`` more under load), plus the dedicated connections of leases and change
feeds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from mlops.errors import ConcurrencyError, LeaseLost, StoreError

__all__ = ["RETRYABLE_SQLSTATES", "WRITE_LOCK_KEY", "MetadataStore", "retryable"]

T = TypeVar("T")
#: PostgreSQL errors a transaction may simply run again after
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

#: PostgreSQL advisory lock key that serialises metadata writers (ascii "mlopsreg").
WRITE_LOCK_KEY = 0x6D6C6F7073726567 & 0x7FFFFFFFFFFFFFFF

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def _lost_a_race(exc: BaseException) -> bool:
    """A write another try may pass; not a lost lease (the next try would be fenced off)."""
    return isinstance(exc, ConcurrencyError) and not isinstance(exc, LeaseLost)


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    return False


def _refuse_nul(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                executemany: bool) -> None:
    """Both stores refuse text with a NUL character, before it reaches the database:
    PostgreSQL cannot store one (and SQLite would, so the two would disagree)."""
    if _holds_nul(parameters):
        raise StoreError("A value sent to the metadata store contains a NUL character (\\x00).",
                         fix="Remove it from the names and text sent; nothing was written.")


def retryable(exc: DBAPIError) -> bool:
    """A serialization failure (40001) or deadlock (40P01), which another try may pass."""
    return getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES


def _make_engine(url: str, pool_size: int, max_overflow: int) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"MLOPS_DATABASE_URL {url!r} is not a database URL.",
            fix="Use sqlite:///path/mlops.db or postgresql+psycopg://user@host/db.",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"Cannot create the folder for {database}: {exc}.",
                                 fix="Point MLOPS_HOME (or MLOPS_DATABASE_URL) at a writable "
                                     "folder.") from exc
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = "IMMEDIATE" if conn.get_execution_options().get("mlops_write") else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

        event.listen(engine, "before_cursor_execute", _refuse_nul)
        return engine
    try:
        engine = create_engine(url, pool_pre_ping=True, pool_size=pool_size,
                               max_overflow=max_overflow, pool_timeout=30, pool_recycle=1800)
    except (ImportError, ArgumentError) as exc:
        raise StoreError(
            f"Cannot create a database engine for {parsed.render_as_string(hide_password=True)}: {exc}.",
            fix="Install the driver, e.g. pip install 'mlops[postgres]' for PostgreSQL.",
        ) from exc
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


class MetadataStore:
    """Engine, sessions and schema for one database URL.

    >>> store = MetadataStore("sqlite:///:memory:")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int = 5,
                 max_overflow: int = 10) -> None:
        self.url = url
        with _lock:
            engine = _engines.get(url)
            if engine is None:  # one engine (one pool) per URL and process
                engine = _engines[url] = _make_engine(url, pool_size, max_overflow)
        self.engine = engine
        self.dialect = engine.dialect.name
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self._write_bind = engine.execution_options(mlops_write=True)
        self._write_sessions = sessionmaker(bind=self._write_bind, expire_on_commit=False)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (once per process and URL)."""
        if self.url in _migrated:
            return
        from mlops.store.migrate import is_current, upgrade_to_head

        try:
            with self.engine.connect() as conn:
                current = is_current(conn)
            if current:
                _migrated.add(self.url)
                return
            with self._write_bind.connect() as conn, conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                upgrade_to_head(conn)
        except DatabaseError as exc:
            raise StoreError(
                f"Cannot open the metadata database {make_url(self.url).render_as_string(hide_password=True)}: {exc.orig}.",
                fix="Check MLOPS_DATABASE_URL and that the database server is running.",
            ) from exc
        _migrated.add(self.url)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; nothing it changes is committed. A value the database
        cannot take raises :class:`StoreError`."""
        session = self._sessions()
        try:
            yield session
        except DataError as exc:
            raise StoreError(f"The database refused a value it was asked about: {exc.orig}.",
                             fix="Check the names and filters sent (lengths, ranges).",
                             ) from exc
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A serialised write transaction, committed on success, rolled back on error. A
        serialization failure or deadlock raises :class:`ConcurrencyError` (nothing was
        written): :meth:`run` retries those."""
        session = self._begin_write()
        try:
            yield session
            session.commit()
        except (IntegrityError, DataError) as exc:
            session.rollback()
            raise StoreError(f"The database refused the change: {exc.orig}.",
                             fix="Check the values (lengths, ranges); the store was left "
                                 "unchanged.") from exc
        except DBAPIError as exc:
            session.rollback()
            if retryable(exc):
                raise ConcurrencyError(f"The write lost a race with another one: {exc.orig}.",
                                       fix="Retry it; nothing was written.") from exc
            raise StoreError(f"Metadata write failed: {exc.orig}.",
                             fix="Retry; the store was left unchanged.") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _begin_write(self) -> Session:
        """BEGIN (IMMEDIATE on SQLite; then the writers' advisory lock on PostgreSQL), retried
        with back-off while the database stays locked (five attempts)."""
        def begin() -> Session:
            session = self._write_sessions()
            try:
                session.connection()
                if self.dialect == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                    {"k": WRITE_LOCK_KEY})
            except BaseException:
                session.close()
                raise
            return session

        try:
            for attempt in Retrying(stop=stop_after_attempt(5), reraise=True,
                                    wait=wait_exponential(multiplier=0.05, max=1.0),
                                    retry=retry_if_exception_type(OperationalError)):
                with attempt:
                    return begin()
        except OperationalError as exc:
            raise ConcurrencyError(f"The metadata database stayed locked: {exc.orig}.",
                                   fix="Retry; if it persists, look for a process holding a "
                                       "long write.") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def run(self, work: Callable[[Session], T], *, attempts: int = 4) -> T:
        """``work(session)`` in a write transaction, run again (at most ``attempts`` times,
        with exponential back-off) when it fails with a serialization failure or a
        deadlock; ``work`` must be safe to repeat (it is: nothing of a failed try stays)."""
        for attempt in Retrying(stop=stop_after_attempt(attempts), reraise=True,
                                wait=wait_exponential(multiplier=0.05, max=2.0),
                                retry=retry_if_exception(_lost_a_race)):
            with attempt, self.write() as session:
                return work(session)
        raise AssertionError("unreachable")  # pragma: no cover

    def dispose(self) -> None:
        """Close pooled connections (call after fork, or in tests)."""
        self.engine.dispose()
