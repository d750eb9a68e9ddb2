from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from mlops.errors import StoreError
from mlops.registry.service import ModelRegistry
from mlops.store.db import MetadataStore
from mlops.store.migrate import alembic_config
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
