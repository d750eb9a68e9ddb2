"""Vetted wrappers for the allow-listed functions whose arguments choose what they build.

Each :data:`~mlops.flavors.allowlist.GUARDED` entry of the allow list has a :class:`Guard`
here with two checks of the same rule:

* ``static(args)`` judges the *emulated* arguments the scanner sees at a REDUCE
  (:mod:`mlops.flavors.pickle_values` stand-ins; nothing is imported or called) and returns
  a problem text, or None when the arguments are literal and acceptable;
* ``check(*args)`` judges the real arguments at load time, right before the real function
  runs, and raises :class:`~mlops.errors.UnsafeModel` otherwise.

:func:`guarded_function` returns the wrapper the restricted unpickler hands out instead of
the real function; the scanner calls :func:`static_problem`.

The numpy array reconstructors are guarded so that no file can construct an array itself
(see :data:`~mlops.flavors.allowlist.ARRAY_CLASSES`): ``_reconstruct`` and
``_mareconstruct`` only with the empty shape ``(0,)`` numpy writes (any other shape is
uninitialised memory, filled by nothing when no ``__setstate__`` follows),
``copyreg._reconstructor`` never with an array class (``ndarray.__new__(cls, shape)``),
``_frombuffer`` only over ``bytes``/``bytearray`` from the file (a view of another array
would alias its memory). That one buffer backs at most one array is checked per load by
the restricted unpickler and per scan by the emulator.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from mlops.errors import UnsafeModel
from mlops.flavors.allowlist import (
    CLASS,
    GUARDED_FUNCTIONS,
    Pair,
    array_class,
    canonical,
    kind_of,
    no_call,
    ufunc_pairs,
)
from mlops.flavors.pickle_values import Global, Obj

__all__ = [
    "BIT_GENERATOR_NAMES",
    "FROMBUFFER",
    "GUARDS",
    "Guard",
    "allowed_class",
    "array_memory",
    "empty_shape",
    "guarded_function",
    "is_array_type",
    "refuse",
    "sized_problem",
    "static_problem",
]

_FIX = ("Save the model with skops or ONNX, or re-save it from the library objects "
        "themselves; if you wrote this file yourself and trust it, pass trust=True.")

#: Bit generators numpy's pickle helpers may build, by name.
BIT_GENERATOR_NAMES = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})
_BIT_GENERATOR_CLASSES = frozenset({
    ("numpy.random._mt19937", "MT19937"), ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"), ("numpy.random._philox", "Philox"),
    ("numpy.random._sfc64", "SFC64"),
})
_BIT_GENERATOR_CTOR: Pair = ("numpy.random._pickle", "__bit_generator_ctor")
_PANDAS_INDEXES = frozenset(("pandas", n) for n in (
    "Index", "RangeIndex", "MultiIndex", "DatetimeIndex", "TimedeltaIndex", "PeriodIndex",
    "IntervalIndex", "CategoricalIndex"))
_UFUNC_MODULE_ALIASES = {
    "numpy.core.umath": "numpy._core.umath",
    "numpy.core._multiarray_umath": "numpy._core.umath",
    "numpy._core._multiarray_umath": "numpy._core.umath",
}


#: numpy's protocol-5 array reconstructor (guarded: see the module doc).
FROMBUFFER: Pair = ("numpy._core.numeric", "_frombuffer")
_DIRECT_ARRAY = ("a direct construction of a numpy array (uninitialised memory, or another "
                 "array's memory with buffer=)")


def refuse(what: str, reason: str) -> UnsafeModel:
    """The error for a guarded call (or any load-time refusal) of ``what``."""
    return UnsafeModel(f"The model file calls {what} with {reason}; refused.",
                       offending=[what], fix=_FIX)


def allowed_class(obj: Any) -> bool:
    """True for a class that is itself on the allow list."""
    return isinstance(obj, type) and kind_of(obj.__module__, obj.__qualname__) == CLASS


def is_array_type(obj: Any) -> bool:
    """True for numpy.ndarray and every subclass (a file never constructs one itself)."""
    import numpy as np

    return isinstance(obj, type) and issubclass(obj, np.ndarray)


def empty_shape(value: Any) -> bool:
    """``(0,)``, the shape numpy's pickles give ``_reconstruct``/``_mareconstruct`` (the
    contents follow in ``__setstate__``); scan-time and load-time values alike."""
    return type(value) is tuple and len(value) == 1 and type(value[0]) is int \
        and value[0] == 0


def array_memory(value: Any) -> bool:
    """Whether a real value is a buffer an array may be built over (and so must back one
    array only): a bytearray, or bytes longer than 1 (CPython shares the shorter ones)."""
    return type(value) is bytearray or (type(value) is bytes and len(value) > 1)


def _resolve(pair: Pair) -> Any:
    obj: Any = importlib.import_module(pair[0])
    for part in pair[1].split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------------------
# static (scan-time) argument predicates on emulated values


def _class_global(value: Any, within: Collection[Pair] | None = None) -> bool:
    """An allow-listed class named directly by the file (optionally one of ``within``)."""
    if not isinstance(value, Global):
        return False
    pair = canonical(value.module, value.name)
    if kind_of(*pair) != CLASS:
        return False
    return within is None or pair in within


def _array_global(value: Any) -> bool:
    return isinstance(value, Global) and array_class(value.module, value.name)


def _file_buffer(value: Any) -> bool:
    """Emulated bytes or a bytearray read from the file (BINBYTES*, BYTEARRAY8)."""
    return isinstance(value, bytes) or (isinstance(value, Obj)
                                        and value.label in ("bytes", "bytearray"))


def _str_like(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, Obj) and value.label == "str")


def _arity(args: Any, low: int, high: int) -> tuple[Any, ...] | None:
    if isinstance(args, tuple) and low <= len(args) <= high:
        return args
    return None


# --------------------------------------------------------------------------------------
# the guards


@dataclass(frozen=True)
class Guard:
    """The argument rule of one guarded function, at scan time and at load time."""

    static: Callable[[Any], str | None]
    check: Callable[..., None]
    after: Callable[[Any], None] | None = None


def _static_codecs(args: Any) -> str | None:
    a = _arity(args, 2, 2)
    if a is None or not _str_like(a[0]) or a[1] not in ("latin1", "latin-1"):
        return "arguments other than (str, 'latin1')"
    return None


def _check_codecs(*args: Any) -> None:
    if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
        raise refuse("_codecs.encode", "arguments other than (str, 'latin1')")


def _static_classes(count: int, within: Collection[Pair] | None = None,
                    low: int | None = None) -> Callable[[Any], str | None]:
    """The first ``count`` arguments are allow-listed classes named by the file."""
    def static(args: Any) -> str | None:
        a = _arity(args, low if low is not None else count, 16)
        if a is None or not all(_class_global(v, within) for v in a[:count]):
            return "a class argument that is not an allow-listed class named in the file"
        return None
    return static


def _subclass_check(what: str, *bases: Callable[[], type]) -> Callable[..., None]:
    """Runtime: argument i is an allow-listed class and a subclass of ``bases[i]()``."""
    def check(*args: Any) -> None:
        if len(args) < len(bases):
            raise refuse(what, "too few arguments")
        for value, base in zip(args, bases, strict=False):
            if not (allowed_class(value) and issubclass(value, base())):
                raise refuse(what, f"the class argument {value!r}")
    return check


def _static_reconstructor(args: Any) -> str | None:
    problem = _static_classes(2, low=3)(args)
    if problem is None and no_call(args[1].module, args[1].name):
        return "a base class whose constructor reads files"
    if problem is None and (_array_global(args[0]) or _array_global(args[1])):
        return f"a numpy array class ({_DIRECT_ARRAY})"
    return problem


def _check_reconstructor(*args: Any) -> None:
    if len(args) != 3:
        raise refuse("copyreg._reconstructor", "the wrong number of arguments")
    cls, base = args[0], args[1]
    if not (allowed_class(cls) and allowed_class(base) and issubclass(cls, base)) \
            or no_call(base.__module__, base.__qualname__):
        raise refuse("copyreg._reconstructor", f"the classes {cls!r}, {base!r}")
    if is_array_type(cls) or is_array_type(base):
        raise refuse("copyreg._reconstructor", f"the array class {cls!r}: {_DIRECT_ARRAY}")


def _static_empty(count: int, index: int) -> Callable[[Any], str | None]:
    """The first ``count`` arguments are allow-listed classes, argument ``index`` is the
    empty shape ``(0,)``."""
    classes = _static_classes(count, low=index + 2)

    def static(args: Any) -> str | None:
        problem = classes(args)
        if problem is None and (len(args) != index + 2 or not empty_shape(args[index])):
            return "a shape other than (0,) (an array of uninitialised memory)"
        return problem
    return static


def _empty_check(what: str, index: int, classes: Callable[..., None]) -> Callable[..., None]:
    def check(*args: Any) -> None:
        classes(*args)
        if len(args) != index + 2 or not empty_shape(args[index]):
            raise refuse(what, "a shape other than (0,) (an array of uninitialised memory)")
    return check


def _static_frombuffer(args: Any) -> str | None:
    a = _arity(args, 4, 5)
    if a is None:
        return "the wrong number of arguments"
    if not _file_buffer(a[0]):
        return "a buffer that is not bytes from the file (another array's memory)"
    return None


def _check_frombuffer(*args: Any) -> None:
    if not 4 <= len(args) <= 5:
        raise refuse(".".join(FROMBUFFER), "the wrong number of arguments")
    if type(args[0]) not in (bytes, bytearray):
        raise refuse(".".join(FROMBUFFER),
                     f"a {type(args[0]).__qualname__} buffer (another object's memory)")


def _ufunc_target(module: Any, name: Any) -> Pair | None:
    if not (isinstance(module, str) and isinstance(name, str)):
        return None
    pair = (_UFUNC_MODULE_ALIASES.get(module, module), name)
    return pair if pair in ufunc_pairs() else None


def _static_ufunc(args: Any) -> str | None:
    a = _arity(args, 2, 2)
    if a is None or _ufunc_target(a[0], a[1]) is None:
        return "arguments that do not name an allow-listed ufunc"
    return None


def _ufunc_reconstruct(module: str, name: str) -> Any:
    """The replacement of numpy's ``_ufunc_reconstruct``: only allow-listed ufuncs."""
    import numpy as np

    pair = _ufunc_target(module, name)
    if pair is None:
        raise refuse("numpy.core._ufunc_reconstruct", f"({module!r}, {name!r})")
    ufunc = _resolve(pair)
    if not isinstance(ufunc, np.ufunc):
        raise refuse("numpy.core._ufunc_reconstruct", f"({module!r}, {name!r})")
    return ufunc


