"""Load pickle and joblib model files without letting them import or call anything
that is not on the allow list.

This is the load-time half of the policy (the static scan at registration is the other):
even if the scanner had a bug, a file loaded here can only reach allow-listed globals.

* :class:`RestrictedUnpickler` (plain pickles, and the nested pickles of joblib object
  arrays) and :class:`RestrictedNumpyUnpickler` (joblib files: a subclass of joblib's
  ``NumpyUnpickler``) resolve every GLOBAL/STACK_GLOBAL/INST and every copyreg extension
  code through :func:`resolve_global`: exact allow-list entries only, guarded functions
  replaced by their vetted wrappers (:mod:`mlops.flavors.pickle_guards`), anything else
  :class:`~mlops.errors.UnsafeModel`. Nothing named by the file is imported before the
  name has passed the list.
* BUILD, SETITEM(S), APPEND(S) and ADDITEMS may not touch the classes and functions the
  file imported (no monkeypatching of library objects), and the container opcodes may
  only fill plain dicts, lists and sets (not an ndarray or a library object that was
  already checked). REDUCE/INST/OBJ may not call the allowed classes whose constructor
  reads files (:data:`~mlops.flavors.allowlist.NO_CALL_CLASSES`); those are only built
  with ``cls.__new__`` + ``__setstate__``.
* REDUCE/INST/OBJ only call the globals the file imported (and the guarded wrappers
  handed out for them), never an object the file built: a ``functools.partial`` or a
  scorer calls what it holds, which would bypass every rule on what may be called.
* No numpy array is constructed by the file itself: REDUCE/INST/OBJ/NEWOBJ/NEWOBJ_EX of
  ``numpy.ndarray`` or any subclass are refused (uninitialised memory, or another array's
  memory with ``buffer=``), and so are the guarded reconstructors' other ways to the same
  (:mod:`mlops.flavors.pickle_guards`). Arrays come from ``_reconstruct``/``_mareconstruct``
  with the empty shape + ``__setstate__``, ``_frombuffer`` of bytes, or joblib's wrapper;
  one bytes/bytearray object may back one array only (``_frombuffer`` views its buffer and
  ``ndarray.__setstate__`` keeps raw data over 1000 bytes, writable: two arrays over one
  memoized buffer would share memory).
* A pandas object's ``_cache`` is emptied right after its BUILD (pandas trusts its cache
  and refills it on use), and the finished object must satisfy the rules on what allowed
  objects may hold (:mod:`mlops.flavors.graph_policy`).
* Objects whose native code trusts their state are checked by
  :mod:`mlops.flavors.state_checks`: numpy dtypes and pandas block placements/codes right
  after each construction or BUILD (other library code may use them before loading ends),
  trees, neighbour trees and sparse matrices on the finished object.

Both unpicklers are pure-Python (``pickle._Unpickler``, like joblib's): the C unpickler
cannot intercept BUILD, and one BUILD with forged numpy dtype flags is enough for memory
corruption. On a 200-tree random forest a restricted load takes about 1.4x ``joblib.load``
(33 ms vs 23 ms here, of which about 1 ms is the object-graph rules; ``pickle.loads`` of
the same forest takes 3 ms).
"""

from __future__ import annotations

import copyreg
import functools
import importlib
import io
import math
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from mlops.errors import FlavorError, UnsafeModel
from mlops.flavors.allowlist import CLASS, GUARDED, Pair, canonical, kind_of, no_call
from mlops.flavors.graph_policy import drop_pandas_cache
from mlops.flavors.pickle_compression import (
    MAX_DECOMPRESSED_BYTES,
    ZFILE,
    DecompressError,
    decompress,
    detect_compression,
)
from mlops.flavors.pickle_guards import (
    FROMBUFFER,
    allowed_class,
    array_memory,
    guarded_function,
    is_array_type,
    refuse,
    sized_problem,
)
from mlops.flavors.pickle_policy import effective_global, is_denied
from mlops.flavors.state_checks import validate, validate_graph

