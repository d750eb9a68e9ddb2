"""Fixed-horizon A/B analysis and the deploy / rollback / continue decision.

The comparisons live in :mod:`mlops.stats.twosample` and sample sizes in
:mod:`mlops.stats.power`; both are re-exported here so this module is the one import for an
A/B analysis. :func:`recommend` turns per-metric comparisons into a decision that stays
honest where the seed's ``ABTestAnalyzer`` was not:

1. a sample ratio mismatch (when an :class:`SRMResult` is passed) blocks every decision;
2. p-values are adjusted across all metrics (Benjamini-Hochberg by default) before anything
   counts as significant;
3. no DEPLOY or ROLLBACK before every metric has ``min_sample_size`` units in each arm;
4. direction comes from ``higher_is_better`` (latency up is a degradation, not an
   "improvement" as in the seed);
5. ROLLBACK when any metric (goal or guard) is significantly worse;
6. DEPLOY when at least one goal metric is significantly better, nothing is worse, and every
   guard with a margin is shown non-inferior (its worse-side CI bound within the margin).
   With only guard metrics, DEPLOY needs every guard shown non-inferior by a margin;
7. otherwise CONTINUE_TESTING.

Fixed-horizon p-values are valid at one planned look. A controller that looks repeatedly
must use :mod:`mlops.stats.sequential` results instead: they satisfy the same interface
(``estimate``, ``ci_low``, ``ci_high``, ``p_value``, ``n_control``, ``n_treatment``) and can be
passed to :func:`recommend` directly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy import stats

from mlops.stats._checks import ArrayLike, as_sample, check_alpha, fail
from mlops.stats.multiple import adjust_p_values
from mlops.stats.power import (
    SampleSize,
    minimum_detectable_effect,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)
from mlops.stats.srm import SRMResult
from mlops.stats.twosample import (
    MeanComparison,
    ProportionComparison,
    RankComparison,
    cohens_d,
    hodges_lehmann,
    mann_whitney_u,
    relative_change_ci,
    two_proportion_z_test,
    welch_t_test,
)

__all__ = [
    "ACTIONS",
    "ABTestAnalyzer",
    "Comparison",
    "MeanComparison",
    "MetricVerdict",
    "ProportionComparison",
    "RankComparison",
    "Recommendation",
    "SampleSize",
    "cohens_d",
    "default_higher_is_better",
    "hodges_lehmann",
    "mann_whitney_u",
    "minimum_detectable_effect",
    "power_means",
    "power_proportions",
    "recommend",
    "relative_change_ci",
    "sample_size_means",
    "sample_size_proportions",
    "two_proportion_z_test",
    "welch_t_test",
]

ACTIONS = ("DEPLOY", "ROLLBACK", "CONTINUE_TESTING")
_LOWER_IS_BETTER = frozenset({
    "latency", "error", "errors", "loss", "cost", "duration", "time", "seconds", "ms",
    "mae", "mse", "rmse", "mape", "churn", "bounce", "timeout", "timeouts",
})


class Comparison(Protocol):
    """What :func:`recommend` reads from a comparison (fixed-horizon or sequential)."""

    @property
    def estimate(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def p_value(self) -> float: ...
    @property
    def n_control(self) -> int: ...
    @property
    def n_treatment(self) -> int: ...


def default_higher_is_better(metric: str) -> bool:
    """False when a word of the name says lower is better (latency, error, loss, cost, time,
    duration, ms, rmse ...: see ``_LOWER_IS_BETTER``), True otherwise. Pass
    ``higher_is_better`` explicitly for anything this guesses wrong."""
    return not any(tok in _LOWER_IS_BETTER for tok in re.split(r"[^a-z0-9]+", metric.lower()))


@dataclass(frozen=True)
class MetricVerdict:
    """How one metric counted in the decision."""

    metric: str
    estimate: float  # treatment minus control, metric units
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    significant: bool
    direction: str  # "better", "worse", "negligible" (significant but below min_effect), "inconclusive"
    guard: bool
    higher_is_better: bool
    n_control: int
    n_treatment: int
    min_sample_size: int
    enough_data: bool
    non_inferior: bool | None  # guard with a margin: worse-side CI bound within the margin


@dataclass(frozen=True)
class Recommendation:
    """``action`` in ``ACTIONS``, a one-line ``reason``, and every metric's verdict."""

    action: str
    reason: str
    per_metric: tuple[MetricVerdict, ...]
    alpha: float
    correction: str

    def as_tuple(self) -> tuple[str, str]:
        return self.action, self.reason


