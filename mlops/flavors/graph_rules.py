"""The tables and class lookups behind the object-graph rules of
:mod:`mlops.flavors.graph_policy` (see its docstring for rules 1-5): method-name and
vectorizer value rules, estimator slots, stored-kwargs attributes, and the per-class
lookups (estimator classes, rules and slots of a class, shadowing), shared by the
load-time checker and the static scan (:mod:`mlops.flavors.static_state`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlops.flavors.allowlist import (
    CLASS,
    Pair,
    canonical,
    kind_of,
)

__all__ = [
    "ESTIMATOR_SLOTS",
    "KWARGS_ATTRS",
    "METHOD_NAME_ATTRS",
    "NAMED_SLOTS",
    "SCOPED_ESTIMATOR_SLOTS",
    "VECTORIZER_ATTRS",
    "ValueRule",
    "behaviour_member",
    "class_pair",
    "dunder",
    "estimator_pair",
    "hgb_check_array_keywords",
    "shadows",
    "short",
    "sklearn_class",
    "slots_of",
    "value_rules_of",
]

# --------------------------------------------------------------------------------------
# the tables (shared with the static scan)

_RESPONSE = frozenset({"predict", "predict_proba", "decision_function", "predict_log_proba"})
_STACK = frozenset({"predict", "predict_proba", "decision_function"})
_THRESHOLD = frozenset({"auto", "predict_proba", "decision_function"})
_CALIBRATION = frozenset({"sigmoid", "isotonic", "temperature"})
_GETTER = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class ValueRule:
    """Allowed values of one attribute: literal strings (or None), optionally a list of
    them, optionally a callable (judged by rule 2), optionally a dotted getter path."""

    options: frozenset[str | None]
    sequence: bool = False
    scalar: bool = True
    callable_ok: bool = False
    getter: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is refused (None: fine). Used on real and on literal values."""
        if self.callable_ok and callable(value) and not isinstance(value, str):
            return None
        if self.scalar and self._one(value):
            return None
        if self.sequence and isinstance(value, (list, tuple)) and value \
                and all(self._one(v) for v in value):
            return None
        names = ", ".join(sorted(o for o in self.options if o is not None))
        extra = " (or None)" if None in self.options else ""
        return f"{short(value)} (expected one of {names}{extra})"

    def _one(self, value: Any) -> bool:
        if value is None or isinstance(value, str):
            if value in self.options:
                return True
            return self.getter and isinstance(value, str) and bool(_GETTER.fullmatch(value))
        return False


def short(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, list, tuple, type(None))) else \
        f"a {type(value).__qualname__}"
    return text if len(text) <= 80 else text[:77] + "..."


_STACK_METHOD_ = ValueRule(frozenset(_STACK | {None}), sequence=True, scalar=False)

#: Rule 3: (class on the MRO) -> attribute -> allowed values; see the module doc.
METHOD_NAME_ATTRS: dict[Pair, dict[str, ValueRule]] = {
    ("sklearn.ensemble._stacking", "_BaseStacking"): {
        "stack_method_": _STACK_METHOD_,
        "stack_method": ValueRule(frozenset(_STACK | {"auto"})),
    },
    ("sklearn.model_selection._classification_threshold", "BaseThresholdClassifier"): {
        "response_method": ValueRule(_THRESHOLD),
    },
    ("sklearn.multioutput", "ClassifierChain"): {
        "chain_method": ValueRule(_RESPONSE, sequence=True),
        "chain_method_": ValueRule(_RESPONSE, sequence=True),
    },
    ("sklearn.metrics._scorer", "_BaseScorer"): {
        "_response_method": ValueRule(_RESPONSE, sequence=True),
    },
    ("sklearn.calibration", "CalibratedClassifierCV"): {"method": ValueRule(_CALIBRATION)},
    ("sklearn.calibration", "_CalibratedClassifier"): {"method": ValueRule(_CALIBRATION)},
    ("sklearn.feature_selection._from_model", "SelectFromModel"): {
        "importance_getter": ValueRule(frozenset({"auto"}), callable_ok=True, getter=True),
    },
    ("sklearn.feature_selection._rfe", "RFE"): {
        "importance_getter": ValueRule(frozenset({"auto"}), callable_ok=True, getter=True),
    },
}

#: Rule 4: text vectorizers never read files; their callables fall under rule 2.
VECTORIZER_ATTRS: dict[Pair, dict[str, ValueRule]] = {
    ("sklearn.feature_extraction.text", "_VectorizerMixin"): {
        "input": ValueRule(frozenset({"content"})),
        "analyzer": ValueRule(frozenset({"word", "char", "char_wb"}), callable_ok=True),
        "strip_accents": ValueRule(frozenset({None, "ascii", "unicode"}), callable_ok=True),
        "decode_error": ValueRule(frozenset({"strict", "ignore", "replace"})),
    },
}

