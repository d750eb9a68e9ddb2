"""Run the packaged Alembic migrations programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

__all__ = ["alembic_config", "upgrade_to_head"]

_HERE = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_to_head(connection: Connection) -> None:
    """Upgrade inside the caller's transaction; a no-op when already at head."""
    cfg = alembic_config(connection)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        command.upgrade(cfg, "head")
