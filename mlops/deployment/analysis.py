"""The analysis of one rollout step: candidate vs stable from the rollout's running evidence.

Each look judges, over the requests since the rollout started (kept as aggregates by
:class:`~mlops.deployment.evidence.Evidence`, so a look never re-reads the log):

- **sample ratio**: requests per arm against the configured weight (chi-square; p < 0.001
  means the split itself is broken -> ``Failed``), over requests older than
  ``srm_settle_seconds`` (the newest seconds of the log may hold one arm's flush only);
- **error rate** (5xx): always-valid non-inferiority test of two proportions (mSPRT), the
  candidate may not be worse than stable by more than ``error_margin``;
- **model quality**, when labels arrive through feedback, over requests older than
  ``label_delay`` (labels are mature): for classification the same test on the share of
  correct predictions (margin ``accuracy_margin``; F1 reported for 0/1 labels, and ROC-AUC
  when class probabilities are logged), for regression (fractional labels) an always-valid
  non-inferiority test of the mean absolute error (margin ``mae_margin``, default 5% of
  stable's MAE at the first look, then fixed; RMSE reported);
- **p99 latency** guardrail: candidate p99 <= stable p99 x (1 + ``latency_tolerance``) +
  ``latency_slack_ms``, judged once both arms have ``min_samples`` requests (p99 from a
  sketch, within 0.5%).

The sequential tests are always valid, so looking at every step does not inflate the false
rollback rate; their running state is kept in the rollout row between looks. Across the
metrics, Benjamini-Hochberg at ``alpha`` decides which are worse (adjusting the
"candidate is worse" p-values) and which are shown non-inferior. ``Failed`` when a metric
is worse or a guardrail breaks; ``Successful`` when every required metric is shown
non-inferior; otherwise ``Inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlops.deployment.config import RolloutConfig, parse_rollout_config
from mlops.deployment.evidence import ArmQuality, Evidence
from mlops.deployment.types import Outcome
from mlops.stats.multiple import benjamini_hochberg
from mlops.stats.sequential import (
    SequentialMonitor,
    SequentialResult,
    choose_tau,
    msprt_non_inferiority_proportions,
    non_inferiority_from_summary,
)
from mlops.stats.srm import sample_ratio_mismatch

__all__ = ["DEFAULTS", "Monitors", "StepAnalysis", "analyse", "look", "result_dict",
           "settings"]

#: the analysis defaults (see :class:`~mlops.deployment.config.RolloutConfig`)
DEFAULTS: dict[str, Any] = RolloutConfig().analysis()
#: the sequential tests' running state, per metric (JSON-ready)
Monitors = dict[str, dict[str, Any]]


def settings(config: RolloutConfig | Mapping[str, Any] | None) -> RolloutConfig:
    """Typed analysis settings: a parsed config as is, a mapping parsed (shared keys)."""
    return config if isinstance(config, RolloutConfig) else parse_rollout_config("full",
                                                                                 config)


@dataclass(frozen=True)
class StepAnalysis:
    """One look: its outcome, why, every number it decided on, and the sequential tests'
    state after it."""

    outcome: Outcome
    reason: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    monitors: Monitors = field(default_factory=dict)


def result_dict(r: SequentialResult) -> dict[str, Any]:
    """A sequential look as JSON-ready numbers."""
    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else float(v)

    return {"estimate": num(r.estimate), "ci_low": num(r.ci_low), "ci_high": num(r.ci_high),
            "p_non_inferior": num(r.p_value), "p_inferior": num(r.p_inferior),
            "n_stable": r.n_x, "n_candidate": r.n_y, "decision": r.decision,
            "margin": r.margin, "alpha": r.alpha, "tau": r.tau}


def look(name: str, monitors: Monitors, result: SequentialResult) -> SequentialResult:
    """Fold this look into the metric's running sequential state (kept in ``monitors``)."""
    stored = monitors.get(name)
    monitor = SequentialMonitor.from_dict(stored) if stored else SequentialMonitor.like(result)
    combined = monitor.update(result)
    monitors[name] = monitor.to_dict()
    return combined


