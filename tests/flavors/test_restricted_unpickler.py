"""The restricted loaders, the guarded reconstructors and the state checks, one by one."""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlops.errors import FlavorError, UnsafeModel
from mlops.flavors.files import SafetyReport, load_bytes
from mlops.flavors.pickle_guards import guarded_function, static_problem
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.pickle_values import Global, Obj
from mlops.flavors.restricted_unpickler import (
    load_restricted,
    resolve_global,
)
from mlops.flavors.skops_policy import check_skops, load_skops
from mlops.flavors.state_checks import check_dtype, flags_problem, validate_graph
from tests.flavors.opcodes import b, call, g, i, proto, sg, tup, u


class Custom:
    """A class of the test module: off the list."""

    def __init__(self, value: int) -> None:
        self.value = value


def _joblib(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# find_class


def test_resolve_global_returns_listed_objects_and_wrappers() -> None:
    assert resolve_global("numpy", "ndarray") is np.ndarray
    assert resolve_global("collections", "OrderedDict").__name__ == "OrderedDict"
    wrapper = resolve_global("copyreg", "_reconstructor")
    assert wrapper is guarded_function(("copyreg", "_reconstructor"))
    assert wrapper is not copyreg._reconstructor  # type: ignore[attr-defined]
    # numpy 1.x names are aliases of the current objects
    assert resolve_global("numpy.core.multiarray", "scalar") is \
        resolve_global("numpy._core.multiarray", "scalar")


@pytest.mark.parametrize("module, name", [
    ("os", "system"), ("numpy", "load"), ("numpy._core.fromnumeric", "_wrapfunc"),
    ("numpy", "ndarray.tofile"), ("builtins", "getattr"), ("nonexistent_mod_xyz", "f"),
])
def test_resolve_global_refuses_without_importing(module: str, name: str) -> None:
    import sys

    with pytest.raises(UnsafeModel) as err:
        resolve_global(module, name)
    assert err.value.offending == [f"{module}.{name}"]
    assert "nonexistent_mod_xyz" not in sys.modules


def test_protocol_2_python2_names_are_mapped_before_the_check() -> None:
    data = proto(call(g("__builtin__", "set"), tup(i(1), i(2))), 2)
    assert load_restricted(data) == {1, 2}
    evil = proto(call(g("__builtin__", "eval"), u("1+1")), 2)
    with pytest.raises(UnsafeModel, match=r"builtins\.eval"):
        load_restricted(evil)


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol_loads(protocol: int) -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, x[:, 0] > 0)
    loaded = load_restricted(pickle.dumps(model, protocol=protocol))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_numpy_1_pickle_names_load() -> None:
    arr = np.arange(3.0)
    data = pickle.dumps(arr, protocol=2).replace(b"numpy._core.multiarray",
                                                 b"numpy.core.multiarray")
    np.testing.assert_array_equal(load_restricted(data), arr)


# --------------------------------------------------------------------------------------
# guards


def test_codecs_encode_only_latin1_of_a_str() -> None:
    assert load_restricted(pickle.dumps(b"\x00\xffbytes", protocol=2)) == b"\x00\xffbytes"
    rot13 = proto(call(sg("_codecs", "encode"), u("bf"), u("rot13")))
    assert any("_codecs.encode called with" in o for o in scan_pickle_bytes(rot13).offending)
    with pytest.raises(UnsafeModel, match=r"_codecs\.encode"):
        load_restricted(rot13)


def test_reconstructor_needs_a_listed_subclass_of_its_base() -> None:
    mismatch = proto(call(sg("copyreg", "_reconstructor"), sg("pandas", "DataFrame"),
                          sg("builtins", "dict"), pickle.EMPTY_DICT))
    with pytest.raises(UnsafeModel, match="_reconstructor"):
        load_restricted(mismatch)
    computed = proto(call(sg("copyreg", "_reconstructor"), call(sg("builtins", "object")),
                          sg("builtins", "object"), pickle.NONE))
    assert not scan_pickle_bytes(computed).safe


def test_ufunc_reconstruct_returns_only_listed_ufuncs() -> None:
    ok = proto(call(sg("numpy.core", "_ufunc_reconstruct"), u("numpy"), u("log1p")))
    assert scan_pickle_bytes(ok).safe
    assert load_restricted(ok) is np.log1p
    old = proto(call(sg("numpy.core", "_ufunc_reconstruct"), u("numpy.core.umath"), u("exp")))
    assert load_restricted(old) is np.exp
    for module, name in [("os", "system"), ("numpy", "load"), ("numpy", "ndarray")]:
        bad = proto(call(sg("numpy.core", "_ufunc_reconstruct"), u(module), u(name)))
        assert not scan_pickle_bytes(bad).safe
        with pytest.raises(UnsafeModel):
            load_restricted(bad)


