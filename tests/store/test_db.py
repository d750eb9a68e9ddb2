"""The metadata store under several processes on PostgreSQL: migrations that are safe when
processes start at once (an advisory lock around Alembic), a real deadlock retried by
:meth:`MetadataStore.run`, and the connection pool's limits from the settings."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mlops.config import Settings
from mlops.errors import ConcurrencyError
from mlops.store.context import Context
from mlops.store.db import MetadataStore
from mlops.store.schema import LeaseRow
from tests.conftest import PG_URL, pg_database

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(PG_URL is None, reason="MLOPS_TEST_POSTGRES_URL not set "
                                                       "(.ci/run sets it)")


@pytest.fixture
def database() -> Iterator[str]:
    yield from pg_database(migrated=False)


def test_processes_starting_at_once_migrate_once(database: str) -> None:
    code = ("import sys; from mlops.store.db import MetadataStore; "
            "MetadataStore(sys.argv[1]); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, database], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    with psycopg.connect(make_url(database).set(drivername="postgresql")
                         .render_as_string(hide_password=False)) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert len(versions) == 1


def test_a_deadlock_is_retried_and_the_write_lands_once(database: str) -> None:
    """A real deadlock between this store's write and another session: PostgreSQL aborts
    the write (40P01, it checks first), :meth:`run` runs it again, and it lands once."""
    store = MetadataStore(database)
    now = datetime.now(UTC)
    with store.write() as s:
        s.add_all([LeaseRow(name="r1", holder="-", expires_at=now),
                   LeaseRow(name="r2", holder="-", expires_at=now)])
    other = psycopg.connect(make_url(database).set(drivername="postgresql")
                            .render_as_string(hide_password=False))
    other.execute("SET deadlock_timeout = '5s'")
    holds_r2, wants_r1 = threading.Event(), threading.Event()
    calls: list[int] = []

    def rival() -> None:
        other.execute("UPDATE leases SET holder = 'rival' WHERE name = 'r2'")
        holds_r2.set()
        wants_r1.wait(10)
        other.execute("UPDATE leases SET holder = 'rival' WHERE name = 'r1'")  # waits
        other.commit()

    def work(s: Session) -> str:
        calls.append(1)
        s.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
        s.execute(text("UPDATE leases SET holder = 'store' WHERE name = 'r1'"))
        if len(calls) == 1:
            thread.start()
            holds_r2.wait(10)
            wants_r1.set()
        s.execute(text("UPDATE leases SET holder = 'store' WHERE name = 'r2'"))
        return "done"

    thread = threading.Thread(target=rival)
    try:
        assert store.run(work) == "done"
        thread.join(10)
    finally:
        other.close()
    assert len(calls) == 2  # the first try was the deadlock's victim
    with store.read() as s:
        holders = dict(s.execute(text("SELECT name, holder FROM leases")).all())
    assert holders == {"r1": "store", "r2": "store"}  # the rival's, then this write's


def test_a_write_that_keeps_losing_gives_up_after_its_attempts(database: str) -> None:
    store = MetadataStore(database)
    calls: list[int] = []

    def work(s: Session) -> None:
        calls.append(1)
        s.execute(text("DO $$ BEGIN RAISE EXCEPTION 'race' USING ERRCODE = '40001'; "
                       "END $$"))

    with pytest.raises(ConcurrencyError) as err:
        store.run(work, attempts=3)
    assert len(calls) == 3 and "Retry" in (err.value.fix or "")


def test_the_pool_limits_come_from_the_settings(database: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / ".mlops", database_url=database, db_pool_size=3,
                        db_max_overflow=2)
    store = Context.open(settings).store
    assert store.engine.pool.size() == 3  # type: ignore[attr-defined]
    assert store.engine.pool._max_overflow == 2  # type: ignore[attr-defined]
