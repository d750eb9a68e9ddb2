"""Univariate drift: scores against scipy and hand arithmetic, the decision rule's false-alarm
rate and power, the effect floor at a million rows, and the report's bookkeeping."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlops.errors import StatsError
from mlops.stats.drift import detect_drift, detect_drift_frames
from mlops.stats.drift_univariate import (
    chi_square_categorical,
    energy_distance,
    jensen_shannon,
    ks_2samp_sorted,
    psi,
    wasserstein_normalized,
)
from mlops.stats.multiple import benjamini_hochberg
from mlops.stats.profile import build_profile


def _pairs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Continuous, tied (rounded), discrete, unequal and tiny sample pairs."""
    rng = np.random.default_rng(seed)
    out = []
    for m, n in [(1, 1), (1, 5), (2, 3), (7, 4), (50, 50), (300, 1000), (1999, 2000),
                 (4000, 150), (20_000, 15_000)]:
        out.append((rng.normal(size=m), rng.normal(0.1, 1.0, size=n)))
        out.append((np.round(rng.normal(size=m), 1), np.round(rng.normal(0.05, 1.0, n), 1)))
        out.append((rng.integers(0, 4, m).astype(float), rng.integers(0, 5, n).astype(float)))
    out.append((rng.normal(size=5000), rng.normal(0.2, 1.0, size=5000)))  # p ~ 1e-20
    out.append((np.zeros(10), np.zeros(7)))  # identical constants: D = 0
    return out


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scipy at m = n = 1
@pytest.mark.parametrize("method", ["asymp", "auto"])
def test_ks_matches_scipy(method: str) -> None:
    for ref, cur in _pairs():
        d, p = ks_2samp_sorted(np.sort(ref), cur, method=method)  # type: ignore[arg-type]
        expected = stats.ks_2samp(ref, cur, method=method)
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        if math.isnan(expected.pvalue):  # scipy: m = n = 1 rounds to N = 0; ours uses N = 1
            assert (len(ref), len(cur), method) == (1, 1, "asymp") and 0 <= p <= 1
            continue
        assert p == pytest.approx(expected.pvalue, abs=1e-9, rel=1e-9)


def test_wasserstein_energy_and_js_match_scipy() -> None:
    for ref, cur in _pairs(1):
        srt = np.sort(ref)
        assert wasserstein_normalized(srt, cur, 1.0) == pytest.approx(
            stats.wasserstein_distance(ref, cur), rel=1e-9, abs=1e-12)
        assert wasserstein_normalized(srt, cur, 2.0) == pytest.approx(
            stats.wasserstein_distance(ref, cur) / 2.0, rel=1e-9, abs=1e-12)
        assert energy_distance(srt, cur) == pytest.approx(
            stats.energy_distance(ref, cur), rel=1e-9, abs=1e-12)
    rng = np.random.default_rng(2)
    for k in (2, 5, 30):
        p, q = rng.random(k), rng.random(k)
        q[0] = 0.0
        assert jensen_shannon(p, q) == pytest.approx(jensenshannon(p, q, base=2), rel=1e-12)


