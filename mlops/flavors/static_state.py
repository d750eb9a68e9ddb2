"""The object-graph rules of :mod:`mlops.flavors.graph_policy`, applied at scan time to what
a file states literally.

The pickle scanner's emulator hands every BUILD of an object whose class it knows to
:func:`build_problems` (the state is the literal dict, or the ``(func, args, keywords,
namespace)`` tuple of a ``functools.partial``); :mod:`mlops.flavors.skops_policy` hands
the same emulated values, converted from its node tree, to :func:`object_problems` and
:func:`partial_problems`. Only what is literal is judged: a value that is itself an
object is judged at its own BUILD or node, and what the emulator cannot see (objects
created by calls, the contents of arrays and of containers filled later) is left to the
load-time check, which sees everything. Nothing is imported: the classes looked at are
allow-listed scikit-learn classes, whose modules the allow list's derived sets have
already imported.

Rules judged here: dunder attribute names and attributes that shadow behaviour of an
allowed scikit-learn class (1); globals kept as values that are not value functions or
scalar types, ``partial`` of anything else, ``out``/``where`` in stored keyword arguments
(2); literal method names and vectorizer ``input``/``analyzer`` values (3, 4); estimator
slots holding a literal, a dict, a global, an array or another non-estimator the emulator
can name (5).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from mlops.flavors.allowlist import (
    CLASS,
    canonical,
    kind_of,
    no_call,
    value_function_pairs,
    value_type_pairs,
)
from mlops.flavors.graph_rules import (
    KWARGS_ATTRS,
    NAMED_SLOTS,
    estimator_pair,
    hgb_check_array_keywords,
    shadows,
    sklearn_class,
    slots_of,
    value_rules_of,
)
from mlops.flavors.pickle_values import LITERALS, EDict, Global, Obj

__all__ = ["build_problems", "object_problems", "partial_problems"]

_PARTIAL = ("functools", "partial")
_CHECK_ARRAY = ("sklearn.utils.validation", "check_array")
_BUNCH = ("sklearn.utils._bunch", "Bunch")
#: Emulated objects that are certainly not estimators (arrays, containers, partials).
_NOT_ESTIMATORS = frozenset({
    ("numpy", "ndarray"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.ma.core", "_mareconstruct"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "bytes"), ("builtins", "bytearray"), ("collections", "OrderedDict"),
    ("collections", "defaultdict"), _BUNCH, _PARTIAL,
})
_MAX_DEPTH = 20
#: ``__setstate__`` implementations that put the state into ``__dict__``.
_DICT_SETSTATE = frozenset({("sklearn.base", "BaseEstimator"),
                            ("sklearn.isotonic", "IsotonicRegression")})


def _pair(glob: Global) -> tuple[str, str]:
    return canonical(glob.module, glob.name)


def build_problems(origin: Global, state: Any) -> list[str]:
    """Problems of one emulated BUILD: ``state`` set on an object built by ``origin``."""
    pair = _pair(origin)
    if pair == _PARTIAL:
        if isinstance(state, tuple) and len(state) == 4:
            return partial_problems(*state)
        return []
    attrs: list[tuple[Any, Any]] = []
    parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
    for part in parts:
        if isinstance(part, EDict):
            attrs.extend(part.pairs)
    return object_problems(pair, attrs) if attrs else []


@dataclass(frozen=True)
class _Plan:
    """What the static rules need to know about one allowed class (cached)."""

    dotted: str
    cls: type | None
    into_dict: bool
    rules: dict[str, Any]
    slots: frozenset[str]
    zero: frozenset[str]
    pandas: bool
    #: attribute names with a rule of their own (value, slot or kwargs)
    special: frozenset[str]
    #: attribute name -> rule 1 verdict: "" fine, "dunder", "shadow" (filled lazily)
    verdicts: dict[str, str] = field(default_factory=dict)

    def verdict(self, key: str) -> str:
        found = self.verdicts.get(key)
        if found is None:
            found = "dunder" if key.startswith("__") and key.endswith("__") and len(key) > 4 \
                else "shadow" if self.into_dict and self.cls is not None \
                and shadows(self.cls, key) else ""
            if len(self.verdicts) < 10_000:
                self.verdicts[key] = found
        return found


@functools.lru_cache(maxsize=4096)
def _plan(pair: tuple[str, str]) -> _Plan | None:
    if kind_of(*pair) != CLASS:
        return None
    cls = sklearn_class(pair) if pair != _BUNCH else None
    rules = value_rules_of(cls) if cls is not None else {}
    slots, zero = slots_of(cls) if cls is not None else (frozenset(), frozenset())
    return _Plan(f"{pair[0]}.{pair[1]}", cls, cls is not None and state_is_dict(cls), rules,
                 slots, zero, pair[0].split(".")[0] == "pandas",
                 frozenset(rules) | slots | KWARGS_ATTRS)


def object_problems(pair: tuple[str, str], attrs: list[tuple[Any, Any]]) -> list[str]:
    """Rules 1-5 on the literal attributes of an object of the allowed class ``pair``."""
    plan = _plan(pair)
    if plan is None:
        return []
    dotted = plan.dotted
    problems: list[str] = []
    for key, value in attrs:
        if not isinstance(key, str) or (plan.pandas and key == "_cache"):
            continue  # pandas caches are emptied when the file is loaded
        verdict = plan.verdict(key)
        if verdict:
            problems.append(f"{dotted} state sets the dunder attribute {key}"
                            if verdict == "dunder" else
                            f"{dotted}.{key} shadows behaviour of its class")
        if key in plan.special:
            problems.extend(_special_problems(plan, key, value))
        if not isinstance(value, (*LITERALS, Obj)):
            problems.extend(stored_value_problems(value, f"{dotted}.{key}"))
    return problems


def _special_problems(plan: _Plan, key: str, value: Any) -> list[str]:
    problems = []
    rule = plan.rules.get(key)
    if rule is not None and _literal(value):
        problem = rule.problem(_plain(value))
        if problem:
            problems.append(f"{plan.dotted}.{key} is {problem}")
    if key in plan.slots:
        problem = slot_problem(value, key in plan.zero, named=key in NAMED_SLOTS)
        if problem:
            problems.append(f"{plan.dotted}.{key} holds {problem} where scikit-learn "
                            "expects an estimator")
    if key in KWARGS_ATTRS:
        problems.extend(_kwargs_problems(f"{plan.dotted}.{key}", value))
    return problems


@functools.lru_cache(maxsize=4096)
def state_is_dict(cls: type) -> bool:
    """Whether BUILD state ends up as the instance ``__dict__`` (no ``__setstate__`` of
    its own, or scikit-learn's, which updates ``__dict__``); Cython classes such as
    ``Tree`` consume their state instead."""
    setstate = getattr(cls, "__setstate__", None)
    if setstate is None:
        return True
    owner = next((k for k in cls.__mro__ if "__setstate__" in k.__dict__), None)
    return owner is not None and (owner.__module__, owner.__qualname__) in _DICT_SETSTATE


def partial_problems(func: Any, args: Any, keywords: Any, namespace: Any) -> list[str]:
    """Rule 2 on a literal ``functools.partial``: what it wraps and its keywords."""
    problems: list[str] = []
    if isinstance(func, Global):
        pair = _pair(func)
        if pair == _CHECK_ARRAY:
            plain = _plain(keywords) if isinstance(keywords, EDict) else None
            if args not in ((), []) or not hgb_check_array_keywords(plain, _is_float64):
                problems.append("a stored partial(check_array, ...) is not the form "
                                "HistGradientBoosting keeps")
        elif pair not in value_function_pairs():
            problems.append(f"a stored partial({func.dotted}, ...) wraps a callable a "
                            "model may not keep as a value")
    elif isinstance(func, Obj) and func.origin is not None and _pair(func.origin) == _PARTIAL:
        problems.append("a stored partial wraps another partial")
    problems.extend(_kwargs_problems("partial keywords", keywords))
    if isinstance(namespace, EDict):
        for key, _ in namespace.pairs:
            if isinstance(key, str) and key.startswith("__") and key.endswith("__"):
                problems.append(f"a stored partial sets the dunder attribute {key}")
    for value in (args, keywords):
        problems.extend(stored_value_problems(value, "partial arguments"))
    return problems


def stored_value_problems(value: Any, where: str, depth: int = 0) -> list[str]:
    """Rule 2: globals kept as values (inside literal lists, tuples and dicts)."""
    if isinstance(value, Global):
        pair = _pair(value)
        if no_call(*pair):
            return [f"{where} keeps {value.dotted}, whose constructor reads files"]
        if pair not in value_function_pairs() and pair not in value_type_pairs():
            return [f"{where} keeps {value.dotted} as a value"]
        return []
    if depth >= _MAX_DEPTH:
        return []
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in stored_value_problems(v, where, depth + 1)]
    if isinstance(value, EDict):
        return [p for _, v in value.pairs for p in stored_value_problems(v, where, depth + 1)]
    return []


def _kwargs_problems(where: str, value: Any) -> list[str]:
    if not isinstance(value, EDict):
        return []
    bad = sorted({k for k, _ in value.pairs if isinstance(k, str) and k in ("out", "where")})
    return [f"{where} {bad} would make a function write into, or return uninitialised, "
            "memory"] if bad else []


def slot_problem(value: Any, zero: bool = False, depth: int = 0,
                 named: bool = False) -> str | None:
    """Rule 5 on an emulated value (None: fine or not decidable statically)."""
    if value is None:
        return None
    if isinstance(value, str):
        sentinels = {"drop", "passthrough"} | ({"zero"} if zero else set())
        return None if value in sentinels else f"the string {value!r}"
    if isinstance(value, Global):
        return f"the global {value.dotted}"
    if isinstance(value, Obj):
        if value.origin is None:
            return None
        pair = _pair(value.origin)
        if estimator_pair(pair):
            return None
        if pair in _NOT_ESTIMATORS and not (depth == 0 and (
                pair in (("numpy", "ndarray"), ("numpy._core.multiarray", "_reconstruct"))
                or (named and pair == _BUNCH))):
            return f"a {value.label}"
        return None  # a container whose contents the scan cannot see, or unknown
    if isinstance(value, EDict):
        if named and depth == 0:
            for _, item in value.pairs:
                problem = slot_problem(item, zero, 2)
                if problem:
                    return problem
            return None
        return "a dict"
    if isinstance(value, (list, tuple)):
        if depth >= 2:
            return f"a {type(value).__name__}"
        for item in value:
            if isinstance(item, (list, tuple)) and len(item) >= 2 and isinstance(item[0], str):
                problem = slot_problem(item[1], zero, 2)
            else:
                problem = slot_problem(item, zero, depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, LITERALS):
        return f"the value {value!r}"[:100]
    return None


def _literal(value: Any, depth: int = 0) -> bool:
    if isinstance(value, LITERALS):
        return True
    if isinstance(value, (list, tuple)) and depth < 2:
        return all(_literal(v, depth + 1) for v in value)
    return False


def _plain(value: Any) -> Any:
    """An emulated literal as a real value (EDicts with str keys become dicts)."""
    if isinstance(value, EDict):
        return {k: _plain(v) for k, v in value.pairs if isinstance(k, str)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _is_float64(value: Any) -> bool:
    return isinstance(value, Global) and _pair(value) == ("numpy", "float64")
