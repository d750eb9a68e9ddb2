"""Control charts for a metric time series: two-sided tabular CUSUM and EWMA.

CUSUM (Montgomery, *Introduction to Statistical Quality Control*, 7th ed., section 9.1)::

    C+_i = max(0, x_i - (mu0 + k sigma) + C+_{i-1})
    C-_i = max(0, (mu0 - k sigma) - x_i + C-_{i-1}),   C+_0 = C-_0 = 0

signals "up" when ``C+_i > h sigma`` and "down" when ``C-_i > h sigma``. With ``k=0.5, h=5``
the in-control average run length (ARL0) is 465 and a 1-sigma shift is found after 10.4
samples on average (Montgomery, Table 9.3).

EWMA (Montgomery section 9.2; Lucas & Saccucci, Technometrics 32 (1990) 1-12)::

    z_i = lam x_i + (1 - lam) z_{i-1},   z_0 = mu0
    limits mu0 +/- L sigma sqrt(lam / (2 - lam) (1 - (1 - lam)^(2 i)))   (exact, time-varying)

With ``lam=0.2`` an ARL0 of 500 needs ``L=2.962`` (Lucas & Saccucci 1990); ``L=3`` is a
little wider, so its ARL0 is about 560 (575 with the asymptotic limits; the exact limits are
narrower for the first few points after a start).

Measured on N(0, 1) with known ``mu0=0, sigma=1``, charts restarting after each signal
(``tests/stats/test_control.py`` checks these on smaller samples, with tolerances)::

    chart                  ARL0 (4,000,000 points)   ARL1, 1-sigma shift (20,000 runs)
    cusum k=0.5, h=5       468 (book: 465)           10.4 (book: 10.4)
    ewma lam=0.2, L=3      561                       9.9

When ``target`` (``mu0``) or ``sigma`` is not given it is estimated from the first ``warmup``
values (mean, and standard deviation with ``ddof=1``); the chart then runs on the values
after the warm-up (``start == warmup``) so the same points are not used twice. Estimating
sigma from few points changes the run lengths a lot (Jones, Champ & Rigdon, Technometrics 43
(2001)): prefer 50 or more warm-up points, or pass ``sigma`` from a reference period.

Series in the result cover ``values[start:]``; signal indices are indices into ``values``.
By default a chart restarts (``C+ = C- = 0``, ``z = mu0``, limits from ``i = 1``) after a
signal, so every signal is a new alarm; ``reset=False`` flags every point beyond the limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlops.stats._checks import ArrayLike, as_sample, check_positive, fail

__all__ = ["DEFAULT_WARMUP", "ControlChartResult", "cusum", "ewma"]

DEFAULT_WARMUP = 50


@dataclass(frozen=True)
class ControlChartResult:
    """One control chart over ``values[start:]``.

    ``statistic`` is ``C+`` (CUSUM) or ``z`` (EWMA) and signals "up" above ``upper_limit``;
    ``statistic_lower`` is ``-C-`` (CUSUM) or ``z`` again (EWMA) and signals "down" below
    ``lower_limit``. ``signals`` are indices into the input and ``directions`` their sides.
    """

    chart: str
    statistic: tuple[float, ...]
    statistic_lower: tuple[float, ...]
    upper_limit: tuple[float, ...]
    lower_limit: tuple[float, ...]
    signals: tuple[int, ...]
    directions: tuple[str, ...]
    first_signal: int | None
    direction: str | None
    target: float
    sigma: float
    target_estimated: bool
    sigma_estimated: bool
    start: int
    n: int
    params: dict[str, float]
    reset: bool

    @property
    def signaled(self) -> bool:
        return self.first_signal is not None

    @property
    def n_signals(self) -> int:
        return len(self.signals)


def _baseline(values: ArrayLike, target: float | None, sigma: float | None, warmup: int
              ) -> tuple[npt.NDArray[np.float64], float, float, int]:
    """The values, ``mu0``, ``sigma`` and the first charted index."""
    if target is None or sigma is None:
        if isinstance(warmup, bool) or not isinstance(warmup, int | np.integer) or warmup < 2:
            fail(f"warmup={warmup!r} is not a whole number >= 2.",
                 f"use warmup={DEFAULT_WARMUP}, or pass both target and sigma.")
        start = int(warmup)
        arr = as_sample(values, "values", min_size=start + 1)
    else:
        start = 0
        arr = as_sample(values, "values")
    head = arr[:start]
    if target is None:
        mu0 = float(head.mean())
    else:
        mu0 = float(target)
        if not math.isfinite(mu0):
            fail(f"target={target!r} is not a finite number.", "pass the in-control mean.")
    if sigma is None:
        sd = float(head.std(ddof=1))
        if not sd > 0:
            fail(f"the first {start} values are constant, so sigma cannot be estimated.",
                 "pass sigma (the in-control standard deviation) or a longer warmup.",
                 warmup=start)
    else:
        sd = check_positive(sigma, "sigma")
    return arr, mu0, sd, start


def _result(chart: str, upper: list[float], lower: list[float], ucl: list[float],
            lcl: list[float], signals: list[int], directions: list[str], mu0: float, sd: float,
            target: float | None, sigma: float | None, start: int, n: int,
            params: dict[str, float], reset: bool) -> ControlChartResult:
    return ControlChartResult(
        chart=chart, statistic=tuple(upper), statistic_lower=tuple(lower),
        upper_limit=tuple(ucl), lower_limit=tuple(lcl), signals=tuple(signals),
        directions=tuple(directions), first_signal=signals[0] if signals else None,
        direction=directions[0] if directions else None, target=mu0, sigma=sd,
        target_estimated=target is None, sigma_estimated=sigma is None, start=start, n=n,
        params=params, reset=reset)


def cusum(values: ArrayLike, *, target: float | None = None, k: float = 0.5, h: float = 5.0,
          sigma: float | None = None, warmup: int = DEFAULT_WARMUP, reset: bool = True
          ) -> ControlChartResult:
    """Two-sided tabular CUSUM with reference value ``k`` and decision interval ``h`` (sigmas)."""
    k = check_positive(k, "k", allow_zero=True)
    h = check_positive(h, "h")
    arr, mu0, sd, start = _baseline(values, target, sigma, warmup)
    big_k, big_h = k * sd, h * sd
    hi_ref, lo_ref = mu0 + big_k, mu0 - big_k
    upper: list[float] = []
    lower: list[float] = []
    signals: list[int] = []
    directions: list[str] = []
    cp = cm = 0.0
    for j, x in enumerate(arr[start:].tolist()):
        cp = max(0.0, x - hi_ref + cp)
        cm = max(0.0, lo_ref - x + cm)
        upper.append(cp)
        lower.append(-cm)
        if cp > big_h or cm > big_h:
            signals.append(start + j)
            directions.append("up" if cp - big_h >= cm - big_h else "down")
            if reset:
                cp = cm = 0.0
    m = len(upper)
    return _result("cusum", upper, lower, [big_h] * m, [-big_h] * m, signals, directions,
                   mu0, sd, target, sigma, start, int(arr.size), {"k": k, "h": h}, reset)


def ewma(values: ArrayLike, *, lam: float = 0.2, L: float = 3.0, target: float | None = None,
         sigma: float | None = None, warmup: int = DEFAULT_WARMUP, reset: bool = True
         ) -> ControlChartResult:
    """EWMA chart with smoothing ``lam`` and exact limits ``L`` sigmas of ``z_i`` wide."""
    lam = check_positive(lam, "lam")
    if lam > 1:
        fail(f"lam={lam!r} must lie in (0, 1].", "use lam between 0.05 and 0.3, e.g. 0.2.")
    L = check_positive(L, "L")
    arr, mu0, sd, start = _baseline(values, target, sigma, warmup)
    scale = L * sd * math.sqrt(lam / (2.0 - lam))
    decay = (1.0 - lam) ** 2
    stat: list[float] = []
    ucl: list[float] = []
    lcl: list[float] = []
    signals: list[int] = []
    directions: list[str] = []
    z = mu0
    weight = 1.0  # (1 - lam)^(2 i) for the current i
    for j, x in enumerate(arr[start:].tolist()):
        z = lam * x + (1.0 - lam) * z
        weight *= decay
        width = scale * math.sqrt(1.0 - weight)
        stat.append(z)
        ucl.append(mu0 + width)
        lcl.append(mu0 - width)
        side = "up" if z > mu0 + width else "down" if z < mu0 - width else None
        if side is not None:
            signals.append(start + j)
            directions.append(side)
            if reset:
                z, weight = mu0, 1.0
    return _result("ewma", stat, list(stat), ucl, lcl, signals, directions, mu0, sd, target,
                   sigma, start, int(arr.size), {"lam": lam, "L": L}, reset)
