"""Shared fixtures: a fresh store per test, small fitted models of every flavor.

The store every test gets by default follows ``MLOPS_TEST_STORE``: ``sqlite`` (the
default without ``MLOPS_TEST_POSTGRES_URL``) or ``postgresql`` (the default with it). On
PostgreSQL each test, and each module's shared fixtures, get an empty migrated database,
named through ``MLOPS_DATABASE_URL`` so that the code under test, the CLI and the servers
a test starts all reach it. Tests marked ``default_store`` (the seed README run verbatim,
the demo) keep the embedded default whatever the mode. The ``database_url`` fixture runs
its tests on both stores whenever PostgreSQL is reachable.

The empty databases come from a small pool per test process: cloned from a migrated
template when the pool is empty (``CREATE DATABASE ... TEMPLATE``, 0.05-0.4 s depending on
the disk), and emptied when a test is done with one (its other sessions terminated, every
row deleted and every sequence restarted, about 20 ms) so that the next test gets it as if
new. A database whose schema a test changed is dropped instead. Test databases commit
without waiting for the WAL flush (``synchronous_commit = off``, set on the database
only): what a commit makes visible is unchanged, only durability across a crash of the
PostgreSQL server itself, which no test causes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.registry.service import ModelRegistry

# MLflow's telemetry thread calls its servers from any process that imports mlflow (the
# test helpers do): off, as mlops itself turns it off (a DNS lookup in that thread crashed a
# worker once)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
PG_URL = os.environ.get("MLOPS_TEST_POSTGRES_URL")
STORE = os.environ.get("MLOPS_TEST_STORE") or ("postgresql" if PG_URL else "sqlite")
if STORE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"MLOPS_TEST_STORE={STORE!r}: use sqlite or postgresql.")
if STORE == "postgresql" and PG_URL is None:
    raise pytest.UsageError("MLOPS_TEST_STORE=postgresql needs MLOPS_TEST_POSTGRES_URL "
                            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test).")

#: empties a migrated database in one statement: rows, then sequences (the caller's
#: session skips foreign-key triggers, so the order of the tables does not matter)
_EMPTY = """DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT tablename FROM pg_tables
           WHERE schemaname = 'public' AND tablename <> 'alembic_version' LOOP
    EXECUTE format('DELETE FROM public.%I', r.tablename);
  END LOOP;
  PERFORM setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s
    JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public';
END $$"""
#: what a reusable database looks like (its columns and Alembic revision), and whether
#: anything was written to it (a row in a table other than alembic_version, a sequence
#: used)
_SHAPE = """SELECT
  (SELECT md5(string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::text, ','
                         ORDER BY c.relname, a.attnum))
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0
       AND NOT a.attisdropped)
  || ' ' || (SELECT coalesce(string_agg(version_num, ','), '') FROM alembic_version)"""
_USED_SEQUENCES = ("EXISTS (SELECT 1 FROM pg_sequences "
                   "WHERE schemaname = 'public' AND last_value IS NOT NULL)")


def _admin_url(database: str = "postgres") -> str:
    """A plain psycopg URL (no SQLAlchemy driver suffix) for ``database``."""
    from sqlalchemy.engine import make_url

    assert PG_URL is not None
    return (make_url(PG_URL).set(drivername="postgresql", database=database)
            .render_as_string(hide_password=False))


def _database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    assert PG_URL is not None
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def _forget(url: str) -> None:
    """Close this process's pool for ``url`` (a template or a database being released)."""
    from mlops.store import db

    engine = db._engines.pop(url, None)
    if engine is not None:
        engine.dispose()
    db._migrated.discard(url)


