"""The exact allow list of ``(module, qualified name)`` globals a model file may import.

This is data, enforced twice: by the static opcode scan at registration
(:mod:`mlops.flavors.pickle_scan`) and by the restricted unpickler at every load
(:mod:`mlops.flavors.restricted_unpickler`); skops files are judged by the same list
(:mod:`mlops.flavors.skops_policy`). Nothing outside it is importable from a model file,
whatever package it lives in: allowed packages are full of *gadgets* (functions that
fetch or call things by name, like numpy's ``_wrapfunc``), so packages are never allowed
wholesale.

Every entry has a kind:

* :data:`CLASS` - a class a file may instantiate (REDUCE/NEWOBJ call it with arguments
  from the file, BUILD feeds its ``__setstate__``) or hold as a value (``dtype=np.float64``).
  Classes are listed one by one; the only derived sets are scikit-learn's public
  estimators (:func:`sklearn.utils.all_estimators`: by scikit-learn's API contract their
  ``__init__`` only stores parameters), numpy's scalar types and scikit-learn's distance
  metric classes (minus the one that wraps a Python callable);
* :data:`FUNCTION` - a function a file may call or hold: the reconstructors pickles of the
  supported libraries need, each with the reason it is here, and numeric functions models
  keep as parameters (numpy/scipy ufuncs, univariate score functions, the metrics behind
  scikit-learn's named scorers);
* :data:`GUARDED` - a function whose arguments decide what it constructs or imports; it is
  only ever called through a vetted wrapper that checks those arguments
  (:mod:`mlops.flavors.pickle_guards`), statically at scan time where they are literal and
  again at load time.

``ALIASES`` maps the names old pickles use (numpy 1.x wrote ``numpy.core.*``) to the
current object; the alias is judged exactly like its target.

numpy's array classes (:data:`ARRAY_CLASSES`: ``numpy.ndarray``, ``numpy.ma.MaskedArray``
and, should they ever be listed, numpy's other ndarray subclasses) are classes a file may
name but never construct itself: ``ndarray(shape)`` / ``ndarray.__new__(cls, shape)`` hand
out uninitialised heap memory of the loading process (which predictions then reveal) and
``buffer=other`` / ``MaskedArray(other)`` alias another array's memory (a later write to
one changes the other after the checks). Arrays are only rebuilt the ways numpy, joblib and
skops write them: ``_reconstruct(cls, (0,), "b")`` + ``__setstate__``,
``_mareconstruct(cls, base, (0,), "b")`` + ``__setstate__``, ``_frombuffer`` of bytes from
the file (guarded), joblib's ``NumpyArrayWrapper`` and skops' ``NdArrayNode`` /
``MaskedArrayNode``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

__all__ = [
    "ALIASES",
    "ARRAY_CLASSES",
    "CLASS",
    "EXPLICIT_CLASSES",
    "FUNCTION",
    "FUNCTIONS",
    "GUARDED",
    "GUARDED_FUNCTIONS",
    "NO_CALL_CLASSES",
    "UFUNC_MODULES",
    "VALUE_BUILTIN_TYPES",
    "VALUE_FUNCTIONS",
    "Pair",
    "array_class",
    "canonical",
    "derived_classes",
    "derived_functions",
    "explicit_entries",
    "iter_all",
    "kind_of",
    "no_call",
    "ufunc_pairs",
    "value_function_pairs",
    "value_type_pairs",
]

Pair = tuple[str, str]

CLASS = "class"
FUNCTION = "function"
GUARDED = "guarded"


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Classes listed one by one, by defining module (``cls.__module__``) and qualified name.
#: Each group says why it is needed; none of these opens files, imports by name or
#: calls something its arguments name.
EXPLICIT_CLASSES: dict[str, tuple[str, ...]] = {
    # Python values. ``object`` is the base argument of copyreg._reconstructor; the
    # containers and scalars are named by skops nodes and by protocol < 4 pickles
    # (set/frozenset/complex are REDUCE calls there); the scalar types also appear as
    # ``dtype=int`` style parameters.
    "builtins": _names("object dict list tuple set frozenset str bytes bytearray int float "
                       "complex bool slice"),
    "collections": _names("OrderedDict defaultdict"),  # LightGBM's evals_result_, params
    "datetime": _names("date datetime timedelta timezone"),  # timestamps kept on models
    # partial(check_array, ...) in HistGradientBoosting's categorical preprocessor. It only
    # stores a callable that is itself a global of the file (and so on this list).
    "functools": _names("partial"),
    # numpy containers. Scalar types (numpy.float64, ...) are derived, see below.
    "numpy": _names("ndarray dtype"),
    "numpy.ma": _names("MaskedArray"),  # GridSearchCV.cv_results_ holds masked arrays
    "numpy.random.mtrand": _names("RandomState"),  # random_state_ of fitted estimators
    "numpy.random._generator": _names("Generator"),
    "numpy.random.bit_generator": _names("SeedSequence"),
    "numpy.random._mt19937": _names("MT19937"),
    "numpy.random._pcg64": _names("PCG64 PCG64DXSM"),
    "numpy.random._philox": _names("Philox"),
    "numpy.random._sfc64": _names("SFC64"),
    # joblib's placeholder for an array whose bytes follow the pickle in the file.
    "joblib.numpy_pickle": _names("NumpyArrayWrapper"),
    # scipy sparse containers (sparse inputs: SVC.support_vectors_, OneHotEncoder output).
    "scipy.sparse._csr": _names("csr_matrix csr_array"),
    "scipy.sparse._csc": _names("csc_matrix csc_array"),
    "scipy.sparse._coo": _names("coo_matrix coo_array"),
    # pandas data containers and dtypes (frames, series and indexes kept on models).
    "pandas": _names("DataFrame Series Index RangeIndex MultiIndex DatetimeIndex "
                     "TimedeltaIndex PeriodIndex IntervalIndex CategoricalIndex Categorical "
                     "CategoricalDtype DatetimeTZDtype PeriodDtype IntervalDtype StringDtype "
                     "BooleanDtype Int8Dtype Int16Dtype Int32Dtype Int64Dtype UInt8Dtype "
                     "UInt16Dtype UInt32Dtype UInt64Dtype Float32Dtype Float64Dtype"),
    "pandas.arrays": _names("ArrowStringArray StringArray DatetimeArray TimedeltaArray "
                            "IntegerArray FloatingArray BooleanArray PeriodArray "
                            "IntervalArray"),
    "pandas.core.internals.managers": _names("BlockManager SingleBlockManager"),
    "pandas._libs.tslibs.offsets": _names("Day Hour Minute Second"),  # freq of date ranges
    # scikit-learn internals that fitted estimators hold (not estimators themselves).
    "sklearn.tree._tree": _names("Tree"),
    "sklearn.neighbors._kd_tree": _names("KDTree"),
    "sklearn.neighbors._ball_tree": _names("BallTree"),
    "sklearn.utils._bunch": _names("Bunch"),
    "sklearn.calibration": _names("_CalibratedClassifier _SigmoidCalibration"),
    "sklearn.cluster._birch": _names("_CFNode _CFSubcluster"),
    "sklearn.gaussian_process._gpc": _names("_BinaryGaussianProcessClassifierLaplace"),
    "sklearn.neural_network._stochastic_optimizers": _names("AdamOptimizer SGDOptimizer"),
    "sklearn.ensemble._hist_gradient_boosting.binning": _names("_BinMapper"),
    "sklearn.ensemble._hist_gradient_boosting.predictor": _names("TreePredictor"),
    # GridSearchCV/RandomizedSearchCV keep their scorer and CV splitter: scorers store a
    # metric function (itself a listed global, see the derived scorer metrics), splitters
    # store n_splits/shuffle/random_state.
    "sklearn.metrics._scorer": _names("_Scorer _PassthroughScorer _MultimetricScorer"),
    "sklearn.model_selection._split": _names(
        "KFold StratifiedKFold GroupKFold StratifiedGroupKFold ShuffleSplit "
        "StratifiedShuffleSplit GroupShuffleSplit TimeSeriesSplit RepeatedKFold "
        "RepeatedStratifiedKFold PredefinedSplit _CVIterableWrapper"),
    # Gaussian process kernels: like estimators, __init__ only stores hyper-parameters.
    "sklearn.gaussian_process.kernels": _names(
        "CompoundKernel ConstantKernel DotProduct ExpSineSquared Exponentiation Matern "
        "PairwiseKernel Product RBF RationalQuadratic Sum WhiteKernel"),
    # Losses and links: any of them can be picked by a ``loss=`` parameter.
    "sklearn._loss.loss": _names(
        "AbsoluteError ExponentialLoss HalfBinomialLoss HalfGammaLoss HalfMultinomialLoss "
        "HalfPoissonLoss HalfSquaredError HalfTweedieLoss HalfTweedieLossIdentity HuberLoss "
        "PinballLoss"),
    "sklearn._loss._loss": _names(
        "CyAbsoluteError CyExponentialLoss CyHalfBinomialLoss CyHalfGammaLoss "
        "CyHalfMultinomialLoss CyHalfPoissonLoss CyHalfSquaredError CyHalfTweedieLoss "
        "CyHalfTweedieLossIdentity CyHuberLoss CyPinballLoss"),
    "sklearn._loss.link": _names(
        "HalfLogitLink IdentityLink Interval LogLink LogitLink MultinomialLogit"),
    "sklearn.linear_model._sgd_fast": _names(
        "EpsilonInsensitive Hinge ModifiedHuber SquaredEpsilonInsensitive SquaredHinge"),
    # XGBoost and LightGBM scikit-learn wrappers and their boosters (the booster state is
    # the library's own model format, parsed by the library).
    "xgboost.core": _names("Booster"),
    "xgboost.sklearn": _names("XGBClassifier XGBRegressor XGBRanker XGBRFClassifier "
                              "XGBRFRegressor"),
    "lightgbm.basic": _names("Booster"),
    "lightgbm.sklearn": _names("LGBMClassifier LGBMRegressor LGBMRanker"),
}

#: Functions a file may call or hold, each with the reason it is on the list.
FUNCTIONS: dict[Pair, str] = {
    ("numpy._core.multiarray", "scalar"):
        "numpy scalars (np.float64(1.5), ...): a scalar from a dtype and its raw bytes",
    ("pandas._libs.internals", "_unpickle_block"):
        "DataFrame/Series blocks: a block from its values array and row placement",
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"):
        "pd.Timestamp from its integer value, tz object and resolution",
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"):
        "pd.Timedelta from its integer value and resolution",
    ("pyarrow.lib", "py_buffer"):
        "pandas 3 string columns (Arrow): wraps bytes as an Arrow buffer",
    ("pyarrow.lib", "type_for_alias"):
        "pandas 3 string columns (Arrow): an Arrow type from a fixed table of names",
    ("sklearn.utils.validation", "check_array"):
        "held by HistGradientBoosting's categorical preprocessor as partial(check_array, ...)",
    ("sklearn.feature_selection._univariate_selection", "f_classif"):
        "score_func of SelectKBest/SelectPercentile (default); numeric function of (X, y)",
    ("sklearn.feature_selection._univariate_selection", "f_regression"):
        "score_func of SelectKBest/SelectPercentile; numeric function of (X, y)",
    ("sklearn.feature_selection._univariate_selection", "r_regression"):
        "score_func of SelectKBest/SelectPercentile; numeric function of (X, y)",
    ("sklearn.feature_selection._univariate_selection", "chi2"):
        "score_func of SelectKBest/SelectPercentile; numeric function of (X, y)",
    ("sklearn.feature_selection._mutual_info", "mutual_info_classif"):
        "score_func of SelectKBest/SelectPercentile; numeric function of (X, y)",
    ("sklearn.feature_selection._mutual_info", "mutual_info_regression"):
        "score_func of SelectKBest/SelectPercentile; numeric function of (X, y)",
}

#: The entries of :data:`FUNCTIONS` a model may also keep as a *value* (a parameter that
#: scikit-learn calls at predict time, e.g. ``SelectKBest.score_func``); the others are
#: reconstructors, called while loading and never stored (see
#: :mod:`mlops.flavors.graph_policy`, rule 2). Ufuncs and scorer metrics are value
#: functions too (:func:`value_function_pairs`).
VALUE_FUNCTIONS: frozenset[Pair] = frozenset({
    ("sklearn.feature_selection._univariate_selection", "f_classif"),
    ("sklearn.feature_selection._univariate_selection", "f_regression"),
    ("sklearn.feature_selection._univariate_selection", "r_regression"),
    ("sklearn.feature_selection._univariate_selection", "chi2"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_classif"),
    ("sklearn.feature_selection._mutual_info", "mutual_info_regression"),
})

#: Python types a model may keep as a value (``dtype=float`` style parameters); with
#: numpy's scalar types these are the only classes allowed as values.
VALUE_BUILTIN_TYPES: frozenset[Pair] = frozenset(
    ("builtins", n) for n in ("float", "int", "bool", "str", "object", "complex"))

assert VALUE_FUNCTIONS.issubset(FUNCTIONS), VALUE_FUNCTIONS - set(FUNCTIONS)

#: Functions whose arguments choose what they build; called only through a vetted
#: wrapper (:mod:`mlops.flavors.pickle_guards` has one per entry).
GUARDED_FUNCTIONS: dict[Pair, str] = {
    ("_codecs", "encode"):
        "bytes at pickle protocol < 3; the encoding name selects a codec module, so only "
        "latin-1 of a str is accepted",
    ("copyreg", "_reconstructor"):
        "objects at pickle protocol < 2: base.__new__(cls); cls must subclass base",
    ("numpy._core.multiarray", "_reconstruct"):
        "numpy arrays at protocol < 5: an array of the given ndarray subclass and shape, "
        "uninitialised, so only the empty shape (0,) that __setstate__ then fills",
    ("numpy._core.numeric", "_frombuffer"):
        "numpy arrays at pickle protocol 5: frombuffer(buf, dtype).reshape(shape, order) "
        "views any buffer, so only bytes/bytearray from the file (not another array)",
    ("numpy.core", "_ufunc_reconstruct"):
        "ufuncs in numpy 1.x pickles: import+getattr of any name, so only ufuncs on this "
        "list are returned",
    ("numpy.ma.core", "_mareconstruct"):
        "masked arrays: subtype must be a MaskedArray, baseclass an ndarray, and the "
        "shape the empty (0,) (like _reconstruct)",
    ("numpy.random._pickle", "__randomstate_ctor"):
        "RandomState: calls its second argument, so only numpy's bit generator ctor",
    ("numpy.random._pickle", "__generator_ctor"):
        "Generator: calls its second argument, so only numpy's bit generator ctor",
    ("numpy.random._pickle", "__bit_generator_ctor"):
        "bit generators: instantiates a class or a name, so only numpy's bit generators",
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"):
        "Cython unpickler: instantiates its first argument, so only SeedSequence",
    ("sklearn._loss._loss", "__pyx_unpickle_CyHalfMultinomialLoss"):
        "Cython unpickler: instantiates its first argument, so only CyHalfMultinomialLoss",
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"):
        "Cython unpickler: instantiates its first argument, so only pandas' backed arrays",
    ("sklearn.neighbors._kd_tree", "newObj"):
        "KDTree: cls.__new__(cls) of its argument, so only KDTree",
    ("sklearn.neighbors._ball_tree", "newObj"):
        "BallTree: cls.__new__(cls) of its argument, so only BallTree",
    ("sklearn.metrics._dist_metrics", "newObj"):
        "distance metrics: cls.__new__(cls) of its argument, so only metric classes",
    ("pandas.core.indexes.base", "_new_Index"):
        "pandas indexes: cls.__new__(cls, **d), so cls must be a pandas Index",
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"):
        "DatetimeIndex: calls cls._simple_new, so cls must be a DatetimeIndex",
    ("pandas.core.indexes.interval", "_new_IntervalIndex"):
        "IntervalIndex: calls cls.from_arrays, so cls must be an IntervalIndex",
    ("pyarrow.lib", "_restore_array"):
        "Arrow arrays from raw buffers and offsets: fully validated before use",
}

#: Allowed classes whose constructor reads a file named by its arguments
#: (``Booster(model_file=...)``). Their pickles build them with ``cls.__new__`` and
#: ``__setstate__`` (NEWOBJ, copyreg._reconstructor with base object, skops ObjectNode),
#: so a file may never call them (REDUCE/INST/OBJ, reduce-constructor nodes) nor keep the
#: class itself as a value (a later ``FunctionTransformer(func=Booster)`` would call it).
NO_CALL_CLASSES: frozenset[Pair] = frozenset({
    ("xgboost.core", "Booster"),
    ("lightgbm.basic", "Booster"),
})

#: numpy's array classes (by ``cls.__module__`` and qualified name, plus the public
#: spellings of numpy's other ndarray subclasses): never constructed by a file, see the
#: module doc. Every allowed class that subclasses ``numpy.ndarray`` must be here (a test
#: checks it); the unlisted ones are here so an ``extra_allowed`` entry cannot reopen them.
ARRAY_CLASSES: frozenset[Pair] = frozenset({
    ("numpy", "ndarray"),
    ("numpy.ma", "MaskedArray"), ("numpy.ma.core", "MaskedArray"),
    ("numpy.ma.core", "mvoid"), ("numpy.ma", "mvoid"),
    ("numpy.ma.core", "MaskedConstant"),
    ("numpy", "matrix"), ("numpy.matrixlib.defmatrix", "matrix"),
    ("numpy", "memmap"), ("numpy._core.memmap", "memmap"),
    ("numpy", "recarray"), ("numpy.rec", "recarray"), ("numpy._core.records", "recarray"),
    ("numpy.char", "chararray"), ("numpy._core.defchararray", "chararray"),
})

#: Names written by older library versions -> the entry they stand for.
ALIASES: dict[Pair, Pair] = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
}

#: Modules whose numpy.ufunc attributes may be named by a file (ufuncs are C loops over
#: numeric dtypes; models keep them as parameters, e.g. FunctionTransformer(np.log1p)).
UFUNC_MODULES = ("numpy", "numpy._core.umath", "scipy.special", "scipy.special._ufuncs",
                 "scipy.special._special_ufuncs")

_EXPLICIT: dict[Pair, str] = {
    **{(m, n): CLASS for m, names in EXPLICIT_CLASSES.items() for n in names},
    **{pair: FUNCTION for pair in FUNCTIONS},
    **{pair: GUARDED for pair in GUARDED_FUNCTIONS},
}


def explicit_entries() -> dict[Pair, str]:
    """Every listed (not derived) entry and its kind."""
    return dict(_EXPLICIT)


def canonical(module: str, name: str) -> Pair:
    """The entry an old name stands for (itself when it is not an alias)."""
    return ALIASES.get((module, name), (module, name))


@functools.cache
def _sklearn_estimators() -> frozenset[Pair]:
    """scikit-learn's public estimators; their ``__init__`` only stores parameters."""
    try:
        from sklearn.utils import all_estimators
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return frozenset()
    return frozenset(
        (cls.__module__, cls.__qualname__)
        for _, cls in all_estimators()
        if cls.__module__.startswith("sklearn.")
    )


