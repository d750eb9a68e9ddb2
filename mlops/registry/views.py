"""Typed views of registry rows: :class:`ModelVersion` and :class:`RegisteredModel`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.flavors.signature import Signature
from mlops.registry.lineage import Lineage
from mlops.registry.types import ModelVersion, RegisteredModel
from mlops.store.schema import AliasRow, MetricRow, ModelRow, ModelTagRow, VersionRow, VersionTagRow
from mlops.store.versions import version_key

__all__ = ["summaries", "to_version", "to_versions", "utc"]

#: version ids per IN (...) query (well under SQLite's and PostgreSQL's parameter limits)
_CHUNK = 500


def utc(dt: datetime) -> datetime:
    """``dt`` in UTC (SQLite hands back naive datetimes)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_version(session: Session, row: VersionRow, model_name: str) -> ModelVersion:
    return to_versions(session, [(row, model_name)])[0]


def to_versions(session: Session, rows: Sequence[tuple[VersionRow, str]]
                ) -> list[ModelVersion]:
    """Typed views of many version rows, with their aliases, tags and metrics read in three
    queries per chunk of versions (not three per version)."""
    out: list[ModelVersion] = []
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start:start + _CHUNK]
        ids = [row.id for row, _ in chunk]
        aliases: dict[int, list[str]] = {i: [] for i in ids}
        for vid, alias in session.execute(select(AliasRow.version_id, AliasRow.alias)
                                          .where(AliasRow.version_id.in_(ids))):
            aliases[vid].append(alias)
        tags: dict[int, dict[str, str]] = {i: {} for i in ids}
        for vid, key, value in session.execute(
                select(VersionTagRow.version_id, VersionTagRow.key, VersionTagRow.value)
                .where(VersionTagRow.version_id.in_(ids))):
            tags[vid][key] = value
        metrics: dict[int, dict[str, float]] = {i: {} for i in ids}
        for vid, key, metric in session.execute(
                select(MetricRow.version_id, MetricRow.key, MetricRow.value)
                .where(MetricRow.version_id.in_(ids))):
            metrics[vid][key] = metric
        out += [_version(row, name, sorted(aliases[row.id]), tags[row.id], metrics[row.id])
                for row, name in chunk]
    return out


def _version(row: VersionRow, model_name: str, aliases: list[str], tags: dict[str, str],
             metrics: dict[str, float]) -> ModelVersion:
    return ModelVersion(
        model=model_name, version=row.version, stage=row.stage, flavor=row.flavor,
        format=str(row.extra.get("format", "")), artifact_digest=row.artifact_digest,
        artifact_name=row.artifact_name, artifact_size=row.artifact_size,
        trusted=row.trusted, description=row.description, created_by=row.created_by,
        created_at=utc(row.created_at), updated_at=utc(row.updated_at),
        aliases=aliases, tags=tags, metrics=metrics,
        signature=Signature.from_dict(row.signature), lineage=Lineage.from_dict(row.lineage),
        metadata=dict(row.extra.get("metadata", {})),
        input_example=row.extra.get("input_example"),
        runtimes=dict(row.extra.get("runtimes") or {}),
    )


def summaries(s: Session, models: list[ModelRow]) -> list[RegisteredModel]:
    ids = [m.id for m in models]
    versions: dict[int, list[tuple[str, str, int]]] = {i: [] for i in ids}
    for mid, ver, stage, vid in s.execute(
            select(VersionRow.model_id, VersionRow.version, VersionRow.stage, VersionRow.id)
            .where(VersionRow.model_id.in_(ids))):
        versions[mid].append((ver, stage, vid))
    aliases: dict[int, dict[str, int]] = {i: {} for i in ids}
    for mid, alias, vid in s.execute(select(AliasRow.model_id, AliasRow.alias,
                                            AliasRow.version_id)
                                     .where(AliasRow.model_id.in_(ids))):
        aliases[mid][alias] = vid
    tags: dict[int, dict[str, str]] = {i: {} for i in ids}
    for mid, key, value in s.execute(select(ModelTagRow.model_id, ModelTagRow.key,
                                            ModelTagRow.value)
                                     .where(ModelTagRow.model_id.in_(ids))):
        tags[mid][key] = value
    out = []
    for m in models:
        vs = versions[m.id]
        by_id = {vid: ver for ver, _, vid in vs}
        stages: dict[str, str] = {}
        for ver, stage, _ in sorted(vs, key=lambda t: version_key(t[0])):
            if stage != "None":
                stages[stage] = ver
        latest = max((v for v, _, _ in vs), key=version_key) if vs else None
        out.append(RegisteredModel(
            name=m.name, description=m.description, created_at=utc(m.created_at),
            updated_at=utc(m.updated_at), latest_version=latest, version_count=len(vs),
            stages=stages, aliases={a: by_id[v] for a, v in aliases[m.id].items()},
            tags=tags[m.id]))
    return out
