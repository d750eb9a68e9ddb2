"""The allow list is derived from real model files and holds nothing unexplained.

* every global a real corpus file imports (pickle protocols 0-5, joblib plain and
  compressed) and every skops node type is on the list;
* every listed (not derived) entry the corpus does not need is pinned below, by reason:
  adding an entry means either adding the model that needs it to the corpus or adding it
  here on purpose;
* entries resolve to the kind they are listed as, derived sets stay narrow, and skops'
  own default-trusted set is not trusted beyond the list.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlops.errors import FlavorError
from mlops.flavors.allowlist import (
    CLASS,
    FUNCTION,
    GUARDED,
    Pair,
    canonical,
    derived_classes,
    derived_functions,
    explicit_entries,
    iter_all,
    kind_of,
    ufunc_pairs,
)
from mlops.flavors.pickle_guards import guarded_function
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.skops_policy import check_skops
from tests.flavors.model_corpus import CorpusModel, saved_files


def _names(module: str, text: str) -> set[Pair]:
    return {(module, n) for n in text.split()}


#: Listed entries the corpus does not need, kept on purpose (each line says why).
KEPT_WITHOUT_CORPUS_USE: set[Pair] = (
    # Python scalars/containers: dtype=float style parameters, protocol < 4 sets.
    _names("builtins", "bool complex float frozenset")
    # numpy 1.x pickles of ufuncs (guarded: only allow-listed ufuncs come back).
    | {("numpy.core", "_ufunc_reconstruct")}
    # numpy's other bit generators: Generator(PCG64DXSM()) etc.
    | {("numpy.random._pcg64", "PCG64DXSM"), ("numpy.random._philox", "Philox"),
       ("numpy.random._sfc64", "SFC64")}
    # pandas containers and dtypes next to the ones the corpus uses.
    | _names("pandas", "CategoricalIndex TimedeltaIndex IntervalDtype Int8Dtype Int16Dtype "
                       "Int32Dtype UInt16Dtype UInt32Dtype UInt64Dtype Float32Dtype")
    | _names("pandas._libs.tslibs.offsets", "Hour Minute Second")
    | _names("pandas.arrays", "IntervalArray StringArray")
    # the sparse formats' matrix/array twins.
    | {("scipy.sparse._coo", "coo_array"), ("scipy.sparse._csc", "csc_matrix"),
       ("scipy.sparse._csr", "csr_array")}
    # losses, links and SGD losses any loss= parameter can pick.
    | _names("sklearn._loss._loss", "CyAbsoluteError CyExponentialLoss CyHalfGammaLoss "
                                    "CyHalfSquaredError CyHalfTweedieLossIdentity "
                                    "CyPinballLoss")
    | _names("sklearn._loss.loss", "AbsoluteError ExponentialLoss HalfGammaLoss "
                                   "HalfSquaredError HalfTweedieLossIdentity PinballLoss")
    | {("sklearn._loss.link", "HalfLogitLink")}
    | _names("sklearn.linear_model._sgd_fast", "EpsilonInsensitive ModifiedHuber "
                                               "SquaredEpsilonInsensitive SquaredHinge")
    # univariate score functions besides the default f_classif.
    | _names("sklearn.feature_selection._univariate_selection", "chi2 f_regression r_regression")
    | _names("sklearn.feature_selection._mutual_info",
             "mutual_info_classif mutual_info_regression")
    # kernels a GaussianProcess* kernel= parameter can hold.
    | _names("sklearn.gaussian_process.kernels",
             "CompoundKernel ExpSineSquared Exponentiation PairwiseKernel")
    # scorers and CV splitters of searches with other scoring=/cv= parameters.
    | _names("sklearn.metrics._scorer", "_MultimetricScorer _PassthroughScorer")
    | _names("sklearn.model_selection._split",
             "GroupKFold GroupShuffleSplit KFold PredefinedSplit RepeatedKFold "
             "RepeatedStratifiedKFold ShuffleSplit StratifiedGroupKFold "
             "StratifiedShuffleSplit TimeSeriesSplit _CVIterableWrapper")
    # the other XGBoost/LightGBM scikit-learn wrappers.
    | _names("xgboost.sklearn", "XGBRanker XGBRFClassifier XGBRFRegressor")
    | {("lightgbm.sklearn", "LGBMRanker")}
)


def _split(dotted: str) -> Pair:
    module, _, name = dotted.rpartition(".")
    return canonical(module, name)


def _files(cm: CorpusModel) -> Iterator[tuple[str, bytes]]:
    for kind, (_, data) in saved_files(cm.model).items():
        yield kind, data
    for version in range(0, pickle.HIGHEST_PROTOCOL + 1):
        yield f"pickle-p{version}", pickle.dumps(cm.model, protocol=version)


@pytest.fixture(scope="module")
def corpus_globals(corpus: dict[str, CorpusModel]) -> dict[Pair, set[str]]:
    """Every global/skops type the corpus files use -> the models using it."""
    used: dict[Pair, set[str]] = {}
    for name, cm in corpus.items():
        for kind, data in _files(cm):
            if kind == "skops":
                report = check_skops(data)
                assert not report.offending, (name, report.offending)
                found = report.types
            else:
                result = scan_pickle_bytes(data)
                assert result.safe, (name, kind, result.offending)
                found = result.imports
            for dotted in found:
                used.setdefault(_split(dotted), set()).add(name)
    return used


def test_every_global_of_the_corpus_is_on_the_list(corpus_globals: dict[Pair, set[str]]) -> None:
    missing = {pair: users for pair, users in corpus_globals.items()
               if kind_of(*pair) is None and pair[0] != "numpy.random"}
    assert not missing
    # and the corpus really exercises the list: reconstructors, guards, classes
    kinds = {kind_of(*pair) for pair in corpus_globals}
    assert {CLASS, FUNCTION, GUARDED} <= kinds


def test_listed_entries_the_corpus_does_not_need_are_the_pinned_ones(
        corpus_globals: dict[Pair, set[str]]) -> None:
    unused = set(explicit_entries()) - set(corpus_globals)
    assert unused == KEPT_WITHOUT_CORPUS_USE, (
        f"unexpected: {sorted(unused - KEPT_WITHOUT_CORPUS_USE)}; "
        f"now used: {sorted(KEPT_WITHOUT_CORPUS_USE - unused)}")


def _resolve(pair: Pair) -> object:
    obj: object = importlib.import_module(pair[0])
    for part in pair[1].split("."):
        obj = getattr(obj, part)
    return obj


def test_every_entry_is_the_kind_it_is_listed_as() -> None:
    for pair, kind in iter_all():
        obj = _resolve(pair)
        if kind == CLASS:
            assert isinstance(obj, type), pair
        else:
            assert callable(obj) and not isinstance(obj, type), pair
        if kind == GUARDED:
            wrapper = guarded_function(pair)
            assert wrapper is not obj and wrapper is guarded_function(pair)


def test_derived_sets_are_narrow() -> None:
    from sklearn.base import BaseEstimator

    classes = derived_classes()
    sklearn_classes = {p for p in classes if p[0].startswith("sklearn.")}
    assert 150 < len(sklearn_classes) < 400
    for pair in sklearn_classes:
        cls = _resolve(pair)
        assert isinstance(cls, type)
        assert issubclass(cls, BaseEstimator) or "Distance" in pair[1], pair
        assert "PyFunc" not in pair[1]
    for pair in classes - sklearn_classes:
        assert pair[0] == "numpy" and issubclass(_resolve(pair), np.generic), pair  # type: ignore[arg-type]
    for pair in ufunc_pairs():
        assert isinstance(_resolve(pair), np.ufunc), pair
    for pair in derived_functions() - ufunc_pairs():
        assert pair[0].startswith("sklearn.metrics"), pair


@pytest.mark.parametrize("dotted", [
    "numpy.load", "numpy.save", "numpy.memmap", "numpy._core.fromnumeric._wrapfunc",
    "numpy.ndarray.tofile", "numpy.lib._npyio_impl.savetxt", "pandas.read_pickle",
    "pandas.io.pytables.HDFStore", "pandas.DataFrame.to_pickle", "scipy.io.savemat",
    "sklearn.utils._testing.assert_run_python_script_without_output",
    "joblib.numpy_pickle.NDArrayWrapper", "joblib.load", "xgboost.core.Booster.save_model",
    "lightgbm.basic.Booster.save_model", "builtins.getattr", "builtins.type", "builtins.eval",
    "copyreg.__newobj__", "functools.reduce", "operator.attrgetter",
    "sklearn.feature_selection.f_classif",  # re-exported name: only the defining module
])
def test_nothing_is_allowed_by_package(dotted: str) -> None:
    assert kind_of(*dotted.rpartition(".")[::2]) is None


def test_skops_default_trusted_types_are_not_trusted_beyond_the_list() -> None:
    """skops trusts some types by default that mlops does not; none of them gets in."""
    import skops.io._trusted_types as skops_types

    defaults = set(
        skops_types.PRIMITIVE_TYPE_NAMES + skops_types.CONTAINER_TYPE_NAMES
        + skops_types.SKLEARN_ESTIMATOR_TYPE_NAMES + skops_types.SKLEARN_INTERNAL_TYPE_NAMES
        + skops_types.SCIPY_UFUNC_TYPE_NAMES + skops_types.NUMPY_UFUNC_TYPE_NAMES
        + skops_types.NUMPY_RANDOM_BIT_GENERATOR_TYPE_NAMES
        + skops_types.NUMPY_DTYPE_TYPE_NAMES)
    beyond = {d for d in defaults if kind_of(*d.rpartition(".")[::2]) is None}
    # builtins.map is refused everywhere; the bit generators' public names are accepted
    # only as the bit generator of a numpy.random.Generator node (see skops_policy).
    assert beyond == {"builtins.map", "numpy.random.MT19937", "numpy.random.PCG64",
                      "numpy.random.PCG64DXSM", "numpy.random.Philox", "numpy.random.SFC64"}


def test_the_allow_list_does_not_depend_on_what_else_was_imported() -> None:
    """onnx imports ml_dtypes, which registers int4, bfloat16, ... in np.sctypeDict."""
    pytest.importorskip("ml_dtypes")
    import subprocess
    import sys

    code = ("import json, sys\n"
            "if sys.argv[1] == 'with': import ml_dtypes  # noqa: F401\n"
            "from mlops.flavors.allowlist import derived_classes\n"
            "print(json.dumps(sorted(map(list, derived_classes()))))\n")
    found = [subprocess.run([sys.executable, "-c", code, arg], capture_output=True, text=True,
                            check=True).stdout for arg in ("without", "with")]
    assert found[0] == found[1]
    assert "ml_dtypes" not in found[1]


def test_a_skops_archive_that_decompresses_past_the_cap_is_refused_unread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """6 MB of deflated zeros was 6 GiB of "array" in memory before any check answered;
    the declared sizes are judged first (the cap lowered here to keep the test small)."""
    import skops.io as sio
    from sklearn.linear_model import LinearRegression

    import mlops.flavors.skops_policy as policy

    model = LinearRegression().fit(np.zeros((50, 200)), np.arange(50))
    data = sio.dumps(model)
    policy.check_skops(data)  # under the real cap
    monkeypatch.setattr(policy, "MAX_DECOMPRESSED_BYTES", 1_000)
    with pytest.raises(FlavorError, match=r"decompresses to [0-9,]+ bytes; the limit is 1,000"):
        policy.check_skops(data)
    with pytest.raises(FlavorError, match="cannot read the archive"):
        policy.check_skops(b"PK\x03\x04 not really a zip")
