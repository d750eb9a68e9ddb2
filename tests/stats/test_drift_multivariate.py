"""Multivariate drift: MMD permutation test and the domain classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlops.errors import StatsError
from mlops.stats.drift_multivariate import _auc, domain_classifier_auc, mmd_test


def _brute_mmd2(x: np.ndarray, y: np.ndarray, s: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * s * s)))
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_statistic_equals_the_unbiased_estimator() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=(12, 2)), rng.normal(0.5, 1.0, size=(9, 2))
    r = mmd_test(ref, cur, n_permutations=99)
    z = (np.vstack([ref, cur]) - ref.mean(axis=0)) / ref.std(axis=0, ddof=1)
    x, y = z[:12], z[12:]
    pooled = np.vstack([x, y])
    dists = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(21) for j in range(i + 1, 21)]
    assert r.bandwidth == pytest.approx(np.median(dists), rel=1e-9)
    assert r.statistic == pytest.approx(_brute_mmd2(x, y, r.bandwidth), rel=1e-9, abs=1e-12)
    assert 1 / 100 <= r.p_value <= 1 and (r.n_reference, r.n_current) == (12, 9)


def test_mmd_null_shift_and_correlation() -> None:
    rng = np.random.default_rng(1)
    null_p = [mmd_test(rng.normal(size=(400, 3)), rng.normal(size=(400, 3)),
                       max_samples=300, n_permutations=100, seed=s).p_value for s in range(8)]
    assert np.mean(null_p) > 0.25 and sum(p < 0.05 for p in null_p) <= 2
    shifted = mmd_test(rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3)) + np.array([0.5, 0, 0]),
                       max_samples=400, n_permutations=200)
    assert shifted.p_value == pytest.approx(1 / 201) and shifted.drifted
    # same N(0, 1) marginals, correlation 0 -> 0.8: invisible to per-column tests
    ref = rng.normal(size=(2000, 2))
    cur = rng.multivariate_normal([0, 0], [[1, 0.8], [0.8, 1]], size=2000)
    assert mmd_test(ref, cur, max_samples=400).p_value < 0.01
    # subsampling is seeded: same seed, same answer
    again = mmd_test(ref, cur, max_samples=400)
    assert again == mmd_test(ref, cur, max_samples=400)


def test_domain_classifier_null_and_drift() -> None:
    rng = np.random.default_rng(2)
    names = ["a", "b", "c"]
    ref = pd.DataFrame(rng.normal(size=(1500, 3)), columns=names)
    same = pd.DataFrame(rng.normal(size=(1500, 3)), columns=names)
    null = domain_classifier_auc(ref, same, max_samples=400, cv=3, threads=1)
    assert 0.4 < null.auc < 0.6 and not null.drifted
    assert len(null.fold_aucs) == 3 and null.n_reference == null.n_current == 400
    moved = same.assign(b=same["b"] + 1.0)
    drift = domain_classifier_auc(ref, moved, max_samples=400, cv=3, threads=1)
    # a 1-SD shift: the best possible AUC is Phi(1 / sqrt 2) = 0.76
    assert drift.auc > 0.65 and drift.p_value < 1e-6 and drift.drifted
    assert drift.feature_aucs[0][0] == "b"


def test_auc_equals_sklearn_and_bad_input() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1).astype(np.float64)  # with ties
    assert _auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), rel=1e-12)
    with pytest.raises(StatsError, match="features"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(StatsError, match="NaN"):
        mmd_test(np.array([[np.nan, 1.0], [1.0, 2.0]]), np.zeros((5, 2)))
    with pytest.raises(StatsError, match="at least 10 are needed"):
        domain_classifier_auc(np.zeros((5, 2)), np.zeros((50, 2)))
    with pytest.raises(StatsError, match="non-numeric"):
        domain_classifier_auc(pd.DataFrame({"s": ["a"] * 20}), pd.DataFrame({"s": ["b"] * 20}))
