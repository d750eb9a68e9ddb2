"""A corpus of real, fitted models of every supported family, and their saved files.

Used by the allow-list tests (every global these files import must be on the list) and by
the round-trip tests (each file scans safe and loads back predicting the same). Models are
small (a few hundred rows, few trees) so the whole corpus fits in a few seconds.
"""

from __future__ import annotations

import datetime
import io
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd

__all__ = [
    "WRITERS",
    "CorpusModel",
    "build_corpus",
    "corpus_names",
    "joblib_bytes",
    "saved_files",
    "skops_bytes",
]


@dataclass
class CorpusModel:
    """One fitted model and the input rows to compare predictions on."""

    name: str
    model: Any
    x: Any


def _numeric(seed: int = 0, rows: int = 160) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["a", "b", "c", "d"])
    signal = x["a"] + 0.5 * x["b"] - x["c"]
    y_cls = (signal + rng.normal(scale=0.3, size=rows) > 0).astype(int).to_numpy()
    y_reg = (signal * 3.0 + rng.normal(scale=0.1, size=rows)).to_numpy()
    return x, y_cls, y_reg


def _mixed(rows: int = 160) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, size=rows).astype(float),
            "income": rng.lognormal(10, 1, size=rows),
            "city": rng.choice(["paris", "oslo", "rome"], size=rows),
            "plan": rng.choice(["free", "pro"], size=rows),
        }
    )
    frame.loc[::7, "age"] = np.nan
    frame.loc[::11, "city"] = None
    y = ((frame["income"] > 22_000) ^ (frame["plan"] == "pro")).astype(int).to_numpy()
    return frame, y


