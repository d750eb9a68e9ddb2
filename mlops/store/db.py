"""The metadata store: one SQLAlchemy engine per database URL, migrations on start.

Reads use ordinary transactions. Writes go through :meth:`MetadataStore.write`, which
serialises writers (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL) so that version numbers and the audit chain never race, and commits the row
and its audit event together or not at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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

from mlops.errors import ConcurrencyError, StoreError

__all__ = ["WRITE_LOCK_KEY", "MetadataStore"]

#: PostgreSQL advisory lock key that serialises metadata writers (ascii "mlopsreg").
WRITE_LOCK_KEY = 0x6D6C6F7073726567 & 0x7FFFFFFFFFFFFFFF

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def _make_engine(url: str) -> Engine:
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

        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except (ImportError, ArgumentError) as exc:
        raise StoreError(
            f"Cannot create a database engine for {parsed.render_as_string(hide_password=True)}: {exc}.",
            fix="Install the driver, e.g. pip install 'mlops[postgres]' for PostgreSQL.",
        ) from exc


class MetadataStore:
    """Engine, sessions and schema for one database URL.

    >>> store = MetadataStore("sqlite:///:memory:")  # doctest: +SKIP
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        with _lock:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = _make_engine(url)
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
        from mlops.store.migrate import upgrade_to_head

        try:
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
        """A session for reading; nothing it changes is committed."""
        session = self._sessions()
        try:
            yield session
        finally:
            session.rollback()
            session.close()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A serialised write transaction, committed on success, rolled back on error."""
        attempts = 0
        while True:
            session = self._write_sessions()
            try:
                session.connection()  # BEGIN (IMMEDIATE on SQLite) now
                if self.dialect == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                break
            except OperationalError as exc:
                session.close()
                attempts += 1
                if attempts >= 5:
                    raise ConcurrencyError(
                        f"The metadata database stayed locked: {exc.orig}.",
                        fix="Retry; if it persists, look for a process holding a long write.",
                    ) from exc
                time.sleep(0.05 * attempts)
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
            raise StoreError(f"Metadata write failed: {exc.orig}.",
                             fix="Retry; the store was left unchanged.") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close pooled connections (call after fork, or in tests)."""
        self.engine.dispose()
