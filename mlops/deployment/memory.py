"""What a rollout row remembers between looks, kept apart by owner.

``RolloutRow.monitor`` holds ``{"analysis": {...}, "bandit": {...}}``: the sequential tests'
running state per metric (:class:`~mlops.stats.sequential.SequentialMonitor` dicts), and
the bandit's current traffic share. Rows written before this split held both in one flat
dict (the tests' states beside a ``bandit_weight`` key); they are read the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BanditMemory", "RolloutMemory"]


@dataclass(frozen=True)
class BanditMemory:
    """The share (percent) the bandit last gave the candidate; None before its first move."""

    weight: float | None = None


@dataclass(frozen=True)
class RolloutMemory:
    analysis: dict[str, dict[str, Any]] = field(default_factory=dict)
    bandit: BanditMemory = field(default_factory=BanditMemory)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RolloutMemory:
        data = dict(data or {})
        if "analysis" in data or "bandit" in data:
            weight = (data.get("bandit") or {}).get("weight")
            return cls({k: dict(v) for k, v in (data.get("analysis") or {}).items()},
                       BanditMemory(None if weight is None else float(weight)))
        weight = data.pop("bandit_weight", None)  # the flat layout of older rows
        return cls({k: dict(v) for k, v in data.items() if isinstance(v, Mapping)},
                   BanditMemory(None if weight is None else float(weight)))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"analysis": {k: dict(v) for k, v in self.analysis.items()}}
        if self.bandit.weight is not None:
            out["bandit"] = {"weight": self.bandit.weight}
        return out
