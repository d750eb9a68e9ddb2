"""XGBoost and LightGBM files are checked as data before their libraries read them: a
malformed one is refused by name instead of crashing the process. Every model the libraries
write (classifiers, regressors, multiclass, categorical splits, dart, linear boosters and
linear trees, JSON and UBJSON) passes and predicts as the library does."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from mlops.errors import FlavorError
from mlops.flavors.booster_checks import MAX_DEPTH, xgboost_document
from mlops.flavors.boosters import load_lightgbm, load_xgboost

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
Y = (X[:, 0] + X[:, 1] > 0).astype(int)
Y3 = np.digitize(X[:, 0], [-0.5, 0.5])
CAT = pd.DataFrame({"a": X[:, 0], "c": pd.Categorical(RNG.integers(0, 5, 300))})


def _xgb(kind: str) -> Any:
    small = {"n_estimators": 5, "max_depth": 3}
    if kind == "binary":
        return xgb.XGBClassifier(**small).fit(X, Y)
    if kind == "multiclass":
        return xgb.XGBClassifier(**small).fit(X, Y3)
    if kind == "regression":
        return xgb.XGBRegressor(**small).fit(X, X[:, 0])
    if kind == "dart":
        return xgb.XGBClassifier(booster="dart", **small).fit(X, Y)
    if kind == "linear":
        return xgb.XGBRegressor(booster="gblinear", n_estimators=5).fit(X, X[:, 0])
    if kind == "categorical":
        return xgb.XGBClassifier(enable_categorical=True, tree_method="hist", **small).fit(
            CAT, (CAT["c"].cat.codes > 2).astype(int))
    raise AssertionError(kind)


XGB_KINDS = ["binary", "multiclass", "regression", "dart", "linear", "categorical"]


@pytest.mark.parametrize("suffix", ["json", "ubj"])
@pytest.mark.parametrize("kind", XGB_KINDS)
def test_every_xgboost_model_passes_and_predicts_as_xgboost(tmp_path: Path, kind: str,
                                                             suffix: str) -> None:
    model = _xgb(kind)
    path = tmp_path / f"m.{suffix}"
    model.save_model(path)
    loaded = load_xgboost(path.read_bytes())
    rows = CAT.head(20) if kind == "categorical" else X[:20]
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))


def test_ubjson_decodes_to_the_json_document(tmp_path: Path) -> None:
    model = _xgb("binary")
    model.save_model(tmp_path / "m.json")
    model.save_model(tmp_path / "m.ubj")
    from_json = xgboost_document((tmp_path / "m.json").read_bytes())
    from_ubj = xgboost_document((tmp_path / "m.ubj").read_bytes())
    assert from_ubj["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"] == \
        from_json["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"]


def _tree_edit(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["learner"]["gradient_booster"]["model"]["trees"][0][field][0] = value
    return edit


XGB_HOSTILE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "split on a feature it lacks": (_tree_edit("split_indices", 100_000_000),
                                    "splits on feature 100000000; the model has 4"),
    "child past the end": (_tree_edit("left_children", 100_000), "child index outside"),
    "child pointing at the root": (_tree_edit("left_children", 0), "child index outside"),
    "one child only": (_tree_edit("right_children", -1), "a node with one child"),
    "arrays shorter than the tree": (
        lambda d: d["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"].pop(),
        "split_indices"),
    "a node with two parents": (
        lambda d: d["learner"]["gradient_booster"]["model"]["trees"][0].update(
            right_children=[d["learner"]["gradient_booster"]["model"]["trees"][0][
                "left_children"][0], *d["learner"]["gradient_booster"]["model"]["trees"][0][
                "right_children"][1:]]), "child of two nodes"),
}


@pytest.mark.parametrize("case", XGB_HOSTILE)
def test_malformed_xgboost_trees_are_refused(tmp_path: Path, case: str) -> None:
    model = _xgb("binary")
    model.save_model(tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    edit, message = XGB_HOSTILE[case]
    edit(doc)
    with pytest.raises(FlavorError, match=re.escape(message)):
        load_xgboost(json.dumps(doc).encode())


@pytest.mark.parametrize("body", [
    b'{"learner": ' + b"[" * 2_000_000,  # crashed xgboost's JSON reader (stack overflow)
    b"{" + b"L" + struct.pack(">q", 7) + b"learner" + b"[" * 2_000_000,  # and its UBJSON one
    b'{"learner": ' + b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2) + b"}",
    b"{L" + struct.pack(">q", 10**12) + b"learner",  # a length past the end
    b"{#L" + struct.pack(">q", 5),
])
def test_deep_or_truncated_documents_are_refused(body: bytes) -> None:
    with pytest.raises(FlavorError, match="The XGBoost model is malformed"):
        load_xgboost(body)


def _lgb(kind: str) -> lgb.Booster:
    params: dict[str, Any] = {"verbose": -1, "num_leaves": 7}
    if kind == "binary":
        return lgb.train({**params, "objective": "binary"}, lgb.Dataset(X, Y), 5)
    if kind == "multiclass":
        return lgb.train({**params, "objective": "multiclass", "num_class": 3},
                         lgb.Dataset(X, Y3), 5)
    if kind == "regression":
        return lgb.train({**params, "objective": "regression"}, lgb.Dataset(X, X[:, 0]), 5)
    if kind == "categorical":
        return lgb.train({**params, "objective": "binary", "min_data_per_group": 5,
                          "cat_smooth": 1}, lgb.Dataset(CAT, (CAT["c"].cat.codes > 2).astype(
                              int)), 5)
    if kind == "linear":
        return lgb.train({**params, "objective": "regression", "linear_tree": True},
                         lgb.Dataset(X, X[:, 0] * 2), 5)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "categorical",
                                  "linear"])
def test_every_lightgbm_model_passes_and_predicts_as_lightgbm(kind: str) -> None:
    booster = _lgb(kind)
    text = booster.model_to_string().encode()
    loaded = load_lightgbm(text)
    rows = CAT.head(20) if kind == "categorical" else X[:20]
    np.testing.assert_allclose(loaded.raw.predict(rows), booster.predict(rows))


def _lgb_edit(pattern: str, replacement: str, drop_sizes: bool = True) -> Callable[[str], str]:
    def edit(text: str) -> str:
        if drop_sizes:
            text = re.sub(r"^tree_sizes=.*\n", "", text, flags=re.MULTILINE)
        return re.sub(pattern, replacement, text, count=1, flags=re.MULTILINE)
    return edit


LGB_HOSTILE = {
    "split on a feature it lacks": (_lgb_edit(r"^split_feature=\d+", "split_feature=100000000"),
                                    "splits on feature 100000000; max_feature_idx is 3"),
    "child past the end": (_lgb_edit(r"^left_child=\d+", "left_child=100000"),
                           "child index outside"),
    "leaf past the end": (_lgb_edit(r"^left_child=-?\d+", "left_child=-100"),
                          "each of its 7 leaves once"),
    "tree_sizes off by one": (lambda t: re.sub(r"^tree_sizes=(\d+)",
                                               lambda m: f"tree_sizes={int(m[1]) + 1}", t,
                                               count=1, flags=re.MULTILINE),
                              "tree_sizes says"),
    "fewer leaf values": (_lgb_edit(r"^leaf_value=\S+ ", "leaf_value="), "leaf values"),
}


@pytest.mark.parametrize("case", LGB_HOSTILE)
def test_malformed_lightgbm_trees_are_refused(case: str) -> None:
    text = _lgb("binary").model_to_string()
    edit, message = LGB_HOSTILE[case]
    hostile = edit(text)
    assert hostile != text
    with pytest.raises(FlavorError, match=re.escape(message)):
        load_lightgbm(hostile.encode())
