"""Import policy of model files: which globals a pickle, joblib or skops file may import.

Semantics. A global ``(module, qualified name)`` is accepted only if it is an exact entry of
the allow list (:mod:`mlops.flavors.allowlist`), after the unpickler's Python 2 name mapping
for protocols < 3 (:func:`effective_global`), or an exact ``"module.qualname"`` the caller
passed in ``extra_allowed``. There is no package rule and no wildcard: numpy, scipy,
scikit-learn, pandas, XGBoost and LightGBM are full of *gadgets* (``_wrapfunc`` is
``getattr(obj, name)(*args)``, ``_ufunc_reconstruct`` imports and fetches any name), so
being in an allowed package means nothing. Functions whose arguments choose what they
build are allowed only through a vetted wrapper (:mod:`mlops.flavors.pickle_guards`).

The deny list below does not decide anything on its own (everything it names is off the
allow list anyway). It labels known attack primitives so reports say "denied" for them,
and it wins over ``extra_allowed``, so a caller cannot re-open ``os.system`` by accident.
The same decisions are enforced at load time by
:mod:`mlops.flavors.restricted_unpickler`.
"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Iterable

from mlops.flavors.allowlist import kind_of

__all__ = [
    "ImportPolicy",
    "effective_global",
    "is_denied",
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_DENIED_MODULES = _words(
    """os nt posix posixpath ntpath subprocess sys socket runpy pty pickle _pickle shutil
    webbrowser importlib ctypes _ctypes code codeop multiprocessing asyncio http urllib
    requests marshal types pydoc pdb bdb timeit cProfile profile trace doctest pkgutil
    zipimport imp inspect gc tempfile io _io signal threading _thread ssl ftplib smtplib
    telnetlib xmlrpc socketserver platform sysconfig site distutils setuptools pip venv
    ensurepip dill cloudpickle idlelib lib2to3 _interpreters _xxsubinterpreters
    _posixsubprocess _winapi msvcrt"""
)
_DENIED_BUILTINS = _words(
    """eval exec compile open getattr setattr delattr __import__ breakpoint input globals
    locals vars exit quit help"""
)
_DENIED_NAMES = frozenset(
    [("builtins", n) for n in _DENIED_BUILTINS]
    + [(m, n) for m in ("operator", "_operator") for n in ("attrgetter", "methodcaller",
                                                           "itemgetter")]
    + [("joblib.numpy_pickle", n) for n in ("NDArrayWrapper", "ZNDArrayWrapper")]
    + [("joblib", "load"), ("joblib", "dump"), ("codecs", "open"), ("functools", "reduce")]
)
_DENIED_ATTRS = _words(
    """__globals__ __builtins__ __subclasses__ __getattribute__ __getattr__ __dict__
    __class__ __bases__ __base__ __mro__ __code__ __closure__ __func__ __self__
    __init_subclass__ __reduce__ __reduce_ex__ __setstate__ __call__ __loader__ __spec__"""
)


def effective_global(module: str, name: str, proto: int) -> tuple[str, str]:
    """The global an unpickler really imports: Python 2 names are mapped for protocols < 3."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def is_denied(module: str, name: str) -> bool:
    """True when (module, name) is a known attack primitive (for reporting)."""
    parts = module.split(".")
    if any(".".join(parts[: i + 1]) in _DENIED_MODULES for i in range(len(parts))):
        return True
    attrs = name.split(".")
    if (module, attrs[0]) in _DENIED_NAMES:
        return True
    return any(a in _DENIED_ATTRS or a in _DENIED_BUILTINS for a in attrs[1:])


class ImportPolicy:
    """Allow/deny decisions for one scan: the allow list plus the caller's exact extras."""

    def __init__(self, extra_allowed: Iterable[str] = ()) -> None:
        if isinstance(extra_allowed, str):
            extra_allowed = [extra_allowed]
        extras = set()
        for raw in extra_allowed:
            entry = raw.strip()
            module, _, name = entry.rpartition(".")
            if not module or not name or "*" in entry or " " in entry:
                raise ValueError(
                    f"bad extra_allowed entry {raw!r}: use an exact 'module.QualName' "
                    "(package wildcards are not accepted)"
                )
            extras.add(entry)
        self.extra = frozenset(extras)

    @staticmethod
    def is_denied(module: str, name: str) -> bool:
        """True when (module, name) is a known attack primitive."""
        return is_denied(module, name)

    def kind(self, module: str, name: str) -> str | None:
        """The allow-list kind of (module, name), None when it is not allowed."""
        return kind_of(module, name)

    def is_allowed(self, module: str, name: str) -> bool:
        """True when (module, name) is on the allow list or is an exact extra entry."""
        if is_denied(module, name):
            return False
        return kind_of(module, name) is not None or f"{module}.{name}" in self.extra
