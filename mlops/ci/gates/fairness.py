"""Fairness gate: demographic parity and equalized odds across sensitive groups (fairlearn).

For each sensitive feature (``Config.sensitive_features``, else ``ctx.sensitive``; columns
of ``ctx.frame``, missing values form a ``<missing>`` group) the labels and predictions are
binarised on the positive class (``pos_label``, else the larger label) and fairlearn gives
``demographic_parity_difference`` (largest gap in selection rate between groups) and
``equalized_odds_difference`` (the larger of the TPR gap and the FPR gap, ``worst_case``).
The per-group table (count, accuracy, selection rate, TPR, FPR) comes from
:class:`fairlearn.metrics.MetricFrame`. Binary classification only: regression and
multiclass models are skipped, and so is a model with no sensitive feature.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from fairlearn import metrics as flm
from pydantic import Field
from sklearn.metrics import accuracy_score

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.ci.gates.metrics import Label, fmt_pair, label_space, require_labels
from mlops.errors import CIError

__all__ = ["NAME", "Config", "run"]

NAME = "fairness"
MISSING = "<missing>"


class Config(GateConfig):
    """Which features to audit and the largest differences allowed (``None``: not judged)."""

    sensitive_features: list[str] | None = None
    max_demographic_parity_difference: float | None = Field(default=0.1, ge=0, le=1)
    max_equalized_odds_difference: float | None = Field(default=0.1, ge=0, le=1)
    method: Literal["between_groups", "to_overall"] = "between_groups"
    pos_label: Label | None = None


def _groups(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        raise CIError(f"Sensitive feature {col!r} is not a column of the test data.",
                      fix=f"Use one of {list(frame.columns)[:20]}, or fix sensitive_features.",
                      feature=col)
    values = frame[col].reset_index(drop=True)
    if values.isna().any():
        values = values.astype(object).where(values.notna(), MISSING)
    return values


def _table(y: np.ndarray, pred: np.ndarray, sf: pd.Series) -> list[dict[str, Any]]:
    frame = flm.MetricFrame(
        metrics={"count": flm.count, "accuracy": accuracy_score,
                 "selection_rate": flm.selection_rate, "tpr": flm.true_positive_rate,
                 "fpr": flm.false_positive_rate},
        y_true=y, y_pred=pred, sensitive_features=sf)
    by_group = frame.by_group
    rows = []
    for group, values in by_group.iterrows():
        row: dict[str, Any] = {"group": group.item() if isinstance(group, np.generic) else group}
        row.update({k: float(v) for k, v in values.items()})
        row["count"] = int(row["count"])
        rows.append(row)
    return rows


def _spread(rows: list[dict[str, Any]], key: str) -> str:
    low = min(rows, key=lambda r: r[key])
    high = max(rows, key=lambda r: r[key])
    label = {"selection_rate": "selection rate", "tpr": "TPR", "fpr": "FPR"}[key]
    return f"{label} {high[key]:.3f} for {high['group']} vs {low[key]:.3f} for {low['group']}"


def _audit(col: str, y: np.ndarray, pred: np.ndarray, sf: pd.Series, config: Config
           ) -> tuple[dict[str, Any], list[str]]:
    try:
        dp = float(flm.demographic_parity_difference(y, pred, sensitive_features=sf,
                                                     method=config.method))
        eo = float(flm.equalized_odds_difference(y, pred, sensitive_features=sf,
                                                 method=config.method))
        rows = _table(y, pred, sf)
    except (ValueError, TypeError) as exc:
        raise CIError(f"fairlearn could not audit sensitive feature {col!r}: {exc}.",
                      fix="Check that the column holds one group label per row.",
                      feature=col) from exc
    problems: list[str] = []
    limit = config.max_demographic_parity_difference
    if limit is not None and dp > limit:
        a, b = fmt_pair(dp, limit)
        problems.append(f"{col}: demographic parity difference {a} > {b} "
                        f"({_spread(rows, 'selection_rate')})")
    limit = config.max_equalized_odds_difference
    if limit is not None and eo > limit:
        a, b = fmt_pair(eo, limit)
        tpr_gap = max(r["tpr"] for r in rows) - min(r["tpr"] for r in rows)
        fpr_gap = max(r["fpr"] for r in rows) - min(r["fpr"] for r in rows)
        problems.append(f"{col}: equalized odds difference {a} > {b} "
                        f"({_spread(rows, 'tpr' if tpr_gap >= fpr_gap else 'fpr')})")
    result = {"demographic_parity_difference": dp, "equalized_odds_difference": eo,
              "groups": rows}
    return result, problems


def _skip(reason: str, threshold: dict[str, Any]) -> GateResult:
    return GateResult(NAME, True, None, threshold, reason, skipped=True)


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Audit every sensitive feature against the parity thresholds."""
    threshold = {k: v for k, v in (
        ("max_demographic_parity_difference", config.max_demographic_parity_difference),
        ("max_equalized_odds_difference", config.max_equalized_odds_difference))
        if v is not None}
    features = config.sensitive_features if config.sensitive_features is not None \
        else list(ctx.sensitive)
    if ctx.task != "classification":
        return _skip(f"Skipped: the fairness gate judges binary classifiers; {ctx.model_name} "
                     f"is a {ctx.task} model.", threshold)
    if not features:
        return _skip(f"Skipped: no sensitive feature is given for {ctx.model_name} (set "
                     "sensitive_features in the policy or pass --sensitive).", threshold)
    y = require_labels(ctx, NAME)
    pred = ctx.y_pred
    space = label_space(y, pred, ctx.model.classes, None, config.pos_label)
    if space.average != "binary":
        return _skip(f"Skipped: the fairness gate judges binary classifiers; {ctx.model_name} "
                     f"has {len(space.labels)} classes.", threshold)
    y_bin = (y == space.pos_label).astype(int)
    pred_bin = (pred == space.pos_label).astype(int)
    if len(ctx.frame) != len(y):
        raise CIError(f"The test table has {len(ctx.frame)} rows for {len(y)} labels.",
                      fix="Pass the whole test table with the features and labels.")
    actual: dict[str, Any] = {}
    per_feature: dict[str, Any] = {}
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for col in features:
            result, found = _audit(col, y_bin, pred_bin, _groups(ctx.frame, col), config)
            per_feature[col] = result
            actual[col] = {k: result[k] for k in ("demographic_parity_difference",
                                                  "equalized_odds_difference")}
            problems.extend(found)
    notes = tuple(dict.fromkeys(str(w.message) for w in caught))
    details = {"pos_label": space.pos_label, "method": config.method, "n": len(y),
               "features": per_feature}
    summary = "; ".join(f"{c}: DP {v['demographic_parity_difference']:.3f}, EO "
                        f"{v['equalized_odds_difference']:.3f}" for c, v in actual.items())
    if problems:
        reason = f"{len(problems)} fairness threshold(s) exceeded: {'; '.join(problems)}."
    elif not threshold:
        reason = f"No fairness threshold is configured; {summary}."
    else:
        reason = f"All {len(features)} sensitive feature(s) within the thresholds: {summary}."
    return GateResult(NAME, not problems, actual, threshold, reason, details=details,
                      warnings=notes, skipped=not threshold)
