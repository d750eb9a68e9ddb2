"""Sample ratio mismatch (SRM): is the traffic split the one that was configured?

Pearson's chi-square goodness of fit of the observed arm counts against the configured
weights, ``chi2 = sum_i (O_i - E_i)^2 / E_i`` with ``E_i = N w_i / sum(w)`` and ``k - 1``
degrees of freedom. A p-value below 0.001 (GrowthBook's and Optimizely's default) means the
assignment is broken and no metric comparison of that split can be trusted.

Reference: Fabijan et al., "Diagnosing Sample Ratio Mismatch in Online Controlled
Experiments", KDD 2019.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mlops.stats._checks import check_alpha, fail

__all__ = ["SRM_THRESHOLD", "SRMResult", "sample_ratio_mismatch"]

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRMResult:
    """Chi-square statistic, p-value and the counts it compared.

    ``observed_share``/``expected_share`` are the effect size: the split actually seen next to
    the configured one. ``mismatch`` is ``p_value < threshold``.
    """

    chi2: float
    p_value: float
    expected: tuple[float, ...]
    observed: tuple[int, ...]
    mismatch: bool
    df: int
    threshold: float
    observed_share: tuple[float, ...]
    expected_share: tuple[float, ...]


def sample_ratio_mismatch(
    observed: Sequence[int] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SRMResult:
    """Test observed arm counts against configured weights (any scale: 50/50, 0.9/0.1 ...).

    An arm with weight 0 must receive no units: if it does, the split is broken outright
    (``chi2 = inf``, ``p = 0``); if it does not, it is left out of the test (one fewer df).
    With no units at all there is no evidence (``p = 1``).
    """
    threshold = check_alpha(threshold, "threshold")
    obs = np.asarray(observed)
    w = np.asarray(weights, dtype=np.float64)
    if obs.ndim != 1 or w.ndim != 1 or obs.size != w.size or obs.size < 2:
        fail(f"got {obs.size} observed counts for {w.size} weights.",
             "pass one count and one weight per arm, for at least two arms.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        fail(f"weights {w.tolist()} are not non-negative finite numbers with a positive sum.",
             "pass the configured traffic weights, e.g. [50, 50] or [0.9, 0.1].")
    try:
        as_float = obs.astype(np.float64)
    except (TypeError, ValueError):
        as_float = np.array([math.nan])
    if (not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float))
            or np.any(as_float < 0)):
        fail(f"observed counts {obs.tolist()} are not non-negative whole numbers.",
             "pass the number of units assigned to each arm.")
    counts = as_float.astype(np.int64)

    total = int(counts.sum())
    expected_share = w / w.sum()
    expected = total * expected_share
    observed_share = counts / total if total else np.zeros_like(expected_share)
    zero = w == 0
    if np.any(counts[zero] > 0):
        chi2, p, df = math.inf, 0.0, int(np.count_nonzero(~zero)) - 1
    elif total == 0:
        chi2, p, df = 0.0, 1.0, int(np.count_nonzero(~zero)) - 1
    else:
        keep = ~zero
        o, e = counts[keep].astype(np.float64), expected[keep]
        chi2 = float(np.sum((o - e) ** 2 / e))
        df = int(keep.sum()) - 1
        p = float(stats.chi2.sf(chi2, df)) if df > 0 else 1.0
    return SRMResult(
        chi2=chi2,
        p_value=p,
        expected=tuple(float(v) for v in expected),
        observed=tuple(int(v) for v in counts),
        mismatch=p < threshold,
        df=df,
        threshold=threshold,
        observed_share=tuple(float(v) for v in observed_share),
        expected_share=tuple(float(v) for v in expected_share),
    )