def analyse(evidence: Evidence, *, weight: float, config: RolloutConfig | Mapping[str, Any],
            monitors: Monitors) -> StepAnalysis:
    """One look at a split step (``evidence`` already settled at the time of the look)."""
    cfg = settings(config)
    monitors = {k: dict(v) for k, v in monitors.items()}
    metrics: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    passed: list[str] = []
    tested: dict[str, tuple[SequentialResult, str]] = {}  # metric -> (running result, text)
    stable, candidate = evidence.traffic
    n_s, n_c = stable.requests, candidate.requests
    min_n = cfg.min_samples

    # sample ratio: only meaningful while both arms get traffic
    k_s, k_c = evidence.split.settled
    if 0.0 < weight < 100.0 and k_s + k_c > 0:
        srm = sample_ratio_mismatch([k_s, k_c], [100.0 - weight, weight],
                                    threshold=cfg.srm_threshold)
        metrics["sample_ratio"] = {"observed": [k_s, k_c], "weights": [100 - weight, weight],
                                   "chi2": float(srm.chi2), "p_value": float(srm.p_value),
                                   "mismatch": bool(srm.mismatch)}
        if srm.mismatch:
            failed.append(f"sample ratio mismatch (p = {srm.p_value:.2g}): the split is broken")

    # error rate (lower is better)
    if n_s and n_c:
        e_s, e_c = stable.errors, candidate.errors
        margin = cfg.error_margin
        result = msprt_non_inferiority_proportions(
            e_s, n_s, e_c, n_c, margin=margin, tau=choose_tau(max(margin, 0.005)),
            alpha=cfg.alpha, higher_is_better=False)
        combined = look("error_rate", monitors, result)
        metrics["error_rate"] = {**result_dict(combined), "stable": e_s / n_s,
                                 "candidate": e_c / n_c}
        tested["error_rate"] = (combined, f"error rate {e_c / n_c:.2%} vs {e_s / n_s:.2%}: "
                                          f"worse by more than {margin:.2%}")

    # latency guardrail on successful requests
    if n_s >= min_n and n_c >= min_n:
        s99, c99 = stable.latency.quantile(0.99), candidate.latency.quantile(0.99)
        limit = s99 * (1 + cfg.latency_tolerance) + cfg.latency_slack_ms
        metrics["latency_p99_ms"] = {"stable": s99, "candidate": c99, "limit": limit}
        if c99 > limit:
            failed.append(f"p99 latency {c99:.1f} ms above the limit {limit:.1f} ms "
                          f"(stable {s99:.1f} ms)")

    quality = _quality(evidence, cfg, metrics, monitors, tested)
    _decide_metrics(tested, cfg.alpha, metrics, failed, passed)

    if failed:
        return StepAnalysis(Outcome.FAILED, "; ".join(failed), metrics, monitors)
    needed = {"error_rate"} | ({quality or "accuracy"} if cfg.require_labels else set())
    if n_s >= min_n and n_c >= min_n and needed <= set(passed):
        return StepAnalysis(Outcome.SUCCESSFUL, "candidate shown non-inferior on "
                            + ", ".join(sorted(passed)), metrics, monitors)
    if not n_s and n_c >= min_n:  # all traffic on the candidate: absolute guardrails only
        rate, margin = candidate.errors / n_c, cfg.error_margin
        metrics["error_rate"] = {"candidate": rate, "n_candidate": n_c, "limit": margin}
        if rate > margin:
            return StepAnalysis(Outcome.FAILED, f"error rate {rate:.2%} above {margin:.2%} "
                                "with all traffic on the candidate", metrics, monitors)
        return StepAnalysis(Outcome.SUCCESSFUL, f"{n_c} requests on the candidate, error "
                            f"rate {rate:.2%} within {margin:.2%}", metrics, monitors)
    waiting = sorted(needed - set(passed))
    return StepAnalysis(Outcome.INCONCLUSIVE, f"waiting for evidence ({n_s} stable / {n_c} "
                        f"candidate requests; undecided: {', '.join(waiting) or 'none'})",
                        metrics, monitors)


