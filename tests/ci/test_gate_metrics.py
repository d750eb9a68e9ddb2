"""Metrics gate: thresholds, sklearn-equal numbers, the seed's f1_score alias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlops.ci.gates import metrics
from mlops.errors import CIError
from mlops.flavors.estimator import wrap_estimator
from tests.ci.gate_data import fixed_model, flip, make_ctx

SEED_THRESHOLDS = {"accuracy": 0.85, "precision": 0.82, "recall": 0.80, "f1_score": 0.81}


def _binary(n: int = 1000, wrong: int = 188) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame({"x": rng.normal(size=n), "y": y})
    return frame, flip(y, np.arange(wrong))


def test_fails_with_the_measured_number_in_the_reason() -> None:
    frame, pred = _binary(wrong=188)
    result = metrics.run(make_ctx(fixed_model(pred), frame), metrics.Config(accuracy=0.85))
    assert not result.passed
    assert result.actual["accuracy"] == pytest.approx(0.812)
    assert result.threshold == {"accuracy": 0.85}
    assert "accuracy 0.812 < 0.85" in result.reason
    assert result.duration_s > 0


def test_passes_and_matches_sklearn() -> None:
    frame, pred = _binary(wrong=50)
    config = metrics.Config(accuracy=0.9, precision=0.9, recall=0.9, f1=0.9)
    result = metrics.run(make_ctx(fixed_model(pred), frame), config)
    y = frame["y"].to_numpy()
    assert result.passed, result.reason
    assert result.actual["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert result.actual["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert result.actual["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert result.actual["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert result.reason.startswith("All 4 metric thresholds met")
    assert "roc_auc" in result.details["unavailable"]


def test_seed_f1_score_alias() -> None:
    config = metrics.Config.from_mapping(SEED_THRESHOLDS)
    assert config.f1 == 0.81
    assert config.thresholds() == {"accuracy": 0.85, "precision": 0.82, "recall": 0.80,
                                   "f1": 0.81}
    assert metrics.Config.model_validate({"f1_score": 0.7}).f1 == 0.7
    frame, pred = _binary(wrong=300)
    result = metrics.run(make_ctx(fixed_model(pred), frame), config)
    assert not result.passed
    assert "f1 " in result.reason and "4 of 4 metric thresholds failed" in result.reason


def test_config_rejects_typos_and_conflicting_alias() -> None:
    with pytest.raises(CIError, match="f1_score"):
        metrics.Config.from_mapping({"f1": 0.8, "f1_score": 0.7})
    with pytest.raises(CIError, match="specificity"):
        metrics.Config.from_mapping({"specificity": 0.8})


def test_roc_auc_without_probabilities_fails_clearly() -> None:
    frame, pred = _binary(wrong=10)
    result = metrics.run(make_ctx(fixed_model(pred), frame), metrics.Config(roc_auc=0.7))
    assert not result.passed
    assert "roc_auc could not be computed (the model has no predict_proba)" in result.reason


def test_roc_auc_and_log_loss_from_probabilities() -> None:
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(size=400)})
    y = (X["a"] + rng.normal(scale=0.8, size=400) > 0).astype(int)
    est = LogisticRegression().fit(X, y)
    frame = X.assign(y=y)
    result = metrics.run(make_ctx(wrap_estimator(est), frame),
                         metrics.Config(roc_auc=0.99, log_loss=1.0))
    proba = est.predict_proba(X)
    assert result.actual["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert result.actual["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert not result.passed
    assert "roc_auc" in result.reason and "< 0.99" in result.reason
    assert "log_loss" not in result.reason.split("failed:")[1]


def test_string_labels_positive_class_and_multiclass() -> None:
    frame, pred = _binary(wrong=100)
    names = np.array(["no", "yes"])
    frame = frame.assign(y=names[frame["y"]])
    result = metrics.run(make_ctx(fixed_model(names[pred]), frame), metrics.Config(precision=0))
    y = frame["y"].to_numpy()
    assert result.details["pos_label"] == "yes"
    assert result.actual["precision"] == pytest.approx(
        skm.precision_score(y, names[pred], pos_label="yes"))
    result = metrics.run(make_ctx(fixed_model(names[pred]), frame),
                         metrics.Config(precision=0, pos_label="no"))
    assert result.actual["precision"] == pytest.approx(
        skm.precision_score(y, names[pred], pos_label="no"))
    y3 = np.arange(300) % 3
    p3 = np.where(np.arange(300) % 7 == 0, (y3 + 1) % 3, y3)
    frame3 = pd.DataFrame({"x": np.zeros(300), "y": y3})
    result = metrics.run(make_ctx(fixed_model(p3), frame3), metrics.Config(f1=0.5))
    assert result.details["average"] == "macro"
    assert result.actual["f1"] == pytest.approx(skm.f1_score(y3, p3, average="macro"))
    with pytest.raises(CIError, match="binary"):
        metrics.run(make_ctx(fixed_model(p3), frame3), metrics.Config(average="binary"))


def test_regression_thresholds() -> None:
    rng = np.random.default_rng(5)
    X = pd.DataFrame({"a": rng.normal(size=300)})
    y = 3 * X["a"] + rng.normal(scale=0.5, size=300)
    est = LinearRegression().fit(X, y)
    ctx = make_ctx(wrap_estimator(est), X.assign(y=y), task="regression")
    pred = est.predict(X)
    result = metrics.run(ctx, metrics.Config(mae=0.3, rmse=1.0, r2=0.9))
    assert result.actual["mae"] == pytest.approx(skm.mean_absolute_error(y, pred))
    assert result.actual["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert result.actual["r2"] == pytest.approx(skm.r2_score(y, pred))
    assert not result.passed
    assert "mae" in result.reason and "> 0.3" in result.reason
    assert "rmse" not in result.reason.split("failed:")[1]
    with pytest.raises(CIError, match="accuracy"):
        metrics.run(ctx, metrics.Config(accuracy=0.9))


def test_no_labels_names_the_fix() -> None:
    frame, pred = _binary()
    with pytest.raises(CIError) as info:
        metrics.run(make_ctx(fixed_model(pred), frame, label=None, features=["x"]),
                    metrics.Config(accuracy=0.8))
    assert "--label" in (info.value.fix or "")


def test_no_threshold_reports_and_skips() -> None:
    frame, pred = _binary(wrong=100)
    result = metrics.run(make_ctx(fixed_model(pred), frame), metrics.Config())
    assert result.passed and result.skipped
    assert "accuracy 0.9" in result.reason
    assert result["actual_value"]["accuracy"] == pytest.approx(0.9)
