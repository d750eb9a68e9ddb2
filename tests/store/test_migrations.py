from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from mlops.errors import StoreError
from mlops.registry.service import ModelRegistry
from mlops.store.db import MetadataStore
from mlops.store.migrate import HEAD, alembic_config, is_current
from mlops.store.schema import Base


def test_migrations_create_exactly_the_declared_schema(registry: ModelRegistry) -> None:
    with registry.store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_migrations_are_recorded_at_head(registry: ModelRegistry) -> None:
    with registry.store.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert current == head
    assert "audit_events" in inspect(registry.store.engine).get_table_names()


def test_head_constant_is_alembics_head(tmp_path: Path) -> None:
    """Opening a store compares one query with HEAD and loads Alembic only to upgrade: a new
    migration must move HEAD, or stores would never be upgraded to it."""
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == HEAD
    store = MetadataStore(f"sqlite:///{tmp_path / 'h.db'}", migrate=False)
    with store.engine.connect() as conn:
        assert not is_current(conn)  # no alembic_version table yet
    store.migrate()
    with store.engine.connect() as conn:
        assert is_current(conn)
        conn.execute(text("UPDATE alembic_version SET version_num = '0007'"))
        conn.commit()
        assert not is_current(conn)


def test_store_behind_head_is_upgraded_on_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = MetadataStore(url, migrate=False)
    with store.engine.begin() as conn:  # as the release before 0008 left it
        command.upgrade(alembic_config(conn), "0007")
    with store.engine.connect() as conn:
        assert not is_current(conn)
    # a new process opens it (this one remembers that it migrated the URL)
    subprocess.run([sys.executable, "-c", "import sys; from mlops.store.db import "
                    "MetadataStore; MetadataStore(sys.argv[1])", url], check=True, timeout=60)
    with store.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'w.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_bad_database_url_is_a_store_error_with_a_fix() -> None:
    with pytest.raises(StoreError) as err:
        MetadataStore("not a url")
    assert "sqlite:///" in (err.value.fix or "")


def test_unreachable_postgres_is_a_store_error() -> None:
    with pytest.raises(StoreError) as err:
        MetadataStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "MLOPS_DATABASE_URL" in (err.value.fix or "")
