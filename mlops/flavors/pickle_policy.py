"""Import policy of the pickle scanner: which globals a model file may import.

Allow-list semantics. A global is accepted only if it is on the exact allow list
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
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DEFAULT_ALLOWED_EXACT",
    "DEFAULT_ALLOWED_PACKAGES",
    "ImportPolicy",
]

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


class ImportPolicy:
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
