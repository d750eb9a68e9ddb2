"""Alembic environment: always run with a connection handed in by mlops.store.migrate."""

from __future__ import annotations

from alembic import context

from mlops.store.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via mlops.store.migrate
    raise RuntimeError("Run migrations through mlops.store.migrate.upgrade_to_head().")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
context.run_migrations()