__all__ = [
    "RestrictedNumpyUnpickler",
    "RestrictedUnpickler",
    "load_restricted",
    "resolve_global",
]

_FIX = ("Save the model with skops or ONNX; if you wrote this file yourself and trust it, "
        "pass trust=True (recorded in the audit log).")


@functools.cache
def _resolve(pair: Pair) -> Any:
    obj: Any = importlib.import_module(pair[0])
    for part in pair[1].split("."):
        obj = getattr(obj, part)
    return obj


def resolve_global(module: str, name: str) -> Any:
    """The object an allow-listed global stands for (a wrapper for guarded functions).

    Raises :class:`~mlops.errors.UnsafeModel` for anything not on the list; the module is
    imported only after the exact name has passed.
    """
    dotted = f"{module}.{name}"
    kind = kind_of(module, name)
    if kind is None:
        label = "a denied global" if is_denied(module, name) else "not on the allow list"
        raise UnsafeModel(f"The model file imports {dotted} ({label}); refused at load time.",
                          offending=[dotted], fix=_FIX)
    pair = canonical(module, name)
    if kind == GUARDED:
        return guarded_function(pair)
    obj = _resolve(pair)
    if (kind == CLASS) != isinstance(obj, type):
        raise UnsafeModel(f"{dotted} is not the kind of object the allow list expects.",
                          offending=[dotted], fix=_FIX)
    return obj


# --------------------------------------------------------------------------------------
# the checks shared by both unpicklers

_MUTATORS = {"SETITEM": dict, "SETITEMS": dict, "APPEND": list, "APPENDS": list,
             "ADDITEMS": set}


class _Restrictions:
    """find_class, extension codes and the opcode checks of both restricted unpicklers."""

    stack: list[Any]
    metastack: list[list[Any]]
    proto: int
    append: Callable[[Any], None]

    def _init_restrictions(self) -> None:
        self._found: dict[int, Any] = {}
        self._array_memory: dict[int, Any] = {}  # id -> buffer (kept alive: ids stay unique)

    def find_class(self, module: str, name: str) -> Any:
        module, name = effective_global(module, name, self.proto)
        obj = resolve_global(module, name)
        self._found[id(obj)] = obj
        return obj

    def get_extension(self, code: int) -> None:
        # Always through find_class: the unpickler's extension cache would skip it.
        key = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
        if not key:
            raise UnsafeModel(f"The model file uses the unregistered extension code {code}.",
                              offending=[f"<extension code {code}>"], fix=_FIX)
        self.append(self.find_class(*key))

    def _callable(self, func: Any) -> None:
        if id(func) not in self._found:
            # An object the file built calls what it holds: partial(numpy.ndarray, shape)(),
            # partial(Booster, model_file=...)(), a scorer running an estimator at load time.
            raise refuse(f"a {type(func).__qualname__} object",
                         "a call of something the file built (only imported globals are "
                         "called)")
        if isinstance(func, type) and no_call(func.__module__, func.__qualname__):
            raise refuse(f"{func.__module__}.{func.__qualname__}",
                         "a constructor call (it reads a file named by its arguments)")
        self._no_array(func)

    def _no_array(self, cls: Any) -> None:
        """numpy arrays are never constructed by the file (REDUCE/INST/OBJ/NEWOBJ*)."""
        if is_array_type(cls):
            raise refuse(f"{cls.__module__}.{cls.__qualname__}",
                         "a direct construction (numpy arrays are only rebuilt by "
                         "_reconstruct/_frombuffer/joblib: ndarray(shape) is uninitialised "
                         "memory, buffer= another array's memory)")

    def _claim(self, buf: Any, what: str) -> None:
        """One bytes/bytearray object backs at most one array (else they share memory)."""
        if array_memory(buf):
            if id(buf) in self._array_memory:
                raise refuse(what, "a buffer another array is already built over (the two "
                                   "would share memory)")
            self._array_memory[id(buf)] = buf

    def _instantiate(self, klass: Any, args: list[Any]) -> Any:
        self._callable(klass)  # INST and OBJ
        _refuse_sized(klass, tuple(args))
        return super()._instantiate(klass, args)  # type: ignore[misc]

    def _no_global(self, target: Any, opname: str) -> None:
        if id(target) in self._found:
            what = getattr(target, "__qualname__", repr(target))
            raise refuse(f"{opname} on {what}", "a library object as its target "
                                                "(monkeypatching)")

    def _container(self, target: Any, opname: str) -> None:
        self._no_global(target, opname)
        base = _MUTATORS[opname]
        if not (isinstance(target, base) and (type(target) is base or allowed_class(type(target)))):
            raise refuse(f"{opname} on a {type(target).__qualname__}",
                         "a target that is not a plain container")