def _static_bitgen(args: Any) -> str | None:
    a = _arity(args, 0, 1)
    if a is None:
        return "the wrong number of arguments"
    if a and not (a[0] in BIT_GENERATOR_NAMES or _class_global(a[0], _BIT_GENERATOR_CLASSES)):
        return "something other than a numpy bit generator"
    return None


def _check_bitgen(*args: Any) -> None:
    if len(args) > 1:
        raise refuse("numpy.random._pickle.__bit_generator_ctor", "too many arguments")
    if not args:
        return
    value = args[0]
    ok = value in BIT_GENERATOR_NAMES if isinstance(value, str) else (
        allowed_class(value)
        and (value.__module__, value.__qualname__) in _BIT_GENERATOR_CLASSES)
    if not ok:
        raise refuse("numpy.random._pickle.__bit_generator_ctor", f"{value!r}")


def _static_rng_ctor(args: Any) -> str | None:
    a = _arity(args, 0, 2)
    if a is None:
        return "the wrong number of arguments"
    if a and not (a[0] in BIT_GENERATOR_NAMES or (
            isinstance(a[0], Obj) and a[0].label == ".".join(_BIT_GENERATOR_CTOR))):
        return "something other than a numpy bit generator"
    if len(a) == 2 and not (isinstance(a[1], Global)
                            and (a[1].module, a[1].name) == _BIT_GENERATOR_CTOR):
        return "a constructor other than numpy's bit generator constructor"
    return None


