"""Univariate drift statistics: a current sample against a reference sample or profile.

The two-sample functions (KS, PSI, Wasserstein, Jensen-Shannon, energy, chi-square) and the
scores of one profiled column against a window, which :func:`mlops.stats.drift.detect_drift`
combines into its decision. Per column (see ``docs/drift.md`` for the defaults table):

- **numeric** - two-sample Kolmogorov-Smirnov p-value; effect = Wasserstein-1 distance in
  reference standard deviations; also PSI and Jensen-Shannon over the reference quantile
  bins, and the energy distance on request;
- **categorical** - Pearson chi-square test of homogeneity of the 2 x k table (reference
  counts vs current counts); effect = Jensen-Shannon distance over the union of categories;
  also PSI and Cramér's V.

Formulas (each function's docstring has its own; references in ``docs/drift.md``):
KS ``D = sup |F - G|`` with the asymptotic p-value ``kstwo.sf(D, round(m n / (m + n)))``
exactly as ``scipy.stats.ks_2samp(method="asymp")`` (``"auto"``: scipy's exact p-value
when ``max(m, n) <= 10_000``, like scipy's default); one merge of the two sorted samples
yields D, the Wasserstein and the energy distance together. Categories: chi-square of
homogeneity of the 2 x k table, not goodness of fit against the reference shares: it counts
the reference's sampling noise too (GOF with equal sizes doubles the statistic under no
drift), and the pooled "unseen" column needs no expectation floor (its expected reference
count ``m u / N`` is positive).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special, stats

from mlops.stats._checks import ArrayLike, as_sample, fail
from mlops.stats.profile import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    categorical_counts,
    numeric_values,
)

__all__ = [
    "KS_METHODS",
    "PSI_EPS",
    "ChiSquareResult",
    "KSMethod",
    "Scores",
    "categorical_scores",
    "chi_square_categorical",
    "energy_distance",
    "jensen_shannon",
    "ks_2samp_sorted",
    "numeric_scores",
    "psi",
    "wasserstein_normalized",
]

FloatArray = npt.NDArray[np.float64]
KSMethod = Literal["asymp", "exact", "auto"]

KS_METHODS = ("asymp", "exact", "auto")
PSI_EPS = 1e-4
_EXACT_MAX_N = 10_000  # scipy's 'auto' switch from the exact to the asymptotic p-value


# ---------------------------------------------------------------------- pure functions
def _sorted_sample(values: ArrayLike, name: str) -> FloatArray:
    arr = as_sample(values, name, min_size=1)
    if arr.size > 1 and np.any(arr[1:] < arr[:-1]):
        fail(f"{name} is not sorted ascending.", f"pass np.sort({name}) (a profile's sample is).")
    return arr


def _ecdf_distances(ref: FloatArray, cur: FloatArray, energy: bool = True
                    ) -> tuple[float, float, float]:
    """(KS D, Wasserstein-1, energy distance or NaN) of two sorted, finite, non-empty samples.

    One merge: ``ref`` is inserted into ``cur``. At merged position k, with c refs among
    the first k + 1 values, ``m n (F - G) = c (m + n) - (k + 1) m``, an integer (exact in
    float64 below 2**53). At the last position of each run of equal values these are the
    right-continuous ECDFs; inside a run the gap to the next value is 0, so the sums and
    the max only see run ends.
    """
    m, n = ref.size, cur.size
    total = m + n
    pos = np.searchsorted(cur, ref, side="left")
    pos += np.arange(m)
    is_ref = np.zeros(total, dtype=bool)
    is_ref[pos] = True
    merged = np.empty(total)
    merged[pos] = ref
    merged[~is_ref] = cur
    delta = np.diff(merged)
    gaps = np.cumsum(is_ref[:-1], dtype=np.float64)
    gaps *= total
    gaps -= np.arange(m, total * m, m, dtype=np.float64)
    np.abs(gaps, out=gaps)
    mn = float(m) * float(n)
    ties = float(delta.min()) == 0.0
    d = float(np.max(gaps, where=delta > 0, initial=0.0) if ties else gaps.max()) / mn
    # multiply + sum, not np.dot: dot goes to multi-threaded BLAS, whose threads cost
    # milliseconds per column and fight the column threads (bench/drift.py)
    w = float(np.multiply(gaps, delta).sum()) / mn
    e = float("nan")
    if energy:
        gaps *= gaps
        e = math.sqrt(2.0) * math.sqrt(float(np.multiply(gaps, delta).sum())) / mn
    return d, w, e


def _ks_p_asymp(d: float, m: int, n: int) -> float:
    big, small = sorted((float(m), float(n)), reverse=True)
    en = big * small / (big + small)  # scipy rounds m = n = 1 to N = 0 (NaN); we use N >= 1
    return float(np.clip(stats.kstwo.sf(d, max(np.round(en), 1.0)), 0.0, 1.0))


def _use_exact(method: str, m: int, n: int) -> bool:
    if method not in KS_METHODS:
        fail(f"method={method!r} is not one of {KS_METHODS}.", "use 'auto' or 'asymp'.")
    return method == "exact" or (method == "auto" and max(m, n) <= _EXACT_MAX_N)


def _ks_exact(ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
    result = stats.ks_2samp(ref, cur, method="exact")
    return float(result.statistic), float(result.pvalue)


def ks_2samp_sorted(ref_sorted: ArrayLike, current: ArrayLike, *, method: KSMethod = "asymp"
                    ) -> tuple[float, float]:
    """Two-sided two-sample KS ``(D, p)`` with an already sorted reference.

    ``D = max |F(x) - G(x)|`` over the pooled points; ``method="asymp"``: ``p =
    kstwo.sf(D, round(m n / (m + n)))``. Equals ``scipy.stats.ks_2samp(ref, current,
    method=method)``; only ``current`` is sorted here.
    """
    ref = _sorted_sample(ref_sorted, "ref_sorted")
    cur = np.sort(as_sample(current, "current", min_size=1))
    if _use_exact(method, ref.size, cur.size):
        return _ks_exact(ref, cur)
    d = _ecdf_distances(ref, cur, energy=False)[0]
    return d, _ks_p_asymp(d, ref.size, cur.size)


def _psi(ref_fractions: FloatArray, cur_fractions: FloatArray, eps: float) -> float:
    r = np.maximum(ref_fractions, eps)
    c = np.maximum(cur_fractions, eps)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(bin_edges: ArrayLike, bin_fractions: ArrayLike, current: ArrayLike,
        eps: float = PSI_EPS) -> float:
    """Population stability index ``sum (c_i - r_i) ln(c_i / r_i)`` over reference bins.

    Bins are right-closed ``(e_{i}, e_{i+1}]`` and the outermost two are open-ended (the
    first and last edge are ignored), as in :class:`~mlops.stats.profile.NumericProfile`.
    Shares below ``eps`` are floored at ``eps`` so an empty bin gives a finite index.
    """
    edges = np.asarray(bin_edges, dtype=np.float64)
    ref = as_sample(bin_fractions, "bin_fractions", min_size=1)
    if edges.ndim != 1 or edges.size != ref.size + 1 or np.any(np.diff(edges) <= 0):
        fail("bin_edges must be increasing with one more entry than bin_fractions.",
             "pass a profile's bin_edges and bin_fractions together.")
    if np.any(ref < 0) or not math.isclose(float(ref.sum()), 1.0, abs_tol=1e-6):
        fail("bin_fractions must be non-negative shares summing to 1.",
             "pass a profile's bin_fractions.")
    eps = float(eps)
    if not 0.0 < eps < 1.0:
        fail(f"eps={eps!r} must lie strictly between 0 and 1.", "use the default eps=1e-4.")
    cur = as_sample(current, "current", min_size=1)
    counts = np.bincount(np.searchsorted(edges[1:-1], cur, side="left"), minlength=ref.size)
    return _psi(ref, counts / cur.size, eps)


def wasserstein_normalized(ref_sorted: ArrayLike, current: ArrayLike, ref_std: float) -> float:
    """``W / ref_std``: ``W = integral |F - G| dx`` (``scipy.stats.wasserstein_distance``).

    With ``ref_std == 0`` (a constant reference) the result is 0 when ``W == 0`` and
    ``inf`` otherwise.
    """
    ref = _sorted_sample(ref_sorted, "ref_sorted")
    cur = np.sort(as_sample(current, "current", min_size=1))
    std = float(ref_std)
    if not math.isfinite(std) or std < 0:
        fail(f"ref_std={ref_std!r} must be a finite number >= 0.",
             "pass the reference profile's std.")
    return _normalise(_ecdf_distances(ref, cur, energy=False)[1], std)


def _normalise(w: float, std: float) -> float:
    if std > 0:
        return w / std
    return 0.0 if w == 0 else math.inf


def _js(p: FloatArray, q: FloatArray) -> float:
    p = p / np.sum(p)
    q = q / np.sum(q)
    mid = (p + q) / 2.0
    js = (np.sum(special.rel_entr(p, mid)) + np.sum(special.rel_entr(q, mid))) / np.log(2.0)
    return float(np.sqrt(max(float(js), 0.0) / 2.0))


def jensen_shannon(ref_fractions: ArrayLike, cur_fractions: ArrayLike) -> float:
    """Jensen-Shannon distance, base 2: ``sqrt((KL(p||m) + KL(q||m)) / 2)``, ``m = (p+q)/2``.

    Inputs are shares or counts over the same cells (each normalised to sum 1); equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. 0 = same, 1 = disjoint.
    """
    p = as_sample(ref_fractions, "ref_fractions", min_size=1)
    q = as_sample(cur_fractions, "cur_fractions", min_size=1)
    if p.size != q.size:
        fail(f"ref_fractions has {p.size} cells, cur_fractions {q.size}.",
             "align both over the same bins or categories.")
    if np.any(p < 0) or np.any(q < 0) or p.sum() <= 0 or q.sum() <= 0:
        fail("fractions must be non-negative with a positive total.",
             "pass shares or counts per cell.")
    return _js(p, q)


def energy_distance(ref_sorted: ArrayLike, current: ArrayLike) -> float:
    """Energy distance ``sqrt(2 integral (F - G)^2 dx)`` (``scipy.stats.energy_distance``)."""
    ref = _sorted_sample(ref_sorted, "ref_sorted")
    cur = np.sort(as_sample(current, "current", min_size=1))
    return _ecdf_distances(ref, cur)[2]


@dataclass(frozen=True)
class ChiSquareResult:
    """Chi-square homogeneity test of current vs reference category counts."""

    statistic: float
    p_value: float
    df: int
    cramers_v: float
    js: float
    psi: float
    n_reference: int
    n_current: int
    unseen_categories: tuple[str, ...]
    unseen_share: float


def _categorical_test(ref_counts: npt.NDArray[np.int64], cur_counts: FloatArray,
                      unseen_counts: FloatArray, unseen: tuple[str, ...]) -> ChiSquareResult:
    ref = ref_counts.astype(np.float64)
    n_unseen = float(unseen_counts.sum())
    rows = np.vstack([np.append(ref, 0.0), np.append(cur_counts, n_unseen)])
    rows = rows[:, rows.sum(axis=0) > 0]
    row_tot = rows.sum(axis=1, keepdims=True)
    total = float(row_tot.sum())
    k = rows.shape[1]
    if k < 2 or np.any(row_tot == 0):
        stat, p = 0.0, 1.0
    else:
        expected = row_tot * rows.sum(axis=0) / total
        stat = float(np.sum((rows - expected) ** 2 / expected))
        p = float(stats.chi2.sf(stat, k - 1))
    union_ref = np.concatenate([ref, np.zeros(unseen_counts.size)])
    union_cur = np.concatenate([cur_counts, unseen_counts])
    n_ref, n_cur = float(ref.sum()), float(union_cur.sum())
    return ChiSquareResult(
        statistic=stat, p_value=p, df=max(k - 1, 0), cramers_v=math.sqrt(stat / total),
        js=_js(union_ref, union_cur), psi=_psi(union_ref / n_ref, union_cur / n_cur, PSI_EPS),
        n_reference=int(n_ref), n_current=int(n_cur), unseen_categories=unseen,
        unseen_share=n_unseen / n_cur)


def _align(categories: tuple[str, ...], labels: tuple[str, ...], counts: npt.NDArray[np.int64]
           ) -> tuple[FloatArray, FloatArray, tuple[str, ...]]:
    index = {c: i for i, c in enumerate(categories)}
    aligned = np.zeros(len(categories))
    unseen: list[tuple[str, int]] = []
    for label, count in zip(labels, counts.tolist(), strict=True):
        if label in index:
            aligned[index[label]] = count
        else:
            unseen.append((label, count))
    return (aligned, np.array([c for _, c in unseen], dtype=np.float64),
            tuple(label for label, _ in unseen))


def chi_square_categorical(categories: Collection[str], counts: ArrayLike,
                           current_values: Any) -> ChiSquareResult:
    """Chi-square homogeneity test of ``current_values`` against reference counts.

    Missing values are dropped; current categories absent from ``categories`` are pooled
    into one unseen column and listed in ``unseen_categories``. Equals
    ``scipy.stats.chi2_contingency(table, correction=False)`` on the 2 x k table.
    """
    cats = tuple(str(c) for c in categories)
    ref = np.asarray(counts)
    if ref.shape != (len(cats),) or ref.size == 0 or np.any(ref < 0) or ref.sum() <= 0 \
            or not np.all(ref == np.round(ref)):
        fail("counts must be whole non-negative numbers, one per category, with a positive "
             "total.", "pass a CategoricalProfile's categories and counts.")
    labels, cur_counts, _ = categorical_counts(current_values, "current_values")
    if cur_counts.sum() == 0:
        fail("current_values holds no non-missing values.", "pass a non-empty window.")
    aligned, unseen_counts, unseen = _align(cats, labels, cur_counts)
    return _categorical_test(ref.astype(np.int64), aligned, unseen_counts, unseen)


# ---------------------------------------------------------------------- one profiled column
@dataclass(frozen=True)
class Scores:
    """The scores of one column, before the decision over all columns."""

    kind: str
    method: str
    statistic: float
    p_value: float
    effect: float
    n_reference: int
    n_current: int
    missing_reference: float
    missing_current: float
    scores: dict[str, float]
    unseen: tuple[str, ...] = ()
    note: str = ""


def _untestable(col: ColumnProfile, n_current: int, missing_current: float) -> Scores:
    nan = float("nan")
    why = "the reference column has no values" if col.n == 0 else \
        "the current column has no non-missing values"
    return Scores(col.kind, "ks" if col.kind == "numeric" else "chi2", nan, nan, nan, col.n,
                   n_current, col.missing_rate, missing_current, {}, (), why)


def numeric_scores(col: NumericProfile, values: Any, wanted: frozenset[str],
                    ks_method: str) -> Scores:
    if isinstance(values, pd.Series) and isinstance(values.dtype, np.dtype) \
            and values.dtype.kind in "fiu":
        values = values.to_numpy()
    s = np.sort(numeric_values(values, col.name))
    total = s.size
    n = int(np.searchsorted(s, np.nan, side="left")) if total and np.isnan(s[-1]) else total
    cur = s[:n]
    if n and (np.isinf(cur[0]) or np.isinf(cur[-1])):
        fail(f"Column {col.name!r} of the current data holds infinite values.",
             f"replace the infinities in {col.name!r} (clip, or set them missing) first.",
             column=col.name)
    missing = (total - n) / total if total else 0.0
    if col.n == 0 or n == 0:
        return _untestable(col, n, missing)
    ref = col.sample
    d, w, energy = _ecdf_distances(ref, cur, energy="energy" in wanted)
    if _use_exact(ks_method, ref.size, n):
        d, p = _ks_exact(ref, cur)
    else:
        p = _ks_p_asymp(d, ref.size, n)
    effect = _normalise(w, col.std)
    scores = {"ks": d, "wasserstein": w, "wasserstein_norm": effect}
    if wanted & {"psi", "js"} and col.bin_fractions.size:
        below = np.searchsorted(cur, col.bin_edges[1:-1], side="right")
        cur_fractions = np.diff(np.concatenate(([0], below, [n]))) / n
        if "psi" in wanted:
            scores["psi"] = _psi(col.bin_fractions, cur_fractions, PSI_EPS)
        if "js" in wanted:
            scores["js"] = _js(col.bin_fractions, cur_fractions)
    if "energy" in wanted:
        scores["energy"] = energy
    return Scores("numeric", "ks", d, p, effect, col.n, n, col.missing_rate, missing, scores)


def categorical_scores(col: CategoricalProfile, values: Any, wanted: frozenset[str]
                        ) -> Scores:
    labels, counts, n_missing = categorical_counts(values, col.name)
    n = int(counts.sum())
    total = n + n_missing
    missing = n_missing / total if total else 0.0
    if col.n == 0 or n == 0:
        return _untestable(col, n, missing)
    aligned, unseen_counts, unseen = _align(col.categories, labels, counts)
    r = _categorical_test(col.counts, aligned, unseen_counts, unseen)
    scores = {"chi2": r.statistic, "cramers_v": r.cramers_v, "js": r.js,
              "unseen_share": r.unseen_share}
    if "psi" in wanted:
        scores["psi"] = r.psi
    return Scores("categorical", "chi2", r.statistic, r.p_value, r.js, col.n, n,
                   col.missing_rate, missing, scores, unseen)

