"""Tests for the data-quality gate: each check fails for its own reason on crafted data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.ci.gates import data_quality
from mlops.ci.gates.base import GateContext, GateResult
from mlops.flavors.estimator import wrap_estimator
from mlops.flavors.signature import Signature, infer_signature
from mlops.stats.profile import ReferenceProfile, build_profile


class Constant:
    def predict(self, X: Any) -> np.ndarray:
        return np.zeros(len(X))


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    return pd.DataFrame({"age": rng.integers(20, 61, n), "income": rng.normal(50, 10, n),
                         "city": rng.choice(["a", "b", "c"], n)})


@pytest.fixture(scope="module")
def sig(train: pd.DataFrame) -> Signature:
    return infer_signature(train)


@pytest.fixture(scope="module")
def ref(train: pd.DataFrame) -> ReferenceProfile:
    return build_profile(train)


@pytest.fixture
def test_df(train: pd.DataFrame) -> pd.DataFrame:
    return train.iloc[:100].reset_index(drop=True).copy()


def judge(X: pd.DataFrame, sig: Signature | None = None, ref: ReferenceProfile | None = None,
          **config: Any) -> GateResult:
    ctx = GateContext(model=wrap_estimator(Constant()), model_name="m",
                      artifact_path=Path("unused"), frame=X, X=X, y=None, task="regression",
                      signature=sig, reference=ref)
    return data_quality.run(ctx, data_quality.Config(**config))


def test_clean_data_passes(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    result = judge(test_df, sig, ref)
    assert result.passed, result.reason
    assert result.reason == "All 7 data checks passed on 100 rows x 3 columns."
    assert result.actual["max_out_of_range"] == 0 and result.actual["duplicate_rate"] == 0
    assert result.details["skipped"] == {}


def test_missing_column(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    result = judge(test_df.drop(columns=["city"]), sig, ref)
    assert not result.passed
    assert result.reason == ("1 data problem(s) in 100 rows: 1 missing column(s) ['city']; "
                             "skipped: unseen_categories.")
    assert result.actual["missing_columns"] == ["city"]
    assert result.details["skipped"]["unseen_categories"].startswith("no reference column")


def test_dtype_mismatch(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    df = test_df.astype({"income": object})
    df.loc[:2, "income"] = "n/a"
    df["city"] = 7
    result = judge(df, sig, ref)
    assert not result.passed
    assert ("dtype mismatch in 'income': numeric expected but 3 non-numeric value(s) found "
            "(e.g. 'n/a')") in result.reason
    assert "dtype mismatch in 'city': string expected but numeric dtype int64 found" \
        in result.reason
    assert set(result.actual["dtype_mismatches"]) == {"income", "city"}
    # numbers stored as strings still fit a numeric column
    assert judge(test_df.astype({"income": str}), sig, ref).passed


def test_out_of_range(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    df = test_df.copy()
    df.loc[:9, "age"] = 150
    result = judge(df, sig, ref)
    assert not result.passed
    assert "0.100 of 'age' outside the reference range > 0.01 [20, 150] vs [20, 60]" \
        in result.reason
    assert result.actual["max_out_of_range"] == pytest.approx(0.1)
    assert judge(df, sig, ref, max_out_of_range=0.2).passed


def test_unseen_categories(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    df = test_df.copy()
    df.loc[:4, "city"] = "zzz"
    result = judge(df, sig, ref)
    assert not result.passed
    assert "0.050 of 'city' unseen categories > 0.01 e.g. ['zzz']" in result.reason
    assert result.actual["max_unseen_categories"] == pytest.approx(0.05)


def test_duplicates(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    df = pd.concat([test_df, test_df.iloc[:20]], ignore_index=True)
    result = judge(df, sig, ref)
    assert not result.passed
    assert "duplicate row rate 0.167 (20 rows) > 0.05" in result.reason
    assert result.actual["duplicate_rate"] == pytest.approx(20 / 120)


def test_high_missing_rate(test_df: pd.DataFrame, sig: Signature, ref: ReferenceProfile) -> None:
    df = test_df.copy()
    df.loc[:19, "income"] = np.nan
    result = judge(df, sig, ref)
    assert not result.passed
    assert result.reason == ("1 data problem(s) in 100 rows: missing rate 0.200 in 'income' "
                             "> 0.05.")
    assert result.actual["max_missing_rate"] == pytest.approx(0.2)


def test_sparse_reference_column_is_judged_against_its_rate(train: pd.DataFrame) -> None:
    sparse = train.copy()
    sparse.loc[sparse.index[::3], "income"] = np.nan  # a third missing in the reference
    ref = build_profile(sparse)
    df = sparse.iloc[:99].reset_index(drop=True)
    result = judge(df, infer_signature(sparse), ref)
    assert result.passed, result.reason
    assert result.details["checks"]["missing_rate"]["limits"]["income"] == pytest.approx(
        ref.columns["income"].missing_rate + 0.05)


def test_several_failures_are_all_listed(test_df: pd.DataFrame, sig: Signature,
                                         ref: ReferenceProfile) -> None:
    df = test_df.drop(columns=["city"])
    df.loc[:19, "income"] = np.nan
    df.loc[20:29, "age"] = -5
    result = judge(df, sig, ref)
    assert result.reason.startswith("3 data problem(s) in 100 rows: 1 missing column(s) "
                                    "['city']; missing rate 0.200 in 'income' > 0.05; "
                                    "0.100 of 'age' outside the reference range")


def test_without_signature_and_reference(test_df: pd.DataFrame) -> None:
    result = judge(test_df)
    assert result.passed, result.reason
    assert result.details["skipped"] == {"schema": "no signature registered",
                                         "out_of_range": "no reference profile",
                                         "unseen_categories": "no reference profile"}
    assert result.reason.endswith("skipped: schema, out_of_range, unseen_categories.")
    assert result.actual["max_out_of_range"] is None
    df = pd.concat([test_df, test_df], ignore_index=True)
    dup = judge(df)
    assert not dup.passed and "duplicate row rate 0.500" in dup.reason


def test_empty_data_fails(sig: Signature) -> None:
    result = judge(pd.DataFrame({"age": [], "income": [], "city": []}), sig)
    assert not result.passed
    assert result.reason == "The test data is empty (0 rows x 3 columns)."


def test_extra_columns_warn_or_fail(test_df: pd.DataFrame, sig: Signature) -> None:
    df = test_df.assign(zip="x")
    result = judge(df, sig)
    assert result.passed
    assert result.warnings == ("1 column(s) not in the signature: ['zip']",)
    strict = judge(df, sig, fail_on_extra_columns=True)
    assert not strict.passed and "1 column(s) not in the signature: ['zip']" in strict.reason


def test_positional_signature(test_df: pd.DataFrame) -> None:
    arr = test_df[["age", "income"]].to_numpy(dtype=float)
    sig = infer_signature(arr)
    assert sig.positional
    assert judge(pd.DataFrame(arr), sig).passed
    result = judge(pd.DataFrame(arr[:, :1]), sig)
    assert not result.passed and "missing column(s) ['f1']" in result.reason