def test_static_guard_checks_need_literal_arguments() -> None:
    ndarray = Global("numpy", "ndarray")
    assert static_problem("numpy._core.multiarray", "_reconstruct",
                          (ndarray, (0,), b"b")) is None
    assert static_problem("numpy._core.multiarray", "_reconstruct",
                          (Obj("call result"), (0,), b"b"))
    assert static_problem("sklearn.neighbors._kd_tree", "newObj",
                          (Global("sklearn.neighbors._ball_tree", "BallTree"),))
    assert static_problem("pandas.core.indexes.base", "_new_Index",
                          (Global("pandas", "DataFrame"), {}))


@pytest.mark.parametrize("pair, args", [
    (("sklearn.neighbors._kd_tree", "newObj"), (pd.DataFrame,)),
    (("pandas.core.indexes.base", "_new_Index"), (pd.DataFrame, {})),
    (("pandas.core.indexes.interval", "_new_IntervalIndex"), (pd.MultiIndex, {})),
    (("numpy.random._pickle", "__bit_generator_ctor"), ("seed",)),
    (("numpy.random._pickle", "__randomstate_ctor"), ("MT19937", print)),
    (("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"), (np.ndarray, 0, None)),
    (("numpy._core.multiarray", "_reconstruct"), (pd.DataFrame, (0,), b"b")),
    (("numpy.ma.core", "_mareconstruct"), (np.ndarray, np.ndarray, (0,), "f8")),
])
def test_guards_refuse_foreign_arguments_at_load_time(pair: tuple[str, str],
                                                      args: tuple[Any, ...]) -> None:
    with pytest.raises(UnsafeModel):
        guarded_function(pair)(*args)


def test_random_states_and_generators_round_trip() -> None:
    for obj in (np.random.RandomState(3), np.random.default_rng(3),
                np.random.Generator(np.random.Philox(3))):
        loaded = load_restricted(pickle.dumps(obj))
        assert loaded.random() == obj.random() if hasattr(obj, "random") else True


# --------------------------------------------------------------------------------------
# opcode restrictions


def test_build_on_an_imported_class_is_refused() -> None:
    data = proto(sg("sklearn.linear_model._logistic", "LogisticRegression") + pickle.NONE
                 + pickle.EMPTY_DICT + u("predict") + sg("numpy", "log1p") + pickle.SETITEM
                 + pickle.TUPLE2 + pickle.BUILD)
    with pytest.raises(UnsafeModel, match="monkeypatching"):
        load_restricted(data)
    from sklearn.linear_model import LogisticRegression

    assert LogisticRegression.predict is not np.log1p


def test_container_opcodes_only_fill_plain_containers() -> None:
    arr = call(sg("numpy._core.numeric", "_frombuffer"), b(b"\x00" * 16),
               call(sg("numpy", "dtype"), u("i8"), pickle.NEWFALSE, pickle.NEWTRUE),
               tup(i(2)), u("C"))
    data = proto(arr + i(0) + i(7) + pickle.SETITEM)
    assert any("SETITEM on a numpy._core.numeric._frombuffer" in o
               for o in scan_pickle_bytes(data).offending)
    with pytest.raises(UnsafeModel, match="plain container"):
        load_restricted(data)
    ok = {"a": [1, 2], "b": {3}}
    assert load_restricted(pickle.dumps(ok, protocol=4)) == ok


def test_extension_codes_go_through_the_allow_list() -> None:
    data = proto(pickle.EXT2 + b"\x4c\x4d" + tup(i(3)) + pickle.REDUCE, 2)
    with pytest.raises(UnsafeModel, match="unregistered extension code"):
        load_restricted(data)
    copyreg.add_extension("builtins", "frozenset", 0x4D4C)
    try:
        assert load_restricted(proto(pickle.EXT2 + b"\x4c\x4d" + tup(tup(i(3)))
                                     + pickle.REDUCE, 2)) == frozenset({3})
        copyreg._extension_cache[0x4D4C] = print  # type: ignore[attr-defined]
        # a warm cache would skip find_class in pickle's own unpicklers; not here
        assert load_restricted(proto(pickle.EXT2 + b"\x4c\x4d" + tup(tup(i(3)))
                                     + pickle.REDUCE, 2)) == frozenset({3})
    finally:
        copyreg.remove_extension("builtins", "frozenset", 0x4D4C)


def test_persistent_ids_are_refused() -> None:
    with pytest.raises(pickle.UnpicklingError):
        load_restricted(b"Pfoo\n.")


# --------------------------------------------------------------------------------------
# joblib


