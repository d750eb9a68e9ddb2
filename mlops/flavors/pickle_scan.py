"""Static safety scanner for pickle and joblib model files.

The scanner never unpickles anything: no ``pickle.load``, no ``joblib.load``, no
``find_class``, no import of a module named in the file. It walks the opcode stream
with a small emulator (stack, memo, frames, literal values) and reports every global
the file would import, judged against an allow list.

Formats handled:

* plain pickle streams, protocols 0-5, several pickles concatenated;
* joblib (>= 0.10) files: each ``joblib.numpy_pickle.NumpyArrayWrapper`` is followed by
  raw array bytes (after optional alignment padding) or, for object arrays, by a nested
  pickle. The emulator follows joblib's ``NumpyUnpickler`` exactly: it knows each
  wrapper's shape and dtype at its ``BUILD``, skips exactly the raw bytes and scans the
  nested pickles. If it cannot tell the size for sure, the file is offending;
* joblib files compressed with zlib, gzip, bz2, lzma, xz (stdlib) or lz4 (only when the
  ``lz4`` package is installed), and the legacy ``ZF`` zlib container;
  decompression is capped at :data:`MAX_DECOMPRESSED_BYTES`.

A result whose ``format`` starts with ``"joblib"`` is only judged for ``joblib.load``:
the raw array bytes in such a file are not pickle opcodes, so never open it with
``pickle.load``. A ``"pickle"`` result holds for both loaders.

Policy: allow-list semantics. A global is accepted only if it is on the exact allow list
(:data:`DEFAULT_ALLOWED_EXACT`), or lies under an allowed package
(:data:`DEFAULT_ALLOWED_PACKAGES`) and passes the risky-name rules (no dotted attribute
paths, no test/io/datasets/f2py/ctypeslib/... submodules, no load*/save*/read_*/
set_*/eval/system/... names, since these packages re-export dangerous callables), or
matches the caller's ``extra_allowed``. The deny list is checked first and wins even
over ``extra_allowed``; it also makes the report say "denied" for known attack
primitives. ``functools.partial`` is allowed: it can only wrap callables that are
themselves globals in the file, and those are scanned too.
``operator.attrgetter``/``methodcaller``/``itemgetter`` are denied because, like
``getattr``, they reach any attribute or method.

Bad data never raises: a corrupt, truncated, ambiguous or unparseable file is reported as
offending. Only I/O errors (e.g. a missing file) and a malformed ``extra_allowed``
argument raise.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import codecs
import copyreg
import lzma
import mmap
import os
import pickle
import re
import struct
import sys
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ALLOWED_EXACT",
    "DEFAULT_ALLOWED_PACKAGES",
    "MAX_DECOMPRESSED_BYTES",
    "ScanResult",
    "scan_pickle_bytes",
    "scan_pickle_file",
]

#: Largest decompressed stream the scanner accepts (zip-bomb guard); bigger is offending.
MAX_DECOMPRESSED_BYTES = 4 * 1024**3

#: Packages whose globals are allowed (subject to the risky-name rules below).
DEFAULT_ALLOWED_PACKAGES: tuple[str, ...] = (
    "numpy",
    "scipy",
    "sklearn",
    "xgboost",
    "lightgbm",
    "pandas",
)


def _words(text: str) -> list[str]:
    """Split a whitespace-separated word list."""
    return text.split()


_SAFE_BUILTINS = _words(
    "dict list set frozenset tuple int float complex bool str bytes bytearray slice range object"
)

#: Exact ``module.name`` globals a model legitimately needs outside the allowed packages.
DEFAULT_ALLOWED_EXACT: frozenset[str] = frozenset(
    [f"builtins.{n}" for n in _SAFE_BUILTINS]
    + [
        "copyreg._reconstructor",
        "copyreg.__newobj__",
        "copyreg.__newobj_ex__",
        "_codecs.encode",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "datetime.date",
        "datetime.time",
        "datetime.datetime",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "functools.partial",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        # pandas >= 3 keeps string columns in Arrow arrays.
        "pyarrow.lib._restore_array",
        "pyarrow.lib.py_buffer",
        "pyarrow.lib.type_for_alias",
    ]
)

# --- deny list (exact names and whole modules; never substrings) -----------------------

_DENIED_MODULES = frozenset(
    _words(
        """os nt posix posixpath ntpath subprocess sys socket runpy pty pickle _pickle shutil
    webbrowser importlib ctypes _ctypes code codeop multiprocessing asyncio http urllib
    requests marshal types pydoc pdb bdb timeit cProfile profile trace doctest pkgutil
    zipimport imp inspect gc tempfile io _io signal threading _thread ssl ftplib smtplib
    telnetlib xmlrpc socketserver platform sysconfig site distutils setuptools pip venv
    ensurepip dill cloudpickle joblib.numpy_pickle_compat joblib._memmapping_reducer
    _posixsubprocess _winapi msvcrt"""
    )
)

_DENIED_BUILTINS = frozenset(
    _words(
        """eval exec compile open getattr setattr delattr __import__ breakpoint input globals
    locals vars exit quit help"""
    )
)

_DENIED_NAMES = frozenset(
    [("builtins", n) for n in _DENIED_BUILTINS]
    + [("operator", n) for n in ("attrgetter", "methodcaller", "itemgetter")]
    + [("_operator", n) for n in ("attrgetter", "methodcaller", "itemgetter")]
    + [("joblib.numpy_pickle", n) for n in ("NDArrayWrapper", "ZNDArrayWrapper")]
    + [("joblib", n) for n in ("load", "dump")]
    + [("codecs", "open")]
)

# Attribute names that turn a dotted (protocol >= 4) global into an escape hatch.
_DENIED_ATTRS = frozenset(
    _words(
        """__globals__ __builtins__ __subclasses__ __getattribute__ __getattr__ __dict__
    __class__ __bases__ __base__ __mro__ __code__ __closure__ __func__ __self__
    __init_subclass__ __reduce__ __reduce_ex__ __setstate__ __call__ __loader__
    __spec__"""
    )
)

# --- risky-name rules for package (wildcard) matches -----------------------------------

_RISKY_COMPONENTS = frozenset(
    _words(
        """distutils f2py ctypeslib _distributor_init io datasets externals computation npyio
    _npyio_impl _datasource tracker dask spark collective federated libpath _ccallback
    format estimator_checks _joblib"""
    )
)
_RISKY_NAMES = frozenset(
    _words(
        """eval exec compile open getattr setattr delattr __import__ globals locals vars
    breakpoint input system popen Popen call check_call check_output run getoutput
    getstatusoutput memmap fromfile fromregex tofile lookfor import_module reload
    dlopen CDLL PyDLL WinDLL LibraryLoader LowLevelCallable exit quit help
    builtins __builtins__ __builtin__ setbufsize"""
    )
) | frozenset(m.partition(".")[0] for m in _DENIED_MODULES)
_RISKY_PREFIXES = (
    "read_",
    "to_",
    "save",
    "load",
    "dump",
    "fetch_",
    "write",
    "set_",
    "seterr",
    "spawn",
    "exec",
    "popen",
    "system",
    "open",
    "eval",
    "import",
)

_WRAPPER_GLOBAL = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_WRAPPER_ATTRS = frozenset(
    ["subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"]
)
_DTYPE_SPEC = re.compile(r"[<>=|]?[A-Za-z][0-9]{0,10}")
_NPY_ITEM_HASOBJECT = 0x01
_TAINT_BUDGET = 20_000_000
_SMALL_BYTES = 4096
_MAX_PROBLEMS = 100

_Buffer = bytes | mmap.mmap


@dataclass(frozen=True)
class ScanResult:
    """What a pickle/joblib file would import, and which of it is not acceptable."""

    imports: tuple[str, ...]
    offending: tuple[str, ...]
    format: str
    denied: tuple[str, ...] = ()

    @property
    def safe(self) -> bool:
        """True when nothing in the file is offending."""
        return not self.offending

    def describe(self) -> str:
        """One-line human summary of why the file is refused ("" when safe)."""
        denied = [o for o in self.offending if o in self.denied]
        other = [o for o in self.offending if o not in self.denied and not o.startswith("<")]
        problems = [o for o in self.offending if o.startswith("<")]
        parts = []
        if denied:
            parts.append("denied: " + ", ".join(denied))
        if other:
            parts.append("not on the allow list: " + ", ".join(other))
        if problems:
            parts.append("problems: " + "; ".join(problems))
        return "; ".join(parts)


# --------------------------------------------------------------------------------------
# policy


class _Policy:
    """Allow/deny decisions for one scan (defaults plus the caller's extra_allowed)."""

    def __init__(self, extra_allowed: Iterable[str]) -> None:
        if isinstance(extra_allowed, str):
            extra_allowed = [extra_allowed]
        exact = set(DEFAULT_ALLOWED_EXACT)
        packages = list(DEFAULT_ALLOWED_PACKAGES)
        for raw in extra_allowed:
            entry = raw.strip()
            if entry.endswith(".*"):
                package = entry[:-2]
                if not package or "*" in package:
                    raise ValueError(f"bad extra_allowed pattern {raw!r}")
                packages.append(package)
            elif entry and "*" not in entry and "." in entry:
                exact.add(entry)
            else:
                raise ValueError(
                    f"bad extra_allowed entry {raw!r}: use 'module.name' or 'package.*'"
                )
        self.exact = frozenset(exact)
        self.packages = tuple(packages)

    @staticmethod
    def is_denied(module: str, name: str) -> bool:
        """True when (module, name) is a known attack primitive."""
        parts = module.split(".")
        for i in range(len(parts)):
            if ".".join(parts[: i + 1]) in _DENIED_MODULES:
                return True
        attrs = name.split(".")
        if (module, attrs[0]) in _DENIED_NAMES:
            return True
        return any(a in _DENIED_ATTRS or a in _DENIED_BUILTINS for a in attrs[1:])

    def is_allowed(self, module: str, name: str) -> bool:
        """True when (module, name) is on the allow list (exact or package rules)."""
        if f"{module}.{name}" in self.exact:
            return True
        if not any(module == p or module.startswith(p + ".") for p in self.packages):
            return False
        if "." in name or name in _RISKY_NAMES or name.startswith(_RISKY_PREFIXES):
            return False
        return not any("test" in c.lower() or c in _RISKY_COMPONENTS for c in module.split("."))


# --------------------------------------------------------------------------------------
# emulated values


class _Global:
    """A global the stream imported (module, name after protocol-2 name mapping)."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def is_wrapper_class(self) -> bool:
        # Any class called NumpyArrayWrapper is treated as joblib's (conservative).
        return self.name.rpartition(".")[2] == _WRAPPER_GLOBAL[1]

    @property
    def is_dtype(self) -> bool:
        return (self.module, self.name) == ("numpy", "dtype")

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class _Obj:
    """An opaque object; ``tainted`` if it may be or hold a NumpyArrayWrapper."""

    __slots__ = ("label", "tainted")

    def __init__(self, label: str, tainted: bool = False) -> None:
        self.label = label
        self.tainted = tainted


class _EDict:
    """An emulated dict: a list of (key, value) pairs.

    Keys are never hashed: hashing a deeply nested tuple from the file would crash
    the interpreter (C stack overflow), so lookups compare ``str`` keys only.
    """

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]] | None = None) -> None:
        self.pairs: list[tuple[Any, Any]] = pairs or []


class _Wrapper:
    """An emulated ``joblib.numpy_pickle.NumpyArrayWrapper`` instance."""

    __slots__ = ("attrs",)

    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        self.attrs: dict[str, Any] = attrs or {}


class _Dtype:
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
        structural = self._structural_hasobject(base.kind, cache)
        if structural is None:
            return None
        state = self.state
        if state is None:
            return base.itemsize, bool(base.hasobject)
        if not (isinstance(state, tuple) and len(state) in (8, 9)):
            return None
        elsize, flags = state[5], state[7]
        if not (isinstance(elsize, int) and isinstance(flags, int)):
            return None
        # numpy trusts the pickled flags; insist they agree with the structure.
        hasobject = bool(flags & _NPY_ITEM_HASOBJECT)
        if hasobject != structural:
            return None
        if base.kind in "SUV":
            if elsize < 0:
                return None
            return elsize, hasobject
        return base.itemsize, hasobject

    def _structural_hasobject(
        self, kind: str, cache: dict[int, tuple[int, bool] | None]
    ) -> bool | None:
        if kind == "O":
            return True
        state = self.state
        if state is None:
            return False
        if not (isinstance(state, tuple) and len(state) in (8, 9)):
            return None
        subarray, fields = state[2], state[4]
        found = False
        if subarray is not None:
            if not (isinstance(subarray, tuple) and subarray and isinstance(subarray[0], _Dtype)):
                return None
            sub = subarray[0].layout(cache)
            if sub is None:
                return None
            found = found or sub[1]
        if fields is not None:
            if not isinstance(fields, _EDict):
                return None
            for _, entry in fields.pairs:
                if not (isinstance(entry, tuple) and entry and isinstance(entry[0], _Dtype)):
                    return None
                sub = entry[0].layout(cache)
                if sub is None:
                    return None
                found = found or sub[1]
        return found


_LITERALS = (str, bytes, int, float, type(None))
_MISSING = object()


def _kind(value: Any) -> str:
    """Name of an emulated value's type, for messages."""
    if isinstance(value, _EDict):
        return "dict"
    if isinstance(value, (_Wrapper, _Dtype, _Obj, _Global)):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------------------
# errors (internal; the public API never raises for bad data)


class _StreamError(Exception):
    """The bytes are not a pickle stream the scanner can vouch for."""


class _Truncated(_StreamError):
    """The stream ends early."""


class _UnknownOpcode(_StreamError):
    """A byte that is no pickle opcode."""


class _JoblibError(Exception):
    """A joblib array whose size cannot be determined exactly."""

    def __init__(self, pos: int, reason: str) -> None:
        super().__init__(reason)
        self.pos = pos


class _Findings:
    """Everything collected during one scan."""

    def __init__(self, policy: _Policy) -> None:
        self.policy = policy
        self.imports: set[str] = set()
        self.bad_globals: set[str] = set()
        self.denied: set[str] = set()
        self.problems: dict[str, None] = {}
        self.dropped_problems = 0
        self.wrapper_class_seen = False
        self.arrays_read = 0
        self.taint_budget = _TAINT_BUDGET

    def add_global(self, module: str, name: str) -> _Global:
        glob = _Global(module, name)
        dotted = glob.dotted
        self.imports.add(dotted)
        if self.policy.is_denied(module, name):
            self.bad_globals.add(dotted)
            self.denied.add(dotted)
        elif not self.policy.is_allowed(module, name):
            self.bad_globals.add(dotted)
        if glob.is_wrapper_class:
            self.wrapper_class_seen = True
        return glob

    def problem(self, text: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems[text] = None
        elif text not in self.problems:
            self.dropped_problems += 1

    def result(self, fmt: str) -> ScanResult:
        problems = list(self.problems)
        if self.dropped_problems:
            problems.append(f"<... and {self.dropped_problems} more problems>")
        return ScanResult(
            imports=tuple(sorted(self.imports)),
            offending=tuple(sorted(self.bad_globals)) + tuple(problems),
            format=fmt,
            denied=tuple(sorted(self.denied)),
        )


def _effective_global(module: str, name: str, proto: int) -> tuple[str, str]:
    """Apply the unpickler's Python 2 name mapping (done for protocols < 3)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


# --------------------------------------------------------------------------------------
# the opcode emulator

_U1 = struct.Struct("<B")
_U2 = struct.Struct("<H")
_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U8 = struct.Struct("<Q")
_F8 = struct.Struct(">d")


def _op(code: bytes) -> int:
    return code[0]


class _Machine:
    """Emulates one ``Unpickler.load()`` from ``pos`` up to and including STOP.

    ``joblib_mode`` adds joblib's ``NumpyUnpickler`` behaviour: after the BUILD of a
    NumpyArrayWrapper the raw array bytes (or a nested pickle) are consumed directly
    from the file.
    """

    def __init__(self, buf: _Buffer, pos: int, findings: _Findings, joblib_mode: bool) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = pos
        self.findings = findings
        self.joblib_mode = joblib_mode
        self.frame_end: int | None = None
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.op_pos = pos
        self.ops: dict[int, Callable[[], None]] = {
            _op(pickle.MARK): self.op_mark,
            _op(pickle.POP): self.op_pop,
            _op(pickle.POP_MARK): self.op_pop_mark,
            _op(pickle.DUP): self.op_dup,
            _op(pickle.FLOAT): self.op_float,
            _op(pickle.INT): self.op_int,
            _op(pickle.BININT): lambda: self.push(self.unpack(_I4)),
            _op(pickle.BININT1): lambda: self.push(self.unpack(_U1)),
            _op(pickle.LONG): self.op_long,
            _op(pickle.BININT2): lambda: self.push(self.unpack(_U2)),
            _op(pickle.NONE): lambda: self.push(None),
            _op(pickle.PERSID): self.op_persid,
            _op(pickle.BINPERSID): self.op_binpersid,
            _op(pickle.REDUCE): self.op_reduce,
            _op(pickle.STRING): self.op_string,
            _op(pickle.BINSTRING): self.op_binstring,
            _op(pickle.SHORT_BINSTRING): lambda: self.push(
                self.raw(self.unpack(_U1)).decode("latin-1")
            ),
            _op(pickle.UNICODE): self.op_unicode,
            _op(pickle.BINUNICODE): lambda: self.push(self.text(self.unpack(_U4))),
            _op(pickle.APPEND): self.op_append,
            _op(pickle.BUILD): self.op_build,
            _op(pickle.GLOBAL): self.op_global,
            _op(pickle.DICT): self.op_dict,
            _op(pickle.EMPTY_DICT): lambda: self.push(_EDict()),
            _op(pickle.APPENDS): self.op_appends,
            _op(pickle.GET): self.op_get,
            _op(pickle.BINGET): lambda: self.get(self.unpack(_U1)),
            _op(pickle.INST): self.op_inst,
            _op(pickle.LONG_BINGET): lambda: self.get(self.unpack(_U4)),
            _op(pickle.LIST): lambda: self.push(self.pop_mark()),
            _op(pickle.EMPTY_LIST): lambda: self.push([]),
            _op(pickle.OBJ): self.op_obj,
            _op(pickle.PUT): self.op_put,
            _op(pickle.BINPUT): lambda: self.put(self.unpack(_U1)),
            _op(pickle.LONG_BINPUT): lambda: self.put(self.unpack(_U4)),
            _op(pickle.SETITEM): self.op_setitem,
            _op(pickle.TUPLE): lambda: self.push(tuple(self.pop_mark())),
            _op(pickle.EMPTY_TUPLE): lambda: self.push(()),
            _op(pickle.SETITEMS): self.op_setitems,
            _op(pickle.BINFLOAT): lambda: self.push(self.unpack(_F8)),
            _op(pickle.PROTO): self.op_proto,
            _op(pickle.NEWOBJ): self.op_newobj,
            _op(pickle.EXT1): lambda: self.ext(self.unpack(_U1)),
            _op(pickle.EXT2): lambda: self.ext(self.unpack(_U2)),
            _op(pickle.EXT4): lambda: self.ext(self.unpack(_I4)),
            _op(pickle.TUPLE1): lambda: self.op_tuple_n(1),
            _op(pickle.TUPLE2): lambda: self.op_tuple_n(2),
            _op(pickle.TUPLE3): lambda: self.op_tuple_n(3),
            _op(pickle.NEWTRUE): lambda: self.push(True),
            _op(pickle.NEWFALSE): lambda: self.push(False),
            _op(pickle.LONG1): lambda: self.push(self.long_bytes(self.unpack(_U1))),
            _op(pickle.LONG4): self.op_long4,
            _op(pickle.BINBYTES): lambda: self.push(self.bytes_value(self.unpack(_U4))),
            _op(pickle.SHORT_BINBYTES): lambda: self.push(self.bytes_value(self.unpack(_U1))),
            _op(pickle.SHORT_BINUNICODE): lambda: self.push(self.text(self.unpack(_U1))),
            _op(pickle.BINUNICODE8): lambda: self.push(self.text(self.unpack(_U8))),
            _op(pickle.BINBYTES8): lambda: self.push(self.bytes_value(self.unpack(_U8))),
            _op(pickle.EMPTY_SET): lambda: self.push(_Obj("set")),
            _op(pickle.ADDITEMS): self.op_additems,
            _op(pickle.FROZENSET): self.op_frozenset,
            _op(pickle.NEWOBJ_EX): self.op_newobj_ex,
            _op(pickle.STACK_GLOBAL): self.op_stack_global,
            _op(pickle.MEMOIZE): self.op_memoize,
            _op(pickle.FRAME): self.op_frame,
            _op(pickle.BYTEARRAY8): self.op_bytearray8,
            _op(pickle.NEXT_BUFFER): lambda: self.push(_Obj("out-of-band buffer")),
            _op(pickle.READONLY_BUFFER): self.op_readonly_buffer,
        }

    # ---- reading ---------------------------------------------------------------------

    def _limit(self) -> int:
        if self.frame_end is not None:
            if self.pos < self.frame_end:
                return self.frame_end
            self.frame_end = None  # frame exhausted: reads go to the file again
        return self.size

    def take(self, n: int) -> int:
        """Consume n bytes of opcode data, returning their start offset."""
        limit = self._limit()
        start = self.pos
        if start + n > limit:
            if limit < self.size:
                raise _StreamError(f"opcode at byte {self.op_pos} crosses the end of a frame")
            raise _Truncated(f"truncated at byte {self.op_pos}")
        self.pos = start + n
        return start

    def raw(self, n: int) -> bytes:
        start = self.take(n)
        return bytes(self.buf[start : start + n])

    def unpack(self, fmt: struct.Struct) -> Any:
        start = self.take(fmt.size)
        return fmt.unpack(self.buf[start : start + fmt.size])[0]

    def line(self) -> bytes:
        limit = self._limit()
        idx = self.buf.find(b"\n", self.pos, limit)
        if idx < 0:
            if limit < self.size:
                raise _StreamError(f"opcode at byte {self.op_pos} crosses the end of a frame")
            raise _Truncated(f"truncated at byte {self.op_pos}")
        data = bytes(self.buf[self.pos : idx])
        self.pos = idx + 1
        return data

    def text(self, n: int) -> Any:
        if n > sys.maxsize:
            raise _StreamError(f"string length too large at byte {self.op_pos}")
        if n > _SMALL_BYTES:
            # Too long to be a name or a joblib literal: skip the decode (e.g. the
            # latin-1 array payloads of protocol 0-2 numpy pickles).
            self.take(n)
            return _Obj("str")
        try:
            return self.raw(n).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise _StreamError(f"bad UTF-8 at byte {self.op_pos}") from exc

    def bytes_value(self, n: int) -> Any:
        if n > sys.maxsize:
            raise _StreamError(f"bytes length too large at byte {self.op_pos}")
        if n <= _SMALL_BYTES:
            return self.raw(n)
        self.take(n)
        return _Obj("bytes")

    def long_bytes(self, n: int) -> int:
        return int.from_bytes(self.raw(n), "little", signed=True)

    # ---- stack helpers ---------------------------------------------------------------

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise _StreamError(f"stack underflow at byte {self.op_pos}")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise _StreamError(f"stack underflow at byte {self.op_pos}")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise _StreamError(f"MARK expected at byte {self.op_pos}")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise _StreamError(f"memo index {index} not found at byte {self.op_pos}")
        self.push(self.memo[index])

    def put(self, index: int) -> None:
        if index < 0:
            raise _StreamError(f"negative memo index at byte {self.op_pos}")
        self.memo[index] = self.top()

    def tainted(self, value: Any) -> bool:
        """Whether value may be, or contain, a NumpyArrayWrapper (class or instance)."""
        findings = self.findings
        if not findings.wrapper_class_seen:
            return False
        todo = [value]
        seen: set[int] = set()
        while todo:
            v = todo.pop()
            if isinstance(v, _LITERALS):
                continue
            if isinstance(v, _Global):
                if v.is_wrapper_class:
                    return True
                continue
            if isinstance(v, _Wrapper):
                return True
            if isinstance(v, _Obj):
                if v.tainted:
                    return True
                continue
            if id(v) in seen:
                continue
            seen.add(id(v))
            before = len(todo)
            if isinstance(v, _Dtype):
                todo.extend((v.args, v.state))
            elif isinstance(v, (tuple, list)):
                todo.extend(v)
            elif isinstance(v, _EDict):
                for pair in v.pairs:
                    todo.extend(pair)
            findings.taint_budget -= 1 + len(todo) - before
            if findings.taint_budget <= 0:
                return True  # too costly to prove: assume the worst
        return False

    def mutate(self, target: Any, values: Iterable[Any], kind: str) -> None:
        """APPEND/SETITEM/ADDITEMS on something that is not an emulated list/dict."""
        if isinstance(target, _Global):
            self.findings.problem(
                f"<{kind} mutates the global object {target.dotted} at byte {self.op_pos}>"
            )
        elif isinstance(target, _Obj):
            if not target.tainted and any(self.tainted(v) for v in values):
                target.tainted = True
        elif isinstance(target, (_Wrapper, _Dtype, _EDict)):
            raise _StreamError(f"{kind} on an unsupported object at byte {self.op_pos}")
        else:
            raise _StreamError(f"{kind} on a {_kind(target)} at byte {self.op_pos}")

    # ---- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Emulate until STOP; return the offset just after it."""
        ops = self.ops
        stop = _op(pickle.STOP)
        while True:
            self.op_pos = self.pos
            start = self.take(1)
            code = self.buf[start]
            if code == stop:
                if self.frame_end is not None and self.pos < self.frame_end:
                    raise _StreamError(f"data after STOP inside a frame at byte {start}")
                return self.pos
            handler = ops.get(code)
            if handler is None:
                raise _UnknownOpcode(f"unknown opcode 0x{code:02x} at byte {start}")
            handler()

    # ---- opcode handlers ---------------------------------------------------------------

    def op_mark(self) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self) -> None:
        self.pop_mark()

    def op_dup(self) -> None:
        self.push(self.top())

    def _number(self, parse: Callable[[bytes], Any], data: bytes) -> Any:
        try:
            return parse(data)
        except (ValueError, OverflowError) as exc:
            raise _StreamError(f"bad number literal at byte {self.op_pos}") from exc

    def op_float(self) -> None:
        self.push(self._number(float, self.line()))

    def op_int(self) -> None:
        data = self.line()
        if data == b"00":
            self.push(False)
        elif data == b"01":
            self.push(True)
        else:
            self.push(self._number(lambda d: int(d, 0), data))

    def op_long(self) -> None:
        data = self.line()
        if data.endswith(b"L"):
            data = data[:-1]
        self.push(self._number(lambda d: int(d, 0), data))

    def op_long4(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _StreamError(f"negative LONG4 length at byte {self.op_pos}")
        self.push(self.long_bytes(n))

    def op_string(self) -> None:
        data = self.line()
        if len(data) >= 2 and data[0] == data[-1] and data[:1] in (b'"', b"'"):
            data = data[1:-1]
        else:
            raise _StreamError(f"unquoted STRING at byte {self.op_pos}")
        try:
            value = codecs.escape_decode(data)[0]
        except ValueError as exc:
            raise _StreamError(f"bad STRING escape at byte {self.op_pos}") from exc
        self.push(value.decode("latin-1"))

    def op_binstring(self) -> None:
        n = self.unpack(_I4)
        if n < 0:
            raise _StreamError(f"negative BINSTRING length at byte {self.op_pos}")
        self.push(self.raw(n).decode("latin-1"))

    def op_unicode(self) -> None:
        try:
            self.push(str(self.line(), "raw-unicode-escape"))
        except UnicodeDecodeError as exc:
            raise _StreamError(f"bad UNICODE literal at byte {self.op_pos}") from exc

    def op_bytearray8(self) -> None:
        self.bytes_value(self.unpack(_U8))
        self.push(_Obj("bytearray"))

    def op_readonly_buffer(self) -> None:
        self.top()
        self.stack[-1] = _Obj("buffer")

    def op_persid(self) -> None:
        self.line()
        self.findings.problem(f"<persistent id (PERSID) at byte {self.op_pos}>")
        self.push(_Obj("persistent object", tainted=True))

    def op_binpersid(self) -> None:
        self.pop()
        self.findings.problem(f"<persistent id (BINPERSID) at byte {self.op_pos}>")
        self.push(_Obj("persistent object", tainted=True))

    def op_proto(self) -> None:
        proto = self.unpack(_U1)
        if proto > pickle.HIGHEST_PROTOCOL:
            raise _StreamError(f"unsupported pickle protocol {proto} at byte {self.op_pos}")
        self.proto = proto

    def op_frame(self) -> None:
        n = self.unpack(_U8)
        if self.frame_end is not None and self.pos < self.frame_end:
            raise _StreamError(f"new frame before the end of the current one at byte {self.op_pos}")
        if self.pos + n > self.size:
            raise _Truncated(f"frame at byte {self.op_pos} runs past the end of the data")
        self.frame_end = self.pos + n

    def op_memoize(self) -> None:
        self.memo[len(self.memo)] = self.top()

    def op_get(self) -> None:
        self.get(self._number(int, self.line()))

    def op_put(self) -> None:
        self.put(self._number(int, self.line()))

    def op_tuple_n(self, n: int) -> None:
        if len(self.stack) < n:
            raise _StreamError(f"stack underflow at byte {self.op_pos}")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self.push(items)

    def op_dict(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _StreamError(f"odd number of items for DICT at byte {self.op_pos}")
        self.push(_EDict(list(zip(items[::2], items[1::2], strict=True))))

    def op_setitem(self) -> None:
        value = self.pop()
        key = self.pop()
        target = self.top()
        if isinstance(target, _EDict):
            target.pairs.append((key, value))
        else:
            self.mutate(target, (key, value), "SETITEM")

    def op_setitems(self) -> None:
        items = self.pop_mark()
        if len(items) % 2:
            raise _StreamError(f"odd number of items for SETITEMS at byte {self.op_pos}")
        target = self.top()
        if isinstance(target, _EDict):
            target.pairs.extend(zip(items[::2], items[1::2], strict=True))
        else:
            self.mutate(target, items, "SETITEMS")

    def op_append(self) -> None:
        value = self.pop()
        target = self.top()
        if isinstance(target, list):
            target.append(value)
        else:
            self.mutate(target, (value,), "APPEND")

    def op_appends(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, list):
            target.extend(items)
        else:
            self.mutate(target, items, "APPENDS")

    def op_additems(self) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, (list, _EDict)):
            raise _StreamError(f"ADDITEMS on a list or dict at byte {self.op_pos}")
        self.mutate(target, items, "ADDITEMS")

    def op_frozenset(self) -> None:
        items = self.pop_mark()
        self.push(_Obj("frozenset", tainted=self.tainted(items)))

    # ---- globals -----------------------------------------------------------------------

    def record(self, module: str, name: str) -> _Global:
        module, name = _effective_global(module, name, self.proto)
        return self.findings.add_global(module, name)

    def _name_line(self) -> str:
        try:
            return self.line().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _StreamError(f"bad UTF-8 in global name at byte {self.op_pos}") from exc

    def op_global(self) -> None:
        module = self._name_line()
        name = self._name_line()
        self.push(self.record(module, name))

    def op_stack_global(self) -> None:
        name = self.pop()
        module = self.pop()
        if isinstance(module, str) and isinstance(name, str):
            self.push(self.record(module, name))
        else:
            self.findings.problem(f"<unresolvable STACK_GLOBAL at byte {self.op_pos}>")
            self.push(_Obj("unresolved global", tainted=True))

    def ext(self, code: int) -> None:
        registry: dict[int, tuple[str, str]] = getattr(copyreg, "_inverted_registry", {})
        key = registry.get(code)  # a dict lookup only; nothing is imported
        if key is None:
            self.findings.problem(
                f"<unregistered copyreg extension code {code} at byte {self.op_pos}>"
            )
            self.push(_Obj("extension", tainted=True))
        else:
            self.push(self.record(key[0], key[1]))

    # ---- calls -------------------------------------------------------------------------

    def call(self, func: Any, args: Any) -> Any:
        """Emulated ``func(*args)``."""
        if isinstance(func, _Global):
            if func.is_wrapper_class:
                return self._wrapper_init(args)
            if func.is_dtype:
                return _Dtype(args)
            key = (func.module, func.name)
            if key == ("copyreg", "__newobj__") and isinstance(args, tuple) and args:
                return self.new(args[0], args[1:])
            if key == ("copyreg", "__newobj_ex__") and isinstance(args, tuple) and args:
                return self.new(args[0], args[1:])
            if key == ("copyreg", "_reconstructor") and isinstance(args, tuple) and len(args) == 3:
                cls, base = args[0], args[1]
                if isinstance(base, _Global) and (base.module, base.name) == ("builtins", "object"):
                    return self.new(cls, ())
            return _Obj(func.dotted, tainted=self.tainted(args))
        return _Obj("call result", tainted=self.tainted(func) or self.tainted(args))

    def new(self, cls: Any, args: Any) -> Any:
        """Emulated ``cls.__new__(cls, *args)`` (no ``__init__``)."""
        if isinstance(cls, _Global) and cls.is_wrapper_class:
            return _Wrapper()
        label = cls.dotted if isinstance(cls, _Global) else "new object"
        return _Obj(label, tainted=self.tainted(cls) or self.tainted(args))

    def _wrapper_init(self, args: Any) -> Any:
        """NumpyArrayWrapper(subclass, shape, order, dtype, allow_mmap, alignment)."""
        if not isinstance(args, (tuple, list)) or not 4 <= len(args) <= 6:
            return _Obj("NumpyArrayWrapper call", tainted=True)
        names = ["subclass", "shape", "order", "dtype", "allow_mmap"]
        attrs: dict[str, Any] = {"allow_mmap": False, "numpy_array_alignment_bytes": 16}
        attrs.update(zip([*names, "numpy_array_alignment_bytes"], args, strict=False))
        return _Wrapper(attrs)

    def instantiate(self, klass: Any, args: list[Any]) -> Any:
        """What INST and OBJ do (``pickle._Unpickler._instantiate``)."""
        if args:
            return self.call(klass, tuple(args))
        if isinstance(klass, _Global) and klass.is_wrapper_class:
            return _Wrapper()
        return self.call(klass, ())

    def op_reduce(self) -> None:
        args = self.pop()
        func = self.top()
        self.stack[-1] = self.call(func, args)

    def op_newobj(self) -> None:
        args = self.pop()
        cls = self.pop()
        self.push(self.new(cls, args))

    def op_newobj_ex(self) -> None:
        kwargs = self.pop()
        args = self.pop()
        cls = self.pop()
        self.push(self.new(cls, (args, kwargs)))

    def op_inst(self) -> None:
        module = self._name_line()
        name = self._name_line()
        klass = self.record(module, name)
        self.push(self.instantiate(klass, self.pop_mark()))

    def op_obj(self) -> None:
        items = self.pop_mark()
        if not items:
            raise _StreamError(f"OBJ without a class at byte {self.op_pos}")
        self.push(self.instantiate(items[0], items[1:]))

    # ---- BUILD and joblib arrays ---------------------------------------------------------

    def op_build(self) -> None:
        state = self.pop()
        inst = self.top()
        if isinstance(inst, _Wrapper):
            self._build_wrapper(inst, state)
            if self.joblib_mode:
                self._read_joblib_array(inst)
                self.stack[-1] = _Obj("numpy.ndarray")
        elif isinstance(inst, _Dtype):
            inst.state = state
        elif isinstance(inst, _Global):
            self.findings.problem(
                f"<BUILD sets attributes on the global object {inst.dotted} at byte {self.op_pos}>"
            )
        elif isinstance(inst, _Obj):
            if self.joblib_mode and inst.tainted:
                raise _JoblibError(
                    self.op_pos, "BUILD on an object that may be a NumpyArrayWrapper"
                )
            if not inst.tainted and self.tainted(state):
                inst.tainted = True
        else:
            raise _StreamError(f"BUILD on a {_kind(inst)} at byte {self.op_pos}")

    def _build_wrapper(self, wrapper: _Wrapper, state: Any) -> None:
        """Emulate ``pickle._Unpickler.load_build`` on a NumpyArrayWrapper."""
        if "__setstate__" in wrapper.attrs:
            raise _JoblibError(self.op_pos, "NumpyArrayWrapper with its own __setstate__")
        slotstate: Any = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slotstate = state
        for part in (state, slotstate):
            if isinstance(part, _EDict):
                for key, value in part.pairs:
                    if type(key) is not str or key not in _WRAPPER_ATTRS:
                        raise _JoblibError(self.op_pos, "unexpected NumpyArrayWrapper attribute")
                    wrapper.attrs[key] = value
            elif isinstance(part, (*_LITERALS, tuple, list)) and not part:
                continue  # falsy state: nothing to set
            else:
                raise _JoblibError(self.op_pos, "NumpyArrayWrapper state is not a literal dict")

    def _read_joblib_array(self, wrapper: _Wrapper) -> None:
        """Consume what ``NumpyArrayWrapper.read_array`` reads straight from the file."""
        at = self.op_pos
        if self.frame_end is not None:
            if self.pos != self.frame_end:
                raise _JoblibError(at, "array data inside a pickle frame")
            self.frame_end = None
        attrs = wrapper.attrs
        shape = attrs.get("shape", _MISSING)
        dtype = attrs.get("dtype", _MISSING)
        align = attrs.get("numpy_array_alignment_bytes")
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, int) and 0 <= d < 2**63 for d in shape
        ):
            raise _JoblibError(at, "shape is not a tuple of non-negative integers")
        if not isinstance(dtype, _Dtype):
            raise _JoblibError(at, "dtype is not a literal numpy.dtype")
        layout = dtype.layout()
        if layout is None:
            raise _JoblibError(at, "dtype cannot be determined exactly")
        itemsize, hasobject = layout
        count = 1
        for dim in shape:
            count *= int(dim)
        self.findings.arrays_read += 1
        if hasobject:
            # joblib runs a plain Unpickler on the file for object arrays.
            nested = _Machine(self.buf, self.pos, self.findings, joblib_mode=False)
            self.pos = nested.run()
            return
        if align is not None:
            if not isinstance(align, int):
                raise _JoblibError(at, "alignment is not a literal integer")
            if self.pos >= self.size:
                raise _Truncated(f"joblib padding missing after byte {at}")
            self.pos += 1 + self.buf[self.pos]
        nbytes = count * itemsize
        if self.pos + nbytes > self.size:
            raise _Truncated(f"joblib array data after byte {at} runs past the end of the data")
        self.pos += nbytes


