"""Multiple-testing control across metrics or features.

- Benjamini-Hochberg (false discovery rate): sort ``p_(1) <= ... <= p_(m)``; the adjusted
  p-value is ``min_{j >= i} min(1, m p_(j) / j)``; reject ``H_(i)`` when it is ``<= alpha``.
  Benjamini & Hochberg, JRSS B 57 (1995) 289-300. Valid under independence or positive
  regression dependence.
- Bonferroni (family-wise error): ``min(1, m p_i)``; reject when ``p_i <= alpha / m``.
- Holm step-down (family-wise error, uniformly more powerful than Bonferroni):
  ``max_{j <= i} min(1, (m - j + 1) p_(j))``. Holm, Scand. J. Statist. 6 (1979) 65-70.

Adjusted p-values and reject flags equal statsmodels' ``multipletests`` with
``method="fdr_bh"``, ``"bonferroni"`` and ``"holm"`` (and R's ``p.adjust``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlops.stats._checks import ArrayLike, as_sample, check_alpha, fail

__all__ = ["METHODS", "MultipleTestResult", "adjust_p_values", "benjamini_hochberg", "bonferroni",
           "holm"]

METHODS = ("fdr_bh", "bonferroni", "holm")


@dataclass(frozen=True)
class MultipleTestResult:
    """Adjusted p-values and reject flags, in the order of the input p-values."""

    p_adjusted: tuple[float, ...]
    reject: tuple[bool, ...]
    alpha: float
    method: str

    @property
    def n_rejected(self) -> int:
        return sum(self.reject)


def _p_values(p_values: ArrayLike) -> npt.NDArray[np.float64]:
    p = as_sample(p_values, "p_values")
    if np.any((p < 0) | (p > 1)):
        fail("p_values must lie in [0, 1].", "pass raw (unadjusted) p-values.")
    return p


def benjamini_hochberg(p_values: ArrayLike, alpha: float = 0.05) -> MultipleTestResult:
    """Benjamini-Hochberg step-up FDR control at level ``alpha``."""
    alpha = check_alpha(alpha)
    p = _p_values(p_values)
    m = p.size
    if m == 0:
        return MultipleTestResult((), (), alpha, "fdr_bh")
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    raw = ranked * m / np.arange(1, m + 1)
    adjusted_sorted = np.minimum(1.0, np.minimum.accumulate(raw[::-1])[::-1])
    below = np.nonzero(ranked <= np.arange(1, m + 1) / m * alpha)[0]
    reject_sorted = np.zeros(m, dtype=bool)
    if below.size:
        reject_sorted[: below[-1] + 1] = True
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    reject = np.empty(m, dtype=bool)
    reject[order] = reject_sorted
    return MultipleTestResult(tuple(float(v) for v in adjusted),
                              tuple(bool(v) for v in reject), alpha, "fdr_bh")


def bonferroni(p_values: ArrayLike, alpha: float = 0.05) -> MultipleTestResult:
    """Bonferroni family-wise control at level ``alpha``."""
    alpha = check_alpha(alpha)
    p = _p_values(p_values)
    m = p.size
    adjusted = np.minimum(1.0, p * m)
    reject = p <= alpha / m if m else np.zeros(0, dtype=bool)
    return MultipleTestResult(tuple(float(v) for v in adjusted),
                              tuple(bool(v) for v in reject), alpha, "bonferroni")


def holm(p_values: ArrayLike, alpha: float = 0.05) -> MultipleTestResult:
    """Holm step-down family-wise control at level ``alpha``."""
    alpha = check_alpha(alpha)
    p = _p_values(p_values)
    m = p.size
    if m == 0:
        return MultipleTestResult((), (), alpha, "holm")
    order = np.argsort(p, kind="mergesort")
    ranked = p[order]
    factors = np.arange(m, 0, -1)
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(ranked * factors))
    fails = np.nonzero(ranked > alpha / factors)[0]
    first_fail = int(fails[0]) if fails.size else m
    reject_sorted = np.arange(m) < first_fail
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    reject = np.empty(m, dtype=bool)
    reject[order] = reject_sorted
    return MultipleTestResult(tuple(float(v) for v in adjusted),
                              tuple(bool(v) for v in reject), alpha, "holm")


def adjust_p_values(p_values: ArrayLike, alpha: float = 0.05, method: str = "fdr_bh"
                    ) -> MultipleTestResult:
    """Dispatch on ``method`` in ``METHODS`` (statsmodels names)."""
    if method == "fdr_bh":
        return benjamini_hochberg(p_values, alpha)
    if method == "bonferroni":
        return bonferroni(p_values, alpha)
    if method == "holm":
        return holm(p_values, alpha)
    fail(f"method={method!r} is not one of {METHODS}.", "use 'fdr_bh' for metrics and features.")
