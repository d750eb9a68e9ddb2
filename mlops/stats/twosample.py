"""Fixed-horizon two-sample comparisons: control (stable) against treatment (candidate).

Every result carries the effect (``estimate`` = treatment minus control, in the metric's
units) with its confidence interval next to the p-value, plus a standardised effect and a
relative change with its own interval.

- Welch's t-test: ``t = (mean_t - mean_c) / sqrt(s_c^2/n_c + s_t^2/n_t)`` with
  Welch-Satterthwaite df (Welch, Biometrika 34, 1947); equals
  ``scipy.stats.ttest_ind(treatment, control, equal_var=False)``.
- Mann-Whitney U (scipy's ``mannwhitneyu``, two-sided, continuity-corrected when asymptotic)
  with the Hodges-Lehmann shift ``median_{i,j}(t_j - c_i)`` and its distribution-free
  (Moses) interval ``[D_(k), D_(mn+1-k)]``, ``k = round(mn/2 - z sqrt(mn(m+n+1)/12))``
  (Hollander & Wolfe, *Nonparametric Statistical Methods*, sec. 4.3; normal approximation,
  no tie correction). This is the Kayenta canary statistic.
- Two-proportion z-test: pooled standard error for the test statistic, unpooled (Wald)
  standard error for the interval of ``p_t - p_c``; Cohen's ``h = 2 asin sqrt p_t -
  2 asin sqrt p_c``.
- Cohen's d with the pooled SD ``s_p = sqrt(((n_c-1)s_c^2 + (n_t-1)s_t^2)/(n_c+n_t-2))`` and
  the large-sample interval ``d +/- z sqrt((n_c+n_t)/(n_c n_t) + d^2/(2(n_c+n_t)))``
  (Hedges & Olkin, *Statistical Methods for Meta-Analysis*, 1985).
- Relative change ``(mean_t - mean_c) / mean_c`` with the delta-method interval, variance
  ``se_t^2/mean_c^2 + mean_t^2 se_c^2/mean_c^4`` (Deng, Knoblich & Lu, "Applying the Delta
  Method in Metric Analytics", KDD 2018). Not defined (NaN) when ``mean_c == 0``; unreliable
  when ``mean_c`` is within a few standard errors of 0 (Fieller's interval would then be
  unbounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlops.stats._checks import ArrayLike, as_sample, check_alpha, check_count, fail

__all__ = [
    "MeanComparison",
    "ProportionComparison",
    "RankComparison",
    "cohens_d",
    "hodges_lehmann",
    "mann_whitney_u",
    "relative_change_ci",
    "two_proportion_z_test",
    "welch_t_test",
]

_BRUTE_FORCE_PAIRS = 2_000_000  # above this many pairs, select order statistics by bisection


@dataclass(frozen=True)
class MeanComparison:
    """Welch's t-test of treatment minus control."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    df: float
    control_mean: float
    treatment_mean: float
    control_std: float
    treatment_std: float
    n_control: int
    n_treatment: int
    cohens_d: float
    cohens_d_ci_low: float
    cohens_d_ci_high: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    alpha: float
    test: str = "welch_t"


@dataclass(frozen=True)
class RankComparison:
    """Mann-Whitney U with the Hodges-Lehmann shift (treatment minus control)."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float  # U of the treatment sample
    probability_of_superiority: float  # P(T > C) + P(T = C)/2 = U / (n_c n_t)
    control_median: float
    treatment_median: float
    n_control: int
    n_treatment: int
    alpha: float
    test: str = "mann_whitney_u"


@dataclass(frozen=True)
class ProportionComparison:
    """Two-proportion z-test of ``p_t - p_c``."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float
    control_rate: float
    treatment_rate: float
    control_successes: int
    treatment_successes: int
    n_control: int
    n_treatment: int
    cohens_h: float
    relative: float
    relative_ci_low: float
    relative_ci_high: float
    alpha: float
    test: str = "two_proportion_z"


def _z(alpha: float) -> float:
    return float(stats.norm.ppf(1.0 - alpha / 2.0))