def _fmt(v: float) -> str:
    return f"{v:+.4g}" if math.isfinite(v) else str(v)


def _describe(v: MetricVerdict) -> str:
    return (f"{v.metric} {_fmt(v.estimate)} (CI {_fmt(v.ci_low)} to {_fmt(v.ci_high)}, "
            f"adjusted p={v.p_adjusted:.3g})")


def recommend(
    results: Mapping[str, Comparison],
    *,
    guard_metrics: Iterable[str] = (),
    higher_is_better: Mapping[str, bool] | None = None,
    alpha: float = 0.05,
    min_sample_size: int | Mapping[str, int] = 1000,
    guard_margins: Mapping[str, float] | None = None,
    min_effect: Mapping[str, float] | None = None,
    srm: SRMResult | None = None,
    correction: str = "fdr_bh",
) -> Recommendation:
    """Decide DEPLOY / ROLLBACK / CONTINUE_TESTING from per-metric comparisons (see module doc).

    ``min_sample_size`` is per arm (one number for all metrics, or per metric; metrics not in
    the mapping need 0); use :func:`sample_size_means` / :func:`sample_size_proportions` to
    choose it. Always-valid (sequential) results do not depend on a planned size, so
    ``min_sample_size=0`` is legitimate for them. ``guard_margins`` and ``min_effect`` are in
    each metric's units.
    """
    alpha = check_alpha(alpha)
    guards = set(guard_metrics)
    hib = dict(higher_is_better or {})
    margins = dict(guard_margins or {})
    floors = dict(min_effect or {})
    unknown = (guards | set(margins) | set(floors)) - set(results)
    if unknown:
        fail(f"metrics {sorted(unknown)} are configured but have no result.",
             f"configure only metrics among {sorted(results)}.")
    names = list(results)
    if not names:
        return Recommendation("CONTINUE_TESTING", "no metrics to judge yet", (), alpha,
                              correction)
    p_raw = [float(results[m].p_value) for m in names]
    adjusted = adjust_p_values(p_raw, alpha=alpha, method=correction)

    verdicts: list[MetricVerdict] = []
    for name, p, p_adj, rejected in zip(names, p_raw, adjusted.p_adjusted, adjusted.reject,
                                        strict=True):
        r = results[name]
        up = hib.get(name, default_higher_is_better(name))
        sign = 1.0 if up else -1.0
        need = (int(min_sample_size.get(name, 0)) if isinstance(min_sample_size, Mapping)
                else int(min_sample_size))
        est = float(r.estimate)
        if not rejected:
            direction = "inconclusive"
        elif abs(est) < floors.get(name, 0.0):
            direction = "negligible"
        else:
            direction = "better" if sign * est > 0 else "worse"
        non_inferior = None
        if name in margins:
            worse_bound = float(r.ci_low) if up else float(r.ci_high)
            non_inferior = bool(sign * worse_bound > -abs(float(margins[name])))
        verdicts.append(MetricVerdict(
            metric=name, estimate=est, ci_low=float(r.ci_low), ci_high=float(r.ci_high),
            p_value=p, p_adjusted=p_adj, significant=rejected, direction=direction,
            guard=name in guards, higher_is_better=up, n_control=int(r.n_control),
            n_treatment=int(r.n_treatment), min_sample_size=need,
            enough_data=min(int(r.n_control), int(r.n_treatment)) >= need,
            non_inferior=non_inferior,
        ))
    per_metric = tuple(verdicts)

    def done(action: str, reason: str) -> Recommendation:
        return Recommendation(action, reason, per_metric, alpha, correction)

    if srm is not None and srm.mismatch:
        return done("CONTINUE_TESTING",
                    f"sample ratio mismatch (p={srm.p_value:.2g}, observed split "
                    f"{[round(s, 4) for s in srm.observed_share]} vs configured "
                    f"{[round(s, 4) for s in srm.expected_share]}): fix the assignment; no "
                    "metric of this split can be trusted")
    short = [v for v in per_metric if not v.enough_data]
    if short:
        need_text = ", ".join(f"{v.metric} has {min(v.n_control, v.n_treatment)} of "
                              f"{v.min_sample_size}" for v in short)
        return done("CONTINUE_TESTING", f"minimum sample size per arm not reached: {need_text}")
    worse = [v for v in per_metric if v.direction == "worse"]
    if worse:
        kinds = "guard metric" if all(v.guard for v in worse) else "metric"
        return done("ROLLBACK", f"{kinds} significantly worse: "
                    + "; ".join(_describe(v) for v in worse))
    not_shown = [v for v in per_metric if v.non_inferior is False]
    if not_shown:
        return done("CONTINUE_TESTING", "guard not yet shown within its margin: "
                    + "; ".join(f"{_describe(v)}, margin {margins[v.metric]:g}"
                                for v in not_shown))
    goals = [v for v in per_metric if not v.guard]
    better = [v for v in goals if v.direction == "better"]
    if better:
        return done("DEPLOY", "significantly better: " + "; ".join(_describe(v) for v in better)
                    + "; no metric worse")
    if not goals:
        unmargined = [v.metric for v in per_metric if v.non_inferior is None]
        if not unmargined:
            return done("DEPLOY", "every guard metric shown non-inferior within its margin")
        return done("CONTINUE_TESTING",
                    f"only guard metrics and {unmargined} have no margin: nothing can show the "
                    "candidate is at least as good; set guard_margins")
    return done("CONTINUE_TESTING",
                f"no goal metric significantly better after {correction} adjustment at "
                f"alpha={alpha:g}: results inconclusive")