def test_hand_computed_wasserstein_js_psi() -> None:
    # W([0,1,3], [5,6,8]): every unit of mass moves 5 -> 5; in SDs of 2: 2.5
    assert wasserstein_normalized([0.0, 1.0, 3.0], [5.0, 6.0, 8.0], 2.0) == pytest.approx(2.5)
    assert wasserstein_normalized([1.0, 1.0], [1.0], 0.0) == 0.0  # constant, unchanged
    assert wasserstein_normalized([1.0, 1.0], [2.0], 0.0) == math.inf  # constant, moved
    # JS: disjoint supports -> 1; p = (1/2, 1/2) vs q = (1, 0): m = (3/4, 1/4),
    # KL(p||m) = 1/2 log2(2/3) + 1/2 log2(2), KL(q||m) = log2(4/3)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    kl_p = 0.5 * math.log2(2 / 3) + 0.5 * math.log2(2)
    kl_q = math.log2(4 / 3)
    assert jensen_shannon([0.5, 0.5], [1, 0]) == pytest.approx(math.sqrt((kl_p + kl_q) / 2))
    assert jensen_shannon([2, 2], [7, 7]) == 0.0  # counts are normalised
    # PSI over bins (-inf, 0], (0, 1], (1, inf) with reference shares 1/4, 1/2, 1/4:
    edges, ref = [-np.inf, 0.0, 1.0, np.inf], [0.25, 0.5, 0.25]
    # current -1, 0.5, 2, 3 -> shares 1/4, 1/4, 1/2
    expected = 0 + (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - 0.25) * math.log(0.5 / 0.25)
    assert psi(edges, ref, [-1.0, 0.5, 2.0, 3.0]) == pytest.approx(expected)  # = ln(2) / 2
    # current 0 and 1 sit on the edges (right-closed): shares 1/2, 1/2, 0 -> floored at 1e-4
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi(edges, ref, [0.0, 1.0]) == pytest.approx(expected)
    assert psi([0.0, 0.5, 1.0], [0.5, 0.5], [-5.0, 5.0]) == 0.0  # outer bins open-ended
    with pytest.raises(StatsError, match="increasing"):
        psi([0.0, 1.0], [0.5, 0.5], [1.0])


def test_chi_square_homogeneity_matches_scipy_and_pools_unseen() -> None:
    cats, counts = ("a", "b", "c"), np.array([500, 300, 200])
    current = np.array(["a"] * 40 + ["b"] * 35 + ["c"] * 15 + ["d"] * 6 + ["e"] * 4
                       + [None] * 3, dtype=object)
    r = chi_square_categorical(cats, counts, current)
    table = np.array([[500, 300, 200, 0], [40, 35, 15, 10]])  # d and e pooled: one column
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    assert r.statistic == pytest.approx(chi2, rel=1e-12)
    assert r.p_value == pytest.approx(p, rel=1e-9)
    assert r.df == dof == 3
    assert r.cramers_v == pytest.approx(math.sqrt(chi2 / table.sum()))
    assert r.unseen_categories == ("d", "e") and r.unseen_share == pytest.approx(0.1)
    assert (r.n_reference, r.n_current) == (1000, 100)
    assert r.js == pytest.approx(jensenshannon([500, 300, 200, 0, 0], [40, 35, 15, 6, 4],
                                               base=2), rel=1e-12)
    same = chi_square_categorical(cats, counts, ["a"] * 5 + ["b"] * 3 + ["c"] * 2)
    assert same.statistic == pytest.approx(0.0, abs=1e-12) and same.p_value == pytest.approx(1.0)
    assert same.unseen_categories == ()
    with pytest.raises(StatsError, match="no non-missing"):
        chi_square_categorical(cats, counts, [None, None])


def test_bh_decisions_equal_statsmodels() -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest",
                                    reason="statsmodels is not installed")
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(800, 12))
    cur = rng.normal(size=(800, 12)) + np.linspace(0, 0.25, 12)
    names = [f"f{i}" for i in range(12)]
    report = detect_drift_frames(pd.DataFrame(ref, columns=names),
                                 pd.DataFrame(cur, columns=names), min_effect=0.0)
    p = [f.p_value for f in report.features]
    reject, adjusted, _, _ = multitest.multipletests(p, alpha=0.05, method="fdr_bh")
    np.testing.assert_allclose([f.p_adjusted for f in report.features], adjusted, rtol=1e-12)
    assert [f.drifted for f in report.features] == list(reject)


def test_decisions_are_bh_over_tested_columns_and_effect_floor() -> None:
    rng = np.random.default_rng(4)
    names = [f"f{i}" for i in range(12)]
    ref = pd.DataFrame(rng.normal(size=(800, 12)), columns=names)
    cur = pd.DataFrame(rng.normal(size=(800, 12)) + np.linspace(0, 0.25, 12), columns=names)
    cur["f0"] = np.nan  # untestable: excluded from the BH family
    report = detect_drift_frames(ref, cur)
    tested = [f for f in report.features if f.tested]
    assert len(tested) == 11 and report.features[0].note
    bh = benjamini_hochberg([f.p_value for f in tested], 0.05)
    assert [f.p_adjusted for f in tested] == list(bh.p_adjusted)
    for f, rejected in zip(tested, bh.reject, strict=True):
        assert f.drifted == (rejected and f.effect_size >= 0.1)
        assert f.effect_metric == "wasserstein_norm" and f.method == "ks"
    assert report.n_drifted >= 3


