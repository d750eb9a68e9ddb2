"""Metric snapshots: one row per (model, version, environment, metric, window).

The evaluator writes them on every pass; ``mlops monitor status`` and the dashboard read
the history back. ``""`` in ``version`` / ``environment`` means "all".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mlops.monitoring.alerts import Observation
from mlops.registry.service import ModelRegistry
from mlops.store.catalog import model_row
from mlops.store.schema import MetricSnapshotRow, ModelRow

__all__ = ["Snapshot", "count_snapshots_before", "delete_snapshots_before",
           "latest_by_deployment", "latest_snapshots", "latest_values", "record_snapshots",
           "snapshot_series"]


@dataclass(frozen=True)
class Snapshot:
    model: str
    version: str
    environment: str
    metric: str
    value: float | None
    n: int
    window_start: datetime
    window_end: datetime


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def record_snapshots(registry: ModelRegistry, model: str, version: str, environment: str,
                     window_start: datetime, window_end: datetime,
                     values: Mapping[str, Observation], *,
                     guard: Callable[[Session], None] | None = None) -> int:
    """Store one snapshot per metric; non-finite values are stored as NULL. ``guard`` runs
    inside the write transaction and may raise to abort it."""
    def store(s: Session) -> int:
        if guard is not None:
            guard(s)
        model_id = model_row(s, model).id
        rows = [MetricSnapshotRow(
            model_id=model_id, version=version, environment=environment, metric=name,
            value=None if obs.value is None or not math.isfinite(obs.value) else obs.value,
            n=int(obs.n), window_start=window_start, window_end=window_end)
            for name, obs in values.items()]
        s.add_all(rows)
        return len(rows)

    return registry.context.store.run(store)  # again after a deadlock


def _snapshot(row: MetricSnapshotRow, model: str) -> Snapshot:
    return Snapshot(model=model, version=row.version, environment=row.environment,
                    metric=row.metric, value=row.value, n=row.n,
                    window_start=_utc(row.window_start), window_end=_utc(row.window_end))


def snapshot_series(registry: ModelRegistry, model: str, metric: str, *,
                    environment: str | None = None, version: str | None = None,
                    since: datetime | None = None, limit: int = 500) -> list[Snapshot]:
    """The history of one metric, oldest first (at most ``limit`` newest points)."""
    with registry.context.store.read() as s:
        query = (select(MetricSnapshotRow).join(ModelRow, ModelRow.id == MetricSnapshotRow.model_id)
                 .where(ModelRow.name == model, MetricSnapshotRow.metric == metric))
        if environment is not None:
            query = query.where(MetricSnapshotRow.environment == environment)
        if version is not None:
            query = query.where(MetricSnapshotRow.version == version)
        if since is not None:
            query = query.where(MetricSnapshotRow.window_end >= since)
        rows = s.scalars(query.order_by(MetricSnapshotRow.window_end.desc(),
                                        MetricSnapshotRow.id.desc()).limit(limit)).all()
        return [_snapshot(r, model) for r in reversed(rows)]


def latest_snapshots(registry: ModelRegistry, model: str, *, environment: str | None = None
                     ) -> dict[str, Snapshot]:
    """The newest snapshot of every metric of a model (optionally one environment)."""
    with registry.context.store.read() as s:
        base = (select(MetricSnapshotRow.metric, func.max(MetricSnapshotRow.id).label("id"))
                .join(ModelRow, ModelRow.id == MetricSnapshotRow.model_id)
                .where(ModelRow.name == model))
        if environment is not None:
            base = base.where(MetricSnapshotRow.environment == environment)
        newest = base.group_by(MetricSnapshotRow.metric).subquery()
        rows = s.scalars(select(MetricSnapshotRow).join(
            newest, newest.c.id == MetricSnapshotRow.id)).all()
        return {r.metric: _snapshot(r, model) for r in rows}


def latest_by_deployment(registry: ModelRegistry, metric: str
                         ) -> dict[tuple[str, str], Snapshot]:
    """The newest environment-level snapshot of ``metric`` for every (model, environment)
    the evaluator has judged, in one query (the models page's health per cell)."""
    return {(m, env): snap for (m, env, _), snap in latest_values(registry, [metric]).items()}


def latest_values(registry: ModelRegistry, metrics: Collection[str]
                  ) -> dict[tuple[str, str, str], Snapshot]:
    """The newest environment-level snapshot of each of ``metrics`` for every (model,
    environment), keyed ``(model, environment, metric)``, in one query."""
    with registry.context.store.read() as s:
        newest = (select(func.max(MetricSnapshotRow.id).label("id"))
                  .where(MetricSnapshotRow.metric.in_(list(metrics)),
                         MetricSnapshotRow.version == "")
                  .group_by(MetricSnapshotRow.model_id, MetricSnapshotRow.environment,
                            MetricSnapshotRow.metric)
                  .subquery())
        rows = s.execute(select(MetricSnapshotRow, ModelRow.name)
                         .join(newest, newest.c.id == MetricSnapshotRow.id)
                         .join(ModelRow, ModelRow.id == MetricSnapshotRow.model_id)).all()
        return {(name, row.environment, row.metric): _snapshot(row, name)
                for row, name in rows}


def count_snapshots_before(session: Session, before: datetime) -> int:
    """How many snapshots have a window that ended before ``before`` (retention's dry run)."""
    return int(session.scalar(select(func.count()).select_from(MetricSnapshotRow)
                              .where(MetricSnapshotRow.window_end < _utc(before))) or 0)


def delete_snapshots_before(session: Session, before: datetime) -> int:
    """Delete the snapshots whose window ended before ``before``; call it inside the write
    transaction that records the deletion (retention's audit event). Returns the count."""
    result = session.execute(delete(MetricSnapshotRow)
                             .where(MetricSnapshotRow.window_end < _utc(before))
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
