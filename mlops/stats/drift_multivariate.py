"""Multivariate drift: does the joint distribution of the features move?

Univariate tests miss a change of correlation with unchanged marginals; these two see it.
Both work on bounded, seeded subsamples so their cost does not grow with the window.

- :func:`mmd_test` - kernel two-sample test (Gretton, Borgwardt, Rasch, Schölkopf & Smola,
  "A Kernel Two-Sample Test", JMLR 13, 2012). Columns are standardised by the reference
  mean and standard deviation (a constant column keeps scale 1), so no feature dominates
  the distance by its units. Statistic: the unbiased ``MMD^2_u = sum_{i!=j} k(x_i, x_j) /
  (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (n(n-1)) - 2 sum_{i,j} k(x_i, y_j) / (m n)`` with the
  Gaussian kernel ``k(a, b) = exp(-|a - b|^2 / (2 s^2))``, ``s`` = the median pairwise
  distance of the pooled subsample (median heuristic). p-value: ``(1 + #{perm >= observed})
  / (1 + n_permutations)`` over random relabellings of the pooled subsample (exact level).
- :func:`domain_classifier_auc` - label reference rows 0 and current rows 1 (balanced
  subsamples), fit scikit-learn's ``HistGradientBoostingClassifier`` in stratified k-fold
  cross-validation and score the out-of-fold ROC-AUC; 0.5 means the classifier cannot
  tell the two apart. p-value: one-sided normal approximation of the Mann-Whitney statistic
  (the AUC) under H0 ``AUC = 0.5``, ``Var = (n0 + n1 + 1) / (12 n0 n1)`` (Hanley & McNeil,
  Radiology 143, 1982), on the pooled out-of-fold scores; approximate, since the folds'
  models differ. Drift when ``AUC >= threshold`` (0.55) and ``p < alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from mlops.stats._checks import check_alpha, check_probability, fail

__all__ = [
    "ClassifierDriftResult",
    "MMDResult",
    "domain_classifier_auc",
    "mmd_test",
]

FloatArray = npt.NDArray[np.float64]
_PERM_BATCH = 50  # permutations scored per matrix product (bounds the memory to ~B x N)


@dataclass(frozen=True)
class MMDResult:
    """Kernel two-sample (MMD) test of reference vs current."""

    statistic: float
    p_value: float
    bandwidth: float
    n_reference: int
    n_current: int
    n_permutations: int
    alpha: float
    drifted: bool


@dataclass(frozen=True)
class ClassifierDriftResult:
    """Domain-classifier drift check: can a model tell current rows from reference rows?"""

    auc: float
    fold_aucs: tuple[float, ...]
    pooled_auc: float
    z: float
    p_value: float
    threshold: float
    alpha: float
    drifted: bool
    n_reference: int
    n_current: int
    feature_aucs: tuple[tuple[str, float], ...]


def _matrix(data: Any, name: str) -> tuple[FloatArray, list[str]]:
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        try:
            arr = data.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            fail(f"{name} has non-numeric columns: {exc}.",
                 "encode categorical columns as numbers (or drop them) first.")
    else:
        try:
            arr = np.asarray(data, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            fail(f"{name} is not numeric: {exc}.", f"pass {name} as a 2-D array of numbers.")
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        names = [f"x{i}" for i in range(arr.shape[1])] if arr.ndim == 2 else []
    if arr.ndim != 2 or arr.shape[1] == 0:
        fail(f"{name} must be 2-D (rows x features), got shape {arr.shape}.",
             f"pass {name} as rows x features.")
    if not np.all(np.isfinite(arr)):
        fail(f"{name} holds NaN or infinite values.",
             f"drop or impute the missing values of {name} first.")
    return arr, names


def _pair(reference: Any, current: Any, min_rows: int) -> tuple[FloatArray, FloatArray, list[str]]:
    ref, names = _matrix(reference, "reference")
    cur, _ = _matrix(current, "current")
    if ref.shape[1] != cur.shape[1]:
        fail(f"reference has {ref.shape[1]} features, current {cur.shape[1]}.",
             "pass the same columns, in the same order, for both.")
    for label, arr in (("reference", ref), ("current", cur)):
        if arr.shape[0] < min_rows:
            fail(f"{label} has {arr.shape[0]} rows; at least {min_rows} are needed.",
                 f"collect at least {min_rows} rows in {label}.")
    return ref, cur, names


def _subsample(arr: FloatArray, size: int, rng: np.random.Generator) -> FloatArray:
    if arr.shape[0] <= size:
        return arr
    return arr[np.sort(rng.choice(arr.shape[0], size=size, replace=False))]


def _positive_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        fail(f"{name}={value!r} must be a whole number >= {minimum}.",
             f"pass {name} >= {minimum}.")
    return int(value)


def _mmd2_from_sums(sxx: FloatArray, syy: FloatArray, sxy: FloatArray, m: int, n: int
                    ) -> FloatArray:
    # the kernel diagonal is 1: remove the m (resp. n) self-pairs from the within sums
    return ((sxx - m) / (m * (m - 1)) + (syy - n) / (n * (n - 1)) - 2.0 * sxy / (m * n))


def mmd_test(reference: Any, current: Any, *, max_samples: int = 1000,
             n_permutations: int = 200, alpha: float = 0.05, seed: int = 0) -> MMDResult:
    """Unbiased MMD^2 with a median-heuristic Gaussian kernel and a permutation p-value.

    ``reference`` and ``current`` are rows x features (arrays or numeric DataFrames); each
    is subsampled to at most ``max_samples`` rows (seeded, without replacement).
    """
    max_samples = _positive_int(max_samples, "max_samples", 2)
    n_permutations = _positive_int(n_permutations, "n_permutations", 1)
    alpha = check_alpha(alpha)
    ref, cur, _ = _pair(reference, current, 2)
    mean = ref.mean(axis=0)
    scale = ref.std(axis=0, ddof=1)
    scale[~(scale > 0)] = 1.0
    rng = np.random.default_rng(seed)
    x = (_subsample(ref, max_samples, rng) - mean) / scale
    y = (_subsample(cur, max_samples, rng) - mean) / scale
    m, n = x.shape[0], y.shape[0]
    z = np.vstack([x, y])
    sq = np.einsum("ij,ij->i", z, z)
    dist2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (z @ z.T), 0.0)
    np.fill_diagonal(dist2, 0.0)
    bandwidth = float(np.median(np.sqrt(dist2[np.triu_indices(m + n, k=1)])))
    if not bandwidth > 0:
        bandwidth = 1.0
    kernel = np.exp(-dist2 / (2.0 * bandwidth**2))
    total = float(kernel.sum())
    row_sums = kernel.sum(axis=1)

    def scores(masks: npt.NDArray[np.float64]) -> FloatArray:
        sxx = np.einsum("pj,pj->p", masks @ kernel, masks)
        sxy = masks @ row_sums - sxx
        return _mmd2_from_sums(sxx, total - sxx - 2.0 * sxy, sxy, m, n)

    observed = float(scores(np.concatenate([np.ones(m), np.zeros(n)])[None, :])[0])
    exceed = 0
    for start in range(0, n_permutations, _PERM_BATCH):
        size = min(_PERM_BATCH, n_permutations - start)
        masks = np.zeros((size, m + n))
        picks = np.argsort(rng.random((size, m + n)), axis=1)[:, :m]
        np.put_along_axis(masks, picks, 1.0, axis=1)
        exceed += int(np.count_nonzero(scores(masks) >= observed))
    p = (1 + exceed) / (1 + n_permutations)
    return MMDResult(observed, p, bandwidth, m, n, n_permutations, alpha, p < alpha)


def _auc(labels: npt.NDArray[np.int64], scores: FloatArray) -> float:
    """ROC-AUC as the Mann-Whitney statistic with mid-ranks (ties count one half)."""
    ranks = stats.rankdata(scores)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def domain_classifier_auc(reference: Any, current: Any, *, max_samples: int = 5000,
                          cv: int = 5, threshold: float = 0.55, alpha: float = 0.05,
                          seed: int = 0, feature_names: Sequence[str] | None = None,
                          threads: int | None = None) -> ClassifierDriftResult:
    """Cross-validated ROC-AUC of a classifier separating current from reference rows.

    Both sides are subsampled to the same size ``min(n_ref, n_cur, max_samples)``.
    ``feature_aucs``: each feature's own AUC folded to >= 0.5 (``max(a, 1 - a)``), most
    separating first - a cheap pointer to what moved, not the model's importance.
    ``threads`` caps the OpenMP threads of the classifier (None: scikit-learn's default;
    1 avoids oversubscription when called from a busy worker).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    cv = _positive_int(cv, "cv", 2)
    max_samples = _positive_int(max_samples, "max_samples", 2 * cv)
    alpha = check_alpha(alpha)
    threshold = check_probability(threshold, "threshold")
    ref, cur, names = _pair(reference, current, 2 * cv)
    if feature_names is not None:
        names = [str(f) for f in feature_names]
        if len(names) != ref.shape[1]:
            fail(f"feature_names has {len(names)} names for {ref.shape[1]} features.",
                 "pass one name per column.")
    rng = np.random.default_rng(seed)
    size = min(ref.shape[0], cur.shape[0], max_samples)
    x = np.vstack([_subsample(ref, size, rng), _subsample(cur, size, rng)])
    labels = np.repeat(np.array([0, 1], dtype=np.int64), size)
    oof = np.empty(labels.size)
    fold_aucs = []
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    limit = None if threads is None else _positive_int(threads, "threads", 1)
    with threadpool_limits(limits=limit, user_api="openmp"):
        for train, test in folds.split(x, labels):
            model = HistGradientBoostingClassifier(random_state=seed)
            model.fit(x[train], labels[train])
            oof[test] = model.predict_proba(x[test])[:, 1]
            fold_aucs.append(_auc(labels[test], oof[test]))
    pooled = _auc(labels, oof)
    z = (pooled - 0.5) / math.sqrt((2 * size + 1) / (12.0 * size * size))
    p = float(stats.norm.sf(z))
    auc = float(np.mean(fold_aucs))
    per_feature = [(name, max(a, 1.0 - a)) for name, a in
                   ((name, _auc(labels, x[:, j])) for j, name in enumerate(names))]
    per_feature.sort(key=lambda item: -item[1])
    return ClassifierDriftResult(
        auc=auc, fold_aucs=tuple(fold_aucs), pooled_auc=pooled, z=float(z), p_value=p,
        threshold=threshold, alpha=alpha, drifted=auc >= threshold and p < alpha,
        n_reference=size, n_current=size, feature_aucs=tuple(per_feature))
