"""CUSUM and EWMA control charts: a textbook example, closed forms and run lengths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops.errors import StatsError
from mlops.stats.control import cusum, ewma

# Montgomery, Introduction to Statistical Quality Control, Example 9.1 (Table 9.1): 20 values
# from N(10, 1), then 10 from N(11, 1). With mu0=10, sigma=1, k=0.5, h=5 the tabular CUSUM
# first exceeds H=5 at period 29 with C+_29 = 5.28.
MONTGOMERY = [9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47,
              10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29, 11.50,
              10.60, 11.08, 10.38, 11.62, 11.31, 10.52]


def test_cusum_reproduces_the_textbook_example() -> None:
    r = cusum(MONTGOMERY, target=10.0, sigma=1.0, k=0.5, h=5.0, reset=False)
    assert r.chart == "cusum" and r.start == 0 and r.n == 30
    assert r.first_signal == 28 and r.direction == "up"  # period 29
    assert r.signals == (28, 29) and r.directions == ("up", "up")
    assert r.statistic[28] == pytest.approx(5.28, abs=0.005)
    assert r.statistic[3:5] == pytest.approx((1.16, 2.82), abs=0.005)
    assert r.statistic_lower[1:3] == pytest.approx((-1.56, -1.77), abs=0.005)
    assert set(r.upper_limit) == {5.0} and set(r.lower_limit) == {-5.0}
    assert not r.target_estimated and not r.sigma_estimated
    assert r.params == {"k": 0.5, "h": 5.0}
    restarted = cusum(MONTGOMERY, target=10.0, sigma=1.0)
    assert restarted.signals == (28,) and restarted.statistic[29] == pytest.approx(0.02)


def test_cusum_scales_with_sigma_and_target() -> None:
    x = np.asarray(MONTGOMERY)
    base = cusum(x, target=10.0, sigma=1.0, reset=False)
    scaled = cusum(3.0 * x + 7.0, target=37.0, sigma=3.0, reset=False)
    assert scaled.signals == base.signals
    np.testing.assert_allclose(scaled.statistic, 3.0 * np.asarray(base.statistic), atol=1e-9)
    down = cusum(20.0 - x, target=10.0, sigma=1.0, reset=False)
    assert down.signals == base.signals and down.direction == "down"
    np.testing.assert_allclose(down.statistic_lower, -np.asarray(base.statistic), atol=1e-9)


def test_ewma_matches_its_closed_form() -> None:
    lam, L, mu0, sigma = 0.1, 2.7, 10.0, 1.0
    r = ewma(MONTGOMERY, lam=lam, L=L, target=mu0, sigma=sigma, reset=False)
    x = np.asarray(MONTGOMERY)
    i = np.arange(1, x.size + 1)
    # z_i = (1 - lam)^i mu0 + sum_j lam (1 - lam)^(i - j) x_j
    weights = lam * (1 - lam) ** (i[:, None] - i[None, :]) * (i[None, :] <= i[:, None])
    z = (1 - lam) ** i * mu0 + weights @ x
    width = L * sigma * np.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i)))
    np.testing.assert_allclose(r.statistic, z, rtol=1e-12)
    np.testing.assert_allclose(r.upper_limit, mu0 + width, rtol=1e-12)
    np.testing.assert_allclose(r.lower_limit, mu0 - width, rtol=1e-12)
    assert r.statistic == r.statistic_lower
    assert r.upper_limit[0] == pytest.approx(10.27)  # 2.7 * sqrt(0.1/1.9 * 0.19) = 0.27
    expected = tuple(int(j) for j in np.nonzero((z > mu0 + width) | (z < mu0 - width))[0])
    assert r.signals == expected == (28, 29) and r.direction == "up"


def _in_control_arl(chart: str) -> float:
    x = np.random.default_rng(2024).standard_normal(400_000)
    r = cusum(x, target=0.0, sigma=1.0) if chart == "cusum" else ewma(x, target=0.0, sigma=1.0)
    return x.size / r.n_signals


@pytest.mark.parametrize(("chart", "low", "high"), [("cusum", 420, 520), ("ewma", 500, 630)])
def test_in_control_average_run_length(chart: str, low: float, high: float) -> None:
    """CUSUM(0.5, 5): 465 (Montgomery); EWMA(0.2, 3) with exact limits: ~560 (module doc)."""
    assert low <= _in_control_arl(chart) <= high


@pytest.mark.parametrize(("chart", "low", "high"), [("cusum", 9.6, 11.2), ("ewma", 9.2, 10.8)])
def test_one_sigma_shift_is_found_in_about_ten_samples(chart: str, low: float, high: float
                                                       ) -> None:
    rng = np.random.default_rng(99)
    run_lengths = []
    for _ in range(2_000):
        x = rng.standard_normal(150) + 1.0
        r = cusum(x, target=0.0, sigma=1.0) if chart == "cusum" else \
            ewma(x, target=0.0, sigma=1.0)
        assert r.first_signal is not None and r.direction == "up"
        run_lengths.append(r.first_signal + 1)
    assert low <= float(np.mean(run_lengths)) <= high


@pytest.mark.parametrize("chart", ["cusum", "ewma"])
def test_false_signals_on_short_stable_series_are_rare(chart: str) -> None:
    """Per point about 1/ARL0; per 200-point series about 1 - exp(-200/ARL0) ~ 1/3."""
    signals = streams = 0
    for seed in range(500):
        x = np.random.default_rng(seed).standard_normal(200)
        r = cusum(x, target=0.0, sigma=1.0) if chart == "cusum" else \
            ewma(x, target=0.0, sigma=1.0)
        signals += r.n_signals
        streams += r.signaled
    assert signals / (500 * 200) <= 0.003
    assert streams / 500 <= 0.4


def test_warmup_estimates_target_and_sigma() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0.9, 0.02, 150), rng.normal(0.88, 0.02, 100)])  # accuracy
    for r in (cusum(x, warmup=100), ewma(x, warmup=100)):
        assert r.start == 100 and r.target_estimated and r.sigma_estimated
        assert r.target == pytest.approx(x[:100].mean())
        assert r.sigma == pytest.approx(x[:100].std(ddof=1))
        assert len(r.statistic) == len(r.upper_limit) == 150
        downs = [i for i, d in zip(r.signals, r.directions, strict=True) if d == "down"]
        assert downs and 150 <= downs[0] < 175  # the 1-sigma drop at 150
    known_sigma = cusum(x, sigma=0.02, warmup=100)
    assert known_sigma.sigma == 0.02 and not known_sigma.sigma_estimated
    assert known_sigma.target_estimated and known_sigma.start == 100
    full = ewma(x, target=0.9, sigma=0.02)
    assert full.start == 0 and len(full.statistic) == 250


def test_lam_one_is_a_shewhart_chart() -> None:
    x = [0.0, 2.9, 3.1, -3.2, 0.5]
    r = ewma(x, lam=1.0, L=3.0, target=0.0, sigma=1.0)
    assert r.statistic == tuple(x) and r.upper_limit == pytest.approx((3.0,) * 5)
    assert r.signals == (2, 3) and r.directions == ("up", "down")
    assert math.isclose(r.lower_limit[0], -3.0)


def test_bad_input_is_refused_with_a_fix() -> None:
    with pytest.raises(StatsError, match="at least 51") as err:
        cusum(np.zeros(50))
    assert err.value.fix
    with pytest.raises(StatsError, match="constant"):
        ewma(np.ones(80))
    with pytest.raises(StatsError, match="NaN"):
        cusum([1.0, float("nan")], target=0.0, sigma=1.0)
    with pytest.raises(StatsError, match="sigma"):
        cusum([1.0, 2.0], target=0.0, sigma=0.0)
    with pytest.raises(StatsError, match="h="):
        cusum([1.0], target=0.0, sigma=1.0, h=0)
    with pytest.raises(StatsError, match="lam"):
        ewma([1.0], lam=1.5, target=0.0, sigma=1.0)
    with pytest.raises(StatsError, match="warmup"):
        ewma(np.arange(10.0), warmup=1)
    with pytest.raises(StatsError, match="target"):
        cusum([1.0], target=float("inf"), sigma=1.0)
    empty = cusum([], target=0.0, sigma=1.0)
    assert empty.n == 0 and empty.statistic == () and not empty.signaled
