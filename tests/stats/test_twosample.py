"""Welch, Mann-Whitney + Hodges-Lehmann, two proportions, Cohen's d, relative change."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mlops.errors import StatsError
from mlops.stats import (
    cohens_d,
    hodges_lehmann,
    mann_whitney_u,
    relative_change_ci,
    two_proportion_z_test,
    welch_t_test,
)
from mlops.stats import twosample as twosample_module


def test_welch_equals_scipy() -> None:
    rng = np.random.default_rng(1)
    c, t = rng.normal(100, 10, 80), rng.normal(104, 25, 50)
    r = welch_t_test(c, t)
    ref = stats.ttest_ind(t, c, equal_var=False)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-10)
    assert r.df == pytest.approx(ref.df, rel=1e-12)
    ci = ref.confidence_interval(0.95)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r.estimate == pytest.approx(t.mean() - c.mean())
    assert (r.n_control, r.n_treatment) == (80, 50)


def test_welch_interval_coverage_is_nominal() -> None:
    rng = np.random.default_rng(2)
    runs = 2000
    c = rng.normal(10, 1, (runs, 30))
    t = rng.normal(10.5, 3, (runs, 20))
    ref = stats.ttest_ind(t, c, axis=1, equal_var=False).confidence_interval(0.95)
    covered = np.mean((ref.low <= 0.5) & (ref.high >= 0.5))
    # our function on a subset equals scipy's interval, so scipy's vectorised coverage holds
    for i in range(5):
        r = welch_t_test(c[i], t[i])
        assert (r.ci_low, r.ci_high) == pytest.approx((ref.low[i], ref.high[i]), rel=1e-10)
    assert abs(covered - 0.95) < 3 * math.sqrt(0.05 * 0.95 / runs)


def test_cohens_d_pooled_sd_hand_computed() -> None:
    # both variances 2.5 -> s_p = sqrt(2.5); difference 2
    assert cohens_d([1, 2, 3, 4, 5], [3, 4, 5, 6, 7]) == pytest.approx(2 / math.sqrt(2.5))
    r = welch_t_test([1, 2, 3, 4, 5], [3, 4, 5, 6, 7])
    d = 2 / math.sqrt(2.5)
    half = 1.959963984540054 * math.sqrt(10 / 25 + d * d / 20)
    assert (r.cohens_d_ci_low, r.cohens_d_ci_high) == pytest.approx((d - half, d + half))
    assert cohens_d([1, 1], [1, 1]) == 0.0


def test_relative_change_delta_method_hand_computed() -> None:
    # mean_c = 100 (se 2), mean_t = 110 (se 3): var = 9/100^2 + 110^2 * 4 / 100^4
    rel, low, high = relative_change_ci(100.0, 2.0, 110.0, 3.0)
    se = math.sqrt(9 / 1e4 + 12100 * 4 / 1e8)
    assert rel == pytest.approx(0.1)
    assert (low, high) == pytest.approx((0.1 - 1.959963984540054 * se,
                                         0.1 + 1.959963984540054 * se))
    assert all(math.isnan(v) for v in relative_change_ci(0.0, 1.0, 1.0, 1.0))


def test_mann_whitney_equals_scipy_and_hodges_lehmann_brute_force() -> None:
    rng = np.random.default_rng(3)
    c, t = rng.lognormal(3.0, 0.5, 60), rng.lognormal(3.2, 0.5, 45)
    r = mann_whitney_u(c, t)
    ref = stats.mannwhitneyu(t, c, alternative="two-sided")
    assert r.statistic == ref.statistic and r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    diffs = np.subtract.outer(t, c).ravel()
    assert r.estimate == pytest.approx(np.median(diffs))
    assert r.probability_of_superiority == pytest.approx(np.mean(diffs > 0))
    # Moses interval: k = round(mn/2 - z sqrt(mn(m+n+1)/12)) -> [D_(k), D_(mn+1-k)]
    mn = 60 * 45
    k = math.floor(mn / 2 - 1.959963984540054 * math.sqrt(mn * 106 / 12) + 0.5)
    ordered = np.sort(diffs)
    assert (r.ci_low, r.ci_high) == (ordered[k - 1], ordered[mn - k])


def test_hodges_lehmann_interval_coverage() -> None:
    rng = np.random.default_rng(4)
    runs, shift = 400, 1.5
    hits = 0
    for _ in range(runs):
        c = rng.standard_t(3, 25)
        t = rng.standard_t(3, 30) + shift
        _, low, high = hodges_lehmann(c, t)
        hits += low <= shift <= high
    assert hits / runs >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / runs)


def test_hodges_lehmann_selection_path_equals_brute_force(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    rng = np.random.default_rng(5)
    cases = [(rng.normal(0, 1, 301), rng.normal(0.2, 2, 257)),
             (rng.integers(0, 6, 200).astype(float), rng.integers(1, 7, 150).astype(float)),
             (rng.normal(0, 1, 7), rng.normal(0, 1, 9))]
    brute = [hodges_lehmann(c, t) for c, t in cases]
    monkeypatch.setattr(twosample_module, "_BRUTE_FORCE_PAIRS", 0)
    for (c, t), expected in zip(cases, brute, strict=True):
        assert hodges_lehmann(c, t) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_hodges_lehmann_tiny_samples_have_an_unbounded_interval() -> None:
    shift, low, high = hodges_lehmann([1.0, 2.0], [3.0])
    assert shift == 1.5 and low == -math.inf and high == math.inf


def test_two_proportion_z_test() -> None:
    r = two_proportion_z_test(900, 1000, 930, 1000)
    # pooled z^2 equals the uncorrected Pearson chi-square of the 2x2 table
    chi2, p, _, _ = stats.chi2_contingency([[900, 100], [930, 70]], correction=False)
    assert r.statistic**2 == pytest.approx(chi2, rel=1e-12)
    assert r.p_value == pytest.approx(p, rel=1e-9)
    assert r.estimate == pytest.approx(0.03)
    se = math.sqrt(0.9 * 0.1 / 1000 + 0.93 * 0.07 / 1000)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.03 - 1.959963984540054 * se,
                                                   0.03 + 1.959963984540054 * se))
    assert r.cohens_h == pytest.approx(2 * math.asin(math.sqrt(0.93))
                                       - 2 * math.asin(math.sqrt(0.9)))
    assert r.relative == pytest.approx(0.03 / 0.9)
    same = two_proportion_z_test(10, 10, 20, 20)
    assert same.p_value == 1.0 and same.estimate == 0.0


@pytest.mark.parametrize("call", [
    lambda: welch_t_test([1.0], [1.0, 2.0]),
    lambda: welch_t_test([1.0, float("inf")], [1.0, 2.0]),
    lambda: mann_whitney_u([], [1.0]),
    lambda: two_proportion_z_test(5, 0, 1, 10),
    lambda: two_proportion_z_test(5, 10, 1, 10, alpha=0),
])
def test_bad_input(call: object) -> None:
    with pytest.raises(StatsError):
        call()  # type: ignore[operator]
