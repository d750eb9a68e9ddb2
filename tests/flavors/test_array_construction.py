"""No model file constructs a numpy array itself; the ways numpy, joblib and skops write
arrays keep working.

A direct construction of ``numpy.ndarray`` (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, a
``copyreg._reconstructor`` with an array base, ``_reconstruct``/``_mareconstruct`` with a
real shape) hands out uninitialised heap memory of the loading process; ``buffer=``,
``MaskedArray(other)``, ``_frombuffer(other)`` or one buffer under two arrays alias memory.
The hostile files of each form are in the bypass corpus
(:mod:`tests.flavors.bypass_corpus`, refused at scan, at load and at registration); here
are the rules one by one, both unpicklers, and the legitimate forms.
"""

from __future__ import annotations

import importlib
import io
import itertools
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from mlops.errors import UnsafeModel
from mlops.flavors.allowlist import ARRAY_CLASSES, CLASS, array_class, iter_all
from mlops.flavors.pickle_guards import guarded_function, static_problem
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.pickle_values import Global, Obj
from mlops.flavors.restricted_unpickler import (
    RestrictedNumpyUnpickler,
    RestrictedUnpickler,
    load_restricted,
)
from mlops.flavors.skops_policy import check_skops, load_skops
from tests.flavors.bypass_corpus import (
    _cached,
    _json,
    _node,
    _skops_linear,
    _tuple,
)
from tests.flavors.model_corpus import CorpusModel
from tests.flavors.opcodes import b, call, i, lst, proto, sg, tup, u

_NDARRAY = sg("numpy", "ndarray")
_RECONSTRUCT = ("numpy._core.multiarray", "_reconstruct")
_MARECONSTRUCT = ("numpy.ma.core", "_mareconstruct")
_FROMBUFFER = ("numpy._core.numeric", "_frombuffer")


def _loaders() -> list[Callable[[bytes], Any]]:
    """load_restricted and both restricted unpicklers on their own."""
    return [load_restricted,
            lambda data: RestrictedUnpickler(io.BytesIO(data)).load(),
            lambda data: RestrictedNumpyUnpickler(io.BytesIO(data)).load()]


def _refused_everywhere(data: bytes, match: str | None = None) -> None:
    assert not scan_pickle_bytes(data).safe
    for load in _loaders():
        with pytest.raises(UnsafeModel, match=match):
            load(data)


# --------------------------------------------------------------------------------------
# the array classes


def _resolve(pair: tuple[str, str]) -> Any:
    obj: Any = importlib.import_module(pair[0])
    for part in pair[1].split("."):
        obj = getattr(obj, part)
    return obj


def test_array_classes_cover_every_allowed_and_every_numpy_array_class() -> None:
    allowed = {pair for pair, kind in iter_all() if kind == CLASS
               and issubclass(_resolve(pair), np.ndarray)}
    assert allowed == {("numpy", "ndarray"), ("numpy.ma", "MaskedArray")}
    assert allowed <= ARRAY_CLASSES

    def subclasses(cls: type) -> list[type]:
        found: list[type] = []
        direct: list[type] = cls.__subclasses__()
        for sub in direct:
            found += [sub, *subclasses(sub)]
        return found

    numpy_own = {(c.__module__, c.__qualname__) for c in subclasses(np.ndarray)
                 if c.__module__.split(".")[0] == "numpy"}
    assert numpy_own and numpy_own <= ARRAY_CLASSES
    for pair in ARRAY_CLASSES:  # every spelling names a real array class
        assert issubclass(_resolve(pair), np.ndarray), pair
    assert array_class("numpy", "ndarray") and not array_class("numpy", "dtype")


# --------------------------------------------------------------------------------------
# direct constructions, opcode by opcode


_SHAPE = tup(i(4))


@pytest.mark.parametrize("body", [
    call(_NDARRAY, _SHAPE, u("f8")),  # REDUCE
    _NDARRAY + tup(_SHAPE) + pickle.NEWOBJ,
    _NDARRAY + pickle.EMPTY_TUPLE + pickle.EMPTY_DICT + u("shape") + _SHAPE + pickle.SETITEM
    + pickle.NEWOBJ_EX,
    pickle.MARK + _SHAPE + pickle.INST + b"numpy\nndarray\n",
    pickle.MARK + _NDARRAY + _SHAPE + pickle.OBJ,
    call(sg("numpy.ma", "MaskedArray"), lst(i(1), i(2))),
    sg("numpy.ma", "MaskedArray") + pickle.EMPTY_TUPLE + pickle.NEWOBJ,
    call(sg("copyreg", "_reconstructor"), _NDARRAY, _NDARRAY, _SHAPE),
    call(sg("copyreg", "_reconstructor"), sg("numpy.ma", "MaskedArray"), _NDARRAY, _SHAPE),
], ids=["reduce", "newobj", "newobj_ex", "inst", "obj", "masked_reduce", "masked_newobj",
        "reconstructor_base", "reconstructor_subclass"])