def _refuse_sized(func: Any, args: Any) -> None:
    """bytes/bytearray built from a size (see :data:`~mlops.flavors.pickle_guards.SIZED`)."""
    if func is bytes or func is bytearray:
        problem = sized_problem("builtins", func.__name__, args)
        if problem:
            raise refuse(f"builtins.{func.__name__}", problem)


def _raw_data(array: np.ndarray, state: tuple[Any, ...]) -> tuple[Any, ...]:
    """The raw data ``__setstate__`` builds ``array`` over: ``(version, shape, dtype,
    fortran, raw)`` (or without the version) for ndarrays, raw data and mask for masked
    arrays (``(version, shape, dtype, fortran, raw, mask, fill_value)``)."""
    if isinstance(array, np.ma.MaskedArray):
        return state[4:6] if len(state) == 7 else ()
    return state[-1:] if len(state) in (4, 5) else ()


def _checked_dispatch(base: dict[int, Callable[[Any], None]], joblib: bool
                      ) -> dict[int, Callable[[Any], None]]:
    """A copy of an unpickler dispatch table with the restrictions wrapped around it."""
    table = dict(base)
    plain_build = pickle._Unpickler.load_build  # type: ignore[attr-defined]

    def after(op: bytes) -> None:
        original = base[op[0]]

        def run(self: Any) -> None:
            original(self)
            validate(self.stack[-1])

        table[op[0]] = run

    for op in (pickle.REDUCE, pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.OBJ, pickle.INST):
        after(op)

    reduce_then_check = table[pickle.REDUCE[0]]
    frombuffer = guarded_function(FROMBUFFER)

    def reduce(self: Any) -> None:
        func = self.stack[-2] if len(self.stack) >= 2 else None
        self._callable(func)
        _refuse_sized(func, self.stack[-1] if self.stack else None)
        if func is frombuffer and isinstance(self.stack[-1], tuple) and self.stack[-1]:
            self._claim(self.stack[-1][0], ".".join(FROMBUFFER))
        reduce_then_check(self)

    table[pickle.REDUCE[0]] = reduce

    def new_object(op: bytes, depth: int) -> None:
        """NEWOBJ (cls below args) and NEWOBJ_EX (cls below args, kwargs)."""
        original = table[op[0]]

        def run(self: Any) -> None:
            if len(self.stack) >= depth:
                self._no_array(self.stack[-depth])
                _refuse_sized(self.stack[-depth], self.stack[-depth + 1])
            original(self)

        table[op[0]] = run

    new_object(pickle.NEWOBJ, 2)
    new_object(pickle.NEWOBJ_EX, 3)

    def mutator(op: bytes, opname: str, target: Callable[[Any], Any]) -> None:
        original = base[op[0]]

        def run(self: Any) -> None:
            found = target(self)
            if found is not None:
                self._container(found[0], opname)
            original(self)

        table[op[0]] = run

    def below_mark(self: Any) -> tuple[Any] | None:
        return (self.metastack[-1][-1],) if self.metastack and self.metastack[-1] else None

    def at(depth: int) -> Callable[[Any], tuple[Any] | None]:
        return lambda self: (self.stack[-depth],) if len(self.stack) >= depth else None

    mutator(pickle.SETITEM, "SETITEM", at(3))
    mutator(pickle.SETITEMS, "SETITEMS", below_mark)
    mutator(pickle.APPEND, "APPEND", at(2))
    mutator(pickle.APPENDS, "APPENDS", below_mark)
    mutator(pickle.ADDITEMS, "ADDITEMS", below_mark)

    def build(self: Any) -> None:
        inst = self.stack[-2] if len(self.stack) >= 2 else None
        self._no_global(inst, "BUILD")
        if isinstance(inst, np.ndarray) and isinstance(self.stack[-1], tuple):
            for buf in _raw_data(inst, self.stack[-1]):
                self._claim(buf, f"{type(inst).__qualname__}.__setstate__")
        plain_build(self)
        drop_pandas_cache(self.stack[-1])
        validate(self.stack[-1])
        if joblib and type(self.stack[-1]) is NumpyArrayWrapper:
            self.stack.append(self._read_array(self.stack.pop()))

    table[pickle.BUILD[0]] = build
    return table


