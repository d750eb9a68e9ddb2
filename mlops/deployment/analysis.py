"""The analysis of one rollout step: candidate vs stable from the prediction log.

Each look computes, over the requests since the rollout started:

- **sample ratio**: requests per arm against the configured weight (chi-square; p < 0.001
  means the split itself is broken -> ``Failed``);
- **error rate** (5xx): always-valid non-inferiority test of two proportions (mSPRT), the
  candidate may not be worse than stable by more than ``error_margin``;
- **accuracy**, when labels arrive through feedback: the same test on the share of correct
  predictions, over requests older than ``label_delay`` (labels are mature), margin
  ``accuracy_margin``;
- **p99 latency** guardrail: candidate p99 <= stable p99 x (1 + ``latency_tolerance``) +
  ``latency_slack_ms``, judged once both arms have ``min_samples`` requests.

The sequential tests are always valid, so looking at every step does not inflate the false
rollback rate; their running state is kept in the rollout row between looks. Each test runs
at alpha / number of tests (Bonferroni: valid for always-valid p-values under any
dependence). ``Failed`` when a test finds the candidate worse or a guardrail breaks;
``Successful`` when every test with data shows non-inferiority; otherwise ``Inconclusive``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mlops.stats.sequential import (
    SequentialMonitor,
    SequentialResult,
    choose_tau,
    msprt_non_inferiority_proportions,
)
from mlops.stats.srm import sample_ratio_mismatch

__all__ = ["DEFAULTS", "StepAnalysis", "analyse"]

DEFAULTS: dict[str, Any] = {
    "alpha": 0.05,
    "error_margin": 0.01,  # absolute error-rate points the candidate may add
    "accuracy_margin": 0.02,  # absolute accuracy points the candidate may lose
    "label_delay": 0.0,  # seconds before a prediction's label counts as mature
    "latency_tolerance": 0.5,  # candidate p99 may be 50% above stable's ...
    "latency_slack_ms": 5.0,  # ... plus this much
    "min_samples": 50,  # per arm, before guardrails and successes count
    "require_labels": False,  # Successful needs an accuracy verdict
    "srm_threshold": 0.001,
}


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
            weight: float, config: dict[str, Any], monitors: dict[str, dict[str, Any]],
            now: float | None = None, step_since: float | None = None) -> StepAnalysis:
    """One look at the rollout's traffic (``log``: prediction rows of this rollout only;
    the sample-ratio check uses the rows since ``step_since``, when this weight applied)."""
    cfg = {**DEFAULTS, **config}
    now = time.time() if now is None else now
    monitors = {k: dict(v) for k, v in monitors.items()}
    tests = 2  # error rate and accuracy
    alpha = float(cfg["alpha"]) / tests
    metrics: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    passed: list[str] = []

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
    min_n = int(cfg["min_samples"])

    # sample ratio: only meaningful while both arms get traffic
    step_rows = first if step_since is None or not first.num_rows else first.filter(
        pc.greater_equal(pc.cast(first["ts"], pa.int64()), int(step_since * 1e6)))
    k_s = step_rows.filter(pc.equal(step_rows["version"], stable)).num_rows \
        if step_rows.num_rows else 0
    k_c = step_rows.filter(pc.equal(step_rows["version"], candidate)).num_rows \
        if step_rows.num_rows else 0
    if 0.0 < weight < 100.0 and k_s + k_c > 0:
        srm = sample_ratio_mismatch([k_s, k_c], [100.0 - weight, weight],
                                    threshold=float(cfg["srm_threshold"]))
        metrics["sample_ratio"] = {"observed": [k_s, k_c], "weights": [100 - weight, weight],
                                   "chi2": float(srm.chi2), "p_value": float(srm.p_value),
                                   "mismatch": bool(srm.mismatch)}
        if srm.mismatch:
            failed.append(f"sample ratio mismatch (p = {srm.p_value:.2g}): the split is broken")

    # error rate (lower is better)
    if n_s and n_c:
        e_s = int(pc.sum(pc.greater_equal(arms["stable"]["status"], 500)).as_py() or 0)
        e_c = int(pc.sum(pc.greater_equal(arms["candidate"]["status"], 500)).as_py() or 0)
        margin = float(cfg["error_margin"])
        result = msprt_non_inferiority_proportions(
            e_s, n_s, e_c, n_c, margin=margin, tau=choose_tau(max(margin, 0.005)),
            alpha=alpha, higher_is_better=False)
        combined = _look("error_rate", monitors, result)
        metrics["error_rate"] = {**_result_dict(combined), "stable": e_s / n_s,
                                 "candidate": e_c / n_c}
        if combined.decision == "inferior":
            failed.append(f"error rate {e_c / n_c:.2%} vs {e_s / n_s:.2%}: worse by more than "
                          f"{margin:.2%}")
        elif combined.decision == "non_inferior":
            passed.append("error_rate")

    # latency guardrail on successful requests
    if n_s >= min_n and n_c >= min_n:
        def p99(t: pa.Table) -> float:
            ok = t.filter(pc.less(t["status"], 500))
            return float(np.percentile(ok["latency_ms"].to_numpy(), 99)) if ok.num_rows else 0.0

        s99, c99 = p99(arms["stable"]), p99(arms["candidate"])
        limit = s99 * (1 + float(cfg["latency_tolerance"])) + float(cfg["latency_slack_ms"])
        metrics["latency_p99_ms"] = {"stable": s99, "candidate": c99, "limit": limit}
        if c99 > limit:
            failed.append(f"p99 latency {c99:.1f} ms above the limit {limit:.1f} ms "
                          f"(stable {s99:.1f} ms)")

    # accuracy on mature labels
    accuracy = _accuracy(log, feedback, stable, candidate, now - float(cfg["label_delay"]))
    if accuracy is not None:
        (c_s, m_s), (c_c, m_c) = accuracy
        if m_s and m_c:
            margin = float(cfg["accuracy_margin"])
            result = msprt_non_inferiority_proportions(
                c_s, m_s, c_c, m_c, margin=margin, tau=choose_tau(margin), alpha=alpha,
                higher_is_better=True)
            combined = _look("accuracy", monitors, result)
            metrics["accuracy"] = {**_result_dict(combined), "stable": c_s / m_s,
                                   "candidate": c_c / m_c}
            if combined.decision == "inferior":
                failed.append(f"accuracy {c_c / m_c:.3f} vs {c_s / m_s:.3f}: worse by more "
                              f"than {margin}")
            elif combined.decision == "non_inferior":
                passed.append("accuracy")

    if failed:
        return StepAnalysis("Failed", "; ".join(failed), metrics, monitors)
    needed = {"error_rate"} | ({"accuracy"} if cfg["require_labels"] else set())
    if n_s >= min_n and n_c >= min_n and needed <= set(passed):
        return StepAnalysis("Successful", "candidate shown non-inferior on "
                            + ", ".join(sorted(passed)), metrics, monitors)
    if not n_s and n_c >= min_n:  # all traffic on the candidate: absolute guardrails only
        e_c = int(pc.sum(pc.greater_equal(arms["candidate"]["status"], 500)).as_py() or 0)
        rate, margin = e_c / n_c, float(cfg["error_margin"])
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


def _accuracy(log: pa.Table, feedback: pa.Table, stable: str, candidate: str, mature: float
              ) -> tuple[tuple[int, int], tuple[int, int]] | None:
    if not log.num_rows or not feedback.num_rows:
        return None
    preds = log.select(["request_id", "row", "version", "prediction", "prediction_num", "ts",
                        "status"]).to_pandas()
    labels = feedback.select(["request_id", "row", "actual", "actual_num"]).to_pandas() \
        .drop_duplicates(["request_id", "row"], keep="last")
    preds = preds[(preds.status < 500)
                  & (preds.ts.astype("int64") / 1e9 <= mature)]
    joined = preds.merge(labels, on=["request_id", "row"])
    if joined.empty:
        return None
    numeric = joined.prediction_num.notna() & joined.actual_num.notna()
    correct = np.where(numeric, joined.prediction_num == joined.actual_num,
                       joined.prediction.astype(str) == joined.actual.astype(str))
    out = []
    for version in (stable, candidate):
        mask = joined.version == version
        out.append((int(correct[mask].sum()), int(mask.sum())))
    return out[0], out[1]
