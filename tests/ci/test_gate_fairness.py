"""Fairness gate: numbers equal fairlearn's, failing features are named, skips say why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    selection_rate,
)

from mlops.ci.gates import fairness
from mlops.errors import CIError
from tests.ci.gate_data import fixed_model, make_ctx


def _data(biased: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """800 rows, sex M/F, region N/S. Biased: women predicted positive far less often."""
    rng = np.random.default_rng(4)
    n = 800
    sex = np.where(np.arange(n) % 2 == 0, "M", "F")
    region = rng.choice(["N", "S"], n)
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.9, y, 1 - y)
    if biased:
        drop = (sex == "F") & (pred == 1) & (rng.random(n) < 0.5)
        pred = np.where(drop, 0, pred)
    frame = pd.DataFrame({"sex": sex, "region": region, "x": rng.normal(size=n), "y": y})
    return frame, pred


def test_biased_model_fails_on_the_right_feature_with_fairlearn_numbers() -> None:
    frame, pred = _data(biased=True)
    ctx = make_ctx(fixed_model(pred), frame, features=["x"], sensitive=["sex", "region"])
    result = fairness.run(ctx, fairness.Config())
    y = frame["y"].to_numpy()
    dp = demographic_parity_difference(y, pred, sensitive_features=frame["sex"])
    eo = equalized_odds_difference(y, pred, sensitive_features=frame["sex"])
    assert dp > 0.1 and eo > 0.1
    assert result.actual["sex"]["demographic_parity_difference"] == pytest.approx(dp)
    assert result.actual["sex"]["equalized_odds_difference"] == pytest.approx(eo)
    dp_region = demographic_parity_difference(y, pred, sensitive_features=frame["region"])
    assert result.actual["region"]["demographic_parity_difference"] == pytest.approx(dp_region)
    assert not result.passed
    assert f"sex: demographic parity difference {dp:.3g} > 0.1" in result.reason
    assert "sex: equalized odds difference" in result.reason
    assert "region:" not in result.reason.split("exceeded:")[1]
    rate = {g: selection_rate(y[frame["sex"] == g], pred[frame["sex"] == g]) for g in "MF"}
    assert f"(selection rate {rate['M']:.3f} for M vs {rate['F']:.3f} for F)" in result.reason
    assert "(TPR " in result.reason


def test_group_table_matches_metric_frame() -> None:
    frame, pred = _data(biased=True)
    ctx = make_ctx(fixed_model(pred), frame, features=["x"], sensitive=["sex"])
    groups = {r["group"]: r for r in fairness.run(ctx, fairness.Config())
              .details["features"]["sex"]["groups"]}
    ref = MetricFrame(metrics=selection_rate, y_true=frame["y"], y_pred=pred,
                      sensitive_features=frame["sex"]).by_group
    assert set(groups) == {"F", "M"}
    for g in ("F", "M"):
        assert groups[g]["selection_rate"] == pytest.approx(ref[g])
        assert groups[g]["count"] == 400
        assert set(groups[g]) == {"group", "count", "accuracy", "selection_rate", "tpr", "fpr"}


def test_fair_model_passes() -> None:
    frame, pred = _data(biased=False)
    ctx = make_ctx(fixed_model(pred), frame, features=["x"], sensitive=["sex"])
    result = fairness.run(ctx, fairness.Config(max_demographic_parity_difference=0.15,
                                               max_equalized_odds_difference=0.15))
    assert result.passed and not result.skipped, result.reason
    assert result.reason.startswith("All 1 sensitive feature(s) within the thresholds: sex: DP")


def test_string_labels_and_pos_label() -> None:
    frame, pred = _data(biased=True)
    names = np.array(["deny", "grant"])
    frame = frame.assign(y=names[frame["y"]])
    ctx = make_ctx(fixed_model(names[pred]), frame, features=["x"])
    cfg = fairness.Config(sensitive_features=["sex"], pos_label="deny")
    result = fairness.run(ctx, cfg)
    y_bin = (frame["y"] == "deny").astype(int)
    p_bin = (names[pred] == "deny").astype(int)
    assert result.details["pos_label"] == "deny"
    assert result.actual["sex"]["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_bin, p_bin, sensitive_features=frame["sex"]))
    default = fairness.run(ctx, fairness.Config(sensitive_features=["sex"]))
    assert default.details["pos_label"] == "grant"


def test_skips_say_why() -> None:
    frame, pred = _data(biased=True)
    result = fairness.run(make_ctx(fixed_model(pred), frame, features=["x"]), fairness.Config())
    assert result.passed and result.skipped
    assert "no sensitive feature" in result.reason
    reg = make_ctx(fixed_model(pred * 1.5), frame, features=["x"], task="regression",
                   sensitive=["sex"])
    result = fairness.run(reg, fairness.Config())
    assert result.skipped and "regression model" in result.reason
    multi = frame.assign(y=np.arange(len(frame)) % 3)
    result = fairness.run(make_ctx(fixed_model(multi["y"].to_numpy()), multi, features=["x"],
                                   sensitive=["sex"]), fairness.Config())
    assert result.skipped and "3 classes" in result.reason


def test_unknown_sensitive_column() -> None:
    frame, pred = _data(biased=False)
    ctx = make_ctx(fixed_model(pred), frame, features=["x"], sensitive=["gender"])
    with pytest.raises(CIError, match="'gender'"):
        fairness.run(ctx, fairness.Config())