def test_false_alarm_rate_is_at_most_the_fdr() -> None:
    """200 drift-free reruns of 20 features: under the global null BH's FDR equals its
    family-wise rate, so at most ~5% of the runs may flag anything; the effect floor only
    removes flags. (Asymptotic KS p-values keep the 4,000 tests fast; the exact ones that
    ``auto`` uses below 10,000 rows are exact-level by construction.)"""
    rng = np.random.default_rng(2024)
    runs, k, n = 200, 20, 1000
    names = [f"f{j}" for j in range(k)]
    any_bh = any_default = 0
    for _ in range(runs):
        ref, cur = rng.normal(size=(n, k)), rng.normal(size=(n, k))
        profile = build_profile(dict(zip(names, ref.T, strict=True)))
        report = detect_drift(profile, dict(zip(names, cur.T, strict=True)), min_effect=0.0,
                              ks_method="asymp")
        any_bh += report.n_drifted > 0
        any_default += any(f.drifted and f.effect_size >= 0.1 for f in report.features)
    # 5% of 200 = 10 expected at most; allow two binomial standard deviations (~3.1 each)
    assert any_bh <= 16
    assert any_default <= any_bh


def _scenario(rng: np.random.Generator, n: int, change: str) -> tuple[pd.DataFrame,
                                                                       pd.DataFrame]:
    k = 10
    ref = pd.DataFrame(rng.normal(size=(n, k)), columns=[f"x{i}" for i in range(k)])
    cur = pd.DataFrame(rng.normal(size=(n, k)), columns=ref.columns)
    ref["cat"] = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    cur["cat"] = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    if change == "shift":
        cur["x0"] += 0.3
    elif change == "scale":
        cur["x0"] *= 1.5
    elif change == "frequency":
        cur["cat"] = rng.choice(["a", "b", "c"], n, p=[0.3, 0.3, 0.4])
    elif change == "new_category":
        cur["cat"] = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.25, 0.15, 0.2])
    return ref, cur


@pytest.mark.parametrize(("change", "feature"), [
    ("shift", "x0"), ("scale", "x0"), ("frequency", "cat"), ("new_category", "cat")])
def test_power_on_seeded_shifts(change: str, feature: str) -> None:
    rng = np.random.default_rng(5)
    hits = false_flags = 0
    for _ in range(10):
        ref, cur = _scenario(rng, 2000, change)
        report = detect_drift_frames(ref, cur)
        hits += feature in report.drifted_features
        false_flags += len(set(report.drifted_features) - {feature})
        if change == "new_category":
            assert report.feature("cat").unseen_categories == ("d",)
    assert hits == 10
    assert false_flags == 0


def test_effect_floor_ignores_a_tiny_shift_at_a_million_rows() -> None:
    rng = np.random.default_rng(6)
    n = 1_000_000
    profile = build_profile({"x": rng.normal(size=n)}, sample_cap=n)
    f = detect_drift(profile, {"x": rng.normal(0.01, 1.0, size=n)}).feature("x")
    assert f.p_adjusted < 1e-4  # "significant": BH alone would flag it ...
    assert f.effect_size < 0.02 and not f.drifted and f.severity == "none"  # ... but tiny
    shifted = detect_drift(profile, {"x": rng.normal(0.3, 1.0, size=n)}).feature("x")
    assert shifted.drifted and shifted.severity == "medium"
    assert shifted.effect_size == pytest.approx(0.3, abs=0.01)


def test_small_categorical_change_is_under_the_js_floor() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    ref = {"c": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])}
    cur = {"c": rng.choice(["a", "b", "c"], n, p=[0.47, 0.3, 0.23])}
    f = detect_drift_frames(ref, cur).feature("c")
    assert f.p_value < 1e-10 and f.effect_size < 0.1 and not f.drifted
    assert f.method == "chi2" and set(f.scores) >= {"chi2", "cramers_v", "psi", "js"}