def test_direct_constructions_are_refused_by_the_scan_and_both_unpicklers(body: bytes) -> None:
    _refused_everywhere(proto(body))


_PARTIAL = sg("functools", "partial")


@pytest.mark.parametrize("body", [
    call(call(_PARTIAL, _NDARRAY, _SHAPE)),
    pickle.MARK + call(_PARTIAL, _NDARRAY, _SHAPE) + pickle.OBJ,
    call(call(_PARTIAL, sg("numpy", "log1p")), i(1)),  # harmless, but not a global either
], ids=["reduce_partial_ndarray", "obj_partial_ndarray", "reduce_partial_ufunc"])
def test_only_imported_globals_are_called(body: bytes) -> None:
    """A partial (or any object the file built) calls what it holds: no route around the
    rules on what may be called."""
    data = proto(body)
    assert any("object the file built" in o for o in scan_pickle_bytes(data).offending)
    _refused_everywhere(data, match="something the file built")
    # the partial itself, kept as a value, is fine (HistGradientBoosting keeps one)
    kept = proto(call(_PARTIAL, sg("numpy", "log1p")))
    assert scan_pickle_bytes(kept).safe and load_restricted(kept).func is np.log1p


def test_unlisted_array_classes_stay_refused_with_extra_allowed() -> None:
    for name in ("memmap", "matrix", "recarray"):
        data = proto(call(sg("numpy", name), _SHAPE))
        result = scan_pickle_bytes(data, extra_allowed=[f"numpy.{name}"])
        assert any("constructed directly" in o for o in result.offending), result.offending


def test_array_classes_as_plain_values_are_not_constructions() -> None:
    """Naming the class is fine where numpy/joblib do (joblib's wrapper, _reconstruct)."""
    arr = np.arange(6.0).reshape(2, 3)
    for data in (pickle.dumps(arr, protocol=2), _joblib(arr)):
        assert scan_pickle_bytes(data).safe
        np.testing.assert_array_equal(load_restricted(data), arr)


# --------------------------------------------------------------------------------------
# the guarded reconstructors


@pytest.mark.parametrize("shape", [(4,), (0, 0), (), [0], (False,), 0])
def test_reconstruct_only_takes_the_empty_shape(shape: Any) -> None:
    ndarray = Global("numpy", "ndarray")
    masked = Global("numpy.ma", "MaskedArray")
    assert static_problem(*_RECONSTRUCT, (ndarray, shape, b"b"))
    assert static_problem(*_MARECONSTRUCT, (masked, ndarray, shape, b"b"))
    with pytest.raises(UnsafeModel, match=r"shape other than \(0,\)"):
        guarded_function(_RECONSTRUCT)(np.ndarray, shape, b"b")
    with pytest.raises(UnsafeModel, match=r"shape other than \(0,\)"):
        guarded_function(_MARECONSTRUCT)(np.ma.MaskedArray, np.ndarray, shape, b"b")


def test_reconstruct_with_the_empty_shape_still_works() -> None:
    ndarray = Global("numpy", "ndarray")
    assert static_problem(*_RECONSTRUCT, (ndarray, (0,), b"b")) is None
    assert static_problem(*_RECONSTRUCT, (ndarray, (0,), Obj("_codecs.encode"))) is None
    assert guarded_function(_RECONSTRUCT)(np.ndarray, (0,), b"b").shape == (0,)
    masked = guarded_function(_MARECONSTRUCT)(np.ma.MaskedArray, np.ndarray, (0,), "b")
    assert isinstance(masked, np.ma.MaskedArray) and masked.shape == (0,)


def test_frombuffer_only_views_bytes_from_the_file() -> None:
    dtype = np.dtype("f8")
    frombuffer = guarded_function(_FROMBUFFER)
    assert frombuffer(b"\x00" * 16, dtype, (2,), "C").tolist() == [0.0, 0.0]
    assert frombuffer(bytearray(16), dtype, (2,), "C").flags.writeable
    foreign: list[Any] = [np.zeros(2), memoryview(b"\x00" * 16), memoryview(bytearray(16))]
    for buf in foreign:
        with pytest.raises(UnsafeModel, match="buffer"):
            frombuffer(buf, dtype, (2,), "C")
    assert static_problem(*_FROMBUFFER, (b"\x00" * 16, Obj("dtype"), (2,), "C")) is None
    for read in (Obj("bytearray"), Obj("bytes")):
        assert static_problem(*_FROMBUFFER, (read, Obj("dtype"), (2,), "C")) is None
    emulated: list[Any] = [Obj("numpy._core.numeric._frombuffer"), Obj("buffer"),
                           Obj("out-of-band buffer"), Global("numpy", "ndarray"), "text"]
    for value in emulated:
        assert static_problem(*_FROMBUFFER, (value, Obj("dtype"), (2,), "C")), value
    assert static_problem(*_FROMBUFFER, (b"\x00" * 16,))


