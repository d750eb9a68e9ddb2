"""Analysis of a shadow step: the same requests answered by both versions, compared in pairs.

Pairs are the stable and shadow rows that share a request id and row (joined as they arrive,
:class:`~mlops.deployment.evidence.Evidence`). With labels, each pair gives (stable right?,
candidate right?): McNemar's test on the discordant pairs is reported, and the decision
comes from an always-valid paired mSPRT non-inferiority test on the per-request loss
difference d = candidate correct - stable correct (margin ``accuracy_margin``), safe to
look at every step. Without labels only the candidate's error rate on the mirrored
requests is judged (absolute limit ``error_margin``), and the agreement rate of the two
versions is reported. The shadow's own latency never reaches a client, so it is not
judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops.deployment.analysis import Monitors, StepAnalysis, look, result_dict, settings
from mlops.deployment.config import RolloutConfig
from mlops.deployment.evidence import Evidence
from mlops.deployment.types import Outcome
from mlops.stats.paired import mcnemar
from mlops.stats.sequential import choose_tau, non_inferiority_from_summary

__all__ = ["analyse_shadow"]


def analyse_shadow(evidence: Evidence, *, config: RolloutConfig | Mapping[str, Any],
                   monitors: Monitors) -> StepAnalysis:
    """One look at a shadow step (``evidence`` already settled at the time of the look)."""
    cfg = settings(config)
    monitors = {k: dict(v) for k, v in monitors.items()}
    metrics: dict[str, dict[str, Any]] = {}
    if not evidence.rows:
        return StepAnalysis(Outcome.INCONCLUSIVE, "no traffic yet", metrics, monitors)
    pairs = evidence.pairs
    n, errors, min_n = pairs.n, pairs.shadow_errors, cfg.min_samples
    metrics["pairs"] = {"n": n, "agreement": pairs.agree / n if n else None,
                        "shadow_error_rate": errors / n if n else None}
    if n >= min_n and errors / n > cfg.error_margin:
        return StepAnalysis(Outcome.FAILED, f"shadow error rate {errors / n:.2%} above "
                            f"{cfg.error_margin:.2%}", metrics, monitors)
    labelled = pairs.labelled
    if labelled:
        test = mcnemar(pairs.table)
        metrics["mcnemar"] = {"b_stable_only": test.b, "c_candidate_only": test.c,
                              "p_value": float(test.p_value), "difference": test.difference,
                              "ci_low": test.ci_low, "ci_high": test.ci_high,
                              "stable": test.accuracy_a, "candidate": test.accuracy_b}
        margin = cfg.accuracy_margin
        b, c = pairs.table[0][1], pairs.table[1][0]
        mean = (c - b) / labelled  # d = candidate right - stable right, in {-1, 0, 1}
        spread = (b + c) / labelled - mean * mean  # population variance of d
        if labelled >= 2 and spread > 0:
            variance = spread * labelled / (labelled - 1) / labelled  # (s^2 ddof=1) / n
            result = non_inferiority_from_summary(mean, variance, labelled, labelled,
                                                  margin=margin, tau=choose_tau(margin),
                                                  alpha=cfg.alpha, higher_is_better=True)
            combined = look("paired_accuracy", monitors, result)
            metrics["paired_accuracy"] = {**result_dict(combined), "stable": test.accuracy_a,
                                          "candidate": test.accuracy_b}
            if combined.decision == "inferior":
                return StepAnalysis(Outcome.FAILED, f"paired accuracy {test.accuracy_b:.3f} "
                                    f"vs {test.accuracy_a:.3f}: worse by more than {margin}",
                                    metrics, monitors)
            if combined.decision == "non_inferior" and n >= min_n:
                return StepAnalysis(Outcome.SUCCESSFUL, f"paired accuracy non-inferior over "
                                    f"{labelled} labelled pairs", metrics, monitors)
        elif labelled >= min_n and not b and not c:
            return StepAnalysis(Outcome.SUCCESSFUL, f"{labelled} labelled pairs, identical "
                                "outcomes", metrics, monitors)
    elif n >= min_n and not cfg.require_labels:
        return StepAnalysis(Outcome.SUCCESSFUL, f"{n} mirrored requests, shadow error rate "
                            f"{errors / n:.2%}; no labels required", metrics, monitors)
    return StepAnalysis(Outcome.INCONCLUSIVE, f"waiting for evidence ({n} pairs, "
                        f"{labelled} labelled)", metrics, monitors)
