"""Champion gate: is the candidate at least as good as the production version, on the same rows?

Both models score the same test rows, so the comparison is paired.

Classification - non-inferiority on accuracy. ``d = acc_candidate - acc_champion`` with the
Agresti-Min (2005) interval of a paired difference of proportions (add 0.5 to each cell of
the 2x2 correct/incorrect table, then Wald; :func:`mlops.stats.paired.mcnemar`). The gate
passes when the one-sided ``1 - alpha`` lower bound (the lower end of the two-sided
``1 - 2 alpha`` interval) is above ``-margin`` (``margin`` in accuracy points). McNemar's
test of equal accuracy (exact binomial when the discordant pairs ``b + c < 25``, else
chi-square with continuity correction) is reported with its p-value and the discordant
counts; it informs but does not decide, because a tiny real difference within the margin is
acceptable.

Regression - non-inferiority on the mean per-row loss (``loss``: squared or absolute error).
The paired percentile bootstrap (:func:`mlops.stats.paired.paired_bootstrap_ci`, ``n_boot``
resamples of rows, seeded with ``ctx.seed``) gives the interval of ``mean(loss_candidate -
loss_champion)``; the gate passes when its one-sided ``1 - alpha`` upper bound is below
``relative_margin * mean(loss_champion)`` (default 5%) - relative to the champion's loss - or is
``<= 0`` (the candidate is not worse at all, which also covers two perfect models).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from mlops.ci.gates.base import GateConfig, GateContext, GateResult, timed
from mlops.ci.gates.metrics import fmt_pair, require_labels
from mlops.errors import CIError, FlavorError, SignatureError, StatsError
from mlops.stats.paired import mcnemar_from_predictions, paired_bootstrap_ci

__all__ = ["NAME", "Config", "run"]

NAME = "champion"


class Config(GateConfig):
    """Non-inferiority margin and test level."""

    margin: float = Field(default=0.01, ge=0, lt=1)
    #: regression: allowed loss increase relative to the champion's (None: ``margin``)
    relative_margin: float | None = Field(default=0.05, ge=0, lt=1)
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    loss: Literal["squared", "absolute"] = "squared"
    n_boot: int = Field(default=2000, ge=200, le=100_000)


def _champion_predictions(ctx: GateContext) -> np.ndarray:
    champ = ctx.champion
    assert champ is not None
    cols = champ.input_columns
    try:
        if cols and not set(cols) <= set(ctx.X.columns) and set(cols) <= set(ctx.frame.columns):
            return np.asarray(champ.predict(ctx.frame[cols]))
        pred = ctx.champion_pred
        assert pred is not None
        return pred
    except (SignatureError, FlavorError) as exc:
        raise CIError(f"Production version {ctx.champion_version} of {ctx.model_name} cannot "
                      f"score the test data: {exc.message}",
                      fix="Test on a table holding the inputs of both versions, or disable the "
                          "champion gate for this change of inputs.",
                      model=ctx.model_name, version=ctx.champion_version) from exc


def _classification(ctx: GateContext, config: Config, y: np.ndarray, champ: np.ndarray,
                    who: str) -> GateResult:
    res = mcnemar_from_predictions(y, champ, ctx.y_pred, alpha=2 * config.alpha)
    lower = res.ci_low
    passed = bool(lower > -config.margin)
    level = 1 - config.alpha
    lo, lim = fmt_pair(lower, -config.margin)
    verdict = (f"non-inferior: the one-sided {level:.0%} lower bound of the difference {lo} "
               f"> -{config.margin:g}" if passed else
               f"may be worse by more than the margin: the one-sided {level:.0%} lower bound "
               f"of the difference {lo} <= {lim}")
    reason = (f"Candidate accuracy {res.accuracy_b:.4f} vs {who} {res.accuracy_a:.4f} "
              f"(difference {res.difference:+.4f}, n={res.n}): {verdict}; McNemar p="
              f"{res.p_value:.3g} ({res.method}, {res.c} rows only the candidate got right, "
              f"{res.b} only the champion).")
    details: dict[str, Any] = {
        "metric": "accuracy", "candidate": res.accuracy_b, "champion": res.accuracy_a,
        "difference": res.difference, "ci_low": res.ci_low, "ci_high": res.ci_high,
        "ci_level": 1 - 2 * config.alpha, "ci_method": "Agresti-Min paired proportion "
        "difference (two-sided 1-2*alpha; its lower end is the one-sided 1-alpha bound)",
        "p_value": res.p_value, "test": f"McNemar ({res.method})", "statistic": res.statistic,
        "only_champion_right": res.b, "only_candidate_right": res.c, "n": res.n,
        "margin": config.margin, "alpha": config.alpha,
        "champion_version": ctx.champion_version,
    }
    actual = {"accuracy": res.accuracy_b, "champion_accuracy": res.accuracy_a,
              "difference": res.difference, "lower_bound": lower}
    threshold = {"min_lower_bound": -config.margin, "alpha": config.alpha}
    return GateResult(NAME, passed, actual, threshold, reason, details=details)


def _losses(y: np.ndarray, pred: np.ndarray, kind: str) -> np.ndarray:
    err = np.asarray(pred, dtype=np.float64).ravel() - y
    return np.asarray(err**2 if kind == "squared" else np.abs(err), dtype=np.float64)


def _regression(ctx: GateContext, config: Config, y: np.ndarray, champ: np.ndarray,
                who: str) -> GateResult:
    try:
        yf = np.asarray(y, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise CIError(f"The labels of {ctx.model_name} are not numeric: {exc}.",
                      fix="Give the numeric target column with --label.") from exc
    if not np.all(np.isfinite(yf)):
        raise CIError(f"The labels hold {int(np.sum(~np.isfinite(yf)))} missing value(s).",
                      fix="Drop the rows without a label from the test data.")
    loss_champ = _losses(yf, champ, config.loss)
    loss_cand = _losses(yf, ctx.y_pred, config.loss)
    try:
        boot = paired_bootstrap_ci(loss_champ, loss_cand, n_boot=config.n_boot, seed=ctx.seed,
                                   alpha=2 * config.alpha)
    except StatsError as exc:
        raise CIError(f"Cannot compare {ctx.model_name} with its production version: "
                      f"{exc.message}", fix=exc.fix or "Check the test data.") from exc
    champ_mean, cand_mean = float(loss_champ.mean()), float(loss_cand.mean())
    rel = config.relative_margin if config.relative_margin is not None else config.margin
    allowance = rel * champ_mean
    upper = boot.ci_high
    passed = bool(upper < allowance or upper <= 0)
    name = "MSE" if config.loss == "squared" else "MAE"
    level = 1 - config.alpha
    up, lim = fmt_pair(upper, allowance)
    bound = f"the one-sided {level:.0%} upper bound of the loss increase {up}"
    if upper < allowance:
        verdict = f"non-inferior: {bound} < {lim} ({rel:g} x the champion's {name})"
    elif passed:
        verdict = f"non-inferior: {bound} <= 0"
    else:
        verdict = (f"may be worse by more than the margin: {bound} >= {lim} "
                   f"({rel:g} x the champion's {name})")
    p_text = f"={boot.p_value:.3g}" if boot.p_value > 0 else f"<{1 / boot.n_boot:.2g}"
    reason = (f"Candidate {name} {cand_mean:.4g} vs {who} {champ_mean:.4g} (difference "
              f"{boot.estimate:+.4g}, n={boot.n}): {verdict}; bootstrap p{p_text}.")
    details: dict[str, Any] = {
        "metric": name.lower(), "candidate": cand_mean, "champion": champ_mean,
        "difference": boot.estimate, "relative_difference":
            boot.estimate / champ_mean if champ_mean > 0 else None,
        "ci_low": boot.ci_low, "ci_high": boot.ci_high, "ci_level": 1 - 2 * config.alpha,
        "ci_method": "paired percentile bootstrap of mean(loss_candidate - loss_champion) "
        "(two-sided 1-2*alpha; its upper end is the one-sided 1-alpha bound)",
        "p_value": boot.p_value, "std_error": boot.std_error, "n_boot": boot.n_boot,
        "seed": boot.seed, "n": boot.n, "allowance": allowance, "margin": rel,
        "alpha": config.alpha, "loss": config.loss, "champion_version": ctx.champion_version,
    }
    actual = {name.lower(): cand_mean, f"champion_{name.lower()}": champ_mean,
              "difference": boot.estimate, "upper_bound": upper}
    threshold = {"max_upper_bound": allowance, "relative_margin": rel, "alpha": config.alpha}
    return GateResult(NAME, passed, actual, threshold, reason, details=details)


@timed
def run(ctx: GateContext, config: Config) -> GateResult:
    """Compare the candidate with the production version on the same rows."""
    threshold = {"margin": config.margin, "alpha": config.alpha}
    if ctx.champion is None:
        return GateResult(NAME, True, None, threshold,
                          f"No production version of {ctx.model_name} yet: nothing to compare "
                          "against.", skipped=True)
    y = require_labels(ctx, NAME)
    champ = _champion_predictions(ctx)
    if champ.shape[0] != y.shape[0]:
        raise CIError(f"The production version returned {champ.shape[0]} predictions for "
                      f"{y.shape[0]} rows.", fix="Check the production model's output shape.",
                      model=ctx.model_name, version=ctx.champion_version)
    who = f"production {ctx.champion_version}" if ctx.champion_version else "production"
    if ctx.task == "regression":
        return _regression(ctx, config, y, champ, who)
    return _classification(ctx, config, y, champ, who)
