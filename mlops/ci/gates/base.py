"""What every quality gate shares: the context it reads and the result it returns.

A gate is a module in :mod:`mlops.ci.gates` with a ``NAME``, a pydantic ``Config`` (its
thresholds, validated from the policy file) and ``run(ctx, config) -> GateResult``. It says
exactly what it measured (``actual``), against what (``threshold``) and why it passed or
failed (``reason``); ``details`` hold the full numbers (per-slice tables, CIs, p-values).

The context computes the candidate's predictions on the test rows once and shares them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mlops.flavors.base import LoadedModel

__all__ = ["GateConfig", "GateContext", "GateResult", "timed"]


class GateConfig(BaseModel):
    """Base of every gate's config: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate.

    ``passed`` is the decision; ``skipped`` marks a gate that passed because it had nothing
    to judge (no production version yet, no sensitive feature given) and says so in
    ``reason``; ``warnings`` are findings that do not fail the gate (a trusted pickle).
    Indexing with the seed's keys works too: ``result["passed"]``, ``result["actual_value"]``.
    """

    gate: str
    passed: bool
    actual: Any
    threshold: Any
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    skipped: bool = False
    duration_s: float = 0.0

    def __getitem__(self, key: str) -> Any:
        if key == "actual_value":
            return self.actual
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass
class GateContext:
    """Everything a gate may read. Built once per pipeline run.

    ``X`` holds the model's input columns only; ``y`` the labels (``None`` when the test
    data has no label column); ``frame`` the whole test table (for slice expressions and
    sensitive features); ``task`` is ``classification`` or ``regression``. ``champion`` is the
    production version's model (``None`` when nothing is in production). ``reference`` is
    the candidate's (or the champion's) reference profile for data-quality range checks.
    """

    model: LoadedModel
    model_name: str
    artifact_path: Path
    frame: pd.DataFrame
    X: pd.DataFrame
    y: pd.Series | None
    task: str
    version: str | None = None
    artifact_format: str = ""
    trusted: bool = False
    champion: LoadedModel | None = None
    champion_version: str | None = None
    reference: Any = None
    signature: Any = None
    sensitive: list[str] = field(default_factory=list)
    output_dir: Path | None = None
    seed: int = 0
    _pred: np.ndarray | None = field(default=None, repr=False)
    _proba: np.ndarray | None = field(default=None, repr=False)
    _champion_pred: np.ndarray | None = field(default=None, repr=False)

    @property
    def y_pred(self) -> np.ndarray:
        """The candidate's predictions on ``X`` (computed once)."""
        if self._pred is None:
            self._pred = np.asarray(self.model.predict(self.X))
        return self._pred

    @property
    def proba(self) -> np.ndarray | None:
        """Class probabilities on ``X`` when the model has them (computed once)."""
        if self._proba is None and self.model.has_proba:
            self._proba = np.asarray(self.model.predict_proba(self.X))
        return self._proba

    @property
    def champion_pred(self) -> np.ndarray | None:
        if self.champion is None:
            return None
        if self._champion_pred is None:
            self._champion_pred = np.asarray(self.champion.predict(self.X))
        return self._champion_pred


def timed(run: Callable[[GateContext, Any], GateResult]
          ) -> Callable[[GateContext, Any], GateResult]:
    """Decorator: fill ``duration_s`` of the gate's result."""

    def wrapper(ctx: GateContext, config: Any) -> GateResult:
        start = time.perf_counter()
        result = run(ctx, config)
        return GateResult(**{**result.__dict__, "duration_s": time.perf_counter() - start})

    wrapper.__name__ = run.__name__
    wrapper.__doc__ = run.__doc__
    return wrapper
