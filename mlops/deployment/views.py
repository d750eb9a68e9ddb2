"""The typed view of a rollout row, as commands and the controller return it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.deployment.transitions import rollout_steps
from mlops.deployment.types import RolloutState, Step
from mlops.store.schema import AnalysisRow, RolloutRow

__all__ = ["Rollout", "rollout_view", "utc"]


def utc(dt: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite returns naive ones)."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@dataclass(frozen=True)
class Rollout:
    id: int
    model: str
    environment: str
    strategy: str
    stable: str | None
    candidate: str
    steps: list[Step]
    step_index: int
    state: RolloutState
    reason: str
    started_at: datetime
    step_started_at: datetime
    analyses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def weight(self) -> float:
        return self.steps[min(self.step_index, len(self.steps) - 1)].weight

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "environment": self.environment,
                "strategy": self.strategy, "stable": self.stable, "candidate": self.candidate,
                "steps": [s.to_dict() for s in self.steps], "step_index": self.step_index,
                "weight": self.weight, "state": self.state.value, "reason": self.reason,
                "started_at": self.started_at.isoformat(),
                "step_started_at": self.step_started_at.isoformat(),
                "analyses": self.analyses}


def rollout_view(s: Session, row: RolloutRow, name: str, analyses: int = 20) -> Rollout:
    """The typed view of a rollout row, with its latest ``analyses``."""
    found = s.scalars(select(AnalysisRow).where(AnalysisRow.rollout_id == row.id)
                      .order_by(AnalysisRow.id.desc()).limit(analyses)).all()
    return Rollout(row.id, name, row.environment, row.strategy, row.stable_version,
                   row.candidate_version, rollout_steps(row), row.step_index,
                   RolloutState(row.state), row.reason, utc(row.started_at),
                   utc(row.step_started_at),
                   [{"step": a.step_index, "outcome": a.outcome,
                     "at": utc(a.created_at).isoformat(), **a.details}
                    for a in reversed(found)])