def _f8() -> bytes:
    return call(sg("numpy", "dtype"), u("f8"), pickle.NEWFALSE, pickle.NEWTRUE)


def _memo(index: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", index)


def _frombuffer(buf: bytes, n: int = 2) -> bytes:
    return call(sg(*_FROMBUFFER), buf, _f8(), tup(i(n)), u("C"))


def _setstate(raw: bytes, n: int = 2) -> bytes:
    empty = call(sg(*_RECONSTRUCT), _NDARRAY, tup(i(0)), b(b"b"))
    return empty + tup(i(1), tup(i(n)), _f8(), pickle.NEWFALSE, raw) + pickle.BUILD


def test_one_buffer_backs_one_array() -> None:
    raw = b(b"\x01" * 16) + _memo(900)
    shared_bytes = [
        tup(_setstate(raw), _setstate(_get(900))),
        tup(_frombuffer(raw), _setstate(_get(900))),  # read-only view + writable one
        tup(_frombuffer(raw), _frombuffer(_get(900))),
        _frombuffer(raw) + tup(i(1), tup(i(2)), _f8(), pickle.NEWFALSE, _get(900))
        + pickle.BUILD,  # __setstate__ of the view over its own buffer
    ]
    array = pickle.BYTEARRAY8 + struct.pack("<Q", 16) + b"\x01" * 16 + _memo(900)
    shared_bytearray = [tup(_frombuffer(array), _frombuffer(_get(900)))]
    for body in shared_bytes + shared_bytearray:
        _refused_everywhere(proto(body, 5), match="already built over")
    # the same bytes twice is fine anywhere but under arrays
    ok = proto(tup(raw, _get(900), _setstate(_get(900))), 5)
    assert scan_pickle_bytes(ok).safe
    loaded = load_restricted(ok)
    assert loaded[0] is loaded[1] and loaded[2].tolist() == [struct.unpack("<d", b"\x01" * 8)[0]] * 2


def test_masked_array_raw_data_and_mask_back_one_array_each() -> None:
    m = np.ma.masked_array(np.arange(200.0), mask=np.arange(200) % 2 == 0)
    data = pickle.dumps(m, protocol=4)
    assert scan_pickle_bytes(data).safe
    np.testing.assert_array_equal(load_restricted(data).mask, m.mask)
    reduced: Any = m.__reduce__()
    _, args, state = reduced
    raw = state[4]
    forged = (state[0], state[1], state[2], state[3], raw, raw, state[6])

    class Forged:
        def __reduce__(self) -> Any:
            return (np.ma.core._mareconstruct, args, forged)  # type: ignore[attr-defined]

    bad = pickle.dumps([np.ones(1), Forged()], protocol=4)
    _refused_everywhere(bad, match="already built over")


# --------------------------------------------------------------------------------------
# what legitimate files contain keeps loading (and no two loaded arrays share memory)


def _arrays() -> dict[str, Any]:
    f = np.arange(300.0).reshape(20, 15)
    readonly = np.frombuffer(b"\x00" * 64, dtype=np.float64)
    structured = np.zeros(3, dtype=[("a", "<i8"), ("b", "<f4", (2,))])
    same = np.arange(5.0)
    return {
        "c": f, "fortran": np.asfortranarray(f), "strided": f[::2, ::3], "transposed": f.T,
        "zero_d": np.array(3.5), "empty": np.zeros((0, 4)), "int8_one": np.array([1], np.int8),
        "int8_one_again": np.array([1], np.int8), "bool": np.array([True, False]),
        "equal_a": np.ones(200), "equal_b": np.ones(200), "same": same, "same_again": same,
        "objects": np.array([1, "a", None], dtype=object), "structured": structured,
        "readonly": readonly, "big_endian": np.arange(4, dtype=">i4"),
        "masked": np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False]),
        "masked_nomask": np.ma.masked_array(np.arange(300.0)),
        "masked_objects": np.ma.masked_array(np.array(["x", 1], dtype=object), mask=[True, False]),
    }


