"""Reference profiles: column kinds, moments, the capped sorted sample, bins, round trip."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from mlops.errors import StatsError
from mlops.stats.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
    category_label,
)


def _frame(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    x[::10] = np.nan
    return pd.DataFrame({
        "x": x,
        "count": rng.integers(0, 50, n),
        "flag": rng.random(n) < 0.3,
        "city": rng.choice(["paris", "lyon", "nice"], n, p=[0.5, 0.3, 0.2]),
        "tier": pd.Categorical(rng.choice(["gold", "silver"], n)),
        "nullable": pd.array([None if r < 0.1 else int(v) for r, v in
                              zip(rng.random(n), rng.integers(0, 3, n), strict=True)],
                             dtype="Int64"),
    })


def test_column_kinds_moments_and_missing() -> None:
    df = _frame()
    p = build_profile(df)
    assert p.n_rows == len(df)
    kinds = {name: col.kind for name, col in p.columns.items()}
    assert kinds == {"x": "numeric", "count": "numeric", "flag": "categorical",
                     "city": "categorical", "tier": "categorical", "nullable": "numeric"}
    x = p.columns["x"]
    assert isinstance(x, NumericProfile)
    values = df["x"].dropna().to_numpy()
    assert (x.n, x.n_missing, x.missing_rate) == (1800, 200, 0.1)
    assert x.mean == pytest.approx(values.mean(), rel=1e-12)
    assert x.std == pytest.approx(values.std(ddof=1), rel=1e-12)
    assert (x.min, x.max) == (values.min(), values.max())
    np.testing.assert_array_equal(x.sample, np.sort(values))  # below the cap: every value
    flag = p.columns["flag"]
    assert isinstance(flag, CategoricalProfile)
    assert flag.categories == ("False", "True")
    assert flag.counts.tolist() == [int((~df["flag"]).sum()), int(df["flag"].sum())]
    city = p.columns["city"]
    assert isinstance(city, CategoricalProfile)
    assert city.categories[0] == "paris" and city.counts.sum() == len(df)  # most frequent first
    assert p.columns["nullable"].n_missing == int(df["nullable"].isna().sum())


def test_sample_is_capped_seeded_uniform_and_sorted() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=50_000)
    p = build_profile({"v": values}, sample_cap=5000, seed=7)
    col = p.columns["v"]
    assert isinstance(col, NumericProfile)
    assert col.sample.size == 5000 and col.n == 50_000
    assert np.all(np.diff(col.sample) >= 0)
    assert np.isin(col.sample, values).all()
    assert np.unique(col.sample).size == 5000  # without replacement
    assert col.mean == pytest.approx(values.mean(), rel=1e-12)  # moments use every value
    again = build_profile({"v": values}, sample_cap=5000, seed=7).columns["v"]
    other = build_profile({"v": values}, sample_cap=5000, seed=8).columns["v"]
    assert isinstance(again, NumericProfile) and isinstance(other, NumericProfile)
    np.testing.assert_array_equal(col.sample, again.sample)
    assert not np.array_equal(col.sample, other.sample)
    # uniform: the subsample's deciles sit where the full data's do
    np.testing.assert_allclose(np.quantile(col.sample, [0.1, 0.5, 0.9]),
                               np.quantile(values, [0.1, 0.5, 0.9]), atol=0.05)
    assert not col.sample.flags.writeable


def test_quantile_bins() -> None:
    values = np.arange(1, 1001, dtype=float)  # 1..1000: deciles 100, 200, ..., 900
    col = build_profile({"v": values}).columns["v"]
    assert isinstance(col, NumericProfile)
    np.testing.assert_array_equal(col.bin_edges, [-np.inf, *range(100, 1000, 100), np.inf])
    np.testing.assert_allclose(col.bin_fractions, [0.1] * 10)
    # binary 0/1 (70% zeros): one right-closed bin per value
    binary = build_profile({"b": np.repeat([0.0, 1.0], [700, 300])}).columns["b"]
    assert isinstance(binary, NumericProfile)
    np.testing.assert_array_equal(binary.bin_edges, [-np.inf, 0.0, np.inf])
    np.testing.assert_allclose(binary.bin_fractions, [0.7, 0.3])
    const = build_profile({"c": np.full(10, 3.0)}).columns["c"]
    assert isinstance(const, NumericProfile)
    np.testing.assert_array_equal(const.bin_edges, [-np.inf, np.inf])
    assert const.bin_fractions.tolist() == [1.0] and const.std == 0.0
    five = build_profile({"v": values}, n_bins=5).columns["v"]
    assert isinstance(five, NumericProfile) and five.bin_fractions.size == 5


def test_categorical_override_and_labels() -> None:
    codes = np.array([1.0, 2.0, np.nan, 1.0])  # integer codes made float by a missing value
    p = build_profile({"code": codes, "n": [1, 2, 3, 4]}, categorical=["code"])
    col = p.columns["code"]
    assert isinstance(col, CategoricalProfile)
    assert col.categories == ("1", "2") and col.counts.tolist() == [2, 1]
    assert col.n_missing == 1 and col.missing_rate == 0.25
    assert p.columns["n"].kind == "numeric"
    assert [category_label(v) for v in (True, np.bool_(False), 3.0, 2.5, "a", 7)] == \
        ["True", "False", "3", "2.5", "a", "7"]
    lists = build_profile({"s": ["a", None, "b", "a"], "f": [1.5, None, 2.5, 3.5]})
    assert lists.columns["s"].kind == "categorical" and lists.columns["s"].n_missing == 1
    assert lists.columns["f"].kind == "numeric" and lists.columns["f"].n_missing == 1


def test_all_missing_column_is_kept_with_n_zero() -> None:
    p = build_profile({"gone": np.full(5, np.nan), "ok": np.arange(5.0),
                       "none": [None] * 5})
    gone = p.columns["gone"]
    assert isinstance(gone, NumericProfile)
    assert gone.n == 0 and gone.missing_rate == 1.0 and np.isnan(gone.mean)
    assert gone.sample.size == 0 and gone.bin_fractions.size == 0
    assert p.columns["none"].n == 0


def test_round_trip_is_exact_deterministic_and_pickle_free() -> None:
    df = _frame(3000)
    df["gone"] = np.nan
    p = build_profile(df, sample_cap=1000, outputs=np.random.default_rng(2).random(3000))
    blob = p.to_bytes()
    back = ReferenceProfile.from_bytes(blob)
    assert back == p
    assert back.outputs["prediction"] == p.outputs["prediction"]
    assert back.to_bytes() == blob  # no clock in the bytes: content addressing dedupes
    assert build_profile(df, sample_cap=1000,
                         outputs=np.random.default_rng(2).random(3000)).to_bytes() == blob
    for name, col in p.columns.items():
        other = back.columns[name]
        if isinstance(col, NumericProfile):
            assert isinstance(other, NumericProfile)
            np.testing.assert_array_equal(col.sample, other.sample)
            assert other.sample.dtype == np.float64
    assert back.outputs_profile().columns.keys() == {"prediction"}
    assert (back.sample_cap, back.n_bins, back.seed) == (1000, 10, 0)


def test_from_bytes_refuses_garbage_and_pickles() -> None:
    with pytest.raises(StatsError, match="not a readable reference profile"):
        ReferenceProfile.from_bytes(b"not a zip")
    with pytest.raises(StatsError, match="not a readable reference profile"):
        ReferenceProfile.from_bytes(pickle.dumps({"columns": {}}))
    import io
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(StatsError, match="format 'other'"):
        ReferenceProfile.from_bytes(buf.getvalue())
    buf = io.BytesIO()
    np.savez(buf, header=np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(StatsError):
        ReferenceProfile.from_bytes(buf.getvalue())


def test_bad_input_errors_name_the_column() -> None:
    with pytest.raises(StatsError, match="'x' holds 1 infinite") as info:
        build_profile({"x": [1.0, np.inf, 2.0]})
    assert info.value.fix and info.value.context["column"] == "x"
    with pytest.raises(StatsError, match="empty"):
        build_profile(pd.DataFrame())
    with pytest.raises(StatsError, match="empty"):
        build_profile(pd.DataFrame({"a": pd.Series([], dtype=float)}))
    with pytest.raises(StatsError, match="dtype datetime64"):
        build_profile(pd.DataFrame({"t": pd.date_range("2024-01-01", periods=3)}))
    with pytest.raises(StatsError, match="different lengths"):
        build_profile({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(StatsError, match="not columns"):
        build_profile({"a": [1, 2]}, categorical=["b"])
    with pytest.raises(StatsError, match="sample_cap"):
        build_profile({"a": [1, 2]}, sample_cap=0)
    with pytest.raises(StatsError, match="single string"):
        build_profile({"a": [1, 2]}, categorical="a")
    with pytest.raises(StatsError, match="DataFrame or a mapping"):
        build_profile(np.zeros((3, 2)))  # type: ignore[arg-type]
    with pytest.raises(StatsError, match="duplicate"):
        build_profile(pd.DataFrame([[1, 2]], columns=["a", "a"]))