def test_joblib_object_arrays_are_read_by_a_restricted_unpickler() -> None:
    objects = np.array([1, "a", None, {"k": 2.5}], dtype=object)
    loaded = load_restricted(_joblib({"o": objects, "w": np.arange(5.0)}))
    assert list(loaded["o"]) == list(objects)
    hostile = _joblib({"o": np.array([Custom(1)], dtype=object), "w": np.ones(3)})
    with pytest.raises(UnsafeModel, match="Custom"):
        load_restricted(hostile)


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)])
def test_joblib_compressed_files_load(compress: Any) -> None:
    arr = np.arange(1000.0).reshape(10, 100)
    loaded = load_restricted(_joblib({"a": arr, "f": np.asfortranarray(arr)}, compress=compress))
    np.testing.assert_array_equal(loaded["a"], arr)
    np.testing.assert_array_equal(loaded["f"], arr)


def test_joblib_array_larger_than_the_file_is_refused() -> None:
    data = _joblib({"a": np.zeros(100)})
    with pytest.raises((FlavorError, ValueError, EOFError)):
        load_restricted(data[: len(data) // 2])


def test_joblib_memmap_subclass_is_refused() -> None:
    data = _joblib({"a": np.zeros(4)}).replace(b"\x8c\x07ndarray", b"\x8c\x06memmap", 1)
    with pytest.raises(UnsafeModel):
        load_restricted(data)


# --------------------------------------------------------------------------------------
# state checks


@pytest.mark.parametrize("dtype", [
    "f8", ">i4", "U7", "S3", "M8[ns]", "m8[s]", "c16", "?", "O",
    [("a", "i8"), ("o", "O")], [("x", [("y", "O")])], ("f8", (2, 3)), ("O", (2,)),
    {"names": ["a", "b"], "formats": ["i4", "f8"], "titles": ["A", None]},
    {"names": ["a", "b"], "formats": ["i1", "f8"], "aligned": True},
])
def test_legitimate_dtypes_pass_both_checks(dtype: Any) -> None:
    arr = np.zeros(3, dtype=np.dtype(dtype))
    for protocol in (2, 5):
        data = pickle.dumps(arr, protocol=protocol)
        assert scan_pickle_bytes(data).safe
        loaded = load_restricted(data)
        assert loaded.dtype == pickle.loads(data).dtype
    check_dtype(np.dtype(dtype))
    joblib_data = _joblib(arr)
    assert load_restricted(joblib_data).dtype == joblib.load(io.BytesIO(joblib_data)).dtype


def test_flag_rule() -> None:
    assert flags_problem(True, 63) is None and flags_problem(True, 27) is None
    assert flags_problem(False, 0) is None and flags_problem(False, 144) is None
    assert flags_problem(True, 0) and flags_problem(False, 1) and flags_problem(False, 4)


def test_validate_graph_checks_objects_inside_containers_and_partials() -> None:
    from functools import partial

    from sklearn.tree import DecisionTreeRegressor

    x = np.random.default_rng(0).normal(size=(30, 2))
    tree = DecisionTreeRegressor(max_depth=2).fit(x, x[:, 0])
    validate_graph({"m": [partial(np.add, tree)]})
    with pytest.raises(UnsafeModel, match=r"builtins\.print"):  # not a value function
        validate_graph({"m": [partial(print, tree)]})
    state = tree.tree_.__getstate__()
    state["nodes"] = state["nodes"].copy()
    state["nodes"]["feature"][0] = 99
    tree.tree_.__setstate__(state)
    with pytest.raises(UnsafeModel, match="feature index"):
        validate_graph({"m": [partial(np.add, tree)]})


# --------------------------------------------------------------------------------------
# skops and trust


def test_skops_trusts_exactly_the_file_types() -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(30, 2))
    data = sio.dumps(LogisticRegression().fit(x, x[:, 0] > 0))
    report = check_skops(data)
    assert not report.offending
    assert "sklearn.linear_model._logistic.LogisticRegression" in report.trusted
    assert all(not t.endswith(".*") for t in report.trusted)
    load_skops(data)


def test_trust_loads_custom_classes_with_the_normal_loader(tmp_path: Path) -> None:
    data = pickle.dumps(_Predictor())
    with pytest.raises(UnsafeModel):
        load_restricted(data)
    report = SafetyReport("pickle", ("tests.flavors.test_restricted_unpickler._Predictor",),
                          ("tests.flavors.test_restricted_unpickler._Predictor",))
    model, _ = load_bytes(data, "m.pkl", fmt="pickle", report=report, trust=True)
    assert model.predict(np.zeros((2, 1))).tolist() == [7.0, 7.0]
    # a trusted flag on a clean file still goes through the restricted loader
    clean = pickle.dumps({"a": 1})
    assert load_restricted(clean) == {"a": 1}


class _Predictor:
    def predict(self, x: Any) -> np.ndarray:
        return np.full(len(x), 7.0)