def _check_rng_ctor(what: str) -> Callable[..., None]:
    def check(*args: Any) -> None:
        from numpy.random import BitGenerator

        if len(args) > 2:
            raise refuse(what, "too many arguments")
        if args and not (isinstance(args[0], BitGenerator)
                         or (isinstance(args[0], str) and args[0] in BIT_GENERATOR_NAMES)):
            raise refuse(what, f"{args[0]!r}")
        if len(args) == 2 and args[1] is not guarded_function(_BIT_GENERATOR_CTOR):
            raise refuse(what, f"the constructor {args[1]!r}")
    return check


def _class_of(pair: Pair) -> Callable[[], type]:
    return lambda: _resolve(pair)


def _validate_arrow(array: Any) -> None:
    try:
        array.validate(full=True)
    except Exception as exc:
        raise refuse("pyarrow.lib._restore_array", f"an invalid Arrow array ({exc})") from exc


def _numpy_ndarray() -> type:
    import numpy as np

    return np.ndarray


def _masked_array() -> type:
    import numpy as np

    return np.ma.MaskedArray


def _pandas(name: str) -> Callable[[], type]:
    def get() -> type:
        import pandas as pd

        cls: type = getattr(pd, name)
        return cls
    return get


def _no_check(*args: Any) -> None:
    return None


