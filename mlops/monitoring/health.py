"""A composite health score per deployment, with its parts visible.

Four parts, each 0-100 (``None`` when there is nothing to judge it on, e.g. no labels yet):

============  ===========================================================================
part          score
============  ===========================================================================
performance   quality vs baseline: 100 at or above baseline, 0 at a 20% relative loss
              (accuracy/F1/ROC-AUC/R2 falling, or MAE/RMSE/log loss rising); without a
              baseline, accuracy itself x 100 (classification) or ``None``
data_quality  100 - 500 x (worst feature missing rate above its reference rate), floored at 0
drift         100 x (1 - share of drifted features), x 0.7 when the outputs drifted,
              x 0.7 when a concept-drift detector fired
system        min(100 x (1 - error_rate / 0.10), latency score); latency score 100 while
              p99 <= ``latency_budget_ms`` and 0 at twice the budget
============  ===========================================================================

The composite is the weighted mean of the parts that have a score (weights
performance 0.35, drift 0.25, system 0.25, data_quality 0.15, renormalised); ``status`` is
``healthy`` (>= 80), ``degraded`` (>= 50) or ``unhealthy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["WEIGHTS", "HealthPart", "HealthScore", "health_score", "health_status"]

WEIGHTS = {"performance": 0.35, "drift": 0.25, "system": 0.25, "data_quality": 0.15}
_HIGHER_BETTER = ("accuracy", "f1", "roc_auc", "r2", "precision", "recall")
_LOWER_BETTER = ("mae", "rmse", "log_loss")


@dataclass(frozen=True)
class HealthPart:
    name: str
    score: float | None
    reason: str
    inputs: dict[str, float | None]


@dataclass(frozen=True)
class HealthScore:
    score: float | None
    status: str
    parts: tuple[HealthPart, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "status": self.status,
                "parts": [asdict(p) for p in self.parts]}


def _clip(x: float) -> float:
    return max(0.0, min(100.0, x))


def _performance(values: Mapping[str, float | None], baselines: Mapping[str, float]
                 ) -> HealthPart:
    for metric in (*_HIGHER_BETTER, *_LOWER_BETTER):
        value = values.get(metric)
        base = baselines.get(metric)
        if value is None or base is None or base == 0:
            continue
        loss = (base - value) / abs(base) if metric in _HIGHER_BETTER else \
            (value - base) / abs(base)
        score = _clip(100.0 * (1.0 - max(0.0, loss) / 0.20))
        return HealthPart("performance", score,
                          f"{metric} {value:.4g} vs baseline {base:.4g} ({-loss:+.1%})",
                          {metric: value, f"baseline_{metric}": base})
    accuracy = values.get("accuracy")
    if accuracy is not None:
        return HealthPart("performance", _clip(100.0 * accuracy),
                          f"accuracy {accuracy:.4g} (no baseline set)", {"accuracy": accuracy})
    return HealthPart("performance", None, "no labelled predictions or no baseline", {})


def _data_quality(values: Mapping[str, float | None]) -> HealthPart:
    excess = values.get("missing_rate_excess")
    if excess is None:
        return HealthPart("data_quality", None, "no reference profile or no inputs", {})
    return HealthPart("data_quality", _clip(100.0 - 500.0 * max(0.0, excess)),
                      f"worst missing rate {excess:+.1%} vs reference",
                      {"missing_rate_excess": excess})


def _drift(values: Mapping[str, float | None]) -> HealthPart:
    share = values.get("drift_share")
    if share is None:
        return HealthPart("drift", None, "no drift check in this window", {})
    score = 100.0 * (1.0 - share)
    reasons = [f"{share:.0%} of features drifted"]
    if values.get("prediction_drift"):
        score *= 0.7
        reasons.append("outputs drifted")
    if values.get("concept_drift"):
        score *= 0.7
        reasons.append("concept drift detected")
    return HealthPart("drift", _clip(score), ", ".join(reasons),
                      {k: values.get(k) for k in ("drift_share", "prediction_drift",
                                                  "concept_drift")})


def _system(values: Mapping[str, float | None], latency_budget_ms: float) -> HealthPart:
    error_rate = values.get("error_rate")
    p99 = values.get("latency_p99_ms")
    if error_rate is None and p99 is None:
        return HealthPart("system", None, "no requests in this window", {})
    scores, reasons = [], []
    if error_rate is not None:
        scores.append(_clip(100.0 * (1.0 - error_rate / 0.10)))
        reasons.append(f"error rate {error_rate:.2%}")
    if p99 is not None:
        over = max(0.0, p99 - latency_budget_ms) / latency_budget_ms
        scores.append(_clip(100.0 * (1.0 - over)))
        reasons.append(f"p99 {p99:.0f} ms (budget {latency_budget_ms:.0f} ms)")
    return HealthPart("system", min(scores), ", ".join(reasons),
                      {"error_rate": error_rate, "latency_p99_ms": p99})


def health_score(values: Mapping[str, float | None], baselines: Mapping[str, float] | None = None,
                 *, latency_budget_ms: float = 1000.0) -> HealthScore:
    """The composite score of one window's metric values (see the module docstring)."""
    baselines = baselines or {}
    parts = (_performance(values, baselines), _data_quality(values), _drift(values),
             _system(values, latency_budget_ms))
    scored = [(WEIGHTS[p.name], p.score) for p in parts if p.score is not None]
    if not scored:
        return HealthScore(None, "unknown", parts)
    total = sum(w for w, _ in scored)
    score = round(sum(w * s for w, s in scored) / total, 1)
    return HealthScore(score, health_status(score), parts)


def health_status(score: float | None) -> str:
    """``healthy`` (>= 80), ``degraded`` (>= 50), ``unhealthy``, or ``unknown`` (no score)."""
    if score is None:
        return "unknown"
    return "healthy" if score >= 80 else "degraded" if score >= 50 else "unhealthy"
