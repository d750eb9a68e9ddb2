"""Model registry: versions, stages, aliases, tags, metrics, lineage, search, loading."""

from __future__ import annotations

from mlops.flavors.signature import ColumnSpec, Signature, infer_signature
from mlops.registry.lineage import Lineage
from mlops.registry.mlflow_import import ImportReport, import_mlflow
from mlops.registry.model_registry import get_model_registry
from mlops.registry.search import Clause, parse_query
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ABTest, ModelVersion, RegisteredModel
from mlops.store.versions import STAGES, next_version, normalize_stage, parse_version

__all__ = [
    "STAGES",
    "ABTest",
    "Clause",
    "ColumnSpec",
    "ImportReport",
    "Lineage",
    "ModelRegistry",
    "ModelVersion",
    "RegisteredModel",
    "Signature",
    "get_model_registry",
    "import_mlflow",
    "infer_signature",
    "next_version",
    "normalize_stage",
    "parse_query",
    "parse_version",
]