# --------------------------------------------------------------------------- seed facade


@dataclass(frozen=True)
class _Summary:
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    n_control: int
    n_treatment: int


def _is_binary(a: np.ndarray) -> bool:
    return bool(a.size) and bool(np.all((a == 0) | (a == 1)))


class ABTestAnalyzer:
    """The seed's ``ABTestAnalyzer`` made honest (same method names and result keys).

    ``analyze_test_results`` runs Welch's t-test per metric (the two-proportion z-test when
    both arms are 0/1), adjusts p-values across metrics with Benjamini-Hochberg and returns
    per metric ``p_value``, ``effect_size`` (Cohen's d, or Cohen's h for 0/1 metrics),
    ``is_significant`` (adjusted p < ``significance_level``), ``control_mean``,
    ``treatment_mean`` and ``improvement`` (relative change), plus the difference with its CI,
    the relative change CI, the adjusted p-value and the sample sizes.
    ``generate_recommendation`` applies :func:`recommend` and returns ``(action, reason)``.
    """

    def __init__(
        self,
        significance_level: float = 0.05,
        minimum_sample_size: int = 1000,
        *,
        higher_is_better: Mapping[str, bool] | None = None,
        guard_metrics: Iterable[str] = (),
        guard_margins: Mapping[str, float] | None = None,
        key_metrics: Iterable[str] | None = None,
    ) -> None:
        self.significance_level = check_alpha(significance_level, "significance_level")
        self.minimum_sample_size = int(minimum_sample_size)
        self.higher_is_better = dict(higher_is_better or {})
        self.guard_metrics = tuple(guard_metrics)
        self.guard_margins = dict(guard_margins or {})
        self.key_metrics = None if key_metrics is None else tuple(key_metrics)

    def calculate_cohens_d(self, control_data: ArrayLike, treatment_data: ArrayLike) -> float:
        """Cohen's d with the pooled SD (treatment minus control)."""
        return cohens_d(control_data, treatment_data)

    def compare(self, control: ArrayLike, treatment: ArrayLike
                ) -> MeanComparison | ProportionComparison:
        """The per-metric test: two-proportion z-test for 0/1 data, Welch's t-test otherwise."""
        c = as_sample(control, "control", min_size=2)
        t = as_sample(treatment, "treatment", min_size=2)
        if _is_binary(c) and _is_binary(t):
            return two_proportion_z_test(int(c.sum()), c.size, int(t.sum()), t.size,
                                         alpha=self.significance_level)
        return welch_t_test(c, t, alpha=self.significance_level)

    def analyze_test_results(
        self,
        control_metrics: Mapping[str, ArrayLike],
        treatment_metrics: Mapping[str, ArrayLike],
    ) -> dict[str, dict[str, Any]]:
        """Per-metric analysis dicts in the seed's shape (see the class docstring)."""
        if set(control_metrics) != set(treatment_metrics):
            fail(f"control metrics {sorted(control_metrics)} differ from treatment metrics "
                 f"{sorted(treatment_metrics)}.", "pass the same metric names for both arms.")
        names = list(control_metrics)
        comparisons = {m: self.compare(control_metrics[m], treatment_metrics[m]) for m in names}
        adjusted = adjust_p_values([comparisons[m].p_value for m in names],
                                   alpha=self.significance_level, method="fdr_bh")
        z = float(stats.norm.ppf(1.0 - self.significance_level / 2.0))
        results: dict[str, dict[str, Any]] = {}
        for name, p_adj in zip(names, adjusted.p_adjusted, strict=True):
            r = comparisons[name]
            if isinstance(r, ProportionComparison):
                effect, kind = r.cohens_h, "cohens_h"
                half = z * math.sqrt(1.0 / r.n_control + 1.0 / r.n_treatment)
                eff_low, eff_high = effect - half, effect + half
                c_mean, t_mean = r.control_rate, r.treatment_rate
            else:
                effect, kind = r.cohens_d, "cohens_d"
                eff_low, eff_high = r.cohens_d_ci_low, r.cohens_d_ci_high
                c_mean, t_mean = r.control_mean, r.treatment_mean
            results[name] = {
                "p_value": r.p_value,
                "effect_size": effect,
                "is_significant": bool(p_adj < self.significance_level),
                "control_mean": c_mean,
                "treatment_mean": t_mean,
                "improvement": r.relative,
                "p_adjusted": p_adj,
                "difference": r.estimate,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "improvement_ci_low": r.relative_ci_low,
                "improvement_ci_high": r.relative_ci_high,
                "effect_size_kind": kind,
                "effect_size_ci_low": eff_low,
                "effect_size_ci_high": eff_high,
                "n_control": r.n_control,
                "n_treatment": r.n_treatment,
                "test": r.test,
                "higher_is_better": self.higher_is_better.get(
                    name, default_higher_is_better(name)),
            }
        return results

    def recommend(self, analysis_results: Mapping[str, Mapping[str, Any]]) -> Recommendation:
        """The full :class:`Recommendation` behind :meth:`generate_recommendation`."""
        keys = list(analysis_results) if self.key_metrics is None else [
            m for m in self.key_metrics if m in analysis_results]
        summaries: dict[str, Comparison] = {}
        for name in keys:
            row = analysis_results[name]
            diff = row.get("difference")
            if diff is None:
                diff = float(row["treatment_mean"]) - float(row["control_mean"])
            summaries[name] = _Summary(
                estimate=float(diff),
                ci_low=float(row.get("ci_low", math.nan)),
                ci_high=float(row.get("ci_high", math.nan)),
                p_value=float(row["p_value"]),
                n_control=int(row.get("n_control", 0)),
                n_treatment=int(row.get("n_treatment", 0)),
            )
        hib = {m: bool(analysis_results[m].get("higher_is_better",
                                               self.higher_is_better.get(
                                                   m, default_higher_is_better(m))))
               for m in keys}
        return recommend(
            summaries,
            guard_metrics=[m for m in self.guard_metrics if m in summaries],
            higher_is_better=hib,
            alpha=self.significance_level,
            min_sample_size=self.minimum_sample_size,
            guard_margins={m: v for m, v in self.guard_margins.items() if m in summaries},
        )

    def generate_recommendation(
        self, analysis_results: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, str]:
        """``("DEPLOY" | "ROLLBACK" | "CONTINUE_TESTING", reason)`` as in the seed."""
        return self.recommend(analysis_results).as_tuple()
