"""Values the pickle scanner's opcode emulator puts on its stack and memo.

Literals (str, bytes, int, float, bool, None), tuples and lists are kept as themselves;
everything else is one of the stand-ins here: an imported global, an opaque object, a
dict that is never hashed, a joblib ``NumpyArrayWrapper`` and a ``numpy.dtype``.
Nothing from the file is ever imported, called or hashed.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np

from mlops.flavors.state_checks import flags_problem

__all__ = [
    "LITERALS",
    "MISSING",
    "WRAPPER_GLOBAL",
    "Dtype",
    "EDict",
    "Global",
    "Obj",
    "Wrapper",
    "kind_of",
]

WRAPPER_GLOBAL = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_DTYPE_SPEC = re.compile(r"[<>=|]?[A-Za-z][0-9]{0,10}")


class Global:
    """A global the stream imported (module, name after protocol-2 name mapping)."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def is_wrapper_class(self) -> bool:
        # Any class called NumpyArrayWrapper is treated as joblib's (conservative).
        return self.name.rpartition(".")[2] == WRAPPER_GLOBAL[1]

    @property
    def is_dtype(self) -> bool:
        return (self.module, self.name) == ("numpy", "dtype")

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class Obj:
    """An opaque object; ``tainted`` if it may be or hold a NumpyArrayWrapper.

    ``origin`` is the global that built it: the class of a NEWOBJ/``_reconstructor``, or
    the class or function a REDUCE called (None when unknown). The static object-graph
    rules (:mod:`mlops.flavors.static_state`) use it to know what the object is.
    """

    __slots__ = ("label", "origin", "tainted")

    def __init__(self, label: str, tainted: bool = False, origin: Global | None = None) -> None:
        self.label = label
        self.tainted = tainted
        self.origin = origin


class EDict:
    """An emulated dict: a list of (key, value) pairs.

    Keys are never hashed: hashing a deeply nested tuple from the file would crash
    the interpreter (C stack overflow), so lookups compare ``str`` keys only.
    """

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]] | None = None) -> None:
        self.pairs: list[tuple[Any, Any]] = pairs or []


class Wrapper:
    """An emulated ``joblib.numpy_pickle.NumpyArrayWrapper`` instance."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.attrs: dict[str, Any] = attrs or {}


class Dtype:
    """An emulated ``numpy.dtype(*args)`` object with its ``__setstate__`` state."""

    __slots__ = ("args", "state")

    def __init__(self, args: Any) -> None:
        self.args = args
        self.state: Any = None

    def layout(
        self, cache: dict[int, tuple[int, bool] | None] | None = None
    ) -> tuple[int, bool] | None:
        """(itemsize, hasobject) as numpy would see them, or None if unsure."""
        cache = {} if cache is None else cache
        if id(self) in cache:
            return cache[id(self)]  # also stops reference cycles (None while in progress)
        if len(cache) > 10_000:
            return None
        cache[id(self)] = None
        result = self._layout(cache)
        cache[id(self)] = result
        return result

    def _layout(self, cache: dict[int, tuple[int, bool] | None]) -> tuple[int, bool] | None:
        args = self.args
        if not (isinstance(args, tuple) and len(args) == 3):
            return None
        spec, align, copy = args
        if not (isinstance(spec, str) and _DTYPE_SPEC.fullmatch(spec)):
            return None
        if not isinstance(align, bool) or copy is not True:
            return None  # copy=False would hand back (and ignore state on) a builtin
        try:
            base = np.dtype(spec)  # a literal type code only; nothing from the pickle runs
        except (TypeError, ValueError):
            return None
        if base.kind not in "biufcmMOSUV":
            return None
        state = self.state
        if state is None:
            return base.itemsize, bool(base.hasobject)
        if not (isinstance(state, tuple) and len(state) in (8, 9)):
            return None
        elsize, flags = state[5], state[7]
        if not (isinstance(elsize, int) and isinstance(flags, int)):
            return None
        itemsize = elsize if base.kind in "SUV" else base.itemsize
        if itemsize < 0:
            return None
        structural = self._structure(base.kind, itemsize, cache)
        # numpy trusts the pickled flags; insist they agree with the structure.
        if structural is None or flags_problem(structural, flags) is not None:
            return None
        return itemsize, structural

    def _structure(
        self, kind: str, itemsize: int, cache: dict[int, tuple[int, bool] | None]
    ) -> bool | None:
        """Whether the layout holds objects; None if a field or sub-array does not fit."""
        if kind == "O":
            return True
        state = self.state
        if state is None:
            return False
        subarray, fields = state[2], state[4]
        if (subarray is not None or fields is not None) and kind != "V":
            return None
        found = False
        if subarray is not None:
            if not (isinstance(subarray, tuple) and len(subarray) == 2
                    and isinstance(subarray[0], Dtype) and isinstance(subarray[1], tuple)
                    and all(isinstance(d, int) and d >= 0 for d in subarray[1])):
                return None
            sub = subarray[0].layout(cache)
            if sub is None or sub[0] * int(np.prod(subarray[1], dtype=np.int64)) != itemsize:
                return None
            found = sub[1]
        if fields is not None:
            if not isinstance(fields, EDict):
                return None
            spans = []
            for key, entry in fields.pairs:
                if not (isinstance(entry, tuple) and len(entry) in (2, 3)
                        and isinstance(entry[0], Dtype) and isinstance(entry[1], int)):
                    return None
                if len(entry) == 3 and key == entry[2] and isinstance(key, str):
                    continue  # the title's alias of a field listed under its name
                sub = entry[0].layout(cache)
                if sub is None or entry[1] < 0 or entry[1] + sub[0] > itemsize:
                    return None
                spans.append((entry[1], entry[1] + sub[0], sub[1]))
                found = found or sub[1]
            if found and _overlap(spans):
                return None
        return found


def _overlap(spans: list[tuple[int, int, bool]]) -> bool:
    """Whether two fields overlap (numpy refuses that next to objects)."""
    ordered = sorted((start, end) for start, end, _ in spans)
    return any(a_end > b_start for (_, a_end), (b_start, _) in itertools.pairwise(ordered))


LITERALS = (str, bytes, int, float, type(None))
MISSING = object()


def kind_of(value: Any) -> str:
    """Name of an emulated value's type, for messages."""
    if isinstance(value, EDict):
        return "dict"
    if isinstance(value, (Wrapper, Dtype, Obj, Global)):
        return "object"
    return type(value).__name__
