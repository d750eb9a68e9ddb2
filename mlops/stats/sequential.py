"""Always-valid sequential tests: the mixture SPRT (mSPRT) with a normal mixing distribution.

Reference: R. Johari, L. Pekelis, D. Walsh, "Always Valid Inference: Bringing Sequential
Analysis to A/B Testing", arXiv:1512.04922 (2017); Johari et al., "Peeking at A/B Tests",
KDD 2017.

For an estimated effect ``D_hat ~ N(theta, V)`` and a mixing distribution ``N(theta0, tau^2)``
over the alternative, the mixture likelihood ratio against ``theta = theta0`` is::

    Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 (D_hat - theta0)^2 / (2 V (V + tau^2)))

``Lambda_n`` is a non-negative martingale of mean 1 under ``theta0``; by Ville's inequality
``P(sup_n Lambda_n >= 1/alpha) <= alpha``. So the test may be evaluated after *every* batch
and stopped whenever ``Lambda_n >= 1/alpha`` while keeping the false-rejection rate at most
``alpha``. The always-valid p-value is ``p_n = min(p_{n-1}, 1/Lambda_n)`` and the always-valid
confidence interval is the set of ``theta0`` not rejected::

    D_hat +/- sqrt(V (V + tau^2) / tau^2 * (-2 ln alpha - ln(V / (V + tau^2))))

``V`` is estimated by plug-in (sample variances, or Bernoulli ``p(1-p)``); the guarantee is
then asymptotic, as in the reference, and holds well from about 100 units per arm (see the
tests in ``tests/stats/test_sequential.py`` for measured rates).

Convention throughout: ``x`` is the stable/control arm, ``y`` the candidate/treatment arm and
the effect is ``mean_y - mean_x``.

Non-inferiority uses *one-sided* mixtures (half-normal mixing on one side of the boundary
``theta0``), which have the closed form::

    Lambda_n^{+} = 2 * Phi(z) * Lambda_n,   z = tau (D_hat - theta0) / sqrt(V (V + tau^2))

(``Phi(-z)`` for the mirror side). For every ``theta`` on the null side of the boundary this
is a non-negative supermartingale, so Ville's inequality bounds each one-sided error by
``alpha`` over the whole composite null, not only at the boundary.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import log_ndtr

from mlops.stats._checks import ArrayLike, as_sample, check_alpha, check_count, check_positive, fail

__all__ = [
    "DECISIONS",
    "NON_INFERIORITY_DECISIONS",
    "SequentialMonitor",
    "SequentialResult",
    "always_valid_p_values",
    "choose_tau",
    "mixture_log_lambda",
    "msprt_from_summary",
    "msprt_non_inferiority_means",
    "msprt_non_inferiority_paired",
    "msprt_non_inferiority_proportions",
    "msprt_paired",
    "msprt_two_proportions",
    "msprt_two_sample_means",
    "non_inferiority_from_summary",
]

DECISIONS = ("reject", "continue")
NON_INFERIORITY_DECISIONS = ("non_inferior", "inferior", "continue")
_LOG_MAX = 700.0  # exp(700) is finite in float64; larger log-lambdas are reported as inf


@dataclass(frozen=True)
class SequentialResult:
    """One look of an mSPRT.

    ``estimate`` is the observed effect ``mean_y - mean_x`` (candidate minus stable) in the
    metric's units; ``ci_low``/``ci_high`` the always-valid interval for that effect (for
    non-inferiority: each bound is a one-sided always-valid bound at level ``alpha``);
    ``p_value`` the always-valid p-value (for non-inferiority: of the claim "not worse than
    the margin"; ``p_inferior`` is that of "worse by more than the margin"); ``lambda_`` the
    mixture likelihood ratio of this look.
    """

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    lambda_: float
    n_x: int
    n_y: int
    decision: str
    alpha: float
    tau: float
    theta0: float = 0.0
    test: str = "two_sided"  # "two_sided" or "non_inferiority"
    variance: float = math.nan  # V, the plug-in variance of the estimate
    margin: float | None = None
    higher_is_better: bool | None = None
    p_inferior: float | None = None
    lambda_inferior: float | None = None

    @property
    def n_control(self) -> int:
        return self.n_x

    @property
    def n_treatment(self) -> int:
        return self.n_y

    @property
    def rejected(self) -> bool:
        """True once the look reached a decision other than ``"continue"``."""
        return self.decision != "continue"


# --------------------------------------------------------------------------- core math


def mixture_log_lambda(
    delta: ArrayLike, variance: ArrayLike, tau: float, *, side: int = 0
) -> npt.NDArray[np.float64]:
    """``ln Lambda`` of the normal-mixture SPRT, element-wise (vectorised over looks/runs).

    ``delta = D_hat - theta0``; ``variance = V``. ``side=0`` is the two-sided mixture;
    ``side=+1`` (alternative ``theta > theta0``) and ``side=-1`` (``theta < theta0``) add
    ``ln(2 Phi(+/- z))``. Where ``V`` is not positive (no variance estimate yet) the result is
    0, i.e. no evidence.
    """
    t2 = check_positive(tau, "tau") ** 2
    if side not in (-1, 0, 1):
        fail(f"side={side!r} must be -1, 0 or +1.", "use 0 for two-sided tests.")
    d = np.asarray(delta, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    ok = np.isfinite(v) & (v > 0) & np.isfinite(d)
    v_safe = np.where(ok, v, 1.0)
    d_safe = np.where(ok, d, 0.0)
    log_lambda = 0.5 * np.log(v_safe / (v_safe + t2)) + t2 * d_safe**2 / (
        2.0 * v_safe * (v_safe + t2)
    )
    if side:
        z = side * math.sqrt(t2) * d_safe / np.sqrt(v_safe * (v_safe + t2))
        log_lambda = log_lambda + math.log(2.0) + log_ndtr(z)
    return np.asarray(np.where(ok, log_lambda, 0.0), dtype=np.float64)


def always_valid_p_values(log_lambda: ArrayLike, axis: int = -1) -> npt.NDArray[np.float64]:
    """Running always-valid p-values ``p_n = min(p_{n-1}, 1/Lambda_n)`` along ``axis``."""
    log_l = np.asarray(log_lambda, dtype=np.float64)
    p = np.minimum(1.0, np.exp(-np.clip(log_l, -_LOG_MAX, _LOG_MAX)))
    return np.asarray(np.minimum.accumulate(p, axis=axis), dtype=np.float64)


def _half_width(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the two-sided always-valid interval."""
    t2 = tau * tau
    ratio = variance / (variance + t2)
    return math.sqrt(variance * (variance + t2) / t2 * (-2.0 * math.log(alpha) - math.log(ratio)))


def _one_sided_z(variance: float, tau: float, alpha: float) -> float:
    """Critical ``z`` of the one-sided mixture: ``ln 2 + ln sqrt(r) + ln Phi(z) + z^2/2 = -ln alpha``."""
    half_log_r = 0.5 * math.log(variance / (variance + tau * tau))
    target = -math.log(alpha)

    def f(z: float) -> float:
        return math.log(2.0) + half_log_r + float(log_ndtr(z)) + 0.5 * z * z - target

    hi = 8.0
    while f(hi) < 0:
        hi *= 2.0
    # f(0) = ln(sqrt(r)) - ln(alpha) ... < 0 because sqrt(r) < 1 < 1/alpha, so a root is in (0, hi)
    return float(brentq(f, 0.0, hi, xtol=1e-12))


def _finite_exp(log_value: float) -> float:
    return math.inf if log_value > _LOG_MAX else math.exp(log_value)


# --------------------------------------------------------------------------- two-sided tests


def msprt_from_summary(
    estimate: float,
    variance: float,
    n_x: int,
    n_y: int,
    *,
    tau: float,
    alpha: float = 0.05,
    theta0: float = 0.0,
) -> SequentialResult:
    """Two-sided mSPRT from sufficient statistics (effect estimate and its variance ``V``).

    Controllers that keep running sums use this directly; the ``msprt_*`` wrappers compute
    ``estimate`` and ``V`` from raw data. A non-positive or NaN ``variance`` means "no estimate
    yet": the look carries no evidence (``Lambda = 1``, interval unbounded).
    """
    alpha = check_alpha(alpha)
    tau = check_positive(tau, "tau")
    est, v = float(estimate), float(variance)
    if not (math.isfinite(est) and math.isfinite(theta0)):
        fail(f"estimate={estimate!r} or theta0={theta0!r} is not finite.",
             "pass a finite effect estimate and null value.")
    if not (math.isfinite(v) and v > 0):
        return SequentialResult(est, -math.inf, math.inf, 1.0, 1.0, int(n_x), int(n_y),
                                "continue", alpha, tau, theta0, "two_sided", v)
    log_l = float(mixture_log_lambda(est - theta0, v, tau)[()])
    p = min(1.0, math.exp(-min(log_l, _LOG_MAX)))
    hw = _half_width(v, tau, alpha)
    decision = "reject" if p <= alpha else "continue"
    return SequentialResult(est, est - hw, est + hw, p, _finite_exp(log_l), int(n_x), int(n_y),
                            decision, alpha, tau, float(theta0), "two_sided", v)


def _mean_and_variance_of_difference(
    x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> tuple[float, float]:
    if x.size < 2 or y.size < 2:
        return (float(np.mean(y) - np.mean(x)) if x.size and y.size else 0.0), math.nan
    v = float(np.var(x, ddof=1) / x.size + np.var(y, ddof=1) / y.size)
    return float(np.mean(y) - np.mean(x)), v


def msprt_two_sample_means(
    x: ArrayLike, y: ArrayLike, *, tau: float, alpha: float = 0.05, theta0: float = 0.0
) -> SequentialResult:
    """mSPRT for ``mean_y - mean_x`` with ``V = s_x^2/n_x + s_y^2/n_y`` (plug-in, ddof=1).

    Fewer than two observations in an arm gives a "continue" look with no evidence.
    """
    xa, ya = as_sample(x, "x"), as_sample(y, "y")
    est, v = _mean_and_variance_of_difference(xa, ya)
    return msprt_from_summary(est, v, xa.size, ya.size, tau=tau, alpha=alpha, theta0=theta0)


def _proportion_summary(successes_x: int, n_x: int, successes_y: int, n_y: int
                        ) -> tuple[float, float, int, int]:
    sx, nx = check_count(successes_x, n_x, "arm x")
    sy, ny = check_count(successes_y, n_y, "arm y")
    if nx == 0 or ny == 0:
        return 0.0, math.nan, nx, ny

    def var(s: int, n: int) -> float:
        # Bernoulli plug-in p(1-p)/n; p is kept inside [1/(2n), 1 - 1/(2n)] so that an arm
        # with all successes (or none) still has a positive variance.
        p = min(max(s / n, 0.5 / n), 1.0 - 0.5 / n)
        return p * (1.0 - p) / n

    return sy / ny - sx / nx, var(sx, nx) + var(sy, ny), nx, ny


def msprt_two_proportions(
    successes_x: int,
    n_x: int,
    successes_y: int,
    n_y: int,
    *,
    tau: float,
    alpha: float = 0.05,
    theta0: float = 0.0,
) -> SequentialResult:
    """mSPRT for ``p_y - p_x`` with ``V = p_x(1-p_x)/n_x + p_y(1-p_y)/n_y`` (plug-in).

    The proportions inside ``V`` are clipped to ``[1/(2n), 1-1/(2n)]``, which only matters when
    an arm has no success or no failure yet.
    """
    est, v, nx, ny = _proportion_summary(successes_x, n_x, successes_y, n_y)
    return msprt_from_summary(est, v, nx, ny, tau=tau, alpha=alpha, theta0=theta0)


def _paired_summary(d: ArrayLike, sigma: float | None) -> tuple[float, float, int]:
    da = as_sample(d, "d")
    n = int(da.size)
    if sigma is not None:
        s2 = check_positive(sigma, "sigma") ** 2
    elif n >= 2:
        s2 = float(np.var(da, ddof=1))
    else:
        s2 = math.nan
    mean = float(np.mean(da)) if n else 0.0
    return mean, (s2 / n if n else math.nan), n


def msprt_paired(
    d: ArrayLike,
    *,
    tau: float,
    sigma: float | None = None,
    alpha: float = 0.05,
    theta0: float = 0.0,
) -> SequentialResult:
    """One-sample mSPRT on paired differences ``d_i = y_i - x_i``.

    ``Lambda = sigma / sqrt(sigma^2 + n tau^2) * exp(n^2 tau^2 (mean_d - theta0)^2 /
    (2 sigma^2 (sigma^2 + n tau^2)))``, i.e. the two-sample form with ``V = sigma^2 / n``.
    When ``sigma`` is not given it is replaced by the sample standard deviation of ``d``
    (ddof=1) at each look: the plug-in makes the guarantee asymptotic (Johari et al., sec. 4).
    """
    mean, v, n = _paired_summary(d, sigma)
    return msprt_from_summary(mean, v, n, n, tau=tau, alpha=alpha, theta0=theta0)


# --------------------------------------------------------------------------- non-inferiority


def non_inferiority_from_summary(
    estimate: float,
    variance: float,
    n_x: int,
    n_y: int,
    *,
    margin: float,
    tau: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> SequentialResult:
    """Two one-sided always-valid tests at the margin boundary ``theta0 = -margin`` (in the
    "better" direction; ``+margin`` for lower-is-better metrics such as latency).

    - "non_inferior": rejects H0 "candidate is worse than stable by at least ``margin``"
      (one-sided mixture on the better side of the boundary), error <= ``alpha``;
    - "inferior": rejects H0 "candidate is worse by at most ``margin``" (mirror mixture),
      error <= ``alpha``; with ``margin=0`` this is the one-sided "candidate is worse" test.

    The reported ``ci_low``/``ci_high`` are the two one-sided always-valid bounds
    ``estimate -/+ z* sqrt(V (V + tau^2)) / tau``: "non_inferior" is declared exactly when the
    bound on the worse side clears the margin, "inferior" when the bound on the better side
    does not reach it. Whichever decision is first reached by a monitor stands.
    """
    alpha = check_alpha(alpha)
    tau = check_positive(tau, "tau")
    margin = check_positive(margin, "margin", allow_zero=True)
    sign = 1 if higher_is_better else -1
    theta0 = -sign * margin
    est, v = float(estimate), float(variance)
    if not math.isfinite(est):
        fail(f"estimate={estimate!r} is not finite.", "pass a finite effect estimate.")
    common: dict[str, Any] = dict(n_x=int(n_x), n_y=int(n_y), alpha=alpha, tau=tau,
                                  theta0=theta0, test="non_inferiority", variance=v,
                                  margin=margin, higher_is_better=bool(higher_is_better))
    if not (math.isfinite(v) and v > 0):
        return SequentialResult(est, -math.inf, math.inf, 1.0, 1.0, decision="continue",
                                p_inferior=1.0, lambda_inferior=1.0, **common)
    log_ni = float(mixture_log_lambda(est - theta0, v, tau, side=sign)[()])
    log_inf = float(mixture_log_lambda(est - theta0, v, tau, side=-sign)[()])
    p_ni = min(1.0, math.exp(-min(log_ni, _LOG_MAX)))
    p_inf = min(1.0, math.exp(-min(log_inf, _LOG_MAX)))
    width = _one_sided_z(v, tau, alpha) * math.sqrt(v * (v + tau * tau)) / tau
    decision = "non_inferior" if p_ni <= alpha else "inferior" if p_inf <= alpha else "continue"
    return SequentialResult(est, est - width, est + width, p_ni, _finite_exp(log_ni),
                            decision=decision, p_inferior=p_inf,
                            lambda_inferior=_finite_exp(log_inf), **common)


def msprt_non_inferiority_means(
    x: ArrayLike,
    y: ArrayLike,
    *,
    margin: float,
    tau: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> SequentialResult:
    """Sequential non-inferiority of ``y`` (candidate) against ``x`` (stable) on means."""
    xa, ya = as_sample(x, "x"), as_sample(y, "y")
    est, v = _mean_and_variance_of_difference(xa, ya)
    return non_inferiority_from_summary(est, v, xa.size, ya.size, margin=margin, tau=tau,
                                        alpha=alpha, higher_is_better=higher_is_better)


def msprt_non_inferiority_proportions(
    successes_x: int,
    n_x: int,
    successes_y: int,
    n_y: int,
    *,
    margin: float,
    tau: float,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> SequentialResult:
    """Sequential non-inferiority of the candidate's proportion ``p_y`` against ``p_x``."""
    est, v, nx, ny = _proportion_summary(successes_x, n_x, successes_y, n_y)
    return non_inferiority_from_summary(est, v, nx, ny, margin=margin, tau=tau, alpha=alpha,
                                        higher_is_better=higher_is_better)


def msprt_non_inferiority_paired(
    d: ArrayLike,
    *,
    margin: float,
    tau: float,
    sigma: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> SequentialResult:
    """Sequential non-inferiority on paired differences ``d_i = y_i - x_i`` (see msprt_paired)."""
    mean, v, n = _paired_summary(d, sigma)
    return non_inferiority_from_summary(mean, v, n, n, margin=margin, tau=tau, alpha=alpha,
                                        higher_is_better=higher_is_better)


def choose_tau(min_effect: float, sigma: float | None = None) -> float:
    """Mixing scale ``tau`` = the smallest effect that matters, in the metric's units.

    For a true effect ``theta`` the evidence ``ln Lambda`` at a look with variance ``V`` is
    maximised by ``tau^2 = theta^2 - V``; a test crosses ``1/alpha`` when ``V`` is already small
    against ``theta^2``, so ``tau ~= theta`` is (near-)optimal for detecting effects of that
    size, and larger effects are still detected sooner. Use the non-inferiority margin for
    non-inferiority tests. When ``sigma`` is given, ``min_effect`` is read as a standardised
    effect (Cohen's d) and ``tau = min_effect * sigma``.
    """
    effect = abs(float(min_effect))
    check_positive(effect, "min_effect")
    if sigma is None:
        return effect
    return effect * check_positive(sigma, "sigma")


# --------------------------------------------------------------------------- monitor


class SequentialMonitor:
    """Running state of one sequential test across looks (pure; no clock, no I/O).

    Feed it every look's :class:`SequentialResult`; it returns the look with the running
    always-valid p-value ``min(p_{n-1}, p_n)`` (both sides for non-inferiority), the running
    intersection of the always-valid intervals, and a decision that stands once reached.
    Looks must share ``alpha``, ``tau``, ``theta0`` and test kind, and sample sizes must not
    shrink, otherwise the guarantee would silently be lost. ``to_dict``/``from_dict``
    round-trip through JSON (infinite bounds are stored as ``None``).

    If the running intersection of intervals becomes empty (probability <= ``alpha`` when the
    model holds; usually a sign of a drifting effect), the current look's interval is kept.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        tau: float,
        theta0: float | None = None,
        test: str = "two_sided",
        margin: float | None = None,
        higher_is_better: bool | None = None,
    ) -> None:
        if test == "two_sided":
            theta0 = 0.0 if theta0 is None else float(theta0)
        elif test == "non_inferiority":
            if margin is None or higher_is_better is None:
                fail("a non-inferiority monitor needs margin and higher_is_better.",
                     "pass the same margin and higher_is_better as the looks.")
            margin = check_positive(margin, "margin", allow_zero=True)
            boundary = -margin if higher_is_better else margin
            if theta0 is not None and float(theta0) != boundary:
                fail(f"theta0={theta0!r} contradicts the margin boundary {boundary!r}.",
                     "leave theta0 out for non-inferiority monitors.")
            theta0 = boundary
        else:
            fail(f"test={test!r} is unknown.", "use 'two_sided' or 'non_inferiority'.")
        self.alpha = check_alpha(alpha)
        self.tau = check_positive(tau, "tau")
        self.theta0 = theta0
        self.test = test
        self.margin = margin
        self.higher_is_better = higher_is_better
        self.looks = 0
        self.n_x = 0
        self.n_y = 0
        self.p_value = 1.0
        self.p_inferior = 1.0
        self.ci_low = -math.inf
        self.ci_high = math.inf
        self.decision = "continue"

    @classmethod
    def like(cls, result: SequentialResult) -> SequentialMonitor:
        """A fresh monitor configured like ``result`` (same alpha, tau, theta0, test)."""
        return cls(alpha=result.alpha, tau=result.tau, theta0=result.theta0, test=result.test,
                   margin=result.margin, higher_is_better=result.higher_is_better)

    def _check(self, r: SequentialResult) -> None:
        config = (self.alpha, self.tau, self.theta0, self.test, self.margin, self.higher_is_better)
        seen = (r.alpha, r.tau, r.theta0, r.test, r.margin, r.higher_is_better)
        if config != seen:
            fail(f"look configured as {seen} but the monitor runs {config}.",
                 "keep alpha, tau, theta0 and margin fixed for the life of a test, or start "
                 "a new monitor.")
        if r.n_x < self.n_x or r.n_y < self.n_y:
            fail(f"sample sizes went down ({self.n_x}, {self.n_y}) -> ({r.n_x}, {r.n_y}).",
                 "feed cumulative data from the start of the test to every look.")

    def update(self, result: SequentialResult) -> SequentialResult:
        """Fold one look into the running state; return the look with running values."""
        self._check(result)
        self.looks += 1
        self.n_x, self.n_y = result.n_x, result.n_y
        self.p_value = min(self.p_value, result.p_value)
        if result.p_inferior is not None:
            self.p_inferior = min(self.p_inferior, result.p_inferior)
        low, high = max(self.ci_low, result.ci_low), min(self.ci_high, result.ci_high)
        if low > high:
            low, high = result.ci_low, result.ci_high
        self.ci_low, self.ci_high = low, high
        if self.decision == "continue":
            if self.test == "two_sided":
                self.decision = "reject" if self.p_value <= self.alpha else "continue"
            elif self.p_value <= self.alpha:
                self.decision = "non_inferior"
            elif self.p_inferior <= self.alpha:
                self.decision = "inferior"
        return dataclasses.replace(
            result,
            p_value=self.p_value,
            p_inferior=self.p_inferior if self.test == "non_inferiority" else None,
            ci_low=self.ci_low,
            ci_high=self.ci_high,
            decision=self.decision,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe state."""
        def bound(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "alpha": self.alpha, "tau": self.tau, "theta0": self.theta0, "test": self.test,
            "margin": self.margin, "higher_is_better": self.higher_is_better,
            "looks": self.looks, "n_x": self.n_x, "n_y": self.n_y,
            "p_value": self.p_value, "p_inferior": self.p_inferior,
            "ci_low": bound(self.ci_low), "ci_high": bound(self.ci_high),
            "decision": self.decision,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SequentialMonitor:
        """Inverse of :meth:`to_dict`."""
        try:
            monitor = cls(alpha=data["alpha"], tau=data["tau"], theta0=data["theta0"],
                          test=data["test"], margin=data.get("margin"),
                          higher_is_better=data.get("higher_is_better"))
            monitor.looks = int(data["looks"])
            monitor.n_x, monitor.n_y = int(data["n_x"]), int(data["n_y"])
            monitor.p_value = float(data["p_value"])
            monitor.p_inferior = float(data["p_inferior"])
            low, high = data["ci_low"], data["ci_high"]
            monitor.ci_low = -math.inf if low is None else float(low)
            monitor.ci_high = math.inf if high is None else float(high)
            decision = str(data["decision"])
        except (KeyError, TypeError, ValueError) as exc:
            fail(f"stored monitor state is incomplete or malformed: {exc!r}.",
                 "store the dict returned by SequentialMonitor.to_dict unchanged.")
        allowed = DECISIONS if monitor.test == "two_sided" else NON_INFERIORITY_DECISIONS
        if decision not in allowed:
            fail(f"stored decision {decision!r} is not one of {allowed}.",
                 "store the dict returned by SequentialMonitor.to_dict unchanged.")
        monitor.decision = decision
        return monitor
