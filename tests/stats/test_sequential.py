"""mSPRT formulas, non-inferiority, the monitor and input checks (small exact cases)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from mlops.errors import StatsError
from mlops.stats import (
    SequentialMonitor,
    always_valid_p_values,
    choose_tau,
    mixture_log_lambda,
    msprt_from_summary,
    msprt_non_inferiority_means,
    msprt_non_inferiority_paired,
    msprt_non_inferiority_proportions,
    msprt_paired,
    msprt_two_proportions,
    msprt_two_sample_means,
    non_inferiority_from_summary,
)


def test_two_sample_means_hand_computed() -> None:
    # x: mean 2.5, s^2 = 5/3; y: mean 4, s^2 = 5/2  ->  V = 5/12 + 1/2 = 11/12, D = 1.5
    r = msprt_two_sample_means([1, 2, 3, 4], [2, 3, 4, 5, 6], tau=1.0, alpha=0.05)
    # Lambda = sqrt(V/(V+1)) exp(1 * 1.5^2 / (2 V (V+1))) = sqrt(11/23) exp(162/253)
    expected_lambda = math.sqrt(11 / 23) * math.exp(162 / 253)
    assert r.variance == pytest.approx(11 / 12)
    assert r.estimate == pytest.approx(1.5)
    assert r.lambda_ == pytest.approx(expected_lambda, rel=1e-12)
    assert r.p_value == pytest.approx(1 / expected_lambda, rel=1e-12)
    # half-width sqrt(V (V+tau^2) / tau^2 * (-2 ln alpha - ln(V/(V+tau^2))))
    half = math.sqrt(253 / 144 * (2 * math.log(20) + math.log(23 / 11)))
    assert (r.ci_low, r.ci_high) == pytest.approx((1.5 - half, 1.5 + half), rel=1e-12)
    assert (r.n_x, r.n_y, r.decision, r.test) == (4, 5, "continue", "two_sided")


def test_theta0_shifts_the_test_but_the_ci_is_for_the_difference() -> None:
    r0 = msprt_two_sample_means([1, 2, 3, 4], [2, 3, 4, 5, 6], tau=1.0)
    r1 = msprt_two_sample_means([1, 2, 3, 4], [2, 3, 4, 5, 6], tau=1.0, theta0=1.5)
    assert r1.estimate == r0.estimate == pytest.approx(1.5)
    assert (r1.ci_low, r1.ci_high) == pytest.approx((r0.ci_low, r0.ci_high))
    # D - theta0 = 0: Lambda = sqrt(V/(V+tau^2)) < 1, p = 1
    assert r1.lambda_ == pytest.approx(math.sqrt(11 / 23))
    assert r1.p_value == 1.0


def test_two_proportions_hand_computed() -> None:
    # p_x = 0.9, p_y = 0.8, V = 0.09/50 + 0.16/50 = 0.005, D = -0.1, tau^2 = 0.01
    r = msprt_two_proportions(45, 50, 40, 50, tau=0.1)
    # V/(V+tau^2) = 1/3, exponent = 0.01 * 0.01 / (2 * 0.005 * 0.015) = 2/3
    assert r.variance == pytest.approx(0.005)
    assert r.lambda_ == pytest.approx(math.sqrt(1 / 3) * math.exp(2 / 3), rel=1e-12)
    assert r.estimate == pytest.approx(-0.1)


def test_paired_one_sample_form_hand_computed() -> None:
    # n = 4, mean_d = 0.5, sigma = 1, tau = 1:
    # Lambda = sigma/sqrt(sigma^2 + n tau^2) exp(n^2 tau^2 mean^2 / (2 sigma^2 (sigma^2 + n tau^2)))
    r = msprt_paired([1.0, -1.0, 2.0, 0.0], tau=1.0, sigma=1.0)
    assert r.lambda_ == pytest.approx(math.exp(16 * 0.25 / 10) / math.sqrt(5), rel=1e-12)
    # plug-in sigma: the sample SD of d (ddof=1) replaces sigma
    s = float(np.std([1.0, -1.0, 2.0, 0.0], ddof=1))
    plug = msprt_paired([1.0, -1.0, 2.0, 0.0], tau=1.0)
    assert plug.lambda_ == pytest.approx(
        s / math.sqrt(s * s + 4) * math.exp(16 * 0.25 / (2 * s * s * (s * s + 4))), rel=1e-12)


def test_reject_exactly_when_lambda_reaches_one_over_alpha() -> None:
    v, tau, alpha = 1e-4, 0.02, 0.05
    # solve Lambda(D) = 1/alpha for D; just above rejects, just below continues
    r = v / (v + tau**2)
    d_star = math.sqrt((-math.log(alpha) - 0.5 * math.log(r)) * 2 * v * (v + tau**2) / tau**2)
    above = msprt_from_summary(d_star * 1.0001, v, 100, 100, tau=tau, alpha=alpha)
    below = msprt_from_summary(d_star * 0.9999, v, 100, 100, tau=tau, alpha=alpha)
    assert above.decision == "reject" and above.lambda_ >= 1 / alpha
    assert below.decision == "continue" and below.lambda_ < 1 / alpha
    # the always-valid CI is the set of theta0 not rejected: its edge sits at d_star
    assert above.ci_low == pytest.approx(d_star * 1.0001 - d_star, abs=1e-12)


def test_one_sided_mixture_equals_numerical_integration() -> None:
    d_hat, v, tau, theta0 = 0.013, 4e-5, 0.02, -0.01
    for side in (+1, -1):
        def integrand(theta: float, side: int = side) -> float:
            lr = stats.norm.pdf(d_hat, theta, math.sqrt(v)) / stats.norm.pdf(
                d_hat, theta0, math.sqrt(v))
            return lr * 2 * stats.norm.pdf(theta, theta0, tau)  # half-normal on one side

        lo, hi = (theta0, theta0 + 12 * tau) if side > 0 else (theta0 - 12 * tau, theta0)
        numeric, _ = integrate.quad(integrand, lo, hi, epsabs=0, epsrel=1e-10, limit=200)
        closed = math.exp(float(mixture_log_lambda(d_hat - theta0, v, tau, side=side)[()]))
        assert closed == pytest.approx(numeric, rel=1e-7)
    # and the two-sided mixture is the average of the two one-sided ones
    two = math.exp(float(mixture_log_lambda(d_hat - theta0, v, tau)[()]))
    plus = math.exp(float(mixture_log_lambda(d_hat - theta0, v, tau, side=1)[()]))
    minus = math.exp(float(mixture_log_lambda(d_hat - theta0, v, tau, side=-1)[()]))
    assert two == pytest.approx((plus + minus) / 2, rel=1e-12)


def test_non_inferiority_bounds_match_decisions() -> None:
    tau, v, margin = 0.02, 2e-5, 0.02
    for est in np.linspace(-0.05, 0.03, 81):
        r = non_inferiority_from_summary(float(est), v, 5000, 5000, margin=margin, tau=tau)
        assert r.theta0 == -margin and r.test == "non_inferiority"
        if r.decision == "non_inferior":
            assert r.ci_low >= -margin - 1e-9 and r.p_value <= 0.05
        elif r.decision == "inferior":
            assert r.ci_high <= -margin + 1e-9 and r.p_inferior is not None
            assert r.p_inferior <= 0.05
        else:
            assert r.ci_low < -margin < r.ci_high
    # lower-is-better (latency, ms): not worse means "not higher by more than the margin"
    ok = non_inferiority_from_summary(-1.0, 0.25, 800, 800, margin=5.0, tau=5.0,
                                      higher_is_better=False)
    bad = non_inferiority_from_summary(12.0, 0.25, 800, 800, margin=5.0, tau=5.0,
                                       higher_is_better=False)
    assert ok.theta0 == 5.0 and ok.decision == "non_inferior" and ok.ci_high < 5.0
    assert bad.decision == "inferior" and bad.ci_low > 5.0


def test_non_inferiority_wrappers_agree_with_summary() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(100, 20, 400), rng.normal(101, 20, 400)
    r = msprt_non_inferiority_means(x, y, margin=5.0, tau=5.0, higher_is_better=False)
    v = x.var(ddof=1) / 400 + y.var(ddof=1) / 400
    s = non_inferiority_from_summary(y.mean() - x.mean(), v, 400, 400, margin=5.0, tau=5.0,
                                     higher_is_better=False)
    assert r.p_value == pytest.approx(s.p_value) and r.ci_low == pytest.approx(s.ci_low)
    p = msprt_non_inferiority_proportions(900, 1000, 895, 1000, margin=0.02, tau=0.02)
    assert p.estimate == pytest.approx(-0.005) and p.n_x == 1000
    d = msprt_non_inferiority_paired(y - x, margin=5.0, tau=5.0, higher_is_better=False)
    assert d.n_x == d.n_y == 400


def test_no_evidence_without_a_variance() -> None:
    for r in (msprt_two_sample_means([1.0], [2.0, 3.0], tau=1.0),
              msprt_two_sample_means([], [], tau=1.0),
              msprt_two_sample_means([5.0, 5.0], [5.0, 5.0], tau=1.0),
              msprt_two_proportions(0, 0, 0, 0, tau=0.1),
              msprt_paired([1.0], tau=1.0)):
        assert r.decision == "continue" and r.p_value == 1.0 and r.lambda_ == 1.0
        assert r.ci_low == -math.inf and r.ci_high == math.inf
    # all-success arm still gets a positive (clipped) Bernoulli variance
    r = msprt_two_proportions(100, 100, 90, 100, tau=0.05)
    assert r.variance == pytest.approx(0.995 * 0.005 / 100 + 0.09 / 100)


@pytest.mark.parametrize("call", [
    lambda: msprt_two_sample_means([1, 2, math.nan], [1, 2], tau=1.0),
    lambda: msprt_two_sample_means([1, 2], [1, 2], tau=0.0),
    lambda: msprt_two_sample_means([1, 2], [1, 2], tau=1.0, alpha=1.0),
    lambda: msprt_two_sample_means([[1, 2]], [1, 2], tau=1.0),
    lambda: msprt_two_proportions(11, 10, 5, 10, tau=0.1),
    lambda: msprt_two_proportions(-1, 10, 5, 10, tau=0.1),
    lambda: msprt_paired([1, 2, 3], tau=1.0, sigma=-1.0),
    lambda: non_inferiority_from_summary(0.0, 1.0, 1, 1, margin=-0.1, tau=1.0),
    lambda: choose_tau(0.0),
])
def test_bad_input_raises_mlops_error_with_a_fix(call: object) -> None:
    with pytest.raises(StatsError) as info:
        call()  # type: ignore[operator]
    assert info.value.fix


def test_vectorised_core_matches_scalar_api() -> None:
    rng = np.random.default_rng(0)
    sx = np.cumsum(rng.binomial(100, 0.9, 10))
    sy = np.cumsum(rng.binomial(100, 0.9, 10))
    n = 100 * np.arange(1, 11)
    px, py = sx / n, sy / n
    log_l = mixture_log_lambda(py - px, px * (1 - px) / n + py * (1 - py) / n, 0.02)
    running = always_valid_p_values(log_l)
    monitor = SequentialMonitor(alpha=0.05, tau=0.02)
    for k in range(10):
        look = monitor.update(msprt_two_proportions(int(sx[k]), int(n[k]), int(sy[k]),
                                                    int(n[k]), tau=0.02))
        assert look.p_value == pytest.approx(running[k], rel=1e-12)
        assert look.lambda_ == pytest.approx(math.exp(log_l[k]), rel=1e-12)


def test_monitor_keeps_the_running_minimum_and_a_standing_decision() -> None:
    monitor = SequentialMonitor(alpha=0.05, tau=1.0)
    v = 0.01
    strong = monitor.update(msprt_from_summary(0.5, v, 100, 100, tau=1.0))
    assert strong.decision == "reject"
    weak = monitor.update(msprt_from_summary(0.0, v / 2, 200, 200, tau=1.0))
    fresh = msprt_from_summary(0.0, v / 2, 200, 200, tau=1.0)
    assert fresh.decision == "continue" and fresh.p_value == 1.0
    assert weak.p_value == strong.p_value and weak.decision == "reject"
    # running intersection of always-valid intervals
    assert weak.ci_low == max(strong.ci_low, fresh.ci_low)
    assert weak.ci_high == min(strong.ci_high, fresh.ci_high)
    assert monitor.looks == 2


def test_monitor_round_trips_through_json() -> None:
    monitor = SequentialMonitor(alpha=0.05, tau=0.02, test="non_inferiority", margin=0.01,
                                higher_is_better=True)
    before = monitor.to_dict()
    assert json.loads(json.dumps(before)) == before  # infinite bounds stored as None
    monitor.update(non_inferiority_from_summary(0.001, 4e-5, 1000, 1000, margin=0.01, tau=0.02))
    restored = SequentialMonitor.from_dict(json.loads(json.dumps(monitor.to_dict())))
    assert restored.to_dict() == monitor.to_dict()
    nxt = non_inferiority_from_summary(0.002, 1e-5, 4000, 4000, margin=0.01, tau=0.02)
    assert restored.update(nxt) == monitor.update(nxt)
    assert monitor.decision == "non_inferior"


def test_monitor_refuses_mixed_configurations_and_shrinking_samples() -> None:
    first = msprt_from_summary(0.1, 0.01, 100, 100, tau=1.0)
    monitor = SequentialMonitor.like(first)
    monitor.update(first)
    with pytest.raises(StatsError):
        monitor.update(msprt_from_summary(0.1, 0.01, 200, 200, tau=2.0))
    with pytest.raises(StatsError):
        monitor.update(msprt_from_summary(0.1, 0.01, 50, 200, tau=1.0))
    with pytest.raises(StatsError):
        SequentialMonitor.from_dict({"alpha": 0.05})
    with pytest.raises(StatsError):
        SequentialMonitor(tau=1.0, test="bayesian")


def test_non_inferiority_monitor_first_decision_stands() -> None:
    monitor = SequentialMonitor(tau=0.02, test="non_inferiority", margin=0.02,
                                higher_is_better=True)
    inferior = monitor.update(non_inferiority_from_summary(-0.06, 1e-4, 1000, 1000,
                                                           margin=0.02, tau=0.02))
    assert inferior.decision == "inferior"
    later = monitor.update(non_inferiority_from_summary(0.02, 1e-5, 9000, 9000, margin=0.02,
                                                        tau=0.02))
    assert later.decision == "inferior" and later.p_value <= 0.05  # both crossed; first stands


def test_choose_tau_is_the_smallest_effect_that_matters() -> None:
    assert choose_tau(0.02) == 0.02
    assert choose_tau(-0.02) == 0.02
    assert choose_tau(0.2, sigma=30.0) == pytest.approx(6.0)
    # documented rationale: for an effect theta the evidence is maximised at tau^2 = theta^2 - V
    theta, v = 0.02, 1e-5
    taus = np.linspace(0.001, 0.06, 5901)
    best = taus[np.argmax([mixture_log_lambda(theta, v, t)[()] for t in taus])]
    assert best == pytest.approx(math.sqrt(theta**2 - v), abs=2e-5)


def test_fixed_n_interval_covers_the_truth_at_least_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    runs, n, delta, alpha = 1000, 200, 3.0, 0.05
    x = rng.normal(100, 20, (runs, n))
    y = rng.normal(100 + delta, 20, (runs, n))
    covered = [r.ci_low <= delta <= r.ci_high
               for r in (msprt_two_sample_means(x[i], y[i], tau=5.0, alpha=alpha)
                         for i in range(runs))]
    coverage = float(np.mean(covered))
    # always-valid intervals are conservative at any single n; never below nominal
    assert coverage >= 1 - alpha - 3 * math.sqrt(alpha * (1 - alpha) / runs)