def _frame_with_every_dtype(rows: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "i": np.arange(rows, dtype="int64"),
            "f": np.linspace(0.0, 1.0, rows),
            "s": [f"row{i}" for i in range(rows)],
            "c": pd.Categorical(["x", "y", "z"] * (rows // 3)),
            "t": pd.date_range("2024-01-01", periods=rows, freq="D"),
            "tz": pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC"),
            "d": pd.to_timedelta(np.arange(rows), unit="s"),
            "b": np.arange(rows) % 2 == 0,
            "n": pd.array([*list(range(rows - 1)), None], dtype="Int64"),
        },
        index=pd.RangeIndex(rows, name="row"),
    )


def _families(x: pd.DataFrame, y: np.ndarray, r: np.ndarray) -> list[tuple[Any, ...]]:
    """(name, unfitted estimator, target) for the scikit-learn families."""
    from sklearn import (
        calibration,
        cluster,
        decomposition,
        discriminant_analysis,
        dummy,
        ensemble,
        feature_selection,
        gaussian_process,
        isotonic,
        linear_model,
        mixture,
        multiclass,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )
    from sklearn.gaussian_process import kernels

    y3 = np.digitize(r, np.quantile(r, [0.33, 0.66]))
    pos = np.abs(x.to_numpy())
    return [
        # linear
        ("logistic", linear_model.LogisticRegression(), y),
        ("logistic_multiclass", linear_model.LogisticRegression(max_iter=300), y3),
        ("linear_regression", linear_model.LinearRegression(), r),
        ("ridge", linear_model.Ridge(), r),
        ("lasso", linear_model.Lasso(alpha=0.01), r),
        ("elastic_net", linear_model.ElasticNet(alpha=0.01), r),
        ("sgd_classifier", linear_model.SGDClassifier(random_state=0), y),
        ("sgd_regressor", linear_model.SGDRegressor(random_state=0), r),
        ("ridge_classifier", linear_model.RidgeClassifier(), y),
        ("perceptron", linear_model.Perceptron(), y),
        ("huber", linear_model.HuberRegressor(), r),
        ("poisson", linear_model.PoissonRegressor(), np.abs(r)),
        ("tweedie", linear_model.TweedieRegressor(power=1.5), np.abs(r) + 0.1),
        ("bayesian_ridge", linear_model.BayesianRidge(), r),
        ("linear_svc", svm.LinearSVC(), y),
        # trees and forests
        ("decision_tree", tree.DecisionTreeClassifier(max_depth=4, random_state=0), y),
        ("decision_tree_regressor", tree.DecisionTreeRegressor(max_depth=4), r),
        ("extra_tree", tree.ExtraTreeClassifier(random_state=0), y),
        ("random_forest", ensemble.RandomForestClassifier(n_estimators=5, random_state=0), y),
        ("random_forest_regressor",
         ensemble.RandomForestRegressor(n_estimators=5, random_state=0), r),
        ("extra_trees", ensemble.ExtraTreesClassifier(n_estimators=5, random_state=0), y),
        ("isolation_forest", ensemble.IsolationForest(n_estimators=10, random_state=0), None),
        # boosting
        ("gradient_boosting",
         ensemble.GradientBoostingClassifier(n_estimators=10, random_state=0), y),
        ("gradient_boosting_multiclass",
         ensemble.GradientBoostingClassifier(n_estimators=5, random_state=0), y3),
        ("gradient_boosting_regressor",
         ensemble.GradientBoostingRegressor(n_estimators=10, loss="huber", random_state=0), r),
        ("hist_gradient_boosting",
         ensemble.HistGradientBoostingClassifier(max_iter=10, random_state=0), y),
        ("hist_gradient_boosting_multiclass",
         ensemble.HistGradientBoostingClassifier(max_iter=5, random_state=0), y3),
        ("hist_gradient_boosting_regressor",
         ensemble.HistGradientBoostingRegressor(max_iter=10, loss="poisson"), np.abs(r)),
        ("adaboost", ensemble.AdaBoostClassifier(n_estimators=5, random_state=0), y),
        ("bagging", ensemble.BaggingClassifier(n_estimators=3, random_state=0), y),
        # SVM
        ("svc", svm.SVC(probability=True, random_state=0), y),
        ("svr", svm.SVR(), r),
        ("nu_svc", svm.NuSVC(), y),
        ("one_class_svm", svm.OneClassSVM(), None),
        # neighbours
        ("knn_kd_tree", neighbors.KNeighborsClassifier(algorithm="kd_tree"), y),
        ("knn_ball_tree", neighbors.KNeighborsRegressor(algorithm="ball_tree"), r),
        ("knn_brute", neighbors.KNeighborsClassifier(algorithm="brute", weights="distance"), y),
        ("radius_neighbors", neighbors.RadiusNeighborsClassifier(radius=3.0), y),
        ("nearest_centroid", neighbors.NearestCentroid(), y),
        # naive Bayes
        ("gaussian_nb", naive_bayes.GaussianNB(), y),
        ("multinomial_nb", naive_bayes.MultinomialNB(), y, pos),
        ("bernoulli_nb", naive_bayes.BernoulliNB(), y),
        ("complement_nb", naive_bayes.ComplementNB(), y, pos),
        # neural networks
        ("mlp_classifier",
         neural_network.MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0), y),
        ("mlp_regressor",
         neural_network.MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", max_iter=50,
                                     random_state=0), r),
        # clustering and mixtures
        ("kmeans", cluster.KMeans(n_clusters=3, n_init=2, random_state=0), None),
        ("minibatch_kmeans", cluster.MiniBatchKMeans(n_clusters=3, n_init=2, random_state=0),
         None),
        ("birch", cluster.Birch(n_clusters=3), None),
        ("gaussian_mixture", mixture.GaussianMixture(n_components=2, random_state=0), None),
        # decomposition (inside pipelines: they have no predict of their own)
        ("pca_pipeline",
         pipeline.make_pipeline(decomposition.PCA(n_components=2),
                                linear_model.LogisticRegression()), y),
        ("truncated_svd_pipeline",
         pipeline.make_pipeline(decomposition.TruncatedSVD(n_components=2),
                                linear_model.Ridge()), r),
        ("nmf_pipeline",
         pipeline.make_pipeline(preprocessing.MinMaxScaler(),
                                decomposition.NMF(n_components=2, max_iter=300),
                                linear_model.LogisticRegression()), y),
        ("fast_ica_pipeline",
         pipeline.make_pipeline(decomposition.FastICA(n_components=2, random_state=0),
                                naive_bayes.GaussianNB()), y),
        # Gaussian processes
        ("gaussian_process_classifier",
         gaussian_process.GaussianProcessClassifier(kernels.RBF(1.0), random_state=0), y),
        ("gaussian_process_regressor",
         gaussian_process.GaussianProcessRegressor(
             kernels.ConstantKernel() * kernels.Matern(nu=1.5) + kernels.WhiteKernel()
             + kernels.DotProduct() * kernels.RationalQuadratic(), random_state=0), r),
        # discriminant analysis, dummy
        ("lda", discriminant_analysis.LinearDiscriminantAnalysis(), y),
        ("qda", discriminant_analysis.QuadraticDiscriminantAnalysis(), y),
        ("dummy", dummy.DummyClassifier(strategy="prior"), y),
        # calibration, stacking, voting, multiclass wrappers
        ("calibrated_sigmoid",
         calibration.CalibratedClassifierCV(linear_model.LogisticRegression(), cv=3), y),
        ("calibrated_isotonic",
         calibration.CalibratedClassifierCV(naive_bayes.GaussianNB(), method="isotonic",
                                            cv=3), y),
        ("stacking",
         ensemble.StackingClassifier(
             [("lr", linear_model.LogisticRegression()),
              ("tree", tree.DecisionTreeClassifier(max_depth=3, random_state=0))], cv=3), y3),
        ("stacking_regressor",
         ensemble.StackingRegressor(
             [("ridge", linear_model.Ridge()), ("knn", neighbors.KNeighborsRegressor())],
             cv=3), r),
        ("voting_soft",
         ensemble.VotingClassifier(
             [("lr", linear_model.LogisticRegression()), ("nb", naive_bayes.GaussianNB())],
             voting="soft"), y),
        ("voting_regressor",
         ensemble.VotingRegressor([("ridge", linear_model.Ridge()),
                                   ("tree", tree.DecisionTreeRegressor(max_depth=3))]), r),
        ("one_vs_rest", multiclass.OneVsRestClassifier(linear_model.LogisticRegression()), y3),
        ("select_k_best_pipeline",
         pipeline.make_pipeline(feature_selection.SelectKBest(k=2),
                                linear_model.LogisticRegression()), y),
        ("polynomial_pipeline",
         pipeline.make_pipeline(preprocessing.PolynomialFeatures(2),
                                preprocessing.KBinsDiscretizer(n_bins=3, quantile_method="linear"),
                                linear_model.LogisticRegression()), y),
        ("isotonic", isotonic.IsotonicRegression(out_of_bounds="clip"), r),
    ]