def test_report_bookkeeping_and_json() -> None:
    rng = np.random.default_rng(8)
    ref = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500),
                        "c": rng.choice(["u", "v"], 500), "gone": rng.normal(size=500)})
    cur = pd.DataFrame({"a": rng.normal(2.0, 1.0, 400), "b": rng.normal(size=400),
                        "c": rng.choice(["u", "v"], 400), "new": np.zeros(400)})
    cur.loc[:99, "b"] = np.nan
    report = detect_drift_frames(ref, cur, methods=("energy", "psi"))
    assert report.missing_columns == ("gone",) and report.extra_columns == ("new",)
    assert report.n_features == 3 and report.drifted_features == ("a",)
    assert report.share_drifted == pytest.approx(1 / 3) and not report.dataset_drift
    assert detect_drift_frames(ref, cur, dataset_share=0.01).dataset_drift
    a, b = report.feature("a"), report.feature("b")
    assert a.severity == "high" and set(a.scores) == {"ks", "wasserstein", "wasserstein_norm",
                                                      "psi", "energy"}
    assert b.missing_rate_current == 0.25 and b.n_current == 300 and b.n_reference == 500
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert json.loads(text)["drifted_features"] == ["a"]
    with pytest.raises(StatsError, match="No feature"):
        report.feature("zzz")


def test_threads_give_the_same_report() -> None:
    rng = np.random.default_rng(9)
    cols = {f"f{i}": rng.normal(size=30_000) for i in range(8)}
    cols["cat"] = rng.choice(list("abcde"), 30_000)
    profile = build_profile(cols)
    cur = {name: (v + 0.05 if name == "f1" else rng.permutation(v)) for name, v in cols.items()}
    one = detect_drift(profile, cur, threads=1)
    two = detect_drift(profile, cur, threads=2)
    assert one == two


def test_categorical_labels_match_across_dtypes() -> None:
    profile = build_profile({"code": np.array([1, 2, 2, 3] * 50)}, categorical=["code"])
    cur = {"code": np.array([1.0, 2.0, np.nan, 3.0, 2.0] * 40)}  # floats after a missing value
    f = detect_drift(profile, cur).feature("code")
    assert f.unseen_categories == () and f.missing_rate_current == 0.2
    assert not f.drifted


def test_bad_input() -> None:
    profile = build_profile({"x": np.arange(100.0), "c": ["a", "b"] * 50})
    with pytest.raises(StatsError, match="'x' of the current data holds infinite"):
        detect_drift(profile, {"x": [1.0, np.inf]})
    with pytest.raises(StatsError, match="empty"):
        detect_drift(profile, pd.DataFrame({"x": pd.Series([], dtype=float)}))
    with pytest.raises(StatsError, match="not numeric"):
        detect_drift(profile, {"x": ["a", "b"]})
    with pytest.raises(StatsError, match="fdr"):
        detect_drift(profile, {"x": [1.0]}, fdr=1.5)
    with pytest.raises(StatsError, match="unknown column kind"):
        detect_drift(profile, {"x": [1.0]}, min_effect={"text": 0.1})
    with pytest.raises(StatsError, match="min_effect"):
        detect_drift(profile, {"x": [1.0]}, min_effect=-1)
    with pytest.raises(StatsError, match="unknown names"):
        detect_drift(profile, {"x": [1.0]}, methods=["ttest"])
    with pytest.raises(StatsError, match="ReferenceProfile"):
        detect_drift({"x": 1}, {"x": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(StatsError, match="not sorted"):
        ks_2samp_sorted([2.0, 1.0], [1.0])
    with pytest.raises(StatsError, match="NaN or infinite"):
        ks_2samp_sorted([1.0, 2.0], [np.nan])
    r = detect_drift(profile, {"x": [np.nan, np.nan], "c": [None, None]})
    assert all(not f.tested and not f.drifted for f in r.features)
    assert r.features[0].missing_rate_current == 1.0
    assert detect_drift(profile, {"other": [1, 2]}).n_features == 0
