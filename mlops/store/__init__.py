"""Infrastructure: metadata store (SQLAlchemy + Alembic), artifact store, audit chain."""

from __future__ import annotations

from mlops.store.artifacts import ArtifactRef, ArtifactStore, sha256_file
from mlops.store.audit import (
    AuditEvent,
    Checkpoint,
    VerifyResult,
    append_event,
    checkpoint,
    list_events,
    verify_chain,
)
from mlops.store.db import MetadataStore

__all__ = [
    "ArtifactRef",
    "ArtifactStore",
    "AuditEvent",
    "Checkpoint",
    "MetadataStore",
    "VerifyResult",
    "append_event",
    "checkpoint",
    "list_events",
    "sha256_file",
    "verify_chain",
]
