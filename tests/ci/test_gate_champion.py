"""Champion gate: non-inferiority vs production, McNemar and the paired bootstrap checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops.ci.gates import champion
from mlops.ci.gates.base import GateResult
from mlops.errors import CIError
from tests.ci.gate_data import fixed_model, flip, make_ctx

N = 1000


def _labels(n: int = N) -> tuple[pd.DataFrame, np.ndarray]:
    y = np.random.default_rng(7).integers(0, 2, n)
    return pd.DataFrame({"x": np.arange(n, dtype=float), "y": y}), y


def _classification(cand_wrong: np.ndarray, champ_wrong: np.ndarray, **cfg: Any
                    ) -> GateResult:
    frame, y = _labels()
    ctx = make_ctx(fixed_model(flip(y, cand_wrong)), frame,
                   champion=fixed_model(flip(y, champ_wrong)), champion_version="1.4.0")
    return champion.run(ctx, champion.Config.model_validate(cfg))


def test_no_champion_is_a_skip() -> None:
    frame, y = _labels()
    result = champion.run(make_ctx(fixed_model(y), frame), champion.Config())
    assert result.passed and result.skipped
    assert result.reason == "No production version of churn yet: nothing to compare against."


def _better() -> GateResult:
    # champion wrong on rows 0..119, candidate on 100..179: both wrong on 100..119,
    # b = 60 (rows 120..179: only the champion right), c = 100 (rows 0..99)
    return _classification(np.arange(100, 180), np.arange(0, 120))


def _few() -> GateResult:
    # candidate wrong on 0..14, champion on 5..11: b = 8 (only champion right), c = 0
    return _classification(np.arange(0, 15), np.arange(5, 12))


def test_better_candidate_passes() -> None:
    result = _better()
    d = result.details
    assert result.passed, result.reason
    assert (d["only_champion_right"], d["only_candidate_right"], d["n"]) == (60, 100, N)
    assert result.actual["accuracy"] == pytest.approx(0.92)
    assert result.actual["champion_accuracy"] == pytest.approx(0.88)
    assert result.actual["difference"] == pytest.approx(0.04)
    assert d["test"] == "McNemar (chi2)"
    assert d["p_value"] == pytest.approx(stats.chi2.sf((abs(60 - 100) - 1) ** 2 / 160, 1))
    assert "non-inferior" in result.reason and "vs production 1.4.0" in result.reason


def test_mcnemar_chi2_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    d = _better().details
    ref = sm.mcnemar([[820, 60], [100, 20]], exact=False, correction=True)
    assert d["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)
    assert d["statistic"] == pytest.approx(ref.statistic)


def test_few_discordant_pairs_use_the_exact_test() -> None:
    d = _few().details
    assert (d["only_champion_right"], d["only_candidate_right"]) == (8, 0)
    assert d["test"] == "McNemar (exact)"
    assert d["p_value"] == pytest.approx(stats.binomtest(0, 8, 0.5).pvalue, rel=1e-12)


def test_mcnemar_exact_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    ref = sm.mcnemar([[N - 15, 8], [0, 7]], exact=True)
    assert _few().details["p_value"] == pytest.approx(ref.pvalue, rel=1e-12)


def test_worse_candidate_fails_for_the_margin() -> None:
    result = _classification(np.arange(0, 150), np.arange(0, 100), margin=0.01)
    assert not result.passed
    assert result.actual["difference"] == pytest.approx(-0.05)
    assert result.actual["lower_bound"] < -0.01
    assert "may be worse by more than the margin" in result.reason
    assert "lower bound of the difference" in result.reason
    assert result.threshold == {"min_lower_bound": -0.01, "alpha": 0.05}


def test_lower_bound_is_the_one_sided_agresti_min_bound() -> None:
    result = _classification(np.arange(0, 110), np.arange(50, 150), alpha=0.05)
    b, c = result.details["only_champion_right"], result.details["only_candidate_right"]
    n_adj, b_adj, c_adj = N + 2.0, b + 0.5, c + 0.5
    diff = (c_adj - b_adj) / n_adj
    se = np.sqrt((b_adj + c_adj) - (c_adj - b_adj) ** 2 / n_adj) / n_adj
    assert result.actual["lower_bound"] == pytest.approx(diff - stats.norm.ppf(0.95) * se)
    assert result.details["ci_level"] == pytest.approx(0.90)


def test_identical_models_are_non_inferior() -> None:
    result = _classification(np.arange(0, 100), np.arange(0, 100))
    assert result.passed
    assert result.actual["difference"] == 0
    assert result.details["p_value"] == 1.0


def _regression(cand_scale: float, champ_scale: float, n: int = 400, **cfg: Any
                ) -> tuple[GateResult, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    y = rng.normal(size=n) * 10
    cand = y + rng.normal(scale=cand_scale, size=n)
    champ = y + rng.normal(scale=champ_scale, size=n)
    frame = pd.DataFrame({"x": np.zeros(n), "y": y})
    ctx = make_ctx(fixed_model(cand), frame, task="regression", champion=fixed_model(champ),
                   champion_version="3.1.0", seed=42)
    return champion.run(ctx, champion.Config.model_validate(cfg)), (cand - y) ** 2, (champ - y) ** 2


def test_regression_bootstrap_equals_a_direct_numpy_bootstrap() -> None:
    result, loss_cand, loss_champ = _regression(1.0, 1.0, n_boot=1000, alpha=0.05)
    d = loss_cand - loss_champ
    rng = np.random.default_rng(42)
    means = d[rng.integers(0, d.size, size=(1000, d.size))].mean(axis=1)
    low, high = np.quantile(means, [0.05, 0.95])
    assert result.details["ci_low"] == pytest.approx(low, rel=1e-12)
    assert result.details["ci_high"] == pytest.approx(high, rel=1e-12)
    assert result.actual["upper_bound"] == pytest.approx(high, rel=1e-12)
    assert result.details["champion"] == pytest.approx(loss_champ.mean())
    ref = stats.bootstrap((loss_cand, loss_champ), lambda a, b, axis: np.mean(a - b, axis=axis),
                          paired=True, confidence_level=0.90, method="percentile",
                          n_resamples=4000, rng=np.random.default_rng(0))
    width = high - low
    assert ref.confidence_interval.low == pytest.approx(low, abs=0.1 * width)
    assert ref.confidence_interval.high == pytest.approx(high, abs=0.1 * width)


def test_regression_worse_candidate_fails_relative_margin() -> None:
    result, _, loss_champ = _regression(1.3, 1.0, relative_margin=0.05)
    assert not result.passed
    assert result.threshold["max_upper_bound"] == pytest.approx(0.05 * loss_champ.mean())
    assert "may be worse by more than the margin" in result.reason
    assert "MSE" in result.reason


def test_regression_better_candidate_passes_absolute_loss() -> None:
    result, _, _ = _regression(0.7, 1.0, loss="absolute")
    assert result.passed, result.reason
    assert result.details["metric"] == "mae"
    assert result.actual["upper_bound"] < 0
    assert "non-inferior" in result.reason


def test_champion_needs_labels() -> None:
    frame, y = _labels()
    ctx = make_ctx(fixed_model(y), frame, label=None, features=["x"], champion=fixed_model(y))
    with pytest.raises(CIError, match="label"):
        champion.run(ctx, champion.Config())
