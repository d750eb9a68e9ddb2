"""Analysis of a shadow step: the same requests answered by both versions, compared in pairs.

Pairs are the stable and shadow rows that share a request id and row. With labels, each
pair gives (stable right?, candidate right?): McNemar's test on the discordant pairs is
reported, and the decision comes from an always-valid paired mSPRT non-inferiority test on
the per-request loss difference d = candidate correct - stable correct (margin
``accuracy_margin``), safe to look at every step. Without labels only the candidate's
error rate on the mirrored requests is judged (absolute limit ``error_margin``), and the
agreement rate of the two versions is reported. The shadow's own latency never reaches a
client, so it is reported, not judged.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from mlops.deployment.analysis import StepAnalysis, _look, _result_dict, settings
from mlops.deployment.config import RolloutConfig
from mlops.stats.paired import mcnemar
from mlops.stats.sequential import choose_tau, msprt_non_inferiority_paired

__all__ = ["analyse_shadow"]


def analyse_shadow(log: pa.Table, feedback: pa.Table, *, stable: str, candidate: str,
                   config: RolloutConfig | Mapping[str, Any],
                   monitors: dict[str, dict[str, Any]],
                   now: float | None = None) -> StepAnalysis:
    cfg = settings(config)
    now = time.time() if now is None else now
    monitors = {k: dict(v) for k, v in monitors.items()}
    metrics: dict[str, dict[str, Any]] = {}
    if not log.num_rows:
        return StepAnalysis("Inconclusive", "no traffic yet", metrics, monitors)
    frame = log.select(["request_id", "row", "version", "route", "prediction",
                        "prediction_num", "status", "ts"]).to_pandas()
    base = frame[(frame.route == "stable") & (frame.version == stable)]
    mirror = frame[(frame.route == "shadow") & (frame.version == candidate)]
    pairs = base.merge(mirror, on=["request_id", "row"], suffixes=("_s", "_c"))
    n = len(pairs)
    min_n = cfg.min_samples
    errors = int((pairs.status_c >= 500).sum()) if n else 0
    agree = float((pairs.prediction_s == pairs.prediction_c).mean()) if n else float("nan")
    metrics["pairs"] = {"n": n, "agreement": agree if n else None,
                        "shadow_error_rate": errors / n if n else None}
    if n >= min_n and errors / n > cfg.error_margin:
        return StepAnalysis("Failed", f"shadow error rate {errors / n:.2%} above "
                            f"{cfg.error_margin:.2%}", metrics, monitors)

    labels = feedback.select(["request_id", "row", "actual", "actual_num"]).to_pandas() \
        .drop_duplicates(["request_id", "row"], keep="last") if feedback.num_rows else None
    mature = pairs[(pairs.status_s < 500) & (pairs.status_c < 500)
                   & (pairs.ts_s.astype("int64") / 1e9 <= now - cfg.label_delay)]
    labelled = mature.merge(labels, on=["request_id", "row"]) if labels is not None else \
        mature.iloc[0:0]
    if len(labelled):
        def right(pred: Any, pred_num: Any) -> np.ndarray:
            numeric = pred_num.notna() & labelled.actual_num.notna()
            return np.where(numeric, pred_num == labelled.actual_num,
                            pred.astype(str) == labelled.actual.astype(str)).astype(bool)

        s_ok = right(labelled.prediction_s, labelled.prediction_num_s)
        c_ok = right(labelled.prediction_c, labelled.prediction_num_c)
        table = [[int((s_ok & c_ok).sum()), int((s_ok & ~c_ok).sum())],
                 [int((~s_ok & c_ok).sum()), int((~s_ok & ~c_ok).sum())]]
        test = mcnemar(table)
        metrics["mcnemar"] = {"b_stable_only": test.b, "c_candidate_only": test.c,
                              "p_value": float(test.p_value), "difference": test.difference,
                              "ci_low": test.ci_low, "ci_high": test.ci_high,
                              "stable": test.accuracy_a, "candidate": test.accuracy_b}
        margin = cfg.accuracy_margin
        d = c_ok.astype(float) - s_ok.astype(float)
        if len(d) >= 2 and np.var(d) > 0:
            result = msprt_non_inferiority_paired(d, margin=margin, tau=choose_tau(margin),
                                                  alpha=cfg.alpha)
            combined = _look("paired_accuracy", monitors, result)
            metrics["paired_accuracy"] = {**_result_dict(combined),
                                          "stable": test.accuracy_a,
                                          "candidate": test.accuracy_b}
            if combined.decision == "inferior":
                return StepAnalysis("Failed", f"paired accuracy {test.accuracy_b:.3f} vs "
                                    f"{test.accuracy_a:.3f}: worse by more than {margin}",
                                    metrics, monitors)
            if combined.decision == "non_inferior" and n >= min_n:
                return StepAnalysis("Successful", f"paired accuracy non-inferior over "
                                    f"{len(d)} labelled pairs", metrics, monitors)
        elif len(d) >= min_n and not np.any(d):
            return StepAnalysis("Successful", f"{len(d)} labelled pairs, identical outcomes",
                                metrics, monitors)
    elif n >= min_n and not cfg.require_labels:
        return StepAnalysis("Successful", f"{n} mirrored requests, shadow error rate "
                            f"{errors / n:.2%}; no labels required", metrics, monitors)
    return StepAnalysis("Inconclusive", f"waiting for evidence ({n} pairs, "
                        f"{len(labelled)} labelled)", metrics, monitors)