def relative_change_ci(
    mean_control: float,
    se_control: float,
    mean_treatment: float,
    se_treatment: float,
    *,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """``(relative, low, high)`` for ``(mean_t - mean_c) / mean_c`` by the delta method."""
    alpha = check_alpha(alpha)
    if mean_control == 0 or not math.isfinite(mean_control):
        return math.nan, math.nan, math.nan
    rel = (mean_treatment - mean_control) / mean_control
    var = (se_treatment**2 / mean_control**2
           + mean_treatment**2 * se_control**2 / mean_control**4)
    half = _z(alpha) * math.sqrt(var)
    return rel, rel - half, rel + half


def _pooled_sd(c: npt.NDArray[np.float64], t: npt.NDArray[np.float64]) -> float:
    dof = c.size + t.size - 2
    return math.sqrt(((c.size - 1) * np.var(c, ddof=1) + (t.size - 1) * np.var(t, ddof=1)) / dof)


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return 0.0 if num == 0 else math.copysign(math.inf, num)


def cohens_d(control: ArrayLike, treatment: ArrayLike) -> float:
    """Cohen's d = ``(mean_t - mean_c) / s_pooled`` (0 or +/-inf when both arms are constant)."""
    c = as_sample(control, "control", min_size=2)
    t = as_sample(treatment, "treatment", min_size=2)
    return _ratio(float(t.mean() - c.mean()), _pooled_sd(c, t))


def welch_t_test(control: ArrayLike, treatment: ArrayLike, *, alpha: float = 0.05
                 ) -> MeanComparison:
    """Welch's unequal-variance t-test with interval, Cohen's d and relative change."""
    alpha = check_alpha(alpha)
    c = as_sample(control, "control", min_size=2)
    t = as_sample(treatment, "treatment", min_size=2)
    n_c, n_t = c.size, t.size
    m_c, m_t = float(c.mean()), float(t.mean())
    v_c, v_t = float(np.var(c, ddof=1)) / n_c, float(np.var(t, ddof=1)) / n_t
    diff = m_t - m_c
    se = math.sqrt(v_c + v_t)
    if se > 0:
        df = (v_c + v_t) ** 2 / (v_c**2 / (n_c - 1) + v_t**2 / (n_t - 1))
        stat = diff / se
        p = float(2.0 * stats.t.sf(abs(stat), df))
        half = float(stats.t.ppf(1.0 - alpha / 2.0, df)) * se
    else:  # both arms constant: the difference is exact
        df, stat = float(n_c + n_t - 2), _ratio(diff, 0.0)
        p, half = (1.0 if diff == 0 else 0.0), 0.0
    d = _ratio(diff, _pooled_sd(c, t))
    d_half = _z(alpha) * math.sqrt((n_c + n_t) / (n_c * n_t) + d * d / (2.0 * (n_c + n_t)))
    rel, rel_low, rel_high = relative_change_ci(m_c, math.sqrt(v_c), m_t, math.sqrt(v_t),
                                                alpha=alpha)
    return MeanComparison(
        estimate=diff, ci_low=diff - half, ci_high=diff + half, p_value=p, statistic=stat,
        df=float(df), control_mean=m_c, treatment_mean=m_t,
        control_std=float(np.std(c, ddof=1)), treatment_std=float(np.std(t, ddof=1)),
        n_control=n_c, n_treatment=n_t, cohens_d=d, cohens_d_ci_low=d - d_half,
        cohens_d_ci_high=d + d_half, relative=rel, relative_ci_low=rel_low,
        relative_ci_high=rel_high, alpha=alpha,
    )


# --------------------------------------------------------------------------- Hodges-Lehmann


def _count_at_most(c_sorted: npt.NDArray[np.float64], t: npt.NDArray[np.float64], v: float) -> int:
    """Number of pairs with ``t_j - c_i <= v``."""
    return int(c_sorted.size * t.size - np.searchsorted(c_sorted, t - v, side="left").sum())


def _smallest_above(c_sorted: npt.NDArray[np.float64], t: npt.NDArray[np.float64], v: float
                    ) -> float:
    """Smallest pairwise difference ``t_j - c_i`` strictly greater than ``v``."""
    idx = np.searchsorted(c_sorted, t - v, side="left")  # c[idx-1] < t - v
    ok = idx > 0
    return float(np.min(t[ok] - c_sorted[idx[ok] - 1]))


def _kth_difference(c_sorted: npt.NDArray[np.float64], t: npt.NDArray[np.float64], k: int
                    ) -> float:
    """The k-th smallest (1-indexed) of all ``t_j - c_i``, by bisection on the value.

    O((n_c + n_t) log n_c) per step and about 50 steps; exact up to ~1e-13 of the data range
    (the result is snapped to an actual pairwise difference).
    """
    lo = float(t.min() - c_sorted[-1])
    hi = float(t.max() - c_sorted[0])
    if k <= 1:
        return lo
    scale = max(abs(lo), abs(hi), 1e-300)
    lo = lo - 1e-9 * scale - 1e-300  # count(lo) == 0 < k <= count(hi) == mn
    while hi - lo > 1e-13 * scale:
        mid = lo + (hi - lo) / 2.0
        if mid <= lo or mid >= hi:
            break
        if _count_at_most(c_sorted, t, mid) >= k:
            hi = mid
        else:
            lo = mid
    return min(_smallest_above(c_sorted, t, lo), hi)


def _order_statistics(c: npt.NDArray[np.float64], t: npt.NDArray[np.float64], ks: list[int]
                      ) -> list[float]:
    """Selected order statistics (1-indexed) of the pairwise differences ``t_j - c_i``."""
    if c.size * t.size <= _BRUTE_FORCE_PAIRS:
        diffs = np.subtract.outer(t, c).ravel()
        part = np.partition(diffs, [k - 1 for k in ks])
        return [float(part[k - 1]) for k in ks]
    c_sorted, t_sorted = np.sort(c), np.sort(t)  # sorted queries keep searchsorted cache-friendly
    return [_kth_difference(c_sorted, t_sorted, k) for k in ks]


def hodges_lehmann(control: ArrayLike, treatment: ArrayLike, *, alpha: float = 0.05
                   ) -> tuple[float, float, float]:
    """``(shift, low, high)``: the Hodges-Lehmann shift of treatment over control and its
    Moses interval. An interval end is infinite when the samples are too small for it."""
    alpha = check_alpha(alpha)
    c = as_sample(control, "control", min_size=1)
    t = as_sample(treatment, "treatment", min_size=1)
    mn = c.size * t.size
    k = math.floor(mn / 2.0 - _z(alpha) * math.sqrt(mn * (c.size + t.size + 1) / 12.0) + 0.5)
    wanted = [(mn + 1) // 2, mn // 2 + 1] + ([k, mn + 1 - k] if k >= 1 else [])
    values = _order_statistics(c, t, wanted)
    shift = values[0] if mn % 2 else 0.5 * (values[0] + values[1])
    if k >= 1:
        return shift, values[2], values[3]
    return shift, -math.inf, math.inf


def mann_whitney_u(control: ArrayLike, treatment: ArrayLike, *, alpha: float = 0.05
                   ) -> RankComparison:
    """Two-sided Mann-Whitney U (``scipy.stats.mannwhitneyu(treatment, control)``) with the
    Hodges-Lehmann shift and its interval."""
    alpha = check_alpha(alpha)
    c = as_sample(control, "control", min_size=1)
    t = as_sample(treatment, "treatment", min_size=1)
    res = stats.mannwhitneyu(t, c, alternative="two-sided")
    shift, low, high = hodges_lehmann(c, t, alpha=alpha)
    u = float(res.statistic)
    return RankComparison(
        estimate=shift, ci_low=low, ci_high=high, p_value=float(res.pvalue), statistic=u,
        probability_of_superiority=u / (c.size * t.size),
        control_median=float(np.median(c)), treatment_median=float(np.median(t)),
        n_control=int(c.size), n_treatment=int(t.size), alpha=alpha,
    )


# --------------------------------------------------------------------------- proportions


def two_proportion_z_test(
    successes_control: int,
    n_control: int,
    successes_treatment: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
) -> ProportionComparison:
    """Two-sided z-test of ``p_t - p_c`` (pooled SE) with the Wald interval (unpooled SE)."""
    alpha = check_alpha(alpha)
    s_c, n_c = check_count(successes_control, n_control, "control")
    s_t, n_t = check_count(successes_treatment, n_treatment, "treatment")
    if n_c == 0 or n_t == 0:
        fail(f"an arm has no trials (control {n_c}, treatment {n_t}).",
             "wait until both arms have observations.")
    p_c, p_t = s_c / n_c, s_t / n_t
    diff = p_t - p_c
    pooled = (s_c + s_t) / (n_c + n_t)
    se0 = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
    if se0 > 0:
        stat = diff / se0
        p = float(2.0 * stats.norm.sf(abs(stat)))
    else:  # every unit in both arms succeeded (or none did): no difference
        stat, p = 0.0, 1.0
    se_c, se_t = math.sqrt(p_c * (1.0 - p_c) / n_c), math.sqrt(p_t * (1.0 - p_t) / n_t)
    half = _z(alpha) * math.sqrt(se_c**2 + se_t**2)
    rel, rel_low, rel_high = relative_change_ci(p_c, se_c, p_t, se_t, alpha=alpha)
    return ProportionComparison(
        estimate=diff, ci_low=max(-1.0, diff - half), ci_high=min(1.0, diff + half),
        p_value=p, statistic=stat, control_rate=p_c, treatment_rate=p_t,
        control_successes=s_c, treatment_successes=s_t, n_control=n_c, n_treatment=n_t,
        cohens_h=2.0 * math.asin(math.sqrt(p_t)) - 2.0 * math.asin(math.sqrt(p_c)),
        relative=rel, relative_ci_low=rel_low, relative_ci_high=rel_high, alpha=alpha,
    )
