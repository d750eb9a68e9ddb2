"""Sample size and power of two-sided fixed-horizon tests (normal approximation).

Means (known sigma, allocation ``n_t = ratio * n_c``)::

    n_c = (z_{1-alpha/2} + z_{power})^2 * sigma^2 * (1 + 1/ratio) / delta^2

Proportions (Fleiss, Levin & Paik, *Statistical Methods for Rates and Proportions*, 3rd ed.,
eq. 4.14 without continuity correction; the pooled variance under H0, the unpooled under
H1; ``p_bar = (p_c + ratio p_t) / (1 + ratio)``)::

    n_c = (z_{1-alpha/2} sqrt(p_bar q_bar (1 + 1/ratio)) + z_{power} sqrt(p_c q_c + p_t q_t / ratio))^2
          / (p_t - p_c)^2

For 0.10 vs 0.12 at alpha 0.05 and power 0.8 this gives 3,841 per arm (R ``power.prop.test``:
3,840.8). Sizes are rounded up. Power functions count both rejection tails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from mlops.stats._checks import check_alpha, check_positive, check_probability, fail

__all__ = [
    "SampleSize",
    "minimum_detectable_effect",
    "power_means",
    "power_proportions",
    "sample_size_means",
    "sample_size_proportions",
]


@dataclass(frozen=True)
class SampleSize:
    """Units needed per arm to detect ``effect`` with a two-sided test."""

    n_control: int
    n_treatment: int
    total: int
    effect: float  # difference to detect, in the metric's units
    alpha: float
    power: float
    ratio: float  # n_treatment / n_control
    n_control_exact: float  # before rounding up

    @property
    def per_arm(self) -> int:
        """The larger arm's size (the figure to wait for with equal allocation)."""
        return max(self.n_control, self.n_treatment)


def _z(alpha: float, power: float) -> tuple[float, float]:
    return float(stats.norm.ppf(1.0 - alpha / 2.0)), float(stats.norm.ppf(power))


def _size(n_c: float, ratio: float, effect: float, alpha: float, power: float) -> SampleSize:
    n_control = math.ceil(n_c - 1e-9)
    n_treatment = math.ceil(ratio * n_c - 1e-9)
    return SampleSize(n_control, n_treatment, n_control + n_treatment, effect, alpha, power,
                      ratio, n_c)


def sample_size_means(
    effect: float, sigma: float, *, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> SampleSize:
    """Per-arm sizes for a two-sided test of a difference in means of ``effect``."""
    alpha = check_alpha(alpha)
    power = check_probability(power, "power", open_interval=True)
    delta = abs(float(effect))
    check_positive(delta, "effect")
    sigma = check_positive(sigma, "sigma")
    ratio = check_positive(ratio, "ratio")
    z_a, z_b = _z(alpha, power)
    n_c = (z_a + z_b) ** 2 * sigma**2 * (1.0 + 1.0 / ratio) / delta**2
    return _size(n_c, ratio, float(effect), alpha, power)


def sample_size_proportions(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> SampleSize:
    """Per-arm sizes for a two-sided two-proportion z-test of ``p_control`` vs ``p_treatment``."""
    alpha = check_alpha(alpha)
    power = check_probability(power, "power", open_interval=True)
    pc = check_probability(p_control, "p_control", open_interval=True)
    pt = check_probability(p_treatment, "p_treatment", open_interval=True)
    ratio = check_positive(ratio, "ratio")
    if pc == pt:
        fail("p_control equals p_treatment: there is no effect to detect.",
             "pass the smallest change that matters, e.g. 0.90 vs 0.88.")
    z_a, z_b = _z(alpha, power)
    p_bar = (pc + ratio * pt) / (1.0 + ratio)
    root = (z_a * math.sqrt(p_bar * (1.0 - p_bar) * (1.0 + 1.0 / ratio))
            + z_b * math.sqrt(pc * (1.0 - pc) + pt * (1.0 - pt) / ratio))
    n_c = root**2 / (pt - pc) ** 2
    return _size(n_c, ratio, pt - pc, alpha, power)


def power_means(
    effect: float,
    sigma: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    alpha: float = 0.05,
) -> float:
    """Power ``Phi(lam - z) + Phi(-lam - z)``, ``lam = |effect| / (sigma sqrt(1/n_c + 1/n_t))``."""
    alpha = check_alpha(alpha)
    sigma = check_positive(sigma, "sigma")
    n_c = check_positive(n_control, "n_control")
    n_t = n_c if n_treatment is None else check_positive(n_treatment, "n_treatment")
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    lam = abs(float(effect)) / (sigma * math.sqrt(1.0 / n_c + 1.0 / n_t))
    return float(stats.norm.cdf(lam - z) + stats.norm.cdf(-lam - z))


def power_proportions(
    p_control: float,
    p_treatment: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    alpha: float = 0.05,
) -> float:
    """Power of the two-sided pooled two-proportion z-test (same approximation as the size)."""
    alpha = check_alpha(alpha)
    pc = check_probability(p_control, "p_control", open_interval=True)
    pt = check_probability(p_treatment, "p_treatment", open_interval=True)
    n_c = check_positive(n_control, "n_control")
    n_t = n_c if n_treatment is None else check_positive(n_treatment, "n_treatment")
    z = float(stats.norm.ppf(1.0 - alpha / 2.0))
    p_bar = (n_c * pc + n_t * pt) / (n_c + n_t)
    se0 = math.sqrt(p_bar * (1.0 - p_bar) * (1.0 / n_c + 1.0 / n_t))
    se1 = math.sqrt(pc * (1.0 - pc) / n_c + pt * (1.0 - pt) / n_t)
    delta = abs(pt - pc)
    return float(stats.norm.cdf((delta - z * se0) / se1) + stats.norm.cdf((-delta - z * se0) / se1))


def minimum_detectable_effect(
    sigma: float,
    n_control: float,
    n_treatment: float | None = None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest mean difference detected with ``power``: ``(z_a + z_b) sigma sqrt(1/n_c + 1/n_t)``."""
    alpha = check_alpha(alpha)
    power = check_probability(power, "power", open_interval=True)
    sigma = check_positive(sigma, "sigma")
    n_c = check_positive(n_control, "n_control")
    n_t = n_c if n_treatment is None else check_positive(n_treatment, "n_treatment")
    z_a, z_b = _z(alpha, power)
    return (z_a + z_b) * sigma * math.sqrt(1.0 / n_c + 1.0 / n_t)
