"""The rules on what allow-listed objects may hold (mlops/flavors/graph_policy.py), at load
time and, where the file states it literally, at scan time.

Each rule refuses its gadgets and lets real models through; the tables are tied to the
installed scikit-learn (a renamed class or a new method-name parameter fails a test here
instead of silently disabling a rule); and every estimator scikit-learn can build and fit
with its own test parameters passes, unless the allow list refuses its pickle anyway.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict, defaultdict
from functools import partial
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from mlops.errors import UnsafeModel
from mlops.flavors.files import detect_format, load_bytes, safety_check
from mlops.flavors.graph_policy import check_model_root
from mlops.flavors.graph_rules import (
    ESTIMATOR_SLOTS,
    METHOD_NAME_ATTRS,
    SCOPED_ESTIMATOR_SLOTS,
    VECTORIZER_ATTRS,
    value_rules_of,
)
from mlops.flavors.pickle_scan import scan_pickle_bytes
from mlops.flavors.restricted_unpickler import load_restricted
from mlops.flavors.state_checks import validate_graph

X = np.arange(24, dtype=float).reshape(12, 2)
Y = (X[:, 0] > 10).astype(int)


def _refused(obj: Any, match: str) -> None:
    with pytest.raises(UnsafeModel, match=match):
        validate_graph(obj)


def _scan(obj: Any) -> tuple[str, ...]:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return scan_pickle_bytes(buf.getvalue()).offending


def _lr() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit(X, X[:, 0])


def _stacking() -> Any:
    from sklearn.ensemble import StackingRegressor
    from sklearn.linear_model import LinearRegression, Ridge

    return StackingRegressor([("a", LinearRegression()), ("b", Ridge())], cv=2).fit(X, X[:, 0])


# --------------------------------------------------------------------------------------
# the tables match the installed scikit-learn


@pytest.mark.parametrize("pair", sorted({*METHOD_NAME_ATTRS, *VECTORIZER_ATTRS,
                                          *SCOPED_ESTIMATOR_SLOTS}))
def test_table_classes_exist(pair: tuple[str, str]) -> None:
    import importlib

    cls = getattr(importlib.import_module(pair[0]), pair[1])
    assert isinstance(cls, type)


def _constraints() -> list[tuple[type, str, Any]]:
    from sklearn.utils import all_estimators

    return [(cls, param, c) for _, cls in all_estimators()
            for param, cons in getattr(cls, "_parameter_constraints", {}).items()
            for c in cons]


def test_every_method_name_parameter_is_checked() -> None:
    """Every parameter whose options name an estimator method (rule 3)."""
    from sklearn.utils._param_validation import StrOptions

    methods = {"predict", "predict_proba", "decision_function", "predict_log_proba",
               "transform", "score"}
    found = {(cls.__qualname__, param) for cls, param, c in _constraints()
             if isinstance(c, StrOptions) and c.options & methods}
    assert found, "scikit-learn's constraints changed shape"
    missing = {(name, param) for name, param in found
               if param not in value_rules_of(_cls(name))}
    assert not missing


def test_every_estimator_parameter_is_a_slot() -> None:
    """Every HasMethods parameter holds an estimator slot (rule 5), except ``memory`` (a
    joblib.Memory, not on the allow list) and ``vocabulary`` (a mapping of words)."""
    from sklearn.utils._param_validation import HasMethods

    scoped = set().union(*SCOPED_ESTIMATOR_SLOTS.values())
    params = {param for _, param, c in _constraints() if isinstance(c, HasMethods)}
    assert params - ESTIMATOR_SLOTS - scoped == {"memory", "vocabulary"}


def test_every_input_parameter_is_a_vectorizer() -> None:
    from sklearn.utils import all_estimators

    with_input = {cls for _, cls in all_estimators()
                  if "input" in getattr(cls, "_parameter_constraints", {})}
    assert with_input
    assert all(value_rules_of(cls)["input"].options == {"content"} for cls in with_input)


def _cls(qualname: str) -> type:
    from sklearn.utils import all_estimators

    return next(cls for _, cls in all_estimators() if cls.__qualname__ == qualname)


# --------------------------------------------------------------------------------------
# rule 1: no behaviour in instance state


def test_shadowed_method_is_refused() -> None:
    st = _stacking()
    validate_graph(st)
    st._concatenate_predictions = np.negative
    _refused(st, "shadows behaviour")
    assert any("shadows behaviour" in o for o in _scan(st))


@pytest.mark.parametrize("name", ["predict", "fit", "n_features_in_", "_transform",
                                  "__sklearn_tags__", "__array_interface__", "__class__"])
def test_any_class_behaviour_or_dunder_is_refused(name: str) -> None:
    st = _stacking()
    st.__dict__[name] = 1
    _refused(st, "StackingRegressor")


def test_data_attributes_named_like_class_data_are_fine() -> None:
    lr = _lr()
    lr._estimator_type = "regressor"  # a class attribute that is data
    lr.reference_ = {"predict": [1, 2]}  # keys of a plain dict are not attributes
    validate_graph(lr)


def test_bunch_dunder_keys_are_refused() -> None:
    from sklearn.utils._bunch import Bunch

    lr = _lr()
    lr.extra_ = Bunch(ok=1)
    validate_graph(lr)
    lr.extra_ = Bunch(__array_interface__={})
    _refused(lr, "Bunch key")


def test_non_string_attribute_names_are_refused() -> None:
    lr = _lr()
    lr.__dict__[1] = 2
    _refused(lr, "is not a name")


# --------------------------------------------------------------------------------------
# rule 2: callables stored as values


def test_value_functions_and_types_pass() -> None:
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    validate_graph([FunctionTransformer(np.log1p, inverse_func=np.expm1),
                    OneHotEncoder(dtype=np.float64), OneHotEncoder(dtype=float),
                    SelectKBest(f_classif), {"d": [np.int32, str, object, complex]},
                    partial(np.add, 1.0)])


def test_hgb_check_array_partial_passes_and_only_that_form() -> None:
    from sklearn.utils.validation import check_array

    validate_graph(partial(check_array, dtype=[np.float64], ensure_all_finite=False))
    validate_graph(partial(check_array, dtype=[np.float64], force_all_finite=False))
    for bad in (partial(check_array), partial(check_array, dtype=np.uint8),
                partial(check_array, dtype=[np.float64], ensure_all_finite=False,
                        ensure_2d=False),
                partial(check_array, X, dtype=[np.float64], ensure_all_finite=False)):
        _refused(bad, "check_array")


@pytest.mark.parametrize("value", ["bytes", "bytearray", "bunch", "partial", "ndarray",
                                   "estimator_class", "frombuffer", "print", "guarded",
                                   "check_array", "partial_print", "nested_partial"])
def test_other_callables_are_refused(value: str) -> None:
    from numpy._core.numeric import _frombuffer  # type: ignore[attr-defined]
    from sklearn.linear_model import LinearRegression
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.utils._bunch import Bunch
    from sklearn.utils.validation import check_array

    from mlops.flavors.pickle_guards import guarded_function

    func = {"bytes": bytes, "bytearray": bytearray, "bunch": Bunch, "partial": partial,
            "ndarray": np.ndarray, "estimator_class": LinearRegression,
            "frombuffer": _frombuffer, "print": print,
            "guarded": guarded_function(("numpy._core.multiarray", "_reconstruct")),
            "check_array": check_array, "partial_print": partial(print),
            "nested_partial": _nested_partial()}[value]
    _refused(FunctionTransformer(func=func), "stored")


def _nested_partial() -> partial[Any]:
    # partial() flattens a partial of a partial; a pickle's BUILD (__setstate__) does not.
    outer = partial(np.add)
    outer.__setstate__((partial(np.add, 1.0), (), {}, None))  # type: ignore[attr-defined]
    assert isinstance(outer.func, partial)
    return outer


def test_no_call_class_as_value_keeps_its_message() -> None:
    from xgboost.core import Booster

    _refused({"f": Booster}, "reads files")


@pytest.mark.parametrize("attr", ["kw_args", "inv_kw_args"])
@pytest.mark.parametrize("key", ["out", "where"])
def test_ufunc_out_and_where_are_refused(attr: str, key: str) -> None:
    from sklearn.preprocessing import FunctionTransformer

    ft = FunctionTransformer(np.positive, **{attr: {key: False}})
    _refused(ft, "uninitialised")
    _refused(partial(np.positive, **{key: False}), "uninitialised")
    assert any("uninitialised" in o for o in _scan(ft))


def test_metric_params_out_is_refused() -> None:
    from sklearn.neighbors import KNeighborsRegressor

    knn = KNeighborsRegressor(n_neighbors=2, metric="braycurtis").fit(X, X[:, 0])
    validate_graph(knn)
    knn.effective_metric_params_ = {"out": np.zeros((1, 12))}
    _refused(knn, "effective_metric_params_")


def test_defaultdict_factories() -> None:
    validate_graph({"a": defaultdict(list), "b": defaultdict(OrderedDict), "c": defaultdict()})
    _refused(defaultdict(bytes), "factory")
    _refused(defaultdict(partial(np.add, 1)), "factory")


def test_callables_in_object_arrays_and_frames_are_judged() -> None:
    _refused({"a": np.array([bytes, 1], dtype=object)}, "bytes")
    _refused({"f": pd.DataFrame({"c": pd.Series([bytes, 1], dtype=object)})}, "bytes")


def test_isotonic_interpolator_is_library_state_only_there() -> None:
    from sklearn.isotonic import IsotonicRegression

    iso = pickle.loads(pickle.dumps(IsotonicRegression().fit(X[:, 0], X[:, 1])))
    validate_graph(iso)  # f_ is the interp1d its __setstate__ builds
    iso.f_ = bytes
    _refused(iso, "bytes")


def test_pandas_caches_are_emptied() -> None:
    index: Any = pd.Index(["a", "b"])
    _ = index.is_unique, index._engine
    assert index._cache
    validate_graph({"i": index})
    assert index._cache == {}


# --------------------------------------------------------------------------------------
# rule 3: method names


@pytest.mark.parametrize("value", [["tofile"], ["__reduce__"], "tofile", [np.negative], []])
def test_stack_method_must_be_a_response_method(value: Any) -> None:
    st = _stacking()
    st.stack_method_ = value
    _refused(st, "stack_method_")


def test_real_stacking_methods_pass() -> None:
    from sklearn.ensemble import StackingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    for method in ("auto", "predict", "decision_function"):
        est = StackingClassifier([("a", LogisticRegression()), ("b", LinearSVC())],
                                 stack_method=method, cv=2).fit(X, Y)
        validate_graph(est)
        assert not _scan(est)


def test_threshold_chain_scorer_and_calibration_methods() -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.multioutput import ClassifierChain

    fixed = FixedThresholdClassifier(LogisticRegression(), response_method="predict_proba")
    fixed.fit(X, Y)
    chain = ClassifierChain(LogisticRegression(), chain_method="predict_proba")
    chain.fit(X, np.c_[Y, Y])
    cal = CalibratedClassifierCV(LogisticRegression(), cv=2).fit(X, Y)
    scorer = get_scorer("roc_auc")
    validate_graph([fixed, chain, cal, scorer])
    for obj, attr in ((fixed, "response_method"), (chain, "chain_method_"),
                      (cal, "method"), (cal.calibrated_classifiers_[0], "method"),
                      (scorer, "_response_method")):
        setattr(obj, attr, "tofile")
        _refused(obj, attr)


@pytest.mark.parametrize("getter", ["auto", "coef_", "named_steps.lr.coef_"])
def test_importance_getter_paths(getter: str) -> None:
    from sklearn.feature_selection import SelectFromModel
    from sklearn.linear_model import LogisticRegression

    sel = SelectFromModel(LogisticRegression()).fit(X, Y)
    sel.importance_getter = getter
    validate_graph(sel)
    for bad in ("__class__", "coef_.__globals__", "_private", "a..b", 3):
        sel.importance_getter = bad
        _refused(sel, "importance_getter")


# --------------------------------------------------------------------------------------
# rule 4: vectorizers never read files


@pytest.mark.parametrize("name", ["CountVectorizer", "TfidfVectorizer", "HashingVectorizer"])
def test_vectorizers_must_read_content(name: str) -> None:
    from sklearn.feature_extraction import text

    vec = getattr(text, name)(analyzer="char_wb").fit(["ab cd", "bc de"])
    validate_graph(vec)
    assert not _scan(vec)
    for kind in ("filename", "file"):
        vec.input = kind
        _refused(vec, "input")
        assert any(".input is" in o for o in _scan(vec))


def test_vectorizer_analyzer_and_accents() -> None:
    from sklearn.feature_extraction.text import CountVectorizer

    vec = CountVectorizer(strip_accents="unicode").fit(["ab cd"])
    vec.analyzer = np.negative  # a value function is a legal (if odd) analyzer
    validate_graph(vec)
    vec.analyzer = "tofile"
    _refused(vec, "analyzer")
    vec.analyzer, vec.tokenizer = "word", bytes
    _refused(vec, "bytes")
    vec.tokenizer, vec.decode_error = None, "surrogateescape"
    _refused(vec, "decode_error")


# --------------------------------------------------------------------------------------
# rule 5: estimator slots hold estimators


@pytest.mark.parametrize("holder", ["array", "bunch", "dict", "string", "list_of_array"])
def test_non_estimators_in_slots_are_refused(holder: str) -> None:
    from sklearn.utils._bunch import Bunch

    st = _stacking()
    value = {"array": np.array(b"x"), "bunch": Bunch(predict=np.negative),
             "dict": {"predict": np.negative}, "string": "tofile",
             "list_of_array": [np.array(b"x")]}[holder]
    st.final_estimator_ = value
    _refused(st, "final_estimator_")
    st = _stacking()
    st.estimators_ = [value]
    _refused(st, "estimators_")


def test_sentinels_and_containers_pass() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor, VotingRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame(X, columns=["a", "b"])
    ct = ColumnTransformer([("s", StandardScaler(), ["a"]), ("d", "drop", ["b"])],
                           remainder="passthrough").fit(frame)
    pipe = Pipeline([("ct", ct), ("none", None), ("pass", "passthrough"),
                     ("lr", LinearRegression())]).fit(frame, X[:, 0])
    voting = VotingRegressor([("a", LinearRegression()), ("b", "drop")]).fit(X, X[:, 0])
    gb = GradientBoostingRegressor(n_estimators=3, init="zero").fit(X, X[:, 0])
    validate_graph([pipe, voting, gb])
    assert not _scan([pipe, voting, gb])
    gb.init_ = "tofile"
    _refused(gb, "init_")


def test_kmeans_init_is_not_a_slot() -> None:
    from sklearn.cluster import KMeans

    validate_graph(KMeans(n_clusters=2, init="random", n_init=1).fit(X))


def test_the_model_root_must_be_an_estimator() -> None:
    from sklearn.utils._bunch import Bunch

    check_model_root(_lr())
    for root in (Bunch(predict=np.negative), {"predict": np.negative}, np.zeros(2)):
        with pytest.raises(UnsafeModel, match="top object"):
            check_model_root(root)


# --------------------------------------------------------------------------------------
# skops: the same rules, at load and on the node tree


def test_skops_files_are_judged_by_the_same_rules() -> None:
    import skops.io as sio

    st = _stacking()
    st.stack_method_ = ["tofile"]
    data = sio.dumps(st)
    assert any("stack_method_" in o for o in safety_check("skops", data).offending)
    with pytest.raises(UnsafeModel, match="stack_method_"):
        load_bytes(data, "model.skops")


# --------------------------------------------------------------------------------------
# no false refusals: scikit-learn's own test instances


def _fitted_sklearn_estimators() -> list[tuple[str, Any]]:
    from sklearn.datasets import make_classification
    from sklearn.utils import all_estimators
    from sklearn.utils._test_common.instance_generator import _construct_instances

    x, y = make_classification(n_samples=60, n_features=6, n_informative=3, random_state=0)
    x = np.abs(x)
    texts = ["a b c", "b c d", "c d e f", "a e"] * 15
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, cls in all_estimators():
            try:
                instances = list(_construct_instances(cls))
            except Exception:
                continue
            for est in instances:
                try:
                    if name in ("LabelEncoder", "LabelBinarizer", "MultiLabelBinarizer"):
                        est.fit(y if name != "MultiLabelBinarizer" else [[1], [2]])
                    elif name == "IsotonicRegression":
                        est.fit(x[:, 0], y)
                    else:
                        data = texts if "Vectorizer" in name else x
                        try:
                            est.fit(data, y)
                        except TypeError:
                            est.fit(data)
                except Exception:
                    continue
                out.append((name, est))
    return out


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_scikit_learn_estimators_pass_unless_the_allow_list_refuses_them() -> None:
    fitted = _fitted_sklearn_estimators()
    assert len(fitted) > 150
    refused = []
    for name, est in fitted:
        data = pickle.dumps(est, protocol=5)
        try:
            validate_graph(pickle.loads(data))
        except UnsafeModel:
            refused.append(name)
            with pytest.raises(UnsafeModel, match="not on the allow list"):
                load_restricted(data)  # refused anyway: it holds an unlisted object
            continue
        scan = scan_pickle_bytes(data)
        graph_problems = [o for o in scan.offending if o.startswith("<")]
        assert not graph_problems, (name, graph_problems)
    assert len(refused) < 10, refused


def test_registration_loads_refuse_the_red_team_writer(tmp_path: Any) -> None:
    from tests.flavors.bypass_corpus import BYPASSES

    bp = next(b for b in BYPASSES if b.name == "sklearn_stacking_tofile_writes_request_path")
    canary = tmp_path / "written"
    filename, data = bp.build(canary)
    report = safety_check(detect_format(filename, data), data)
    assert any("stack_method_" in o for o in report.offending)
    assert any("builtins.bytes" in o for o in report.offending)
    assert any("estimators_ holds a numpy.ndarray" in o for o in report.offending)


def test_value_sets_hold_no_reconstructor() -> None:
    from mlops.flavors.allowlist import (
        FUNCTIONS,
        GUARDED_FUNCTIONS,
        value_function_pairs,
        value_type_pairs,
    )

    values = value_function_pairs()
    assert ("sklearn.feature_selection._univariate_selection", "f_classif") in values
    assert ("numpy", "log1p") in values and ("sklearn.metrics._ranking", "roc_auc_score") \
        in values
    reconstructors = set(FUNCTIONS) - values
    assert ("sklearn.utils.validation", "check_array") in reconstructors
    assert ("numpy._core.numeric", "_frombuffer") in GUARDED_FUNCTIONS  # its buffer: bytes
    assert not values & set(GUARDED_FUNCTIONS)
    types = value_type_pairs()
    assert ("numpy", "float64") in types and ("builtins", "float") in types
    assert not {("builtins", "bytes"), ("builtins", "bytearray"), ("functools", "partial"),
                ("sklearn.utils._bunch", "Bunch"), ("numpy", "ndarray")} & types
