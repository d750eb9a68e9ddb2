"""Every function, builtin and method of the supported libraries is refused as a REDUCE
target unless it is on the allow list.

The sweep imports every importable submodule of numpy, scipy, scikit-learn, pandas,
XGBoost, LightGBM and joblib (tests excluded), collects every routine reachable as a module
attribute (``module.func``) or as a method of a class reachable there (``module.Cls.meth``),
and for each:

* builds a tiny pickle ``GLOBAL/STACK_GLOBAL + args + REDUCE`` and asserts the static scan
  refuses it naming that global;
* asks the restricted unpickler's ``find_class`` for it and asserts UnsafeModel (nothing is
  ever called; only ``find_class`` runs).

Allow-listed entries are the exceptions: the scan accepts them and ``find_class`` returns
them (for guarded functions, the vetted wrapper instead of the real function).
"""

from __future__ import annotations

import importlib
import inspect
import io
import pickle
import pkgutil
import time
import warnings
from typing import Any

import numpy as np
import pytest

from mlops.errors import UnsafeModel
from mlops.flavors.allowlist import GUARDED, Pair, kind_of
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.restricted_unpickler import RestrictedUnpickler
from tests.flavors.opcodes import g, proto, sg, u

PACKAGES = ("numpy", "scipy", "sklearn", "pandas", "xgboost", "lightgbm", "joblib")
_SKIP = (".tests", ".testing", "conftest", "_pytest", ".setup", "__main__")
_ROUTINE_TYPES = ("cython_function_or_method", "fused_cython_function",
                  "_ArrayFunctionDispatcher", "ufunc")


def _is_routine(value: Any) -> bool:
    return inspect.isroutine(value) or type(value).__name__ in _ROUTINE_TYPES


def _modules() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for root in PACKAGES:
        package = importlib.import_module(root)
        names = [root] + [m.name for m in pkgutil.walk_packages(
            package.__path__, root + ".", onerror=lambda _: None)]
        for name in names:
            if any(part in name for part in _SKIP) or name.endswith(".tests"):
                continue
            try:
                found[name] = importlib.import_module(name)
            except BaseException:  # optional dependencies, platform modules
                continue
    return found


def _targets(modules: dict[str, Any]) -> set[Pair]:
    pairs: set[Pair] = set()
    for name, module in modules.items():
        for attr in dir(module):
            try:
                value = getattr(module, attr)
            except Exception:
                continue
            if _is_routine(value):
                pairs.add((name, attr))
            elif isinstance(value, type):
                for key, member in vars(value).items():
                    if _is_routine(member) or isinstance(member, (staticmethod, classmethod)):
                        pairs.add((name, f"{attr}.{key}"))
    return pairs


@pytest.fixture(scope="module")
def targets() -> set[Pair]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        modules = _modules()
        pairs = _targets(modules)
    print(f"\n{len(modules)} modules, {len(pairs)} routines in "
          f"{time.perf_counter() - start:.1f} s")
    return pairs


def _tiny(module: str, name: str, stack_global: bool) -> bytes:
    head = sg(module, name) if stack_global else g(module, name)
    return proto(head + u("x") + pickle.TUPLE1 + pickle.REDUCE, 4 if stack_global else 2)


def test_the_sweep_is_wide(targets: set[Pair]) -> None:
    assert len(targets) > 50_000
    roots = {module.partition(".")[0] for module, _ in targets}
    assert roots == set(PACKAGES)
    for expected in [("numpy._core.fromnumeric", "_wrapfunc"), ("numpy.core", "_ufunc_reconstruct"),
                     ("numpy", "load"), ("pandas", "read_pickle"), ("numpy", "ndarray.tofile")]:
        assert expected in targets


def test_static_scan_refuses_every_routine_not_on_the_list(targets: set[Pair]) -> None:
    start = time.perf_counter()
    accepted_off_list = []
    allowed = 0
    for module, name in sorted(targets):
        dotted = f"{module}.{name}"
        listed = kind_of(module, name) is not None
        allowed += listed
        forms = [True] if "." in name else [True, False]
        for stack_global in forms:
            result = scan_pickle_bytes(_tiny(module, name, stack_global))
            if not listed and (result.safe or dotted not in result.offending):
                accepted_off_list.append(dotted)
    print(f"scanned {len(targets)} targets ({allowed} on the list) "
          f"in {time.perf_counter() - start:.1f} s")
    assert not accepted_off_list


def test_restricted_find_class_refuses_every_routine_not_on_the_list(
        targets: set[Pair]) -> None:
    unpickler = RestrictedUnpickler(io.BytesIO(b""))
    unpickler.proto = 4
    leaked, wrong = [], []
    for module, name in sorted(targets):
        kind = kind_of(module, name)
        if kind is None:
            try:
                unpickler.find_class(module, name)
            except UnsafeModel:
                continue
            leaked.append(f"{module}.{name}")
            continue
        obj = unpickler.find_class(module, name)
        if kind == GUARDED and getattr(obj, "__name__", "").startswith("guarded_") is False:
            wrong.append(f"{module}.{name}")
    assert not leaked
    assert not wrong


def test_allowed_routines_are_few_and_numeric(targets: set[Pair]) -> None:
    """What the sweep finds on the list: ufuncs, the listed reconstructors (guarded when
    their arguments choose what they build) and numeric functions."""
    allowed = {pair for pair in targets if kind_of(*pair) is not None}
    ufuncs = {pair for pair in allowed
              if isinstance(getattr(importlib.import_module(pair[0]), pair[1], None), np.ufunc)}
    others = allowed - ufuncs
    assert len(others) < 150, sorted(others)