def _mixed_pipelines() -> list[tuple[str, Any, pd.DataFrame, np.ndarray]]:
    from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        FunctionTransformer,
        OneHotEncoder,
        OrdinalEncoder,
        StandardScaler,
        TargetEncoder,
    )

    frame, y = _mixed()
    numeric = Pipeline([
        ("impute", SimpleImputer(strategy="median")),
        ("log", FunctionTransformer(np.log1p, inverse_func=np.expm1,
                                    feature_names_out="one-to-one")),
        ("scale", StandardScaler()),
    ])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="most_frequent")),
        ("onehot", OneHotEncoder(handle_unknown="ignore")),
    ])
    columns = ColumnTransformer([
        ("num", numeric, ["age", "income"]),
        ("cat", categorical, ["city", "plan"]),
    ])
    hgb_columns = ColumnTransformer([
        ("num", "passthrough", ["age", "income"]),
        ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                               encoded_missing_value=-1), ["city", "plan"]),
    ], verbose_feature_names_out=False)
    target = ColumnTransformer([
        ("num", SimpleImputer(), ["age", "income"]),
        ("cat", TargetEncoder(random_state=0), ["plan"]),
    ])
    income = frame["income"].to_numpy()
    numeric_frame = frame[["age", "income"]]
    return [
        ("column_transformer_pipeline",
         Pipeline([("columns", columns), ("model", LogisticRegression())]), frame, y),
        ("hist_gradient_boosting_categorical",
         Pipeline([("columns", hgb_columns),
                   ("model", HistGradientBoostingClassifier(
                       max_iter=5, categorical_features=["city", "plan"]))]).set_output(
             transform="pandas"), frame, y),
        ("target_encoder_pipeline",
         Pipeline([("columns", target), ("model", LogisticRegression())]), frame, y),
        ("transformed_target",
         Pipeline([("impute", SimpleImputer()),
                   ("model", TransformedTargetRegressor(Ridge(), func=np.log1p,
                                                        inverse_func=np.expm1))]),
         numeric_frame, income),
    ]


#: Names of the models outside _families (kept in step with build_corpus).
_OTHER_NAMES = ["column_transformer_pipeline", "hist_gradient_boosting_categorical",
                "target_encoder_pipeline", "transformed_target", "grid_search",
                "frame_holder", "stats_holder", "xgb_classifier", "xgb_regressor",
                "lgbm_classifier", "lgbm_regressor"]


def corpus_names() -> list[str]:
    """Every corpus model's name, without fitting anything."""
    x, y, r = _numeric(rows=10)
    return [entry[0] for entry in _families(x, y, r)] + _OTHER_NAMES


def build_corpus() -> list[CorpusModel]:
    """Fit every corpus model (a few seconds)."""
    x, y, r = _numeric()
    corpus: list[CorpusModel] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in _families(x, y, r):
            name, est, target = entry[:3]
            data = entry[3] if len(entry) > 3 else x.to_numpy()
            frame_input = name in {"logistic", "random_forest", "hist_gradient_boosting"}
            inputs = x if frame_input else data
            if name == "isotonic":
                inputs = x[["a"]].to_numpy()
            est.fit(inputs, target) if target is not None else est.fit(inputs)
            corpus.append(CorpusModel(name, est, inputs))
        for name, est, frame, target in _mixed_pipelines():
            est.fit(frame, target)
            corpus.append(CorpusModel(name, est, frame))
        corpus.append(_grid_search(x, y))
        corpus.extend(_frame_holders(x, y))
        corpus.extend(_boosters(x, y, r))
    return corpus


