"""XGBoost and LightGBM native model files."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mlops.errors import FlavorError, MissingDependency
from mlops.flavors.base import LoadedModel
from mlops.flavors.booster_checks import check_lightgbm, xgboost_document

__all__ = ["load_lightgbm", "load_xgboost"]


def load_xgboost(data: bytes) -> LoadedModel:
    """An XGBoost JSON or UBJSON model, as XGBClassifier/XGBRegressor by its objective."""
    try:
        import xgboost as xgb
    except ImportError as exc:
        raise MissingDependency("This model is an XGBoost file but xgboost is not installed.",
                                fix="pip install 'mlops[xgboost]'") from exc
    xgboost_document(data)  # xgboost trusts its files: a malformed one crashes the process
    try:
        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        config = json.loads(booster.save_config())
    except xgb.core.XGBoostError as exc:
        raise FlavorError(f"xgboost cannot read the model: {exc}.",
                          fix="Save it with Booster.save_model('model.json').") from exc
    objective: str = config["learner"]["objective"]["name"]
    is_classifier = objective.startswith(("binary:", "multi:"))
    model: Any = xgb.XGBClassifier() if is_classifier else xgb.XGBRegressor()
    model.load_model(bytearray(data))
    names = booster.feature_names
    if is_classifier and objective in {"binary:logitraw", "multi:softmax"}:
        proba = None  # these objectives do not output probabilities
    else:
        proba = model.predict_proba if is_classifier else None
    classes = None
    if is_classifier:
        n_classes = int(config["learner"]["learner_model_param"].get("num_class", "0")) or 2
        classes = list(range(n_classes))
    return LoadedModel(
        flavor="xgboost", raw=model, predict_fn=model.predict, proba_fn=proba, classes=classes,
        input_columns=list(names) if names else None, wants_frame=bool(names),
        info={"objective": objective},
    )


def load_lightgbm(data: bytes) -> LoadedModel:
    """A LightGBM text model (``Booster.save_model``)."""
    try:
        import lightgbm as lgb
    except ImportError as exc:
        raise MissingDependency("This model is a LightGBM file but lightgbm is not installed.",
                                fix="pip install 'mlops[lightgbm]'") from exc
    check_lightgbm(data)  # lightgbm trusts its files: a malformed one crashes the process
    try:
        booster = lgb.Booster(model_str=data.decode("utf-8"))
    except (lgb.basic.LightGBMError, UnicodeDecodeError) as exc:
        raise FlavorError(f"lightgbm cannot read the model: {exc}.",
                          fix="Save it with Booster.save_model('model.txt').") from exc
    objective = str(booster.params.get("objective", "")) or _objective_line(data)
    names = booster.feature_name()
    generic = all(n.startswith("Column_") for n in names)
    num_class = booster.num_model_per_iteration()

    if objective.startswith("binary"):
        def proba(x: Any) -> np.ndarray:
            p = np.asarray(booster.predict(x))
            return np.column_stack([1.0 - p, p])

        def predict(x: Any) -> np.ndarray:
            return (np.asarray(booster.predict(x)) >= 0.5).astype(np.int64)

        return LoadedModel("lightgbm", booster, predict, proba, [0, 1],
                           None if generic else names, wants_frame=not generic,
                           info={"objective": objective})
    if objective.startswith(("multiclass", "softmax", "multiclassova")):
        def proba_m(x: Any) -> np.ndarray:
            return np.asarray(booster.predict(x))

        def predict_m(x: Any) -> np.ndarray:
            return np.argmax(np.asarray(booster.predict(x)), axis=1)

        return LoadedModel("lightgbm", booster, predict_m, proba_m, list(range(num_class)),
                           None if generic else names, wants_frame=not generic,
                           info={"objective": objective})

    def predict_r(x: Any) -> np.ndarray:
        return np.asarray(booster.predict(x))

    return LoadedModel("lightgbm", booster, predict_r, None, None,
                       None if generic else names, wants_frame=not generic,
                       info={"objective": objective})


def _objective_line(data: bytes) -> str:
    for line in data[:4096].decode("utf-8", "replace").splitlines():
        if line.startswith("objective="):
            return line.split("=", 1)[1]
    return ""