def _pyx(pair: Pair) -> Guard:
    """A Cython ``__pyx_unpickle_X(cls, checksum, state)``: cls must be X (or a subclass)."""
    dotted = ".".join(pair)
    return Guard(_static_classes(1, {pair}, low=2), _subclass_check(dotted, _class_of(pair)))


_METRIC_BASE: Pair = ("sklearn.metrics._dist_metrics", "DistanceMetric")
_KD: Pair = ("sklearn.neighbors._kd_tree", "KDTree")
_BALL: Pair = ("sklearn.neighbors._ball_tree", "BallTree")

GUARDS: dict[Pair, Guard] = {
    ("_codecs", "encode"): Guard(_static_codecs, _check_codecs),
    ("copyreg", "_reconstructor"): Guard(_static_reconstructor, _check_reconstructor),
    ("numpy._core.multiarray", "_reconstruct"): Guard(
        _static_empty(1, 1),
        _empty_check("numpy._core.multiarray._reconstruct", 1, _subclass_check(
            "numpy._core.multiarray._reconstruct", _numpy_ndarray))),
    FROMBUFFER: Guard(_static_frombuffer, _check_frombuffer),
    ("numpy.core", "_ufunc_reconstruct"): Guard(_static_ufunc, _no_check),
    ("numpy.ma.core", "_mareconstruct"): Guard(
        _static_empty(2, 2),
        _empty_check("numpy.ma.core._mareconstruct", 2, _subclass_check(
            "numpy.ma.core._mareconstruct", _masked_array, _numpy_ndarray))),
    ("numpy.random._pickle", "__randomstate_ctor"): Guard(
        _static_rng_ctor, _check_rng_ctor("numpy.random._pickle.__randomstate_ctor")),
    ("numpy.random._pickle", "__generator_ctor"): Guard(
        _static_rng_ctor, _check_rng_ctor("numpy.random._pickle.__generator_ctor")),
    _BIT_GENERATOR_CTOR: Guard(_static_bitgen, _check_bitgen),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"):
        _pyx(("numpy.random.bit_generator", "SeedSequence")),
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfMultinomialLoss"):
        _pyx(("sklearn._loss._loss", "CyHalfMultinomialLoss")),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"): Guard(
        _static_classes(1, low=2),
        _subclass_check("pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
                        _class_of(("pandas._libs.arrays", "NDArrayBacked")))),
    ("sklearn.neighbors._kd_tree", "newObj"): Guard(
        _static_classes(1, {_KD}), _subclass_check("newObj", _class_of(_KD))),
    ("sklearn.neighbors._ball_tree", "newObj"): Guard(
        _static_classes(1, {_BALL}), _subclass_check("newObj", _class_of(_BALL))),
    ("sklearn.metrics._dist_metrics", "newObj"): Guard(
        _static_classes(1), _subclass_check("newObj", _class_of(_METRIC_BASE))),
    ("pandas.core.indexes.base", "_new_Index"): Guard(
        _static_classes(1, _PANDAS_INDEXES, low=2),
        _subclass_check("pandas.core.indexes.base._new_Index", _pandas("Index"))),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"): Guard(
        _static_classes(1, {("pandas", "DatetimeIndex")}, low=2),
        _subclass_check("_new_DatetimeIndex", _pandas("DatetimeIndex"))),
    ("pandas.core.indexes.interval", "_new_IntervalIndex"): Guard(
        _static_classes(1, {("pandas", "IntervalIndex")}, low=2),
        _subclass_check("_new_IntervalIndex", _pandas("IntervalIndex"))),
    ("pyarrow.lib", "_restore_array"): Guard(lambda args: None, _no_check, _validate_arrow),
}