def _joblib(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


def _no_aliasing(loaded: dict[str, Any]) -> None:
    arrays = [(k, v) for k, v in loaded.items() if isinstance(v, np.ndarray)]
    for (ka, a), (kb, bb) in itertools.combinations(arrays, 2):
        if a is not bb:
            assert not np.shares_memory(a, bb), (ka, kb)


@pytest.mark.parametrize("writer", [f"pickle-p{p}" for p in range(pickle.HIGHEST_PROTOCOL + 1)]
                         + ["joblib", "joblib-zlib"])
def test_legitimate_arrays_round_trip(writer: str) -> None:
    arrays = _arrays()
    if writer.startswith("pickle"):
        data = pickle.dumps(arrays, protocol=int(writer[-1]))
    else:
        data = _joblib(arrays, compress=3 if writer.endswith("zlib") else 0)
    result = scan_pickle_bytes(data)
    assert result.safe, result.offending
    loaded = load_restricted(data)
    assert loaded.keys() == arrays.keys()
    for key, value in arrays.items():
        assert type(loaded[key]) is type(value), key
        if isinstance(value, np.ma.MaskedArray):
            np.testing.assert_array_equal(loaded[key].mask, value.mask)
        assert loaded[key].shape == value.shape, key
        # (the restricted loader, like joblib's, turns big-endian data native)
        assert loaded[key].dtype in (value.dtype, value.dtype.newbyteorder("=")), key
        np.testing.assert_array_equal(np.asarray(loaded[key]), np.asarray(value))
    if writer.startswith("pickle"):  # (joblib writes every occurrence of an array)
        assert loaded["same"] is loaded["same_again"]
    _no_aliasing(loaded)


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("name", ["grid_search", "random_forest", "frame_holder",
                                  "hist_gradient_boosting", "column_transformer_pipeline"])
def test_corpus_models_at_old_protocols_load(name: str, protocol: int,
                                             corpus: dict[str, CorpusModel]) -> None:
    """copyreg._reconstructor (protocols 0-1) still rebuilds objects with base object."""
    cm = corpus[name]
    data = pickle.dumps(cm.model, protocol=protocol)
    assert scan_pickle_bytes(data).safe
    np.testing.assert_array_equal(load_restricted(data).predict(cm.x), cm.model.predict(cm.x))


# --------------------------------------------------------------------------------------
# skops


def _edited(attr: str, node: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
    def edit(attrs: dict[str, Any]) -> None:
        attrs[attr] = node(attrs)
    return _skops_linear(edit)[1]


_SKOPS_ARRAY_NODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "list": lambda a: _node("ListNode", "ndarray", "numpy", content=[_json(3)]),
    "set": lambda a: _node("SetNode", "ndarray", "numpy", content=[_json(3)]),
    "tuple": lambda a: _node("TupleNode", "ndarray", "numpy", content=[_json(3)]),
    "constructor": lambda a: _node("ConstructorFromReduceNode", "ndarray", "numpy",
                                   content=_tuple(_json(3))),
    "constructor_masked": lambda a: _node("ConstructorFromReduceNode", "MaskedArray",
                                          "numpy.ma", content=_tuple(_cached(a["coef_"]))),
    "object": lambda a: _node("ObjectNode", "ndarray", "numpy"),
    "object_masked": lambda a: _node("ObjectNode", "MaskedArray", "numpy.ma"),
    "type": lambda a: _node("TypeNode", "ndarray", "numpy"),
    "ndarray_node_masked": lambda a: dict(a["coef_"], __class__="MaskedArray",
                                          __module__="numpy.ma", __id__=1),
    "masked_node_ndarray": lambda a: _node("MaskedArrayNode", "ndarray", "numpy",
                                           content={"data": dict(a["coef_"], __id__=2),
                                                    "mask": _json(False)}),
    "masked_over_list": lambda a: _node(
        "MaskedArrayNode", "MaskedArray", "numpy.ma",
        content={"data": _node("ListNode", "list", "builtins", content=[_json(1)]),
                 "mask": _json(False)}),
}


@pytest.mark.parametrize("kind", sorted(_SKOPS_ARRAY_NODES))
def test_skops_nodes_other_than_ndarray_and_masked_array_nodes_build_no_array(
        kind: str) -> None:
    data = _edited("singular_", _SKOPS_ARRAY_NODES[kind])
    report = check_skops(data)
    assert any("numpy" in o for o in report.offending), report.offending
    with pytest.raises(UnsafeModel):
        load_skops(data)


def test_skops_masked_arrays_with_their_own_data_load(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    lr = LinearRegression().fit(np.eye(3), np.arange(3.0))
    lr.singular_ = np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])
    lr.extra_ = [np.ma.masked_array([4.0]), np.ma.masked_array([5.0])]  # shared nomask
    data = sio.dumps(lr)
    assert not check_skops(data).offending
    loaded = load_skops(data)
    np.testing.assert_array_equal(loaded.singular_.mask, [False, True, False])
    assert not np.shares_memory(loaded.singular_, loaded.coef_)
