"""Explainability gate: permutation importance of every input, and how stable its ranking is.

Importance is scikit-learn's :func:`~sklearn.inspection.permutation_importance` (Breiman
2001): on at most ``max_rows`` test rows (a seeded sample without replacement), each column
is shuffled ``n_repeats`` times and importance = baseline score - score with the column
shuffled. The model is wrapped in a minimal estimator (``predict`` only; ``fit`` is a no-op
that sklearn's parameter check requires) and ``scoring`` is passed as a callable
``scorer(estimator, X, y)``, so any flavor works.

Stability is the split-half rank agreement: the repeats are split into the first
``n_repeats // 2`` and the rest, each half's mean importance is taken, and stability is
Spearman's rank correlation between the two halves over the ``top_k`` features with the
largest overall mean importance (1.0 for a single feature or identical rankings, 0.0 when
one half ranks every feature equal and the other does not). 1 means the ranking of the
important features does not depend on the shuffles; low values mean more repeats or rows
are needed before reading the ranking. The gate reports; it fails only when
``min_stability`` is set and stability is below it.

With ``ctx.output_dir`` set, the table is written to ``permutation_importance.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field
from scipy import stats
from sklearn import metrics as skm
from sklearn.inspection import permutation_importance

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.ci.gates.metrics import require_labels
from mlops.errors import CIError, MlopsError
from mlops.flavors.base import LoadedModel

__all__ = ["ARTIFACT", "NAME", "Config", "run", "split_half_stability"]

NAME = "explainability"
ARTIFACT = "permutation_importance.json"

Scoring = Literal["accuracy", "balanced_accuracy", "f1_macro", "neg_mean_absolute_error",
                  "neg_root_mean_squared_error", "r2"]
_METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": lambda y, p: float(skm.accuracy_score(y, p)),
    "balanced_accuracy": lambda y, p: float(skm.balanced_accuracy_score(y, p)),
    "f1_macro": lambda y, p: float(skm.f1_score(y, p, average="macro", zero_division=0)),
    "neg_mean_absolute_error": lambda y, p: -float(skm.mean_absolute_error(y, p)),
    "neg_root_mean_squared_error": lambda y, p: -float(np.sqrt(skm.mean_squared_error(y, p))),
    "r2": lambda y, p: float(skm.r2_score(y, p)),
}


class Config(GateConfig):
    """Sample size, repeats, score, and the optional stability floor."""

    max_rows: int = Field(default=2000, ge=10)
    n_repeats: int = Field(default=5, ge=2, le=100)
    scoring: Scoring | None = None
    top_k: int = Field(default=10, ge=1)
    min_stability: float | None = Field(default=None, ge=-1, le=1)


class _Predictor:
    """The smallest estimator sklearn accepts: ``predict`` from the loaded model."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def fit(self, X: Any, y: Any = None) -> _Predictor:
        """No-op: the model is already trained (sklearn only checks that ``fit`` exists)."""
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model.predict(X))


def _scorer(name: str) -> Callable[[Any, Any, Any], float]:
    metric = _METRICS[name]

    def scorer(estimator: Any, X: Any, y: Any) -> float:
        return metric(y, estimator.predict(X))

    return scorer


def split_half_stability(importances: np.ndarray, top_k: int) -> float:
    """Spearman correlation of the two halves' mean importances over the top-k features."""
    imp = np.asarray(importances, dtype=np.float64)
    half = imp.shape[1] // 2
    first, second = imp[:, :half].mean(axis=1), imp[:, half:].mean(axis=1)
    top = np.argsort(-imp.mean(axis=1), kind="stable")[:top_k]
    if top.size < 2:
        return 1.0
    ra, rb = stats.rankdata(first[top]), stats.rankdata(second[top])
    if np.array_equal(ra, rb):
        return 1.0
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(stats.spearmanr(first[top], second[top]).statistic)


def _sample(ctx: GateContext, y: np.ndarray, max_rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    n = len(ctx.X)
    if n <= max_rows:
        return ctx.X.reset_index(drop=True), y
    idx = np.sort(np.random.default_rng(ctx.seed).choice(n, size=max_rows, replace=False))
    return ctx.X.iloc[idx].reset_index(drop=True), y[idx]


def _write(path: Path, payload: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    except OSError as exc:
        raise CIError(f"Cannot write the permutation importance table to {path}: {exc}.",
                      fix="Give a writable output directory.", path=str(path)) from exc


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Permutation importance on a bounded sample; judge stability if a floor is set."""
    threshold = {} if config.min_stability is None else {"min_stability": config.min_stability}
    if len(ctx.X) == 0 or ctx.X.shape[1] == 0:
        return GateResult(NAME, True, None, threshold,
                          "Skipped: the test data has no rows or no feature columns.",
                          skipped=True)
    y = require_labels(ctx, NAME)
    scoring = config.scoring or ("neg_mean_absolute_error" if ctx.task == "regression"
                                 else "accuracy")
    X, y_s = _sample(ctx, y, config.max_rows)
    try:
        res = permutation_importance(_Predictor(ctx.model), X, y_s, scoring=_scorer(scoring),
                                     n_repeats=config.n_repeats, random_state=ctx.seed)
    except MlopsError:
        raise
    except (ValueError, TypeError) as exc:
        raise CIError(f"Permutation importance failed for {ctx.model_name}: {exc}.",
                      fix="Check the scoring against the task and the label column.",
                      model=ctx.model_name) from exc
    importances = np.asarray(res.importances, dtype=np.float64)
    stability = split_half_stability(importances, config.top_k)
    baseline = _METRICS[scoring](y_s, _Predictor(ctx.model).predict(X))
    order = np.argsort(-importances.mean(axis=1), kind="stable")
    table = [{"rank": r + 1, "feature": str(X.columns[i]),
              "importance_mean": float(importances[i].mean()),
              "importance_std": float(importances[i].std()),
              "importances": [float(v) for v in importances[i]]}
             for r, i in enumerate(order)]
    details: dict[str, Any] = {
        "scoring": scoring, "baseline_score": baseline, "n_rows": len(X),
        "n_rows_total": len(ctx.X), "n_repeats": config.n_repeats, "seed": ctx.seed,
        "top_k": config.top_k, "stability": stability,
        "stability_method": "Spearman rank correlation of split-half mean importances "
                            "over the top-k features",
        "importances": table,
    }
    if ctx.output_dir is not None:
        path = Path(ctx.output_dir) / ARTIFACT
        _write(path, {"model": ctx.model_name, "version": ctx.version,
                      **{k: v for k, v in details.items() if k != "importances"},
                      "importances": table})
        details["path"] = str(path)
    top = ", ".join(f"{t['feature']} {t['importance_mean']:.3g}" for t in table[:3])
    k = min(config.top_k, len(table))
    measured = (f"Permutation importance ({scoring}, {len(X)} rows, {config.n_repeats} "
                f"repeats): top features {top}; split-half rank stability of the top {k} "
                f"features {stability:.3f}")
    passed = config.min_stability is None or stability >= config.min_stability
    if config.min_stability is None:
        reason = f"{measured} (reported, not judged)."
    elif passed:
        reason = f"{measured} >= {config.min_stability:g}."
    else:
        reason = (f"{measured} < {config.min_stability:g}: the ranking changes between "
                  "halves of the repeats; raise n_repeats or max_rows.")
    actual = {"stability": stability, "top_features": [t["feature"] for t in table[:k]]}
    return GateResult(NAME, passed, actual, threshold, reason, details=details)