class RestrictedUnpickler(_Restrictions, pickle._Unpickler):
    """A pickle unpickler that only reaches allow-listed globals (see the module doc)."""

    dispatch = _checked_dispatch(pickle._Unpickler.dispatch, joblib=False)

    def __init__(self, file: io.BufferedIOBase | io.BytesIO) -> None:
        super().__init__(file)
        self._init_restrictions()


class RestrictedNumpyUnpickler(_Restrictions, NumpyUnpickler):
    """joblib's ``NumpyUnpickler`` restricted like :class:`RestrictedUnpickler`.

    Array bytes after a ``NumpyArrayWrapper`` are read here, not by joblib: the size must
    fit in what is left of the file, the dtype must pass its checks, and an object array
    (a nested pickle) is read by a fresh :class:`RestrictedUnpickler`.
    """

    dispatch = _checked_dispatch(NumpyUnpickler.dispatch, joblib=True)

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__("", file, ensure_native_byte_order=True)
        self._init_restrictions()

    def _read_array(self, wrapper: Any) -> Any:
        dtype, shape = getattr(wrapper, "dtype", None), getattr(wrapper, "shape", None)
        if not isinstance(dtype, np.dtype):  # (checked when it was built)
            raise refuse("joblib NumpyArrayWrapper", "a dtype that is not a numpy dtype")
        if getattr(wrapper, "subclass", None) is not np.ndarray:
            raise refuse("joblib NumpyArrayWrapper", "an array class other than numpy.ndarray")
        if not (isinstance(shape, tuple) and all(type(d) is int and d >= 0 for d in shape)):
            raise refuse("joblib NumpyArrayWrapper", "a shape that is not a tuple of sizes")
        if getattr(wrapper, "order", "C") not in ("C", "F"):
            raise refuse("joblib NumpyArrayWrapper", "an unknown memory order")
        if dtype.hasobject:
            return RestrictedUnpickler(self.file_handle).load()
        handle = self.file_handle
        with handle.getbuffer() as view:
            left = view.nbytes - handle.tell()
        if math.prod(shape) * dtype.itemsize > left:
            raise FlavorError("A joblib array in the model file is larger than the file.",
                              fix="Check that the file is complete; save the model again.")
        return wrapper.read(self, True)


def load_restricted(data: bytes) -> Any:
    """Load a pickle or joblib file (compressed or not) with the restricted unpicklers.

    Raises :class:`~mlops.errors.UnsafeModel` when the file reaches anything off the
    allow list or holds inconsistent state, and FlavorError/Exception subclasses of
    pickle for a damaged file.
    """
    kind = detect_compression(data)
    if kind is not None:
        try:
            data = decompress(kind, data, MAX_DECOMPRESSED_BYTES)
        except DecompressError as exc:
            raise FlavorError(f"Cannot decompress the model file: {exc}.",
                              fix="Check that the file is complete; save the model again.") \
                from exc
    handle = io.BytesIO(data)
    if kind == ZFILE:  # joblib < 0.9.3 containers hold a plain pickle
        obj = RestrictedUnpickler(handle).load()
    else:
        obj = RestrictedNumpyUnpickler(handle).load()
    validate_graph(obj)
    return obj