# --------------------------------------------------------------------------------------
# drivers


def _scan_stream(buf: _Buffer, findings: _Findings, joblib_mode: bool) -> None:
    """Scan every pickle in buf; record problems instead of raising."""
    pos = 0
    size = len(buf)
    if size == 0:
        findings.problem("<not a valid pickle stream: empty>")
        return
    while pos < size:
        machine = _Machine(buf, pos, findings, joblib_mode)
        try:
            pos = machine.run()
        except _StreamError as exc:
            findings.problem(f"<not a valid pickle stream: {exc}>")
            return
        except _JoblibError as exc:
            findings.problem(f"<cannot parse joblib array at byte {exc.pos}: {exc}>")
            return


def _check_polyglot(buf: _Buffer, findings: _Findings) -> None:
    """Make sure compressed bytes do not also run as a pickle under ``pickle.load``."""
    machine = _Machine(buf, 0, findings, joblib_mode=False)
    try:
        machine.run()
    except (_Truncated, _UnknownOpcode):
        return  # pickle.load would fail right there too
    except (_StreamError, _JoblibError) as exc:
        findings.problem(f"<ambiguous file: compressed data also parses as pickle opcodes: {exc}>")
        return
    findings.problem("<ambiguous file: compressed data is also a complete pickle stream>")