# Every guarded entry of the allow list has a guard, and nothing else does.
assert set(GUARDS) == set(GUARDED_FUNCTIONS), set(GUARDS) ^ set(GUARDED_FUNCTIONS)


#: Constructors whose integer argument is a size to allocate: ``bytes(3_500_000_000)`` is
#: a 32-byte file that commits gigabytes (they are built from the file's own bytes only).
SIZED = frozenset({("builtins", "bytes"), ("builtins", "bytearray")})


#: what the scanner's stand-in for an integer the file computes is labelled
_INTEGERS = frozenset({"builtins.int", "builtins.bool"})


def sized_problem(module: str, name: str, args: Any) -> str | None:
    """Why a call (or ``__new__``) of ``bytes``/``bytearray`` with ``args`` is refused: a
    size instead of data (a literal integer, or one the file computes with ``int``); None:
    fine. Works on real arguments and on the scanner's stand-ins alike."""
    if canonical(module, name) not in SIZED or not isinstance(args, tuple) or not args:
        return None
    first = args[0]
    if isinstance(first, int) or (isinstance(first, Obj) and first.label in _INTEGERS):
        return "a size, not data (it would allocate memory the file does not hold)"
    return None


def static_problem(module: str, name: str, args: Any) -> str | None:
    """Scan time: why the emulated ``args`` of a guarded call are refused (None: fine)."""
    guard = GUARDS.get(canonical(module, name))
    if guard is None:
        return None
    return guard.static(args)


@functools.cache
def guarded_function(pair: Pair) -> Callable[..., Any]:
    """The wrapper handed out at load time for a guarded function (one object per pair)."""
    pair = canonical(*pair)
    guard = GUARDS[pair]
    dotted = ".".join(pair)
    real: Callable[..., Any] = (
        _ufunc_reconstruct if pair == ("numpy.core", "_ufunc_reconstruct") else _resolve(pair))

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            raise refuse(dotted, "keyword arguments")
        guard.check(*args)
        result = real(*args)
        if guard.after is not None:
            guard.after(result)
        return result

    wrapper.__name__ = wrapper.__qualname__ = f"guarded_{pair[1]}"
    wrapper.__doc__ = f"{dotted} with its arguments checked (see mlops.flavors.pickle_guards)."
    return wrapper