class _Databases:
    """This test process's template and pool of empty migrated databases."""

    def __init__(self) -> None:
        self.template = ""
        self.shape = ""
        self.written = ""  # a query: was anything written to a database since it was empty?
        self._connection: Any = None
        self.free: list[str] = []
        self.made: list[str] = []

    def _admin(self) -> Any:
        """This process's maintenance session (to the ``postgres`` database)."""
        import psycopg

        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(_admin_url(), autocommit=True)
        return self._connection

    def create(self, template: str = "") -> str:
        name = f"mlops_test_{uuid.uuid4().hex[:12]}"
        clone = f' TEMPLATE "{template}"' if template else ""
        self._admin().execute(f'CREATE DATABASE "{name}"{clone}')
        self._admin().execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        self.made.append(name)
        return name

    def _ensure_template(self) -> None:
        if self.template:
            return
        import atexit

        import psycopg

        from mlops.store.db import MetadataStore

        self.template = self.create()
        MetadataStore(_database_url(self.template))
        _forget(_database_url(self.template))  # a template must have no open sessions
        with psycopg.connect(_admin_url(self.template)) as conn:
            self.shape = conn.execute(_SHAPE).fetchone()[0]
            tables = [t for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' ORDER BY tablename")]
        self.written = " OR ".join(
            [_USED_SEQUENCES, *(f'EXISTS (SELECT 1 FROM public."{t}")' for t in tables)])
        self.written = f"SELECT {self.written}"
        atexit.register(self.drop_all)

    def take(self) -> str:
        self._ensure_template()
        return self.free.pop() if self.free else self.create(self.template)

    def give_back(self, name: str) -> None:
        """Empty ``name`` for the next test, or drop it if its schema changed."""
        import psycopg

        _forget(_database_url(name))
        self._admin().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            with psycopg.connect(_admin_url(name), autocommit=True) as conn:
                reusable = conn.execute(_SHAPE).fetchone() == (self.shape,)
                if reusable and conn.execute(self.written).fetchone() != (False,):
                    with conn.transaction():
                        conn.execute("SET LOCAL session_replication_role = replica")
                        conn.execute(_EMPTY)
        except psycopg.Error:  # e.g. the test dropped alembic_version
            reusable = False
        if reusable:
            self.free.append(name)
        else:
            self.drop(name)

    def drop(self, name: str) -> None:
        self._admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.made:
            self.made.remove(name)

    def drop_all(self) -> None:
        for name in list(self.made):
            self.drop(name)


_databases = _Databases()


def pg_database(*, migrated: bool = True) -> Iterator[str]:
    """An empty PostgreSQL database's URL (a generator: released after its one
    ``yield``): migrated to head, or, with ``migrated=False``, without any schema."""
    if not migrated:
        name = _databases.create()
        try:
            yield _database_url(name)
        finally:
            _forget(_database_url(name))
            _databases.drop(name)
        return
    name = _databases.take()
    try:
        yield _database_url(name)
    finally:
        _databases.give_back(name)


def _default_store(node: pytest.Item | pytest.Collector) -> bool:
    return STORE == "sqlite" or node.get_closest_marker("default_store") is not None


@pytest.fixture(scope="module", autouse=True)
def _module_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """On PostgreSQL, the stores a module's shared fixtures build live in one database."""
    if _default_store(request.node):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        for url in pg_database():
            mp.setenv("MLOPS_DATABASE_URL", url)
            yield


@pytest.fixture(autouse=True)
def _isolated_env(request: pytest.FixtureRequest, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads the developer's MLOPS_* variables, mlops.toml or ./.mlops; on
    PostgreSQL each test's store is a fresh database."""
    for key in list(os.environ):
        if key.startswith("MLOPS_") and key not in ("MLOPS_TEST_POSTGRES_URL",
                                                    "MLOPS_TEST_STORE"):
            monkeypatch.delenv(key)
    for key in ("STAGING_MODEL_PATH", "PRODUCTION_MODEL_PATH"):  # the seed README's names
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / ".mlops"))
    monkeypatch.setenv("MLOPS_ACTOR", "tester")
    if _default_store(request.node):
        yield
        return
    for url in pg_database():
        monkeypatch.setenv("MLOPS_DATABASE_URL", url)
        yield


REPO = Path(__file__).resolve().parents[1]
#: PostgreSQL mode: each home's database (the first store opened with that home), which is
#: what a SQLite home holds as its mlops.db file: a server or CLI started later on a home
#: is given that database, whatever test or module scope it is started from
_HOME_DATABASES: dict[Path, str] = {}


@pytest.fixture(scope="session", autouse=True)
def _remember_home_databases() -> Iterator[None]:
    if STORE != "postgresql":
        yield
        return
    from mlops.store.context import Context

    opener = Context.open.__func__  # type: ignore[attr-defined]

    def open_and_remember(cls: type[Context], *args: Any, **kwargs: Any) -> Context:
        ctx: Context = opener(cls, *args, **kwargs)
        _HOME_DATABASES.setdefault(ctx.settings.home, ctx.settings.database_url)
        return ctx

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Context, "open", classmethod(open_and_remember))
        yield


def home_database(home: Path) -> str | None:
    """The database of the store at ``home`` on PostgreSQL, once one was opened there."""
    return _HOME_DATABASES.get(home.resolve())


def child_env(**extra: str) -> dict[str, str]:
    """The environment for an ``mlops`` subprocess: none of this process's MLOPS_*
    settings but the test's store (on PostgreSQL the database of ``MLOPS_HOME`` when one
    was opened there, else the test's ``MLOPS_DATABASE_URL``), plus ``extra``."""
    keep = ("MLOPS_DATABASE_URL", "MLOPS_TEST_POSTGRES_URL", "MLOPS_TEST_STORE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_") or k in keep}
    env["PYTHONPATH"] = str(REPO)
    known = home_database(Path(extra["MLOPS_HOME"])) if "MLOPS_HOME" in extra else None
    if known is not None:
        env["MLOPS_DATABASE_URL"] = known
    env.update(extra)
    return env


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    PG_URL is None, reason="MLOPS_TEST_POSTGRES_URL not set (.ci/run sets it)"))]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both stores, whatever the mode: these tests face the database directly."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        yield from pg_database()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / ".mlops", database_url=database_url,
                    artifacts_uri=str(tmp_path / "artifacts"), actor="tester")


@pytest.fixture
def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings)


@pytest.fixture(scope="session")
def table() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=["a", "b", "c", "d"])
    y = (x["a"] + 0.5 * x["b"] - x["c"] + rng.normal(scale=0.3, size=300) > 0).astype(int)
    return x, y.to_numpy()


@pytest.fixture(scope="session")
def logistic(table: tuple[pd.DataFrame, np.ndarray]) -> LogisticRegression:
    x, y = table
    return LogisticRegression().fit(x, y)


@pytest.fixture
def skops_file(tmp_path: Path, logistic: LogisticRegression) -> Path:
    import skops.io as sio

    path = tmp_path / "model.skops"
    sio.dump(logistic, path)
    return path


@pytest.fixture
def pickle_file(tmp_path: Path, logistic: LogisticRegression) -> Path:
    import joblib

    path = tmp_path / "model.pkl"
    joblib.dump(logistic, path)
    return path
