"""Thompson sampling between the stable version and a candidate.

The reward of a request is 1 when its label (from feedback) matches the prediction. Each
arm has a Beta(1 + successes, 1 + failures) posterior; the candidate's traffic share is the
posterior probability that it is the better arm (estimated from 20,000 joint draws), kept
within [floor, 100 - floor] percent so that neither arm starves (default floor 1%).
The bandit ends when that probability passes ``decide_at`` (0.95: the candidate wins) or
falls below ``1 - decide_at`` (it loses), with at least ``min_samples`` labelled requests
per arm. Requests carry their propensity (the share at the time) in the prediction log,
so off-policy estimates stay possible. The rewards are the labelled, mature predictions
the rollout's evidence has counted (:class:`~mlops.deployment.evidence.Evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlops.deployment.analysis import StepAnalysis
from mlops.deployment.config import BanditConfig, RolloutConfig, parse_rollout_config
from mlops.deployment.evidence import Evidence
from mlops.deployment.types import Outcome

__all__ = ["BANDIT_DEFAULTS", "analyse_bandit"]

#: the bandit's own defaults (see :class:`~mlops.deployment.config.BanditConfig`)
BANDIT_DEFAULTS: dict[str, Any] = BanditConfig().model_dump(
    include={"floor", "decide_at", "draws", "seed"})


def _settings(config: RolloutConfig | Mapping[str, Any] | None) -> BanditConfig:
    """Bandit settings from a parsed config (of any strategy: its analysis part) or a
    mapping."""
    if isinstance(config, BanditConfig):
        return config
    parsed = parse_rollout_config("bandit", config.analysis()
                                  if isinstance(config, RolloutConfig) else config)
    assert isinstance(parsed, BanditConfig)
    return parsed


def analyse_bandit(evidence: Evidence, *, weight: float,
                   config: RolloutConfig | Mapping[str, Any]) -> tuple[StepAnalysis, float]:
    """The outcome and the candidate's next traffic share (percent)."""
    cfg = _settings(config)
    q_s, q_c = evidence.quality
    if not q_s.n and not q_c.n:
        return StepAnalysis(Outcome.INCONCLUSIVE, "no labelled requests yet"), weight
    wins_s, n_s, wins_c, n_c = q_s.correct, q_s.n, q_c.correct, q_c.n
    rng = np.random.default_rng(cfg.seed + n_s + n_c)
    theta_s = rng.beta(1 + wins_s, 1 + n_s - wins_s, cfg.draws)
    theta_c = rng.beta(1 + wins_c, 1 + n_c - wins_c, cfg.draws)
    p_better = float(np.mean(theta_c > theta_s))
    share = float(np.clip(100.0 * p_better, cfg.floor, 100.0 - cfg.floor))
    metrics = {"reward": {"stable": wins_s / n_s if n_s else None,
                          "candidate": wins_c / n_c if n_c else None,
                          "n_stable": n_s, "n_candidate": n_c,
                          "p_candidate_better": p_better, "next_weight": share}}
    enough = min(n_s, n_c) >= cfg.min_samples
    if enough and p_better >= cfg.decide_at:
        return StepAnalysis(Outcome.SUCCESSFUL, f"P(candidate better) = {p_better:.3f} after "
                            f"{n_s + n_c} labelled requests", metrics), share
    if enough and p_better <= 1.0 - cfg.decide_at:
        return StepAnalysis(Outcome.FAILED, f"P(candidate better) = {p_better:.3f}: the "
                            "stable version wins", metrics), share
    return StepAnalysis(Outcome.INCONCLUSIVE, f"P(candidate better) = {p_better:.3f}; "
                        f"traffic share now {share:.1f}%", metrics), share
