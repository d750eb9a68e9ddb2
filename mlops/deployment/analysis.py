"""The analysis of one rollout step: candidate vs stable from the prediction log.

Each look computes, over the requests since the rollout started:

- **sample ratio**: requests per arm against the configured weight (chi-square; p < 0.001
  means the split itself is broken -> ``Failed``), over requests older than
  ``srm_settle_seconds`` (the newest seconds of the log may hold one arm's flush only);
- **error rate** (5xx): always-valid non-inferiority test of two proportions (mSPRT), the
  candidate may not be worse than stable by more than ``error_margin``;
- **model quality**, when labels arrive through feedback, over requests older than
  ``label_delay`` (labels are mature): for classification the same test on the share of
  correct predictions (margin ``accuracy_margin``; F1 reported for 0/1 labels, and ROC-AUC
  when class probabilities are logged), for
  regression (fractional labels) an always-valid non-inferiority test of the mean absolute
  error (margin ``mae_margin``, default 5% of stable's MAE; RMSE reported);
- **p99 latency** guardrail: candidate p99 <= stable p99 x (1 + ``latency_tolerance``) +
  ``latency_slack_ms``, judged once both arms have ``min_samples`` requests.

The sequential tests are always valid, so looking at every step does not inflate the false
rollback rate; their running state is kept in the rollout row between looks. Across the
metrics, Benjamini-Hochberg at ``alpha`` decides which are worse (adjusting the
"candidate is worse" p-values) and which are shown non-inferior. ``Failed`` when a metric
is worse or a guardrail breaks; ``Successful`` when every required metric is shown
non-inferior; otherwise ``Inconclusive``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops.deployment.config import RolloutConfig, parse_rollout_config
from mlops.stats.multiple import benjamini_hochberg
from mlops.stats.sequential import (
    SequentialMonitor,
    SequentialResult,
    choose_tau,
    msprt_non_inferiority_means,
    msprt_non_inferiority_proportions,
)
from mlops.stats.srm import sample_ratio_mismatch

__all__ = ["DEFAULTS", "StepAnalysis", "analyse", "settings"]

#: the analysis defaults (see :class:`~mlops.deployment.config.RolloutConfig`)
DEFAULTS: dict[str, Any] = RolloutConfig().analysis()


def settings(config: RolloutConfig | Mapping[str, Any] | None) -> RolloutConfig:
    """Typed analysis settings: a parsed config as is, a mapping parsed (shared keys)."""
    return config if isinstance(config, RolloutConfig) else parse_rollout_config("full",
                                                                                 config)


@dataclass(frozen=True)
class StepAnalysis:
    outcome: str  # "Successful" | "Failed" | "Inconclusive"
    reason: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    monitors: dict[str, dict[str, Any]] = field(default_factory=dict)


def _result_dict(r: SequentialResult) -> dict[str, Any]:
    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else float(v)

    return {"estimate": num(r.estimate), "ci_low": num(r.ci_low), "ci_high": num(r.ci_high),
            "p_non_inferior": num(r.p_value), "p_inferior": num(r.p_inferior),
            "n_stable": r.n_x, "n_candidate": r.n_y, "decision": r.decision,
            "margin": r.margin, "alpha": r.alpha, "tau": r.tau}


def _look(name: str, monitors: dict[str, dict[str, Any]], result: SequentialResult
          ) -> SequentialResult:
    stored = monitors.get(name)
    monitor = SequentialMonitor.from_dict(stored) if stored else SequentialMonitor.like(result)
    combined = monitor.update(result)
    monitors[name] = monitor.to_dict()
    return combined


def analyse(log: pa.Table, feedback: pa.Table, *, stable: str, candidate: str,
            weight: float, config: RolloutConfig | Mapping[str, Any],
            monitors: dict[str, dict[str, Any]],
            now: float | None = None, step_since: float | None = None) -> StepAnalysis:
    """One look at the rollout's traffic (``log``: prediction rows of this rollout only;
    the sample-ratio check uses the rows since ``step_since``, when this weight applied)."""
    cfg = settings(config)
    now = time.time() if now is None else now
    monitors = {k: dict(v) for k, v in monitors.items()}
    alpha = cfg.alpha
    metrics: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    passed: list[str] = []
    tested: dict[str, tuple[SequentialResult, str]] = {}  # metric -> (running result, text)

    # one row per request for counts, errors and latency (row 0 of each request); a
    # "fallback" row is stable's answer to a request assigned to the candidate, whose own
    # failed row is already counted on the candidate's side
    if log.num_rows:
        log = log.filter(pc.not_equal(log["route"], "fallback"))
    first = log.filter(pc.equal(log["row"], 0)) if log.num_rows else log
    arms = {}
    for arm, version in (("stable", stable), ("candidate", candidate)):
        t = first.filter(pc.equal(first["version"], version)) if first.num_rows else first
        arms[arm] = t
    n_s, n_c = arms["stable"].num_rows, arms["candidate"].num_rows
    min_n = cfg.min_samples

    # sample ratio: only meaningful while both arms get traffic
    step_rows = first if step_since is None or not first.num_rows else first.filter(
        pc.greater_equal(pc.cast(first["ts"], pa.int64()), int(step_since * 1e6)))
    settled = now - cfg.srm_settle_seconds
    if step_rows.num_rows:
        step_rows = step_rows.filter(
            pc.less_equal(pc.cast(step_rows["ts"], pa.int64()), int(settled * 1e6)))
    k_s = _routed(step_rows, stable, 1.0 - weight / 100.0)
    k_c = _routed(step_rows, candidate, weight / 100.0)
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
        e_s = int(pc.sum(pc.greater_equal(arms["stable"]["status"], 500)).as_py() or 0)
        e_c = int(pc.sum(pc.greater_equal(arms["candidate"]["status"], 500)).as_py() or 0)
        margin = cfg.error_margin
        result = msprt_non_inferiority_proportions(
            e_s, n_s, e_c, n_c, margin=margin, tau=choose_tau(max(margin, 0.005)),
            alpha=alpha, higher_is_better=False)
        combined = _look("error_rate", monitors, result)
        metrics["error_rate"] = {**_result_dict(combined), "stable": e_s / n_s,
                                 "candidate": e_c / n_c}
        tested["error_rate"] = (combined, f"error rate {e_c / n_c:.2%} vs {e_s / n_s:.2%}: "
                                          f"worse by more than {margin:.2%}")

    # latency guardrail on successful requests
    if n_s >= min_n and n_c >= min_n:
        def p99(t: pa.Table) -> float:
            ok = t.filter(pc.less(t["status"], 500))
            return float(np.percentile(ok["latency_ms"].to_numpy(), 99)) if ok.num_rows else 0.0

        s99, c99 = p99(arms["stable"]), p99(arms["candidate"])
        limit = s99 * (1 + cfg.latency_tolerance) + cfg.latency_slack_ms
        metrics["latency_p99_ms"] = {"stable": s99, "candidate": c99, "limit": limit}
        if c99 > limit:
            failed.append(f"p99 latency {c99:.1f} ms above the limit {limit:.1f} ms "
                          f"(stable {s99:.1f} ms)")

    # model quality on mature labels: accuracy (classification) or absolute error
    # (regression)
    joined = _labelled(log, feedback, now - cfg.label_delay)
    quality = None
    if joined is not None:
        quality = _quality(joined, stable, candidate, cfg, metrics, monitors, tested)

    # Benjamini-Hochberg across the metrics' always-valid p-values, for both directions
    if tested:
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

    if failed:
        return StepAnalysis("Failed", "; ".join(failed), metrics, monitors)
    needed = {"error_rate"} | ({quality or "accuracy"} if cfg.require_labels else set())
    if n_s >= min_n and n_c >= min_n and needed <= set(passed):
        return StepAnalysis("Successful", "candidate shown non-inferior on "
                            + ", ".join(sorted(passed)), metrics, monitors)
    if not n_s and n_c >= min_n:  # all traffic on the candidate: absolute guardrails only
        e_c = int(pc.sum(pc.greater_equal(arms["candidate"]["status"], 500)).as_py() or 0)
        rate, margin = e_c / n_c, cfg.error_margin
        metrics["error_rate"] = {"candidate": rate, "n_candidate": n_c, "limit": margin}
        if rate > margin:
            return StepAnalysis("Failed", f"error rate {rate:.2%} above {margin:.2%} with all "
                                "traffic on the candidate", metrics, monitors)
        return StepAnalysis("Successful", f"{n_c} requests on the candidate, error rate "
                            f"{rate:.2%} within {margin:.2%}", metrics, monitors)
    waiting = sorted(needed - set(passed))
    return StepAnalysis("Inconclusive", f"waiting for evidence ({n_s} stable / {n_c} candidate "
                        f"requests; undecided: {', '.join(waiting) or 'none'})", metrics,
                        monitors)


def _routed(rows: pa.Table, version: str, share: float) -> int:
    """Requests ``version`` answered under this step's split. Gateway workers apply a new
    split up to a second after the step starts; requests routed under the previous split
    carry another propensity and would fake a sample ratio mismatch."""
    if not rows.num_rows:
        return 0
    mine = rows.filter(pc.equal(rows["version"], version))
    if "propensity" not in mine.column_names or not mine.num_rows:
        return int(mine.num_rows)
    p = mine["propensity"]
    same = pc.or_kleene(pc.is_null(p), pc.less(pc.abs(pc.subtract(p, share)), 1e-6))
    return int(pc.sum(pc.cast(same, pa.int64())).as_py() or 0)


def _labelled(log: pa.Table, feedback: pa.Table, mature: float) -> pd.DataFrame | None:
    """Successful predictions old enough for their labels to count, joined with them."""
    if not log.num_rows or not feedback.num_rows:
        return None
    columns = ["request_id", "row", "version", "prediction", "prediction_num", "ts", "status"]
    if "proba" in log.column_names:
        columns.append("proba")
    preds = log.select(columns).to_pandas()
    labels = feedback.select(["request_id", "row", "actual", "actual_num"]).to_pandas() \
        .drop_duplicates(["request_id", "row"], keep="last")
    preds = preds[(preds.status < 500) & (preds.ts.astype("int64") / 1e9 <= mature)]
    joined = preds.merge(labels, on=["request_id", "row"])
    return None if joined.empty else joined


def _correct(joined: pd.DataFrame) -> np.ndarray:
    numeric = joined.prediction_num.notna() & joined.actual_num.notna()
    return np.asarray(np.where(numeric, joined.prediction_num == joined.actual_num,
                               joined.prediction.astype(str) == joined.actual.astype(str)),
                      dtype=bool)


def _is_regression(joined: pd.DataFrame) -> bool:
    """Numeric labels with fractional values (or predictions) mean a regression task."""
    if joined.actual_num.isna().any() or joined.prediction_num.isna().any():
        return False
    values = np.concatenate([joined.actual_num.to_numpy(), joined.prediction_num.to_numpy()])
    return bool(np.any(np.mod(values, 1) != 0))


def _quality(joined: pd.DataFrame, stable: str, candidate: str, cfg: RolloutConfig,
             metrics: dict[str, dict[str, Any]], monitors: dict[str, dict[str, Any]],
             tested: dict[str, tuple[SequentialResult, str]]) -> str | None:
    s_rows = joined[joined.version == stable]
    c_rows = joined[joined.version == candidate]
    if s_rows.empty or c_rows.empty:
        return None
    alpha = cfg.alpha
    if _is_regression(joined):
        err_s = (s_rows.prediction_num - s_rows.actual_num).abs().to_numpy()
        err_c = (c_rows.prediction_num - c_rows.actual_num).abs().to_numpy()
        mae_s, mae_c = float(err_s.mean()), float(err_c.mean())
        margin = cfg.mae_margin or max(0.05 * mae_s, 1e-12)
        if err_s.size < 2 or err_c.size < 2:
            return "mae"
        result = msprt_non_inferiority_means(err_s, err_c, margin=margin,
                                             tau=choose_tau(margin), alpha=alpha,
                                             higher_is_better=False)
        combined = _look("mae", monitors, result)
        metrics["mae"] = {**_result_dict(combined), "stable": mae_s, "candidate": mae_c,
                          "rmse_stable": float(np.sqrt(np.mean(err_s ** 2))),
                          "rmse_candidate": float(np.sqrt(np.mean(err_c ** 2)))}
        tested["mae"] = (combined, f"MAE {mae_c:.4g} vs {mae_s:.4g}: worse by more than "
                                   f"{margin:.4g}")
        return "mae"
    ok_s, ok_c = _correct(s_rows), _correct(c_rows)
    m_s, m_c = len(ok_s), len(ok_c)
    margin = cfg.accuracy_margin
    result = msprt_non_inferiority_proportions(int(ok_s.sum()), m_s, int(ok_c.sum()), m_c,
                                               margin=margin, tau=choose_tau(margin),
                                               alpha=alpha, higher_is_better=True)
    combined = _look("accuracy", monitors, result)
    acc_s, acc_c = float(ok_s.mean()), float(ok_c.mean())
    metrics["accuracy"] = {**_result_dict(combined), "stable": acc_s, "candidate": acc_c,
                           **_f1(s_rows, c_rows), **_auc(s_rows, c_rows)}
    tested["accuracy"] = (combined, f"accuracy {acc_c:.3f} vs {acc_s:.3f}: worse by more "
                                    f"than {margin}")
    return "accuracy"


def _auc(s_rows: pd.DataFrame, c_rows: pd.DataFrame) -> dict[str, float]:
    """ROC-AUC per arm for binary 0/1 labels, from the logged class probabilities (the
    gateway logs them on request or with ``mlops serve --log-proba``); reported, not decided
    on. Left out for an arm whose rows lack probabilities or hold one class only."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    for arm, rows in (("auc_stable", s_rows), ("auc_candidate", c_rows)):
        if "proba" not in rows.columns or rows.proba.isna().any() or rows.actual_num.isna().any():
            continue
        if set(rows.actual_num.unique()) != {0.0, 1.0}:
            continue
        probas = [p for p in rows.proba if len(p) == 2]
        if len(probas) != len(rows):
            continue
        out[arm] = float(roc_auc_score(rows.actual_num.to_numpy(),
                                       np.asarray([p[1] for p in probas], dtype=float)))
    return out


def _f1(s_rows: pd.DataFrame, c_rows: pd.DataFrame) -> dict[str, float]:
    """F1 of the positive class for binary 0/1 labels (reported, not decided on)."""
    from sklearn.metrics import f1_score

    out: dict[str, float] = {}
    for arm, rows in (("f1_stable", s_rows), ("f1_candidate", c_rows)):
        labels = set(rows.actual_num.dropna().unique()) | set(rows.prediction_num.dropna().unique())
        if labels and labels <= {0.0, 1.0} and not rows.actual_num.isna().any():
            out[arm] = float(f1_score(rows.actual_num, rows.prediction_num.fillna(-1),
                                      labels=[1.0], average="binary", zero_division=0.0))
    return out
