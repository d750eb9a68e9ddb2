"""The central property, measured: A/A streams looked at after every batch.

Simulations are vectorised across runs (arrays of shape runs x looks); the scalar API is
checked against the same vectorised core in test_sequential.py. Each rate is compared with
a one-sided binomial bound (99.9%) so a seed change does not flip the result by chance.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats

from mlops.stats import always_valid_p_values, choose_tau, mixture_log_lambda

ALPHA = 0.05
RUNS = 1000


def _upper_bound(rate: float, runs: int = RUNS) -> float:
    """The 99.9% quantile of an observed rate when the true rate is ``rate``."""
    return float(stats.binom.ppf(0.999, runs, rate)) / runs


def _bernoulli_stream(p_x: float, p_y: float, looks: int, per_look: int, seed: int
                      ) -> tuple[npt.NDArray[np.float64], ...]:
    """Cumulative (estimate, plug-in variance, pooled z) per run and look."""
    rng = np.random.default_rng(seed)
    sx = np.cumsum(rng.binomial(per_look, p_x, (RUNS, looks)), axis=1)
    sy = np.cumsum(rng.binomial(per_look, p_y, (RUNS, looks)), axis=1)
    n = per_look * np.arange(1, looks + 1)
    px, py = sx / n, sy / n

    def var(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        q = np.clip(p, 0.5 / n, 1 - 0.5 / n)  # as msprt_two_proportions does
        return q * (1 - q) / n

    pooled = (sx + sy) / (2 * n)
    se0 = np.sqrt(pooled * (1 - pooled) * 2 / n)
    z = np.divide(py - px, se0, out=np.zeros_like(se0), where=se0 > 0)
    return py - px, var(px) + var(py), z


def _normal_stream(mu_y: float, sd_y: float, looks: int, per_look: int, seed: int
                   ) -> tuple[npt.NDArray[np.float64], ...]:
    """Latency-like stream, stable arm N(100 ms, 30 ms); cumulative estimate, V, t, df."""
    rng = np.random.default_rng(seed)
    n = per_look * np.arange(1, looks + 1)

    def cumulative(a: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
        s1, s2 = np.cumsum(a.sum(-1), axis=1), np.cumsum((a * a).sum(-1), axis=1)
        mean = s1 / n
        return mean, (s2 - n * mean**2) / (n - 1)

    mx, vx = cumulative(rng.normal(100.0, 30.0, (RUNS, looks, per_look)))
    my, vy = cumulative(rng.normal(mu_y, sd_y, (RUNS, looks, per_look)))
    v = vx / n + vy / n
    return my - mx, v, (my - mx) / np.sqrt(v), np.broadcast_to(2 * n - 2, v.shape)


def _ever(p: npt.NDArray[np.float64]) -> float:
    return float(np.mean((p <= ALPHA).any(axis=1)))


def test_aa_false_rejections_msprt_versus_naive_peeking() -> None:
    """A/A: mSPRT at every look stays <= alpha; a naive test at every look does not."""
    report = []
    # accuracy: Bernoulli p = 0.9 in both arms, 20 looks of 100 per arm (n = 2,000 per arm)
    est, v, z = _bernoulli_stream(0.9, 0.9, looks=20, per_look=100, seed=1)
    ours = _ever(always_valid_p_values(mixture_log_lambda(est, v, choose_tau(0.02))))
    naive = _ever(2 * stats.norm.sf(np.abs(z)))
    naive_rollback = _ever(stats.norm.cdf(z))  # one-sided "candidate worse" z-test
    report.append(("accuracy p=0.9, 20 looks x 100/arm", ours, naive, naive_rollback))
    # latency: N(100, 30) ms in both arms, 50 looks of 20 per arm (n = 1,000 per arm)
    est, v, t, df = _normal_stream(100.0, 30.0, looks=50, per_look=20, seed=2)
    ours_l = _ever(always_valid_p_values(mixture_log_lambda(est, v, choose_tau(5.0))))
    naive_l = _ever(2 * stats.t.sf(np.abs(t), df))
    naive_rollback_l = _ever(stats.t.sf(t, df))  # one-sided "candidate slower" t-test
    report.append(("latency N(100,30) ms, 50 looks x 20/arm", ours_l, naive_l,
                   naive_rollback_l))

    lines = [f"{RUNS} A/A runs, alpha={ALPHA}, rejection checked at every look:"]
    for name, o, n2, n1 in report:
        lines.append(f"  {name}: mSPRT ever rejects {o:.3f} | naive two-sided {n2:.3f} | "
                     f"naive one-sided rollback {n1:.3f}")
    print("\n".join(lines))
    for name, o, n2, n1 in report:
        assert o <= _upper_bound(ALPHA), f"{name}: mSPRT false rejections {o:.3f}"
        assert n2 > 0.10 and n1 > 0.10, f"{name}: naive peeking only {n2:.3f}/{n1:.3f}"


def test_naive_peeking_inflation_grows_with_looks() -> None:
    """One-sided z-test re-run at every look (REFERENCE.md: 13% at 5, 17% at 10, 21% at 20)."""
    rates = {}
    for looks in (5, 10, 20):
        _, _, z = _bernoulli_stream(0.9, 0.9, looks=looks, per_look=100, seed=10 + looks)
        rates[looks] = _ever(stats.norm.cdf(z))
    print(f"naive one-sided false rollback by number of looks: {rates}")
    assert 0.09 < rates[5] < rates[20] and 0.17 < rates[20] < 0.27


def test_power_accuracy_drop_is_detected_within_the_horizon() -> None:
    """0.90 -> 0.88 accuracy, tau = 0.02: 50 looks of 200 per arm (10,000 per arm)."""
    est, v, _ = _bernoulli_stream(0.90, 0.88, looks=50, per_look=200, seed=3)
    p = always_valid_p_values(mixture_log_lambda(est, v, choose_tau(0.02)))
    rejected = (p <= ALPHA).any(axis=1)
    first = np.argmax(p <= ALPHA, axis=1)[rejected]
    power = float(rejected.mean())
    print(f"accuracy 0.90->0.88: detected in {power:.3f} of runs, median at look "
          f"{np.median(first) + 1:.0f} of 50 ({200 * (np.median(first) + 1):.0f} per arm)")
    assert power >= 0.85
    # and every detection says "worse", never "better"
    final_sign = np.take_along_axis(est, np.argmax(p <= ALPHA, axis=1)[:, None], 1)[:, 0]
    assert np.all(final_sign[rejected] < 0)


def test_power_latency_regression_is_detected_within_the_horizon() -> None:
    """Latency x1.2 (100 -> 120 ms, SD 30 -> 36), tau = 5 ms: 20 looks of 100 per arm."""
    est, v, _, _ = _normal_stream(120.0, 36.0, looks=20, per_look=100, seed=4)
    p = always_valid_p_values(mixture_log_lambda(est, v, choose_tau(5.0)))
    assert _ever(p) >= 0.99


def test_non_inferiority_error_rates_are_one_sided_alpha() -> None:
    """At the margin boundary a false "non_inferior" is <= alpha; with no true difference a
    false "inferior" is <= alpha, and non-inferiority is usually shown."""
    margin = 0.02
    tau = choose_tau(margin)
    theta0 = -margin
    # boundary: candidate really is 2 points worse (0.90 -> 0.88)
    est, v, _ = _bernoulli_stream(0.90, 0.88, looks=40, per_look=200, seed=5)
    false_ni = _ever(always_valid_p_values(mixture_log_lambda(est - theta0, v, tau, side=1)))
    # no difference (0.90 -> 0.90)
    est, v, _ = _bernoulli_stream(0.90, 0.90, looks=40, per_look=200, seed=6)
    false_inf = _ever(always_valid_p_values(mixture_log_lambda(est - theta0, v, tau, side=-1)))
    shown_ni = _ever(always_valid_p_values(mixture_log_lambda(est - theta0, v, tau, side=1)))
    print(f"non-inferiority margin 0.02: false non_inferior {false_ni:.3f}, false inferior "
          f"{false_inf:.3f}, shown non-inferior when equal {shown_ni:.3f}")
    assert false_ni <= _upper_bound(ALPHA)
    assert false_inf <= _upper_bound(ALPHA)
    assert shown_ni >= 0.8


def test_plug_in_variance_holds_with_looks_from_five_units() -> None:
    """Looking after every 5 units from n = 5 (plug-in variance at its weakest)."""
    est, v, _, _ = _normal_stream(100.0, 30.0, looks=100, per_look=5, seed=7)
    rate = _ever(always_valid_p_values(mixture_log_lambda(est, v, choose_tau(5.0))))
    assert rate <= _upper_bound(ALPHA), rate
    assert math.isfinite(rate)


def test_paired_plug_in_aa_and_power() -> None:
    """Shadow pairs: d_i = loss_candidate - loss_stable ~ N(delta, 15), 50 looks of 20 pairs,
    sigma estimated at every look (msprt_paired's plug-in)."""
    rng = np.random.default_rng(8)
    n = 20 * np.arange(1, 51)
    tau = choose_tau(2.0)
    rates = []
    for delta in (0.0, 3.0):
        d = rng.normal(delta, 15.0, (RUNS, 50, 20))
        s1, s2 = np.cumsum(d.sum(-1), axis=1), np.cumsum((d * d).sum(-1), axis=1)
        mean = s1 / n
        v = (s2 - n * mean**2) / (n - 1) / n
        rates.append(_ever(always_valid_p_values(mixture_log_lambda(mean, v, tau))))
    print(f"paired A/A false rejections {rates[0]:.3f}; +3 detected in {rates[1]:.3f}")
    assert rates[0] <= _upper_bound(ALPHA)
    assert rates[1] >= 0.9
