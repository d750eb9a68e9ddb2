"""Models that only check their column names get arrays: the same answers, no frame cost."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import TransformedTargetRegressor, make_column_transformer
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from mlops.flavors import wrap_estimator
from mlops.flavors.estimator import accepts_array

COLS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def xy() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=COLS)
    return x, (x["a"] + 0.3 * x["c"] > 0).astype(int)


def _fit(model: Any, xy: tuple[pd.DataFrame, pd.Series]) -> Any:
    return model.fit(*xy)


@pytest.mark.parametrize("make", [
    lambda: LogisticRegression(),
    lambda: make_pipeline(StandardScaler(), LogisticRegression()),
    lambda: VotingClassifier([("lr", LogisticRegression()),
                              ("rf", RandomForestClassifier(n_estimators=5, random_state=0))],
                             voting="soft"),
], ids=["estimator", "pipeline", "voting"])
def test_name_checking_models_take_arrays_with_the_same_answers(
        make: Any, xy: tuple[pd.DataFrame, pd.Series]) -> None:
    model = wrap_estimator(_fit(make(), xy))
    x = xy[0].head(20)
    assert model.wants_frame and model.array_ok
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        np.testing.assert_array_equal(model.predict(x.to_numpy()), model.predict(x))
        np.testing.assert_allclose(model.predict_proba(x.to_numpy()), model.predict_proba(x))


@pytest.mark.parametrize("make", [
    lambda: make_pipeline(make_column_transformer((StandardScaler(), ["a", "c"])),
                          LogisticRegression()),
    lambda: make_pipeline(FunctionTransformer(lambda f: f[["a"]]), LogisticRegression()),
    lambda: make_pipeline(StandardScaler().set_output(transform="pandas"),
                          LogisticRegression()),
], ids=["column-transformer", "function-transformer", "pandas-output"])
def test_models_that_read_columns_by_name_keep_the_frame(
        make: Any, xy: tuple[pd.DataFrame, pd.Series]) -> None:
    model = wrap_estimator(_fit(make(), xy))
    assert model.wants_frame and not model.array_ok
    # given an array anyway, the model still gets a frame with its names
    x = xy[0].head(5)
    np.testing.assert_array_equal(model.predict(x.to_numpy()), model.predict(x))


def test_foreign_and_target_transforming_estimators_keep_the_frame(
        xy: tuple[pd.DataFrame, pd.Series]) -> None:
    class Foreign:
        def get_params(self, deep: bool = False) -> dict[str, Any]:
            return {}

        def predict(self, x: Any) -> Any:
            return x

    assert not accepts_array(Foreign())
    assert not accepts_array(make_pipeline(StandardScaler(), Foreign()))
    ttr = TransformedTargetRegressor(LinearRegression(), func=np.log1p, inverse_func=np.expm1)
    assert not accepts_array(ttr)


def test_a_model_fitted_without_names_needs_no_frame_at_all(
        xy: tuple[pd.DataFrame, pd.Series]) -> None:
    x, y = xy
    model = wrap_estimator(LogisticRegression().fit(x.to_numpy(), y))
    assert not model.wants_frame and not model.array_ok
