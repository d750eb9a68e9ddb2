"""Typed results of the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.flavors.signature import Signature
from mlops.registry.lineage import Lineage

__all__ = ["ABTest", "ModelVersion", "RegisteredModel"]


@dataclass(frozen=True)
class ModelVersion:
    model: str
    version: str
    stage: str
    flavor: str
    format: str
    artifact_digest: str
    artifact_name: str
    artifact_size: int
    trusted: bool
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    signature: Signature | None = None
    lineage: Lineage = field(default_factory=Lineage)
    metadata: dict[str, Any] = field(default_factory=dict)
    input_example: list[dict[str, Any]] | None = None  # a few rows, for smoke requests
    #: compiled runtimes of the same version ("onnx" -> digest, size, converter versions,
    #: tolerance, max_abs_diff, rows_checked, created_by, created_at)
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "stage": self.stage,
            "aliases": self.aliases, "flavor": self.flavor, "format": self.format,
            "artifact": {"sha256": self.artifact_digest, "name": self.artifact_name,
                         "size": self.artifact_size},
            "trusted": self.trusted, "description": self.description,
            "tags": self.tags, "metrics": self.metrics,
            "signature": self.signature.to_dict() if self.signature else None,
            "lineage": self.lineage.to_dict(), "metadata": self.metadata,
            "input_example": self.input_example, "runtimes": self.runtimes,
            "created_by": self.created_by, "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    description: str
    created_at: datetime
    updated_at: datetime
    latest_version: str | None
    version_count: int
    stages: dict[str, str] = field(default_factory=dict)  # "Production" -> "1.2.0"
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "latest_version": self.latest_version, "versions": self.version_count,
                "stages": self.stages, "aliases": self.aliases, "tags": self.tags,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class ABTest:
    """A fixed split: ``traffic_split`` of the traffic goes to ``version_b``."""

    id: int
    model: str
    version_a: str
    version_b: str
    traffic_split: float
    salt: str
    status: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "version_a": self.version_a,
                "version_b": self.version_b, "traffic_split": self.traffic_split,
                "salt": self.salt, "status": self.status,
                "created_at": self.created_at.isoformat()}
