"""Wrap any in-memory object with ``predict`` (scikit-learn API) as a :class:`LoadedModel`."""

from __future__ import annotations

from typing import Any

from mlops.errors import FlavorError
from mlops.flavors.base import LoadedModel

__all__ = ["flavor_of", "wrap_estimator"]


def flavor_of(obj: Any) -> str:
    """``sklearn``, ``xgboost`` or ``lightgbm`` by the object's package, else ``pyfunc``."""
    root = type(obj).__module__.split(".")[0]
    return root if root in {"sklearn", "xgboost", "lightgbm"} else "pyfunc"


def wrap_estimator(obj: Any, flavor: str | None = None) -> LoadedModel:
    """A uniform predictor over an object that has ``predict`` (and maybe ``predict_proba``)."""
    if not callable(getattr(obj, "predict", None)):
        raise FlavorError(
            f"The loaded object ({type(obj).__module__}.{type(obj).__qualname__}) has no predict().",
            fix="Register an estimator or any object with a predict(X) method.",
        )
    names = getattr(obj, "feature_names_in_", None)
    columns = [str(c) for c in names] if names is not None else None
    proba = getattr(obj, "predict_proba", None)
    classes = getattr(obj, "classes_", None)
    return LoadedModel(
        flavor=flavor or flavor_of(obj),
        raw=obj,
        predict_fn=obj.predict,
        proba_fn=proba if callable(proba) and _proba_works(obj) else None,
        classes=[c.item() if hasattr(c, "item") else c for c in classes]
        if classes is not None else None,
        input_columns=columns,
        wants_frame=columns is not None,
    )


def _proba_works(obj: Any) -> bool:
    # SVC(probability=False) and some meta-estimators expose predict_proba but raise.
    try:
        return bool(getattr(obj, "predict_proba", None)) and hasattr(obj, "classes_")
    except AttributeError:
        return False