@functools.cache
def _distance_metrics() -> frozenset[Pair]:
    """scikit-learn's distance metric classes, except the one wrapping a Python callable."""
    try:
        from sklearn.metrics import _dist_metrics
    except ImportError:  # pragma: no cover
        return frozenset()
    classes = [*_dist_metrics.METRIC_MAPPING64.values(), *_dist_metrics.METRIC_MAPPING32.values()]
    return frozenset(
        (c.__module__, c.__qualname__) for c in classes if not c.__name__.startswith("PyFunc")
    )


@functools.cache
def _scorer_metrics() -> frozenset[Pair]:
    """The metric functions behind scikit-learn's named scorers (``scoring="roc_auc"``):
    numeric functions of (y_true, y_pred) that fitted searches keep in ``scorer_``."""
    try:
        from sklearn.metrics import get_scorer, get_scorer_names
    except ImportError:  # pragma: no cover
        return frozenset()
    pairs = set()
    for name in get_scorer_names():
        func = getattr(get_scorer(name), "_score_func", None)
        if func is not None:
            pairs.add((func.__module__, func.__qualname__))
    return frozenset(pairs)


@functools.cache
def _numpy_scalar_types() -> frozenset[Pair]:
    """numpy's own scalar types (numpy.float64, numpy.str_, ...): constructed from a value.
    Other libraries register theirs in ``np.sctypeDict`` when imported (``ml_dtypes``, which
    onnx imports, adds int4, bfloat16, ...): only numpy's count, whatever was imported."""
    import numpy as np

    return frozenset((t.__module__, t.__qualname__) for t in set(np.sctypeDict.values())
                     if t.__module__ == "numpy")


