"""Run the packaged Alembic migrations programmatically.

Opening a store checks its revision with one query against :data:`HEAD` and loads Alembic
(~0.15 s of imports and script parsing) only when the schema must be upgraded: every CLI
command opens the store, and nearly always finds it current.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD", "alembic_config", "is_current", "upgrade_to_head"]

# The newest revision under migrations/versions (tests/store/test_migrations.py checks it
# against Alembic's own head): a new migration updates it.
HEAD = "0008"

_HERE = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def is_current(connection: Connection) -> bool:
    """Whether the database is at :data:`HEAD` (one query; no Alembic import)."""
    if not inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    return list(versions) == [HEAD]


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade inside the caller's transaction; a no-op when already at head."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config(connection)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        command.upgrade(cfg, "head")
