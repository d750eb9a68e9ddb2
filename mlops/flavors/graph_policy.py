"""What allow-listed objects may *hold*: rules over the finished object graph of a model.

The allow list decides which classes and functions a model file may name, but allowed
scikit-learn classes act on their *state* at predict time: they call the callables they
store, fetch methods by the names they store, duck-type the objects they store as
estimators, and some of them open the files their parameters name. A file built only from
allowed names can therefore still read and write files (``StackingRegressor`` calling
``getattr(est, meth)(X)`` with ``est`` a bytes array and ``meth == "tofile"``; a
``CountVectorizer(input="filename")`` opening the path a request names). These rules close
that class of attack on the loaded object, for pickle, joblib and skops alike; where the
information is literal the static scan applies them too
(:mod:`mlops.flavors.static_state`). This module holds the load-time checker; the tables
and per-class lookups of the rules live in :mod:`mlops.flavors.graph_rules`.

1. **No behaviour in instance state.** An instance attribute of an allowed class may not
   shadow a method, classmethod, staticmethod, property, descriptor or other callable
   defined on its class (MRO): ``st._concatenate_predictions = partial(...)`` replaces the
   method for that instance. Dunder-named instance attributes and dunder keys of a
   ``Bunch`` (whose attributes are its items) are refused too: numpy reads
   ``__array_interface__`` from the *instance*, so a Bunch or an estimator carrying one
   turns ``np.asarray`` into an arbitrary memory read/write. Attribute names are strings.
   scikit-learn estimators never store such attributes.
2. **Callables stored as values** (anywhere in the graph: attributes, lists, tuples, dicts,
   Bunches, object arrays, partials) must be an allow-listed *value* function (numpy and
   scipy ufuncs, univariate score functions, the metrics behind named scorers:
   :func:`~mlops.flavors.allowlist.value_function_pairs`), an instance of an allowed class
   (kernels, scorers, losses: checked themselves), or a scalar/dtype type
   (:func:`~mlops.flavors.allowlist.value_type_pairs`: numpy scalar types, ``float``,
   ``int``, ``bool``, ``str``, ``object``, ``complex``). Refused: ``bytes``, ``bytearray``,
   ``Bunch``, ``partial`` and every other class as a value, reconstructor functions
   (``_frombuffer``, ``_unpickle_block``, ...), the guarded wrappers, and
   ``check_array`` except in the one form HistGradientBoosting stores
   (``partial(check_array, dtype=[float64], ensure_all_finite=False)``). A ``partial`` of a
   value function is fine; stored keyword arguments (``partial.keywords``,
   ``FunctionTransformer.kw_args``, ``metric_params``, ...) may not carry ``out=`` (a ufunc
   or ``cdist`` would write into an array of the model) or ``where=`` (a ufunc returns
   uninitialised memory where it is false). ``defaultdict`` factories must be plain
   container or scalar types.
3. **Method names stored as strings.** Attributes whose value scikit-learn turns into a
   method with ``getattr`` (or ``operator.attrgetter``) must be one of the documented
   values. Found by grepping scikit-learn 1.9 for ``getattr(`` / ``attrgetter(`` with a
   non-literal name and for every ``_check_response_method``/``_get_response_values``
   caller, and by listing every ``StrOptions`` parameter constraint naming a method:

   * ``_BaseStacking.stack_method_`` (``getattr(est, meth)(X)`` in ``_transform``, at
     predict time) and ``stack_method``: ``predict``, ``predict_proba``,
     ``decision_function`` (and ``auto`` for the parameter);
   * ``BaseThresholdClassifier.response_method`` (Fixed/TunedThresholdClassifierCV,
     ``_get_response_values_binary`` at predict time): ``auto``, ``predict_proba``,
     ``decision_function``;
   * ``ClassifierChain.chain_method`` / ``chain_method_`` (``_get_response_values`` at
     predict time): ``predict``, ``predict_proba``, ``predict_log_proba``,
     ``decision_function``, or a list of them;
   * ``_BaseScorer._response_method`` (scorers kept by searches): the same four, one or a
     tuple;
   * ``CalibratedClassifierCV.method`` and ``_CalibratedClassifier.method`` (compared, not
     fetched, but chosen by the same kind of string): ``sigmoid``, ``isotonic``,
     ``temperature``;
   * ``SelectFromModel``/``RFE``/``RFECV.importance_getter`` (``attrgetter`` of a dotted
     path at transform time): ``auto`` or a dotted path of public attribute names (each
     part starts with a letter), or a value callable (rule 2).

   Other ``getattr`` calls with computed names take them from fixed lists in the code
   (``available_if`` delegation, ``_estimators_has``, metadata routing's method list,
   ``get_params``, kernels' hyper-parameters), from the *input* (``X.format`` of sparse
   input) or run at fit time only (``cross_val_predict(method=...)``); strings such as
   ``loss``, ``solver``, ``metric``, ``activation`` or ``kernel`` are looked up in fixed
   tables and fail on unknown names.
4. **No file input.** Text vectorizers (``_VectorizerMixin``: CountVectorizer,
   TfidfVectorizer, HashingVectorizer; nothing else in scikit-learn takes an ``input``
   parameter or opens files at predict time) must have ``input == "content"``
   (``"filename"``/``"file"`` make ``transform`` open or read what the request names);
   ``analyzer`` is ``word``/``char``/``char_wb`` or a value callable, ``strip_accents``
   ``ascii``/``unicode``/None or a value callable, ``decode_error``
   ``strict``/``ignore``/``replace``.
5. **Estimator slots hold estimators.** The attributes scikit-learn treats as
   (sub-)estimators (:data:`~mlops.flavors.graph_rules.ESTIMATOR_SLOTS`, from every
   ``HasMethods`` parameter constraint of scikit-learn's estimators, their fitted ``*_``
   counterparts, every
   ``self.x = SomeEstimator(...)``/``clone(...)`` assignment in scikit-learn's source and
   every attribute of the fitted model corpus that holds an estimator) hold instances of
   allowed estimator classes or scikit-learn's sentinels (None, ``"drop"``,
   ``"passthrough"``; ``"zero"`` for a gradient boosting ``init``), directly or in a list,
   tuple or object array (``(name, estimator[, columns])`` tuples for steps and
   transformers), or, for ``named_estimators(_)``, a Bunch/dict of them. Never an
   ndarray, a Bunch or a dict in place of an estimator.
6. The same graph check runs after ``skops.io.loads`` (:mod:`mlops.flavors.skops_policy`).

Library-made state is recognised, not judged: ``IsotonicRegression.f_`` (the ``interp1d``
its ``__setstate__`` rebuilds), weak references (pandas' own bookkeeping) and pandas'
``_cache`` dicts, which are *emptied* after loading (pandas fills them again on use; a
file-supplied cache entry would otherwise be trusted by pandas).

What a load-time check cannot stop: a model is code-like by nature, so a file can still
make predictions an arbitrary *numeric* function of the input built from allowed parts,
spend CPU and memory (huge arrays, ``n_jobs``, a pathological ``token_pattern``), or
duck-type one allowed object for another in a helper attribute that is not an estimator
slot (only value functions can be reached that way, and only methods by the names
scikit-learn itself uses). These rules are checked once, on the loaded object; nothing
re-checks state that library code changes later.
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlops.errors import UnsafeModel
from mlops.flavors.allowlist import (
    CLASS,
    Pair,
    kind_of,
    no_call,
    value_function_pairs,
    value_type_pairs,
)
from mlops.flavors.graph_rules import (
    KWARGS_ATTRS,
    NAMED_SLOTS,
    ValueRule,
    class_pair,
    dunder,
    estimator_pair,
    hgb_check_array_keywords,
    shadows,
    short,
    slots_of,
    value_rules_of,
)

__all__ = [
    "GraphChecker",
    "check_model_root",
    "drop_pandas_cache",
    "slot_problem",
]

_FIX = "Save the model again with the library that produced it; do not edit model files."

_SENTINELS = frozenset({"drop", "passthrough"})
_SCOPED_SENTINELS = frozenset({"zero"})
_FORBIDDEN_KWARGS = frozenset({"out", "where"})
_ISOTONIC_F: tuple[Pair, str, Pair] = (("sklearn.isotonic", "IsotonicRegression"), "f_",
                                       ("scipy.interpolate._interpolate", "interp1d"))
_FACTORIES = frozenset({list, dict, set, tuple, OrderedDict, defaultdict, int, float, str})


# --------------------------------------------------------------------------------------
# the load-time checker


def _refuse(what: str, reason: str) -> UnsafeModel:
    return UnsafeModel(f"The model file's {what} {reason}; refused.", offending=[f"<{what}>"],
                       fix=_FIX)


@dataclass
class _TypeInfo:
    allowed: bool
    pandas: bool = False
    estimator: bool = False
    rules: dict[str, ValueRule] = field(default_factory=dict)
    slots: frozenset[str] = frozenset()
    zero_slots: frozenset[str] = frozenset()
    skip: str | None = None  # an attribute holding a library-made object (not walked)
    #: state kept outside ``__dict__``: ``__slots__`` and native (Cython) attributes
    extra: tuple[str, ...] = ()
    shadow: dict[str, bool] = field(default_factory=dict)


_INFO: dict[type, _TypeInfo] = {}


def _info(cls: type) -> _TypeInfo:
    info = _INFO.get(cls)
    if info is not None:
        return info
    pair = class_pair(cls)
    allowed = kind_of(*pair) == CLASS
    info = _TypeInfo(allowed=allowed)
    if allowed:
        info.pandas = pair[0].split(".")[0] == "pandas"
        info.estimator = estimator_pair(pair, cls)
        info.rules = value_rules_of(cls)
        info.slots, info.zero_slots = slots_of(cls)
        if pair == _ISOTONIC_F[0]:
            info.skip = _ISOTONIC_F[1]
    info.extra = _slot_names(cls) + tuple(
        name for klass in cls.__mro__ for name in _NATIVE_STATE.get(class_pair(klass), ()))
    if len(_INFO) < 10_000:
        _INFO[cls] = info
    return info


#: State that Cython base classes keep outside ``__dict__`` and ``__slots__``: pandas'
#: block managers and blocks (object columns hold arbitrary values).
_NATIVE_STATE: dict[Pair, tuple[str, ...]] = {
    ("pandas._libs.internals", "BlockManager"): ("blocks", "axes"),
    ("pandas._libs.internals", "Block"): ("values",),
}


@functools.cache
def _value_functions() -> dict[int, Any]:
    """id -> object of every function a model may keep as a value."""
    import importlib

    found: dict[int, Any] = {}
    for module_name, name in value_function_pairs():
        try:
            obj: Any = importlib.import_module(module_name)
            for part in name.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):  # pragma: no cover - optional modules
            continue
        found[id(obj)] = obj
    return found


@functools.cache
def _value_types() -> frozenset[type]:
    import builtins

    found = set()
    for module_name, name in value_type_pairs():
        obj = getattr(np, name, None) if module_name == "numpy" else \
            getattr(builtins, name, None) if module_name == "builtins" else None
        if isinstance(obj, type):
            found.add(obj)
    return frozenset(found)


@functools.cache
def _check_array() -> Any:
    from sklearn.utils.validation import check_array

    return check_array


def _name(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or \
        type(obj).__qualname__
    return f"{module}.{name}"


def _is_float64(value: Any) -> bool:
    return value is np.float64


class GraphChecker:
    """Rules 1-5 applied to each object of a loaded graph (see the module doc).

    :meth:`visit` is called once per reachable object by
    :func:`mlops.flavors.state_checks.validate_graph`; it raises
    :class:`~mlops.errors.UnsafeModel` or returns the objects to walk next.
    """

    def visit(self, obj: Any) -> Iterable[Any]:
        """Judge one object; the children to walk next."""
        if isinstance(obj, type):
            self._value_type(obj)
            return ()
        if isinstance(obj, functools.partial):
            return self._partial(obj)
        if isinstance(obj, (weakref.ref, weakref.ProxyType)):
            return ()  # pandas' bookkeeping; a file cannot create one
        cls = type(obj)
        info = _INFO.get(cls) or _info(cls)
        if callable(obj) and not info.allowed:
            if id(obj) not in _value_functions():
                raise _refuse(f"stored callable {_name(obj)}",
                              "is not a function a model may keep as a value")
            return ()  # a library function: its own attributes are not model state
        if isinstance(obj, dict):
            return self._dict(obj, info)
        if isinstance(obj, (list, tuple, set, frozenset)):
            return obj
        if isinstance(obj, np.ndarray):
            return obj.ravel().tolist() if obj.dtype.hasobject else ()
        attrs = getattr(obj, "__dict__", None)
        children: list[Any] = []
        if isinstance(attrs, dict):
            if info.allowed:
                children.extend(self._instance(obj, cls, info, attrs))
            else:
                children.extend(attrs.values())
        for name in info.extra:
            try:
                children.append(getattr(obj, name))
            except AttributeError:
                continue
        return children

    # ---- rule 2: callables as values --------------------------------------------------

    def _value_type(self, cls: type) -> None:
        if no_call(cls.__module__, cls.__qualname__):
            raise UnsafeModel(
                f"The model file keeps the class {cls.__module__}.{cls.__qualname__} "
                "as a value; its constructor reads files, so it may not be called later.",
                offending=[f"{cls.__module__}.{cls.__qualname__}"], fix=_FIX)
        if cls not in _value_types():
            raise _refuse(f"stored class {_name(cls)}",
                          "is not a scalar or dtype type a model may keep as a value")

    def _partial(self, obj: functools.partial) -> list[Any]:
        func, keywords = obj.func, obj.keywords
        if func is _check_array():
            if obj.args or not hgb_check_array_keywords(keywords, _is_float64):
                raise _refuse("stored partial(check_array, ...)",
                              "is not the form HistGradientBoosting keeps")
        elif isinstance(func, functools.partial) or id(func) not in _value_functions():
            raise _refuse(f"stored partial({_name(func)}, ...)",
                          "wraps a callable a model may not keep as a value")
        self._kwargs("partial keywords", keywords)
        children = [obj.args, keywords]
        attrs = getattr(obj, "__dict__", None)
        if attrs:
            children.extend(self._instance(obj, type(obj), _info(type(obj)), attrs))
        return children

    def _kwargs(self, what: str, kwargs: Any) -> None:
        if isinstance(kwargs, dict):
            bad = sorted(str(k) for k in kwargs if k in _FORBIDDEN_KWARGS)
            if bad:
                raise _refuse(f"{what} {bad}", "would make a function write into, or "
                              "return uninitialised, memory")

    def _dict(self, obj: dict[Any, Any], info: _TypeInfo) -> Iterable[Any]:
        if isinstance(obj, defaultdict) and obj.default_factory is not None \
                and obj.default_factory not in _FACTORIES:
            raise _refuse(f"defaultdict factory {_name(obj.default_factory)}",
                          "is not a container or scalar type")
        if info.allowed and type(obj).__module__ == "sklearn.utils._bunch":
            bad = [k for k in obj if not isinstance(k, str) or dunder(k)]
            if bad:
                raise _refuse(f"Bunch key {short(bad[0])}",
                              "is not a plain name (Bunch keys are attributes)")
        return list(obj.values())

    # ---- rules 1, 3, 4, 5 on an instance of an allowed class ----------------------------

    def _instance(self, obj: Any, cls: type, info: _TypeInfo,
                  attrs: dict[Any, Any]) -> list[Any]:
        shadow = info.shadow
        for key in attrs:
            if type(key) is not str:
                raise _refuse(f"{cls.__qualname__} attribute {short(key)}",
                              "is not a name")
            hit = shadow.get(key)
            if hit is None:
                hit = shadows(cls, key)
                if len(shadow) < 10_000:  # names come from files: bound the cache
                    shadow[key] = hit
            if hit:
                raise _refuse(f"{cls.__qualname__}.{key}", "is a dunder-named instance "
                              "attribute (Python and numpy read those from the instance)"
                              if dunder(key) else
                              "is an instance attribute that shadows behaviour of its class")
        for key, rule in info.rules.items():
            if key in attrs:
                problem = rule.problem(attrs[key])
                if problem:
                    raise _refuse(f"{cls.__qualname__}.{key}", f"is {problem}")
        for key in info.slots:
            if key in attrs:
                problem = slot_problem(attrs[key], key in info.zero_slots,
                                       named=key in NAMED_SLOTS)
                if problem:
                    raise _refuse(f"{cls.__qualname__}.{key}",
                                  f"holds {problem} where scikit-learn expects an estimator")
        for key in KWARGS_ATTRS:
            if key in attrs:
                self._kwargs(f"{cls.__qualname__}.{key}", attrs[key])
        if info.pandas and "_cache" in attrs:
            drop_pandas_cache(obj)
        skip = info.skip
        if skip is not None and skip in attrs and \
                class_pair(type(attrs[skip])) == _ISOTONIC_F[2]:
            return [v for k, v in attrs.items() if k != skip]
        return list(attrs.values())


def drop_pandas_cache(obj: Any) -> None:
    """Empty the ``_cache`` of a pandas object (pandas trusts it and refills it on use;
    a cache from a file could hold anything)."""
    if not type(obj).__module__.startswith("pandas"):
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict) and "_cache" in attrs:
        if type(attrs["_cache"]) is not dict:
            raise _refuse(f"{type(obj).__qualname__}._cache", "is not a dict")
        attrs["_cache"].clear()


def _slot_names(cls: type) -> tuple[str, ...]:
    """The ``__slots__`` of a class and its bases (pandas blocks keep values there)."""
    out: list[str] = []
    for klass in cls.__mro__:
        names = klass.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            if isinstance(name, str) and name not in ("__dict__", "__weakref__"):
                out.append(name)
    return tuple(out)


def _estimator_object(value: Any) -> bool:
    cls = type(value)
    info = _INFO.get(cls) or _info(cls)
    return info.estimator


def slot_problem(value: Any, zero: bool = False, depth: int = 0,
                 named: bool = False) -> str | None:
    """Rule 5 on a real value: what it holds instead of estimators (None: fine).
    ``named``: the slot maps names to estimators (``named_estimators_``)."""
    if value is None or _estimator_object(value):
        return None
    if isinstance(value, str):
        return None if value in _SENTINELS or (zero and value in _SCOPED_SENTINELS) \
            else f"the string {short(value)}"
    if depth >= 2:
        return f"a {type(value).__qualname__}"
    if type(value) in (list, tuple) or (isinstance(value, np.ndarray)
                                         and value.dtype.hasobject and depth == 0):
        items = value.ravel().tolist() if isinstance(value, np.ndarray) else value
        for item in items:
            if type(item) is tuple and len(item) >= 2 and isinstance(item[0], str):
                problem = slot_problem(item[1], zero, 2)
            else:
                problem = slot_problem(item, zero, depth + 1)
            if problem:
                return problem
        return None
    if named and isinstance(value, dict) and depth == 0 \
            and type(value) in _named_containers():
        for key, item in value.items():
            problem = None if isinstance(key, str) else f"the key {short(key)}"
            problem = problem or slot_problem(item, zero, 2)
            if problem:
                return problem
        return None
    return f"a {type(value).__qualname__}"


@functools.cache
def _named_containers() -> tuple[type, ...]:
    from sklearn.utils._bunch import Bunch

    return (Bunch, dict, OrderedDict)


def check_model_root(obj: Any) -> None:
    """The top object of an untrusted model file must be an allowed estimator (not a
    Bunch, dict or other container whose ``predict`` is an item)."""
    if not _estimator_object(obj):
        raise _refuse(f"top object ({_name(type(obj))})",
                      "is not an instance of an allow-listed estimator class")
