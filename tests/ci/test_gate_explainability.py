"""Explainability gate: sklearn-equal permutation importance, the JSON table, stability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression

from mlops.ci.gates import explainability
from mlops.flavors.base import LoadedModel
from mlops.flavors.estimator import wrap_estimator
from tests.ci.gate_data import make_ctx, rule_model


def _frame(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(8)
    X = pd.DataFrame({"signal": rng.normal(size=n), "weak": rng.normal(size=n),
                      "noise": rng.normal(size=n)})
    return X.assign(y=((X["signal"] + 0.3 * X["weak"]) > 0).astype(int))


def test_importance_equals_sklearn_on_the_same_estimator() -> None:
    frame = _frame()
    X = frame.drop(columns="y")
    est = LogisticRegression().fit(X, frame["y"])
    result = explainability.run(make_ctx(wrap_estimator(est), frame, seed=3),
                                explainability.Config(n_repeats=4))
    ref = permutation_importance(est, X, frame["y"], scoring="accuracy", n_repeats=4,
                                 random_state=3)
    table = {r["feature"]: r for r in result.details["importances"]}
    for i, col in enumerate(X.columns):
        assert table[col]["importances"] == pytest.approx(list(ref.importances[i]))
        assert table[col]["importance_mean"] == pytest.approx(ref.importances_mean[i])
    assert [r["feature"] for r in result.details["importances"]][:2] == ["signal", "weak"]
    assert result.details["baseline_score"] == pytest.approx(est.score(X, frame["y"]))


def test_reports_and_writes_the_table(tmp_path: Path) -> None:
    frame = _frame()
    model = rule_model(lambda x: (x["signal"] > 0).astype(int).to_numpy(),
                       ["signal", "weak", "noise"])
    ctx = make_ctx(model, frame, output_dir=tmp_path / "out")
    result = explainability.run(ctx, explainability.Config())
    assert result.passed and not result.skipped
    assert result.threshold == {}
    assert result.actual["top_features"][0] == "signal"
    assert result.actual["stability"] == 1.0
    assert "reported, not judged" in result.reason and "top features signal" in result.reason
    path = tmp_path / "out" / "permutation_importance.json"
    assert result.details["path"] == str(path)
    saved = json.loads(path.read_text())
    assert saved["model"] == "churn" and saved["scoring"] == "accuracy"
    assert saved["importances"][0]["feature"] == "signal"
    noise = next(r for r in saved["importances"] if r["feature"] == "noise")
    assert noise["importances"] == [0.0] * 5


def test_rows_are_subsampled() -> None:
    frame = _frame(3000)
    model = rule_model(lambda x: (x["signal"] > 0).astype(int).to_numpy(),
                       ["signal", "weak", "noise"])
    result = explainability.run(make_ctx(model, frame),
                                explainability.Config(max_rows=400, n_repeats=2))
    assert result.details["n_rows"] == 400 and result.details["n_rows_total"] == 3000
    assert "400 rows" in result.reason


def _flipping_model(y: np.ndarray, n_repeats: int) -> LoadedModel:
    """Predicts y exactly, except on the permuted calls: repeat 0 hurts 'a' and repeat 1
    hurts 'b', so the two halves of the repeats rank a and b in opposite order."""
    calls = {"n": 0}
    hurt = {1: 0.5, 2 + n_repeats: 0.5}  # call 0 baseline, 1 = (a, rep 0), 2+n = (b, rep 1)

    def predict(_x: Any) -> np.ndarray:
        k = calls["n"]
        calls["n"] += 1
        out = y.copy()
        m = int(hurt.get(k, 0.0) * y.size)
        out[:m] = 1 - out[:m]
        return out

    return LoadedModel(flavor="rule", raw=None, predict_fn=predict)


def test_unstable_ranking_fails_min_stability() -> None:
    frame = _frame(200)[["signal", "weak", "y"]].rename(columns={"signal": "a", "weak": "b"})
    model = _flipping_model(frame["y"].to_numpy(), 2)
    result = explainability.run(make_ctx(model, frame),
                                explainability.Config(n_repeats=2, min_stability=0.5))
    assert not result.passed
    assert result.actual["stability"] == pytest.approx(-1.0)
    assert "stability of the top 2 features -1.000 < 0.5" in result.reason
    assert result.threshold == {"min_stability": 0.5}


def test_stable_ranking_passes_min_stability() -> None:
    frame = _frame()
    model = rule_model(lambda x: ((x["signal"] + 0.3 * x["weak"]) > 0).astype(int).to_numpy(),
                       ["signal", "weak", "noise"])
    result = explainability.run(make_ctx(model, frame),
                                explainability.Config(min_stability=0.9, n_repeats=6))
    assert result.passed and result.actual["stability"] == 1.0
    assert ">= 0.9" in result.reason


def test_split_half_stability_definition() -> None:
    imp = np.array([[3.0, 3.1, 2.9, 3.0], [2.0, 1.0, 0.5, 0.4], [1.0, 2.0, 0.2, 0.1]])
    # halves: means over repeats 0-1 = [3.05, 1.5, 1.5], over 2-3 = [2.95, 0.45, 0.15]
    assert explainability.split_half_stability(imp, 3) == pytest.approx(np.sqrt(3) / 2)
    assert explainability.split_half_stability(imp, 1) == 1.0
    swapped = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert explainability.split_half_stability(swapped, 10) == pytest.approx(-1.0)