@functools.cache
def _ufuncs() -> frozenset[Pair]:
    import importlib

    import numpy as np

    pairs: set[Pair] = set()
    for module_name in UFUNC_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - scipy is a dependency
            continue
        for attr in dir(module):
            if isinstance(getattr(module, attr, None), np.ufunc):
                pairs.add((module_name, attr))
    return frozenset(pairs)


def ufunc_pairs() -> frozenset[Pair]:
    """(module, name) of every ufunc a file may name."""
    return _ufuncs()


def derived_functions() -> frozenset[Pair]:
    """The derived function sets: ufuncs and scikit-learn's scorer metrics."""
    return _ufuncs() | _scorer_metrics()


@functools.cache
def value_function_pairs() -> frozenset[Pair]:
    """Functions a model may keep as a value: :data:`VALUE_FUNCTIONS`, ufuncs, and the
    metrics behind scikit-learn's named scorers (pure numeric functions)."""
    return VALUE_FUNCTIONS | _ufuncs() | _scorer_metrics()


@functools.cache
def value_type_pairs() -> frozenset[Pair]:
    """Classes a model may keep as a value: numpy's scalar types and
    :data:`VALUE_BUILTIN_TYPES`."""
    return _numpy_scalar_types() | VALUE_BUILTIN_TYPES


