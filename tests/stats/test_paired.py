"""McNemar and the paired bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mlops.errors import StatsError
from mlops.stats import mcnemar, mcnemar_from_predictions, paired_bootstrap_ci
from mlops.stats import paired as paired_module


def test_exact_mcnemar_hand_computed() -> None:
    # b = 10, c = 3: p = 2 * P(X <= 3), X ~ Bin(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 8192
    r = mcnemar([[50, 10], [3, 40]])
    assert r.method == "exact" and r.statistic == 3
    assert r.p_value == pytest.approx(2 * 378 / 8192, rel=1e-12)
    assert r.p_value == pytest.approx(stats.binomtest(3, 13, 0.5).pvalue, rel=1e-9)
    assert r.accuracy_a == pytest.approx(60 / 103) and r.accuracy_b == pytest.approx(53 / 103)
    assert r.difference == pytest.approx(-7 / 103)
    assert r.ci_low < r.difference < r.ci_high


def test_exact_mcnemar_matches_binomtest_over_a_grid() -> None:
    for b in range(0, 15):
        for c in range(0, 25 - b):
            r = mcnemar([[5, b], [c, 5]])
            expected = stats.binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
            assert r.p_value == pytest.approx(expected, rel=1e-9), (b, c)


def test_chi_square_mcnemar_with_continuity_correction() -> None:
    # b = 30, c = 15: (|30 - 15| - 1)^2 / 45 = 196/45; chi2(1) sf = erfc(sqrt(x/2))
    r = mcnemar([[100, 30], [15, 100]])
    assert r.method == "chi2"
    assert r.statistic == pytest.approx(196 / 45)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(196 / 90)), rel=1e-12)
    uncorrected = mcnemar([[100, 30], [15, 100]], correction=False)
    assert uncorrected.statistic == pytest.approx(225 / 45)


def test_auto_rule_switches_at_25_discordant_pairs() -> None:
    assert mcnemar([[9, 12], [12, 9]]).method == "exact"  # b + c = 24
    assert mcnemar([[9, 12], [13, 9]]).method == "chi2"  # b + c = 25
    assert mcnemar([[9, 12], [13, 9]], exact=True).method == "exact"
    assert mcnemar([[9, 2], [3, 9]], exact=False).method == "chi2"
    assert mcnemar([[9, 0], [0, 9]]).p_value == 1.0


def test_from_predictions_builds_the_table() -> None:
    y = np.array([1, 0, 1, 1, 0, 1, 0, 0])
    a = np.array([1, 0, 1, 0, 0, 1, 1, 0])  # right on 0,1,2,4,5,7
    b = np.array([1, 1, 1, 1, 0, 0, 0, 0])  # right on 0,2,3,4,6,7
    r = mcnemar_from_predictions(y, a, b)
    # both right: 0,2,4,7 (4); A only: 1,5 (2); B only: 3,6 (2); both wrong: none
    assert (r.b, r.c, r.n) == (2, 2, 8) and r.p_value == 1.0
    with pytest.raises(StatsError):
        mcnemar_from_predictions(y, a, b[:-1])
    with pytest.raises(StatsError):
        mcnemar([[1, 2, 3], [4, 5, 6]])


def test_paired_bootstrap_interval() -> None:
    rng = np.random.default_rng(5)
    base = rng.gamma(2.0, 1.0, 2000)
    loss_a = base + rng.normal(0, 0.5, 2000)
    loss_b = base + rng.normal(-0.1, 0.5, 2000)  # B is better by 0.1
    r = paired_bootstrap_ci(loss_a, loss_b, n_boot=2000, seed=1, alpha=0.05)
    d = loss_b - loss_a
    assert r.estimate == pytest.approx(d.mean())
    assert r.ci_low < r.estimate < r.ci_high < 0 and r.p_value < 0.01
    # agrees with the paired t interval on a sample this size
    t_half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    assert r.ci_high - r.ci_low == pytest.approx(2 * t_half, rel=0.1)
    assert r.std_error == pytest.approx(d.std(ddof=1) / math.sqrt(d.size), rel=0.1)
    assert paired_bootstrap_ci(loss_a, loss_b, n_boot=2000, seed=1) == r  # reproducible


def test_bootstrap_chunking_gives_the_same_replicates(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=300), rng.normal(size=300)
    whole = paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    monkeypatch.setattr(paired_module, "_CHUNK_ELEMENTS", 300 * 7)
    chunked = paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    assert chunked == whole


def test_bootstrap_bad_input() -> None:
    with pytest.raises(StatsError):
        paired_bootstrap_ci([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(StatsError):
        paired_bootstrap_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], n_boot=10)
