"""Paired comparisons of two models scored on the same units (shadow traffic, offline eval).

McNemar's test for two classifiers. With ``b`` = units model A got right and B wrong and
``c`` = units A got wrong and B right, under H0 (equal accuracy) ``b ~ Binomial(b + c, 1/2)``:

- exact: ``p = min(1, 2 * BinomCDF(min(b, c); b + c, 1/2))`` - statsmodels
  ``mcnemar(table, exact=True)``;
- chi-square with continuity correction: ``(|b - c| - 1)^2 / (b + c)`` on 1 df -
  statsmodels ``mcnemar(table, exact=False, correction=True)``.

statsmodels defaults to ``exact=True`` always; here ``exact=None`` (the default) picks the
exact test when ``b + c < 25`` and the corrected chi-square otherwise (the usual textbook
rule, e.g. Agresti, *Categorical Data Analysis*, 3rd ed., sec. 11.1). Pass ``exact=True`` or
``False`` to force either. The effect size is the accuracy difference ``acc_B - acc_A =
(c - b) / n`` with the Agresti-Min (2005) interval (add 0.5 to each cell, then Wald).

Paired bootstrap for regression losses: resample units (pairs) with replacement and take
percentiles of the mean loss difference ``mean(loss_b - loss_a)`` (Efron & Tibshirani, *An
Introduction to the Bootstrap*, 1993, ch. 13). Vectorised in chunks of replicates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlops.stats._checks import ArrayLike, as_sample, check_alpha, fail

__all__ = [
    "BootstrapResult",
    "McNemarResult",
    "mcnemar",
    "mcnemar_from_predictions",
    "paired_bootstrap_ci",
]

EXACT_BELOW = 25
_CHUNK_ELEMENTS = 4_000_000  # replicates x units per vectorised chunk (~32 MB of float64)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar test of two paired classifiers and their accuracy difference (B minus A)."""

    statistic: float  # min(b, c) for the exact test, the chi-square otherwise
    p_value: float
    method: str  # "exact" or "chi2"
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    n: int
    accuracy_a: float
    accuracy_b: float
    difference: float  # accuracy_b - accuracy_a = (c - b) / n
    ci_low: float
    ci_high: float
    alpha: float

    @property
    def estimate(self) -> float:
        return self.difference


def mcnemar(
    table: ArrayLike,
    *,
    exact: bool | None = None,
    correction: bool = True,
    alpha: float = 0.05,
) -> McNemarResult:
    """McNemar's test on the 2x2 table ``[[both right, A right B wrong], [A wrong B right,
    both wrong]]``, i.e. rows = model A right/wrong, columns = model B right/wrong."""
    alpha = check_alpha(alpha)
    t = np.asarray(table, dtype=np.float64)
    if t.shape != (2, 2) or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t != np.round(t)):
        fail(f"table must be a 2x2 array of non-negative counts, got {t.tolist()!r}.",
             "pass [[both right, A right B wrong], [A wrong B right, both wrong]].")
    n11, b, c, n22 = (int(v) for v in t.ravel())
    n = n11 + b + c + n22
    if n == 0:
        fail("the table is empty.", "score both models on at least one unit.")
    use_exact = (b + c) < EXACT_BELOW if exact is None else bool(exact)
    if use_exact:
        statistic = float(min(b, c))
        p = min(1.0, 2.0 * float(stats.binom.cdf(min(b, c), b + c, 0.5))) if b + c else 1.0
    elif b + c == 0:
        statistic, p = 0.0, 1.0
    else:
        statistic = (abs(b - c) - int(correction)) ** 2 / (b + c)
        p = float(stats.chi2.sf(statistic, 1))
    # Agresti-Min interval for the paired difference of proportions
    n_adj = n + 2.0
    b_adj, c_adj = b + 0.5, c + 0.5
    diff_adj = (c_adj - b_adj) / n_adj
    se = math.sqrt(max(0.0, (b_adj + c_adj) - (c_adj - b_adj) ** 2 / n_adj)) / n_adj
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    return McNemarResult(
        statistic=float(statistic), p_value=p, method="exact" if use_exact else "chi2",
        b=b, c=c, n=n, accuracy_a=(n11 + b) / n, accuracy_b=(n11 + c) / n,
        difference=(c - b) / n, ci_low=max(-1.0, diff_adj - z * se),
        ci_high=min(1.0, diff_adj + z * se), alpha=alpha,
    )


def mcnemar_from_predictions(
    y_true: ArrayLike,
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    *,
    exact: bool | None = None,
    correction: bool = True,
    alpha: float = 0.05,
) -> McNemarResult:
    """Build the 2x2 table from labels and two models' predictions, then :func:`mcnemar`."""
    y, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not (y.ndim == a.ndim == b.ndim == 1 and y.shape == a.shape == b.shape):
        fail(f"shapes differ: y_true {y.shape}, pred_a {a.shape}, pred_b {b.shape}.",
             "pass three 1-D arrays scored on the same units in the same order.")
    right_a, right_b = a == y, b == y
    table = [[int(np.sum(right_a & right_b)), int(np.sum(right_a & ~right_b))],
             [int(np.sum(~right_a & right_b)), int(np.sum(~right_a & ~right_b))]]
    return mcnemar(table, exact=exact, correction=correction, alpha=alpha)


@dataclass(frozen=True)
class BootstrapResult:
    """Paired bootstrap of ``mean(loss_b - loss_a)`` (negative: model B has lower loss).

    ``p_value`` is the two-sided percentile-bootstrap p-value ``2 min(P*(d* <= 0),
    P*(d* >= 0))``, consistent with the percentile interval.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    std_error: float
    n: int
    n_boot: int
    alpha: float
    seed: int


def _bootstrap_means(d: npt.NDArray[np.float64], n_boot: int, rng: np.random.Generator
                     ) -> npt.NDArray[np.float64]:
    n = d.size
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = d[idx].mean(axis=1)
    return out


def paired_bootstrap_ci(
    loss_a: ArrayLike,
    loss_b: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Percentile interval of ``mean(loss_b - loss_a)`` by resampling paired units."""
    alpha = check_alpha(alpha)
    a = as_sample(loss_a, "loss_a", min_size=2)
    b = as_sample(loss_b, "loss_b", min_size=2)
    if a.size != b.size:
        fail(f"loss_a has {a.size} values and loss_b {b.size}.",
             "pass per-unit losses of both models on the same units, in the same order.")
    if int(n_boot) < 100:
        fail(f"n_boot={n_boot} is too small for a percentile interval.", "use n_boot >= 1000.")
    d = b - a
    means = _bootstrap_means(d, int(n_boot), np.random.default_rng(seed))
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    p = min(1.0, 2.0 * min(float(np.mean(means <= 0.0)), float(np.mean(means >= 0.0))))
    return BootstrapResult(
        estimate=float(d.mean()), ci_low=float(low), ci_high=float(high), p_value=p,
        std_error=float(means.std(ddof=1)), n=int(d.size), n_boot=int(n_boot), alpha=alpha,
        seed=int(seed),
    )
