"""Sample ratio mismatch."""

from __future__ import annotations

import math
from typing import Any

import pytest
from scipy import stats

from mlops.errors import StatsError
from mlops.stats import sample_ratio_mismatch


def test_chi_square_equals_scipy_chisquare() -> None:
    observed, weights = [5023, 4890, 1017], [45, 45, 10]
    r = sample_ratio_mismatch(observed, weights)
    ref = stats.chisquare(observed, [sum(observed) * w / 100 for w in weights])
    assert r.chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.df == 2 and r.expected == pytest.approx((4918.5, 4918.5, 1093.0))
    assert r.observed == (5023, 4890, 1017)


def test_flags_52_48_on_100k_but_not_50_1_49_9() -> None:
    broken = sample_ratio_mismatch([52_000, 48_000], [0.5, 0.5])
    assert broken.chi2 == pytest.approx(160.0)  # 2 * 2000^2 / 50000
    assert broken.mismatch and broken.p_value < 1e-30
    assert broken.observed_share == pytest.approx((0.52, 0.48))
    fine = sample_ratio_mismatch([50_100, 49_900], [50, 50])
    assert fine.chi2 == pytest.approx(0.4)
    assert not fine.mismatch and fine.p_value == pytest.approx(0.5270892568655381)


def test_threshold_and_uneven_weights() -> None:
    # canary at 10%: 10,400 of 100,000 -> chi2 = 400^2/10000 + 400^2/90000 = 17.78
    r = sample_ratio_mismatch([89_600, 10_400], [90, 10])
    assert r.chi2 == pytest.approx(160000 / 10000 + 160000 / 90000)
    assert r.mismatch
    assert not sample_ratio_mismatch([89_600, 10_400], [90, 10], threshold=1e-6).mismatch


def test_zero_weight_arms() -> None:
    leaked = sample_ratio_mismatch([500, 500, 3], [50, 50, 0])
    assert leaked.mismatch and leaked.chi2 == math.inf and leaked.p_value == 0.0
    unused = sample_ratio_mismatch([500, 510, 0], [50, 50, 0])
    assert unused.df == 1 and not unused.mismatch
    empty = sample_ratio_mismatch([0, 0], [1, 1])
    assert empty.p_value == 1.0 and not empty.mismatch


@pytest.mark.parametrize(("observed", "weights"), [
    ([10, 20], [1, 1, 1]),
    ([10], [1]),
    ([10, -1], [1, 1]),
    ([10.5, 3], [1, 1]),
    ([10, 3], [0, 0]),
    ([10, 3], [1, math.nan]),
])
def test_bad_input(observed: list[Any], weights: list[float]) -> None:
    with pytest.raises(StatsError):
        sample_ratio_mismatch(observed, weights)