_ZFILE_PREFIX = b"ZF"
_ZFILE_HEADER = len(_ZFILE_PREFIX) + len(hex(2**64))
_COMPRESSORS: tuple[tuple[str, bytes], ...] = (
    ("zlib", b"\x78"),
    ("gzip", b"\x1f\x8b"),
    ("bz2", b"BZ"),
    ("lzma", b"\x5d\x00"),
    ("xz", b"\xfd\x37\x7a\x58\x5a"),
    ("lz4", b"\x04\x22\x4d\x18"),
)


class _DecompressError(Exception):
    """Compressed data that cannot be (fully and safely) decompressed."""


def _decompressor(kind: str) -> Any:
    if kind == "zlib":
        return zlib.decompressobj(zlib.MAX_WBITS)
    if kind == "gzip":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if kind == "bz2":
        return bz2.BZ2Decompressor()
    if kind in ("lzma", "xz"):
        return lzma.LZMADecompressor(lzma.FORMAT_AUTO)
    try:
        import lz4.frame
    except ImportError as exc:
        raise _DecompressError("lz4-compressed file: install the 'lz4' package to scan it") from exc
    return lz4.frame.LZ4FrameDecompressor()


def _decompress(kind: str, data: _Buffer, limit: int) -> bytes:
    """Decompress one complete stream, refusing more than ``limit`` bytes of output."""
    dec = _decompressor(kind)
    try:
        out = dec.decompress(data, limit + 1)
    except Exception as exc:  # zlib.error, OSError, EOFError, lz4 RuntimeError, ...
        raise _DecompressError(f"cannot decompress {kind} data: {exc}") from exc
    if len(out) > limit:
        raise _DecompressError(f"decompressed size exceeds {limit} bytes")
    if not dec.eof:
        raise _DecompressError(f"{kind} data is truncated")
    if dec.unused_data:
        raise _DecompressError(f"trailing data after the {kind} stream")
    return bytes(out)


