"""Wrap any in-memory object with ``predict`` (scikit-learn API) as a :class:`LoadedModel`."""

from __future__ import annotations

from typing import Any

from mlops.errors import FlavorError
from mlops.flavors.base import LoadedModel

__all__ = ["accepts_array", "flavor_of", "wrap_estimator"]


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
    names = _listed(obj, "feature_names_in_")
    columns = [str(c) for c in names] if names is not None else None
    proba = getattr(obj, "predict_proba", None)
    classes = _listed(obj, "classes_")
    return LoadedModel(
        flavor=flavor or flavor_of(obj),
        raw=obj,
        predict_fn=obj.predict,
        proba_fn=proba if callable(proba) and _proba_works(obj) else None,
        classes=[c.item() if hasattr(c, "item") else c for c in classes]
        if classes is not None else None,
        input_columns=columns,
        wants_frame=columns is not None,
        array_ok=columns is not None and accepts_array(obj),
    )


def _listed(obj: Any, attribute: str) -> list[Any] | None:
    """``obj.attribute`` as a list (scikit-learn keeps a 1-D array there), None when it
    has none; a :class:`FlavorError` for anything else (a number, a nested list)."""
    value = getattr(obj, attribute, None)
    if value is None:
        return None
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or any(isinstance(v, list | tuple | dict | set) for v in items):
        raise FlavorError(
            f"The model's {attribute} is not a flat list of values "
            f"({type(value).__name__}).",
            fix="Fit the estimator again and save it; do not edit its attributes.")
    return items


#: scikit-learn classes that read a frame's columns by name (or hand user code the frame)
_NAME_READERS = frozenset({"ColumnTransformer", "FunctionTransformer", "TransformedTargetRegressor"})


def accepts_array(obj: Any) -> bool:
    """True when ``obj`` predicts the same from a float array (its columns in
    ``feature_names_in_`` order) as from a frame: every estimator in it, nested ones
    included, is scikit-learn's own, none selects columns by name or hands the frame to
    user code, and none is set to output frames. scikit-learn then only checks the names
    (and warns when they are missing); building the frame costs about 1 ms a call."""
    seen: list[Any] = [obj]
    todo: list[Any] = [obj]
    while todo:
        est = todo.pop()
        cls = type(est)
        if not cls.__module__.startswith("sklearn.") or cls.__name__ in _NAME_READERS:
            return False
        output = getattr(est, "_sklearn_output_config", None)
        if isinstance(output, dict) and output.get("transform") not in (None, "default"):
            return False
        get_params = getattr(est, "get_params", None)
        if not callable(get_params):
            return False
        try:
            params = get_params(deep=False)
        except Exception:  # a broken or foreign get_params: keep the frame
            return False
        for value in _nested(list(params.values())):
            if not any(value is s for s in seen):
                seen.append(value)
                todo.append(value)
    return True


def _nested(values: list[Any], depth: int = 0) -> list[Any]:
    """The estimators among parameter values (bare, or in lists of them or of (name,
    estimator) pairs, as Pipeline steps and voting ensembles hold them); lists nested
    deeper than :data:`_MAX_NESTING` are not looked into (no estimator keeps them)."""
    found: list[Any] = []
    for value in values:
        if isinstance(value, list | tuple):
            if depth < _MAX_NESTING:
                found.extend(_nested(list(value), depth + 1))
        elif hasattr(value, "fit") or hasattr(value, "predict") or hasattr(value, "transform"):
            found.append(value)
    return found


_MAX_NESTING = 8


def _proba_works(obj: Any) -> bool:
    # SVC(probability=False) and some meta-estimators expose predict_proba but raise.
    try:
        return bool(getattr(obj, "predict_proba", None)) and hasattr(obj, "classes_")
    except AttributeError:
        return False