def _grid_search(x: pd.DataFrame, y: np.ndarray) -> CorpusModel:
    """A fitted GridSearchCV (its cv_results_ hold numpy masked arrays)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, cv=3,
                          scoring="roc_auc").fit(x.to_numpy(), y)
    return CorpusModel("grid_search", search, x.to_numpy())


def _frame_holders(x: pd.DataFrame, y: np.ndarray) -> list[CorpusModel]:
    """Estimators that carry pandas objects (DataFrame, Series, Index) as attributes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeRegressor

    clf = LogisticRegression().fit(x, y)
    clf.reference_frame_ = _frame_with_every_dtype()  # e.g. kept for drift monitoring
    clf.reference_target_ = pd.Series(y[:12], name="label", index=pd.RangeIndex(12))
    clf.daily_ = pd.Series([1.0, 2.0], index=pd.date_range("2024-01-01", periods=2))
    clf.by_group_ = pd.DataFrame({"g": [1, 1, 2], "h": ["a", "b", "a"],
                                  "v": [1.0, 2.0, 3.0]}).groupby(["g", "h"]).sum()
    clf.spans_ = pd.Series([1, 2, 3], index=pd.interval_range(0, 3))
    clf.months_ = pd.Series([1, 2], index=pd.period_range("2024-01", periods=2, freq="M"))
    clf.nullable_ = pd.DataFrame({"f": pd.array([1.5, None], dtype="Float64"),
                                  "b": pd.array([True, None], dtype="boolean"),
                                  "u": pd.array([1, None], dtype="UInt8")})
    clf.trained_at_ = pd.Timestamp("2024-01-01 12:00", tz="UTC")
    clf.window_ = pd.Timedelta("1D")
    clf.created_ = (datetime.datetime(2024, 1, 1, 8, 30), datetime.date(2024, 1, 1))
    clf.tags_ = {"owner", "team"}
    clf.mask_ = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    reg = DecisionTreeRegressor(max_depth=3).fit(x, x["a"])
    reg.feature_stats_ = x.describe()
    reg.columns_ = pd.Index(["a", "b", "c", "d"])
    reg.sparse_ = _sparse_matrices()
    return [CorpusModel("frame_holder", clf, x), CorpusModel("stats_holder", reg, x)]


def _sparse_matrices() -> dict[str, Any]:
    from scipy import sparse

    dense = np.eye(4)
    return {"csr": sparse.csr_matrix(dense), "csc_array": sparse.csc_array(dense),
            "coo": sparse.coo_matrix(dense)}


def _boosters(x: pd.DataFrame, y: np.ndarray, r: np.ndarray) -> list[CorpusModel]:
    import lightgbm as lgb
    import xgboost as xgb

    return [
        CorpusModel("xgb_classifier",
                    xgb.XGBClassifier(n_estimators=5, max_depth=3).fit(x, y), x),
        CorpusModel("xgb_regressor",
                    xgb.XGBRegressor(n_estimators=5, max_depth=3).fit(x.to_numpy(), r),
                    x.to_numpy()),
        CorpusModel("lgbm_classifier",
                    lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, y), x),
        CorpusModel("lgbm_regressor",
                    lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(x.to_numpy(), r),
                    x.to_numpy()),
    ]


def joblib_bytes(obj: Any, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kwargs)
    return buf.getvalue()


def skops_bytes(obj: Any) -> bytes | None:
    """The skops file of obj, or None when skops cannot persist it."""
    import skops.io as sio

    try:
        return sio.dumps(obj)
    except Exception:
        return None


#: How the corpus is saved: name -> (detect_format file name, writer).
WRITERS: dict[str, tuple[str, Callable[[Any], bytes | None]]] = {
    "pickle": ("model.pkl", lambda m: pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)),
    "pickle-p2": ("model.pkl", lambda m: pickle.dumps(m, protocol=2)),
    "joblib": ("model.joblib", joblib_bytes),
    "joblib-zlib": ("model.joblib", lambda m: joblib_bytes(m, compress=3)),
    "joblib-lzma": ("model.joblib", lambda m: joblib_bytes(m, compress=("xz", 1))),
    "skops": ("model.skops", skops_bytes),
}


def saved_files(model: Any) -> dict[str, tuple[str, bytes]]:
    """Every way a model is saved: writer name -> (file name, bytes); skops when possible."""
    out: dict[str, tuple[str, bytes]] = {}
    for kind, (filename, write) in WRITERS.items():
        data = write(model)
        if data is not None:
            out[kind] = (filename, data)
    return out