def _decompress_zfile(data: _Buffer, limit: int) -> bytes:
    """joblib < 0.9.3 container: b'ZF' + hex length + zlib data."""
    try:
        length = int(bytes(data[len(_ZFILE_PREFIX) : _ZFILE_HEADER]), 16)
    except ValueError as exc:
        raise _DecompressError("bad legacy joblib ZF header") from exc
    if length > limit:
        raise _DecompressError(f"decompressed size exceeds {limit} bytes")
    start = _ZFILE_HEADER + (1 if data[_ZFILE_HEADER : _ZFILE_HEADER + 1] == b" " else 0)
    dec = zlib.decompressobj(zlib.MAX_WBITS)
    try:
        out = dec.decompress(data[start:], length + 1)
    except zlib.error as exc:
        raise _DecompressError(f"cannot decompress legacy joblib ZF data: {exc}") from exc
    if len(out) != length or not dec.eof:
        raise _DecompressError("legacy joblib ZF data does not match its declared length")
    return out


def _scan(data: _Buffer, extra_allowed: Iterable[str], limit: int) -> ScanResult:
    findings = _Findings(_Policy(extra_allowed))
    head = bytes(data[:8])
    if head.startswith(_ZFILE_PREFIX):
        _check_polyglot(data, findings)
        try:
            inner = _decompress_zfile(data, limit)
        except _DecompressError as exc:
            findings.problem(f"<{exc}>")
            return findings.result("joblib+zfile")
        # Legacy files are read by a plain Unpickler (NDArrayWrapper is denied).
        _scan_stream(inner, findings, joblib_mode=False)
        return findings.result("joblib+zfile")
    for kind, prefix in _COMPRESSORS:
        if head.startswith(prefix):
            _check_polyglot(data, findings)
            try:
                inner = _decompress(kind, data, limit)
            except _DecompressError as exc:
                findings.problem(f"<{exc}>")
                return findings.result(f"joblib+{kind}")
            _scan_stream(inner, findings, joblib_mode=True)
            return findings.result(f"joblib+{kind}")
    _scan_stream(data, findings, joblib_mode=True)
    return findings.result("joblib" if findings.arrays_read else "pickle")


def scan_pickle_bytes(
    data: bytes | bytearray | memoryview,
    extra_allowed: Iterable[str] = (),
    *,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> ScanResult:
    """Scan pickle/joblib bytes without loading them.

    ``extra_allowed`` holds exact ``"module.name"`` globals or ``"package.*"`` patterns
    to accept on top of the defaults (deny-listed names stay refused).
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    return _scan(buf, extra_allowed, max_decompressed_bytes)


def scan_pickle_file(
    path: str | os.PathLike[str],
    extra_allowed: Iterable[str] = (),
    *,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> ScanResult:
    """Scan a pickle/joblib file without loading it (memory-mapped, not read whole)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return _scan(b"", extra_allowed, max_decompressed_bytes)
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _scan(mapped, extra_allowed, max_decompressed_bytes)
