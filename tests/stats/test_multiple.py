"""Multiple-testing corrections against reference vectors.

R_RAW/R_* are the R ``multtest::mt.rawp2adjp`` results that statsmodels' own test suite
(``statsmodels/stats/tests/test_multi.py``, ``res_multtest1``) checks ``multipletests``
against; BKY is the 15 p-value example of Benjamini, Krieger & Yekutieli (2006), where the
BH step-up rejects 4 at q = 0.05, with adjusted values computed by hand below.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlops.errors import StatsError
from mlops.stats import adjust_p_values, benjamini_hochberg, bonferroni, holm

R_RAW = [5.23656777208e-05, 2.8140506198e-04, 1.49877310796e-02, 2.02732688798e-02,
         0.177096952723, 0.642193923795, 0.680845947633, 0.71626938238, 0.838541367553,
         0.967833824309]
R_BONFERRONI = [5.2365677720800005e-04, 2.8140506197999998e-03, 1.4987731079600000e-01,
                2.0273268879799999e-01, 1, 1, 1, 1, 1, 1]
R_HOLM = [5.2365677720800005e-04, 2.5326455578199999e-03, 1.1990184863680001e-01,
          1.4191288215860001e-01, 1, 1, 1, 1, 1, 1]
R_BH = [5.2365677720800005e-04, 1.4070253098999999e-03, 4.9959103598666670e-02,
        5.0683172199499998e-02, 3.5419390544599999e-01, 8.9533672797500008e-01,
        8.9533672797500008e-01, 8.9533672797500008e-01, 9.3171263061444454e-01,
        9.6783382430900000e-01]

BKY = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240,
       0.4262, 0.5719, 0.6528, 0.7590, 1.000]
# p_(i) * 15 / i, then the running minimum from the largest down
BKY_BH = [0.0015, 0.003, 0.0095, 0.035625, 0.0603, 0.0638571428571, 0.0638571428571,
          0.0645, 0.0765, 0.486, 0.581181818182, 0.714875, 0.753230769231, 0.813214285714,
          1.0]


@pytest.mark.parametrize(("method", "expected"), [
    ("fdr_bh", R_BH), ("bonferroni", R_BONFERRONI), ("holm", R_HOLM)])
def test_matches_r_multtest_reference(method: str, expected: list[float]) -> None:
    for alpha in (0.05, 0.1):
        r = adjust_p_values(R_RAW, alpha=alpha, method=method)
        np.testing.assert_allclose(r.p_adjusted, expected, rtol=1e-12)
        assert r.reject == tuple(p <= alpha for p in expected)
        assert r.method == method


def test_bh_published_example_rejects_four() -> None:
    r = benjamini_hochberg(BKY, alpha=0.05)
    np.testing.assert_allclose(r.p_adjusted, BKY_BH, rtol=1e-9)
    assert r.n_rejected == 4 and r.reject[:4] == (True,) * 4


def test_order_is_preserved_for_unsorted_input_and_ties() -> None:
    r = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.02, 0.04, 0.04
    assert r.p_adjusted == pytest.approx((0.02, 0.04, 0.04, 0.02))
    assert all(r.reject)
    tied = benjamini_hochberg([0.03, 0.03, 0.03, 0.5])
    assert tied.p_adjusted == pytest.approx((0.04, 0.04, 0.04, 0.5))
    perm = np.random.default_rng(0).permutation(len(R_RAW))
    shuffled = benjamini_hochberg(np.asarray(R_RAW)[perm], alpha=0.1)
    np.testing.assert_allclose(shuffled.p_adjusted, np.asarray(R_BH)[perm], rtol=1e-12)


def test_bonferroni_and_holm_rejections() -> None:
    p = [0.01, 0.02, 0.03]
    assert bonferroni(p, 0.05).reject == (True, False, False)
    # Holm: 0.01 <= 0.05/3, 0.02 <= 0.05/2, 0.03 <= 0.05 -> all; Bonferroni only the first
    assert holm(p, 0.05).reject == (True, True, True)
    assert holm([0.01, 0.03, 0.04], 0.05).reject == (True, False, False)  # 0.03 > 0.025
    assert benjamini_hochberg([], 0.05).p_adjusted == ()


@pytest.mark.parametrize("bad", [[0.1, 1.2], [0.1, -0.01], [0.1, float("nan")]])
def test_bad_p_values(bad: list[float]) -> None:
    with pytest.raises(StatsError):
        benjamini_hochberg(bad)
    with pytest.raises(StatsError):
        adjust_p_values([0.1], method="fdr_by")