#: Rule 5: attributes that hold (sub-)estimators in any scikit-learn object.
ESTIMATOR_SLOTS = frozenset({
    # HasMethods parameters of scikit-learn's estimators and their fitted counterparts
    "estimator", "estimator_", "base_estimator", "base_estimator_", "final_estimator",
    "final_estimator_", "best_estimator_", "regressor", "regressor_", "transformer",
    "transformer_", "remainder", "covariance_estimator",
    # lists of estimators or of (name, estimator[, columns]) tuples
    "estimators", "estimators_", "steps", "transformers", "transformers_",
    "transformer_list", "calibrators", "calibrated_classifiers_",
    # name -> estimator
    "named_estimators", "named_estimators_",
    # fitted helpers predict/transform call methods on (every ``self.x = Estimator(...)``
    # or ``clone(...)`` assignment in scikit-learn, and the corpus)
    "_preprocessor", "_bin_mapper", "_encoder", "_label_binarizer", "label_binarizer_",
    "_label_encoder", "label_encoder_", "_le", "le_", "_tfidf", "one_hot_encoder_",
    "_centerer", "_scaler", "_estimator", "nbrs_", "kernel_pca_", "initial_imputer_",
    "indicator_",
})
#: Slots only some classes have (``init`` of KMeans is a string or an array).
SCOPED_ESTIMATOR_SLOTS: dict[Pair, frozenset[str]] = {
    ("sklearn.ensemble._gb", "BaseGradientBoosting"): frozenset({"init", "init_"}),
}
#: Slots that map names to estimators (a Bunch or dict is the container there).
NAMED_SLOTS = frozenset({"named_estimators", "named_estimators_"})

#: Attributes whose dict is passed as ``**kwargs`` to a stored or named callable.
KWARGS_ATTRS = frozenset({"kw_args", "inv_kw_args", "metric_params", "_metric_params",
                          "effective_metric_params_", "kernel_params", "_kwargs"})

_CHECK_ARRAY: Pair = ("sklearn.utils.validation", "check_array")
_CALIBRATED: Pair = ("sklearn.calibration", "_CalibratedClassifier")


def hgb_check_array_keywords(keywords: Any, is_float64: Callable[[Any], bool]) -> bool:
    """True for the keywords HistGradientBoosting gives ``partial(check_array, ...)``:
    ``dtype=[float64]`` and ``ensure_all_finite=False`` (``force_all_finite`` before 1.6)."""
    if not isinstance(keywords, dict) or set(keywords) not in (
            {"dtype", "ensure_all_finite"}, {"dtype", "force_all_finite"}):
        return False
    dtype = keywords["dtype"]
    finite = keywords.get("ensure_all_finite", keywords.get("force_all_finite"))
    return (isinstance(dtype, list) and len(dtype) == 1 and is_float64(dtype[0])
            and finite is False)


# --------------------------------------------------------------------------------------
# classes


def class_pair(cls: type) -> Pair:
    return cls.__module__, cls.__qualname__


@functools.cache
def _base_estimator() -> type:
    from sklearn.base import BaseEstimator

    return BaseEstimator


@functools.lru_cache(maxsize=4096)
def estimator_pair(pair: Pair, cls: type | None = None) -> bool:
    """Whether an allowed class is an estimator (may fill an estimator slot)."""
    pair = canonical(*pair)
    if kind_of(*pair) != CLASS:
        return False
    if pair == _CALIBRATED or pair[0] in ("xgboost.sklearn", "lightgbm.sklearn"):
        return True
    if cls is None:
        cls = sklearn_class(pair)
    return cls is not None and isinstance(cls, type) and issubclass(cls, _base_estimator())


@functools.lru_cache(maxsize=4096)
def sklearn_class(pair: Pair) -> type | None:
    """An allowed scikit-learn class (its module is already imported by the allow list's
    derived sets); None for anything else, which is never imported here."""
    if not pair[0].startswith("sklearn.") or kind_of(*pair) != CLASS:
        return None
    import importlib

    obj: Any = importlib.import_module(pair[0])
    for part in pair[1].split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


@functools.lru_cache(maxsize=4096)
def value_rules_of(cls: type) -> dict[str, ValueRule]:
    """Rules 3 and 4 of a class: attribute -> allowed values (from its MRO)."""
    rules: dict[str, ValueRule] = {}
    for klass in reversed(cls.__mro__):
        key = class_pair(klass)
        rules.update(METHOD_NAME_ATTRS.get(key, {}))
        rules.update(VECTORIZER_ATTRS.get(key, {}))
    return rules


@functools.lru_cache(maxsize=4096)
def slots_of(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(estimator slot names, slots that also accept ``"zero"``) of a class."""
    if not cls.__module__.startswith("sklearn."):
        return frozenset(), frozenset()
    scoped: set[str] = set()
    for klass in cls.__mro__:
        scoped |= SCOPED_ESTIMATOR_SLOTS.get(class_pair(klass), frozenset())
    return ESTIMATOR_SLOTS | scoped, frozenset(scoped)


def behaviour_member(member: Any) -> bool:
    """Whether a class attribute is behaviour (callable or descriptor), not plain data."""
    return callable(member) or isinstance(member, (property, classmethod, staticmethod)) \
        or hasattr(type(member), "__get__")


@functools.lru_cache(maxsize=65536)
def shadows(cls: type, name: str) -> bool:
    """Rule 1: an instance attribute ``name`` would shadow behaviour of ``cls``."""
    if dunder(name):
        return True
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return behaviour_member(klass.__dict__[name])
    return False


def dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")