def _decide_metrics(tested: dict[str, tuple[SequentialResult, str]], alpha: float,
                    metrics: dict[str, dict[str, Any]], failed: list[str],
                    passed: list[str]) -> None:
    """Benjamini-Hochberg across the metrics' always-valid p-values, both directions."""
    if not tested:
        return
    names = list(tested)
    worse = benjamini_hochberg([tested[n][0].p_inferior or 1.0 for n in names], alpha)
    fine = benjamini_hochberg([tested[n][0].p_value for n in names], alpha)
    for i, name in enumerate(names):
        metrics[name]["p_inferior_bh"] = worse.p_adjusted[i]
        metrics[name]["p_non_inferior_bh"] = fine.p_adjusted[i]
        if worse.reject[i]:
            failed.append(tested[name][1])
            metrics[name]["decision"] = "inferior"
        elif fine.reject[i]:
            passed.append(name)
            metrics[name]["decision"] = "non_inferior"
        else:
            metrics[name]["decision"] = "continue"


def _quality(evidence: Evidence, cfg: RolloutConfig, metrics: dict[str, dict[str, Any]],
             monitors: Monitors, tested: dict[str, tuple[SequentialResult, str]]
             ) -> str | None:
    """Accuracy or MAE on mature labels; the metric's name, None without labels in both
    arms."""
    q_s, q_c = evidence.quality
    if not q_s.n or not q_c.n:
        return None
    if evidence.is_regression:
        return _mae(q_s, q_c, cfg, metrics, monitors, tested)
    margin = cfg.accuracy_margin
    result = msprt_non_inferiority_proportions(q_s.correct, q_s.n, q_c.correct, q_c.n,
                                               margin=margin, tau=choose_tau(margin),
                                               alpha=cfg.alpha, higher_is_better=True)
    combined = look("accuracy", monitors, result)
    acc_s, acc_c = q_s.correct / q_s.n, q_c.correct / q_c.n
    extra: dict[str, float] = {}
    for arm, q in (("stable", q_s), ("candidate", q_c)):
        f1, auc = q.f1(), q.auc()
        if f1 is not None:
            extra[f"f1_{arm}"] = f1
        if auc is not None:
            extra[f"auc_{arm}"] = auc
    metrics["accuracy"] = {**result_dict(combined), "stable": acc_s, "candidate": acc_c,
                           **extra}
    tested["accuracy"] = (combined, f"accuracy {acc_c:.3f} vs {acc_s:.3f}: worse by more "
                                    f"than {margin}")
    return "accuracy"


def _mae(q_s: ArmQuality, q_c: ArmQuality, cfg: RolloutConfig,
         metrics: dict[str, dict[str, Any]], monitors: Monitors,
         tested: dict[str, tuple[SequentialResult, str]]) -> str:
    err_s, err_c = q_s.abs_error, q_c.abs_error
    mae_s, mae_c = err_s.mean, err_c.mean
    # the margin a test started with stays: a moving margin would void its guarantee
    stored = (monitors.get("mae") or {}).get("margin")
    margin = float(stored) if stored else cfg.mae_margin or max(0.05 * mae_s, 1e-12)
    if err_s.n < 2 or err_c.n < 2:
        return "mae"
    variance = err_s.variance / err_s.n + err_c.variance / err_c.n
    result = non_inferiority_from_summary(mae_c - mae_s, variance, err_s.n, err_c.n,
                                          margin=margin, tau=choose_tau(margin),
                                          alpha=cfg.alpha, higher_is_better=False)
    combined = look("mae", monitors, result)
    metrics["mae"] = {**result_dict(combined), "stable": mae_s, "candidate": mae_c,
                      "rmse_stable": math.sqrt(err_s.mean_square),
                      "rmse_candidate": math.sqrt(err_c.mean_square)}
    tested["mae"] = (combined, f"MAE {mae_c:.4g} vs {mae_s:.4g}: worse by more than "
                               f"{margin:.4g}")
    return "mae"
