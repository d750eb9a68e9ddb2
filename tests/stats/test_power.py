"""Sample size and power against textbook values."""

from __future__ import annotations

import pytest

from mlops.errors import StatsError
from mlops.stats import (
    minimum_detectable_effect,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)


def test_two_proportions_textbook_value() -> None:
    # 0.10 vs 0.12, alpha 0.05 two-sided, power 0.8 (Fleiss eq. 4.14, R power.prop.test):
    # (1.959964 sqrt(2 * 0.11 * 0.89) + 0.841621 sqrt(0.09 + 0.1056))^2 / 0.02^2 = 3840.85
    s = sample_size_proportions(0.10, 0.12, alpha=0.05, power=0.8)
    assert s.n_control_exact == pytest.approx(3840.847, abs=1e-3)
    assert (s.n_control, s.n_treatment, s.total) == (3841, 3841, 7682)
    assert power_proportions(0.10, 0.12, 3841) >= 0.8 > power_proportions(0.10, 0.12, 3840)


def test_means_textbook_value() -> None:
    # half a standard deviation: 2 (1.959964 + 0.841621)^2 / 0.25 = 62.79 -> 63 per arm
    s = sample_size_means(0.5, 1.0)
    assert s.n_control_exact == pytest.approx(62.791, abs=1e-3)
    assert s.per_arm == 63
    assert power_means(0.5, 1.0, 63) >= 0.8 > power_means(0.5, 1.0, 62)
    assert minimum_detectable_effect(1.0, 62.791) == pytest.approx(0.5, rel=1e-4)
    # latency: detect +5 ms with SD 30 ms at power 0.9
    assert sample_size_means(5.0, 30.0, power=0.9).n_control == 757  # 2*(1.96+1.2816)^2*36


def test_unequal_allocation() -> None:
    s = sample_size_means(0.5, 1.0, ratio=4.0)  # n_treatment = 4 n_control
    # n_c = 7.849 * 1.25 / 0.25 = 39.24 -> 40; n_t = 4 * 39.24 = 156.97 -> 157
    assert (s.n_control, s.n_treatment) == (40, 157)
    assert power_means(0.5, 1.0, s.n_control_exact, 4 * s.n_control_exact) == pytest.approx(0.8,
                                                                                         abs=1e-4)
    p = sample_size_proportions(0.90, 0.88, ratio=0.25)
    assert power_proportions(0.90, 0.88, p.n_control, p.n_treatment) >= 0.8


@pytest.mark.parametrize("call", [
    lambda: sample_size_proportions(0.1, 0.1),
    lambda: sample_size_proportions(0.0, 0.1),
    lambda: sample_size_means(0.0, 1.0),
    lambda: sample_size_means(1.0, 1.0, power=1.0),
    lambda: power_means(1.0, 1.0, 0),
])
def test_bad_input(call: object) -> None:
    with pytest.raises(StatsError):
        call()  # type: ignore[operator]