def derived_classes() -> frozenset[Pair]:
    """The derived class sets: scikit-learn estimators, distance metrics, numpy scalars."""
    return _sklearn_estimators() | _distance_metrics() | _numpy_scalar_types()


def array_class(module: str, name: str) -> bool:
    """True for numpy's array classes, which a file may name but never construct (see
    :data:`ARRAY_CLASSES`)."""
    return canonical(module, name) in ARRAY_CLASSES


def no_call(module: str, name: str) -> bool:
    """True for an allowed class a file may instantiate but never call (see NO_CALL_CLASSES)."""
    return canonical(module, name) in NO_CALL_CLASSES


def kind_of(module: str, name: str) -> str | None:
    """:data:`CLASS`, :data:`FUNCTION` or :data:`GUARDED` for an allowed global, else None.

    Only exact names match: a dotted ``name`` (``ndarray.tofile``) or an attribute of an
    allowed module is not allowed unless it is itself listed. Nothing named by the caller
    is imported: the derived sets come from fixed library entry points.
    """
    module, name = canonical(module, name)
    kind = _EXPLICIT.get((module, name))
    if kind is not None:
        return kind
    if module in UFUNC_MODULES and (module, name) in _ufuncs():
        return FUNCTION
    if module == "numpy" and (module, name) in _numpy_scalar_types():
        return CLASS
    if module.startswith("sklearn.") and (
        (module, name) in _sklearn_estimators() or (module, name) in _distance_metrics()
    ):
        return CLASS
    if module.startswith("sklearn.metrics") and (module, name) in _scorer_metrics():
        return FUNCTION
    return None


def iter_all() -> Iterator[tuple[Pair, str]]:
    """Every allowed (module, name) and its kind, derived sets included (for tests)."""
    yield from _EXPLICIT.items()
    for pair in sorted(derived_classes()):
        yield pair, CLASS
    for pair in sorted(_ufuncs() | _scorer_metrics()):
        yield pair, FUNCTION
