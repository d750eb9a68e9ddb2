"""Slices gate: per-value, binned and query slices; the failing slice is named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.ci.gates import slices
from mlops.errors import CIError
from tests.ci.gate_data import fixed_model, flip, make_ctx


def _data() -> tuple[pd.DataFrame, np.ndarray]:
    """600 rows: region a is rows 0..199 (15 wrong, all seniors), b 200..399 (perfect),
    c 400..589 (76 of 190 wrong), tiny d 590..599; age >= 60 is rows 0..49 (35 of 50 right)."""
    n = 600
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, n)
    region = np.array(["a"] * 200 + ["b"] * 200 + ["c"] * 190 + ["d"] * 10)
    age = np.where(np.arange(n) < 50, 70, 30) + rng.integers(0, 5, n)
    frame = pd.DataFrame({"region": region, "age": age, "income": rng.normal(size=n), "y": y})
    wrong = np.concatenate([np.arange(0, 15), np.arange(400, 476)])  # c: 76/190 wrong
    return frame, flip(y, wrong)


def test_failing_slice_is_named_with_its_number() -> None:
    frame, pred = _data()
    result = slices.run(make_ctx(fixed_model(pred), frame),
                        slices.Config(slices=["region"], min_metric=0.8))
    assert not result.passed
    assert "1 of 3 slices fail: region=c (accuracy 0.6 < 0.8, n=190)" in result.reason
    assert "region=d (n=10)" in result.reason and "too small" in result.reason
    table = {r["slice"]: r for r in result.details["slices"]}
    assert table["region=a"]["metric"] == pytest.approx(185 / 200)
    assert table["region=b"]["status"] == "ok"
    assert table["region=c"]["status"] == "fail"
    assert table["region=d"] == {"slice": "region=d", "n": 10, "metric": None, "gap": None,
                                 "status": "too small"}
    assert result.actual["worst_slice"] == "region=c"
    assert result.actual["worst_metric"] == pytest.approx(0.6)
    assert result.threshold == {"min_metric": 0.8}


def test_passes_when_every_judged_slice_is_good_enough() -> None:
    frame, pred = _data()
    result = slices.run(make_ctx(fixed_model(pred), frame),
                        slices.Config(slices=["region"], min_metric=0.5))
    assert result.passed and not result.skipped
    assert result.reason.startswith("All 3 judged slices meet the thresholds; worst slice "
                                    "region=c accuracy 0.6 (n=190)")


def test_query_slice_and_gap() -> None:
    frame, pred = _data()
    config = slices.Config.model_validate(
        {"slices": [{"name": "seniors", "query": "age >= 60"}], "max_gap": 0.05})
    result = slices.run(make_ctx(fixed_model(pred), frame), config)
    overall = 1 - 91 / 600
    assert result.details["overall"] == pytest.approx(overall)
    (row,) = result.details["slices"]
    assert row["slice"] == "seniors" and row["n"] == 50
    assert row["metric"] == pytest.approx(0.7)
    assert row["gap"] == pytest.approx(overall - 0.7)
    assert not result.passed
    assert "seniors (gap to overall" in result.reason and "> 0.05" in result.reason


def test_bad_query_names_the_slice() -> None:
    frame, pred = _data()
    config = slices.Config(slices=[slices.QuerySlice(name="broken", query="agee >= 60")],
                           min_metric=0.5)
    with pytest.raises(CIError, match="Slice 'broken'") as info:
        slices.run(make_ctx(fixed_model(pred), frame), config)
    assert info.value.context["slice"] == "broken"
    with pytest.raises(CIError, match="'nope'"):
        slices.run(make_ctx(fixed_model(pred), frame), slices.Config(slices=["nope"]))


def test_numeric_column_is_cut_into_quantile_bins() -> None:
    frame, pred = _data()
    result = slices.run(make_ctx(fixed_model(pred), frame),
                        slices.Config(slices=["income"], bins=4, min_metric=0.5))
    rows = result.details["slices"]
    assert len(rows) == 4
    assert all(r["slice"].startswith("income in (") for r in rows)
    assert sum(r["n"] for r in rows) == 600
    assert {r["n"] for r in rows} == {150}


def test_regression_mae_and_direction_check() -> None:
    n = 200
    group = np.array(["x"] * 100 + ["z"] * 100)
    y = np.linspace(0, 10, n)
    pred = y + np.where(group == "z", 2.0, 0.1)
    frame = pd.DataFrame({"group": group, "f": np.zeros(n), "y": y})
    ctx = make_ctx(fixed_model(pred), frame, task="regression", features=["f"])
    result = slices.run(ctx, slices.Config(slices=["group"], max_metric=1.0))
    assert not result.passed
    assert "group=z (mae 2 > 1, n=100)" in result.reason
    assert result.details["metric"] == "mae"
    with pytest.raises(CIError, match="max_metric instead"):
        slices.run(ctx, slices.Config(slices=["group"], min_metric=1.0))


def test_missing_values_form_their_own_slice() -> None:
    frame, pred = _data()
    frame.loc[:39, "region"] = None
    result = slices.run(make_ctx(fixed_model(pred), frame),
                        slices.Config(slices=["region"], min_metric=0.5))
    names = [r["slice"] for r in result.details["slices"]]
    assert names[-1] == "region is missing"
    assert result.details["slices"][-1]["n"] == 40


def test_nothing_to_judge_is_a_skip() -> None:
    frame, pred = _data()
    result = slices.run(make_ctx(fixed_model(pred), frame), slices.Config())
    assert result.passed and result.skipped and "no slice is configured" in result.reason
    result = slices.run(make_ctx(fixed_model(pred), frame),
                        slices.Config(slices=["region"], min_size=1000, min_metric=0.9))
    assert result.passed and result.skipped and "fewer than 1000 rows" in result.reason
