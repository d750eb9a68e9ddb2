"""Each flavor registers, loads through the registry and predicts like the original."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from mlops.errors import FlavorError, SignatureError, UnknownFlavor, UnsafeModel
from mlops.registry.service import ModelRegistry

Table = tuple[pd.DataFrame, np.ndarray]


class MeanModel:
    """A plain Python object with predict: the pyfunc flavor."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)


class Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned > pwned.txt",))


def test_skops_sklearn_round_trip(registry: ModelRegistry, skops_file: Path,
                                  logistic: LogisticRegression, table: Table) -> None:
    x, _ = table
    mv = registry.register("m", skops_file, input_example=x.head())
    assert (mv.flavor, mv.format) == ("sklearn", "skops")
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), logistic.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), logistic.predict_proba(x))
    # records and column-reordered frames are accepted too
    np.testing.assert_array_equal(loaded.predict(x[["d", "c", "b", "a"]]), logistic.predict(x))
    np.testing.assert_array_equal(loaded.predict(x.head(3).to_dict("records")),
                                  logistic.predict(x.head(3)))


def test_joblib_sklearn_round_trip(registry: ModelRegistry, pickle_file: Path,
                                   logistic: LogisticRegression, table: Table) -> None:
    x, _ = table
    mv = registry.register("m", pickle_file)
    assert mv.flavor == "sklearn" and mv.format in {"joblib", "pickle"}
    np.testing.assert_array_equal(registry.load_model("m").predict(x), logistic.predict(x))


def test_plain_pickle_regressor(registry: ModelRegistry, tmp_path: Path, table: Table) -> None:
    x, y = table
    reg = LinearRegression().fit(x.to_numpy(), y)
    path = tmp_path / "lin.pkl"
    path.write_bytes(pickle.dumps(reg, protocol=5))
    registry.register("lin", path)
    loaded = registry.load_model("lin")
    assert not loaded.has_proba
    np.testing.assert_allclose(loaded.predict(x.to_numpy()), reg.predict(x.to_numpy()))
    with pytest.raises(FlavorError, match="no predict_proba"):
        loaded.predict_proba(x.to_numpy())


def test_onnx_round_trip(registry: ModelRegistry, tmp_path: Path, logistic: LogisticRegression,
                         table: Table) -> None:
    from skl2onnx import to_onnx

    x, _ = table
    onx = to_onnx(logistic, x.to_numpy()[:1].astype(np.float32),
                  options={id(logistic): {"zipmap": False}})
    path = tmp_path / "m.onnx"
    path.write_bytes(onx.SerializeToString())
    mv = registry.register("m", path, input_example=x.head())
    assert mv.flavor == "onnx"
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), logistic.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), logistic.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("suffix", ["json", "ubj"])
def test_xgboost_native_round_trip(registry: ModelRegistry, tmp_path: Path, table: Table,
                                   suffix: str) -> None:
    import xgboost as xgb

    x, y = table
    clf = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y)
    path = tmp_path / f"m.{suffix}"
    clf.save_model(path)
    mv = registry.register("m", path)
    assert (mv.flavor, mv.format) == ("xgboost", "xgboost")
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), clf.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), clf.predict_proba(x), rtol=1e-6)


def test_lightgbm_native_round_trip(registry: ModelRegistry, tmp_path: Path,
                                    table: Table) -> None:
    import lightgbm as lgb

    x, y = table
    clf = lgb.LGBMClassifier(n_estimators=20, verbose=-1).fit(x, y)
    path = tmp_path / "m.txt"
    clf.booster_.save_model(path)
    mv = registry.register("m", path)
    assert mv.flavor == "lightgbm"
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), clf.predict(x))
    np.testing.assert_allclose(loaded.predict_proba(x), clf.predict_proba(x), rtol=1e-6)


def test_lightgbm_regression(registry: ModelRegistry, tmp_path: Path, table: Table) -> None:
    import lightgbm as lgb

    x, _ = table
    target = x["a"] * 2.0
    reg = lgb.LGBMRegressor(n_estimators=10, verbose=-1).fit(x, target)
    path = tmp_path / "r.txt"
    reg.booster_.save_model(path)
    registry.register("r", path)
    loaded = registry.load_model("r")
    assert not loaded.has_proba
    np.testing.assert_allclose(loaded.predict(x), reg.predict(x))


def test_any_object_with_predict_needs_trust_and_is_audited(registry: ModelRegistry,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "mean.pkl"
    path.write_bytes(pickle.dumps(MeanModel(3.0)))
    with pytest.raises(UnsafeModel) as err:
        registry.register("mean", path)
    assert any("MeanModel" in o for o in err.value.offending)
    mv = registry.register("mean", path, trust=True)
    assert mv.flavor == "pyfunc" and mv.trusted
    assert registry.load_model("mean").predict(np.zeros((4, 2))).tolist() == [3.0] * 4
    overrides = registry.audit_log(action="security.trust_override")
    assert len(overrides) == 1 and overrides[0].subject == "model/mean"
    assert overrides[0].payload["sha256"] == mv.artifact_digest
    assert any("MeanModel" in o for o in overrides[0].payload["offending"])


def test_unsafe_pickle_is_refused_with_offending_imports(registry: ModelRegistry,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Evil(), protocol=4))
    with pytest.raises(UnsafeModel) as err:
        registry.register("evil", path)
    assert any(o.endswith(".system") for o in err.value.offending)
    assert "system" in str(err.value) and "skops" in str(err.value)
    assert not (tmp_path / "pwned.txt").exists()
    assert registry.list_models() == []


def test_unsafe_bytes_swapped_in_after_registration_are_refused_at_load(
        registry: ModelRegistry, pickle_file: Path, tmp_path: Path) -> None:
    """Load scans again: a store whose digest check is bypassed still refuses the file."""
    mv = registry.register("m", pickle_file)
    evil = pickle.dumps(Evil(), protocol=2)
    ref = registry.artifacts.put_bytes(evil)
    from sqlalchemy import update

    from mlops.store.schema import VersionRow

    with registry.store.write() as s:
        s.execute(update(VersionRow).where(VersionRow.artifact_digest == mv.artifact_digest)
                  .values(artifact_digest=ref.digest))
    with pytest.raises(UnsafeModel):
        registry.load_model("m")
    assert not (tmp_path / "pwned.txt").exists()


def test_unknown_file_kind_is_rejected(registry: ModelRegistry, tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(UnknownFlavor, match=r"model\.bin"):
        registry.register("m", path)


def test_wrong_width_input_is_a_signature_error(registry: ModelRegistry, skops_file: Path,
                                                table: Table) -> None:
    x, _ = table
    registry.register("m", skops_file, input_example=x.head())
    loaded = registry.load_model("m")
    with pytest.raises(SignatureError, match="Missing input column"):
        loaded.predict(x[["a", "b"]])
    with pytest.raises(SignatureError, match="4 features"):
        loaded.predict(np.zeros((2, 3)))


def test_trust_override_is_on_record_before_the_file_runs(registry: ModelRegistry,
                                                          tmp_path: Path) -> None:
    """The payload runs (trust=True) and then registration fails: the override is audited."""
    marker = tmp_path / "ran.txt"

    class Touch:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "touch.pkl"
    path.write_bytes(pickle.dumps(Touch()))
    with pytest.raises(FlavorError, match="no predict"):
        registry.register("m", path, trust=True)
    assert marker.exists()
    events = registry.audit_log(action="security.trust_override")
    assert len(events) == 1 and events[0].payload["when"] == "register"
    assert registry.verify_audit().ok


@pytest.mark.parametrize("func", ["methodcaller", "exec"])
def test_skops_file_with_dangerous_callable_is_refused(registry: ModelRegistry, tmp_path: Path,
                                                       table: Table, func: str) -> None:
    import builtins
    import operator

    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    target = operator.methodcaller("tofile", str(tmp_path / "PWNED")) if func == "methodcaller" \
        else builtins.exec
    pipe = make_pipeline(FunctionTransformer(target, validate=False), LogisticRegression())
    path = tmp_path / "pipe.skops"
    sio.dump(pipe, path)
    with pytest.raises(UnsafeModel) as err:
        registry.register("pipe", path)
    assert any(func in o for o in err.value.offending)
    assert not (tmp_path / "PWNED").exists()


def test_corrupt_pickle_is_reported_as_unreadable_not_unsafe(registry: ModelRegistry,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:40])
    with pytest.raises(FlavorError) as err:
        registry.register("m", path)
    assert not isinstance(err.value, UnsafeModel)
    assert "not a readable" in str(err.value)


def test_array_input_example_keeps_dataframe_prediction_working(
        registry: ModelRegistry, skops_file: Path, logistic: LogisticRegression,
        table: Table) -> None:
    x, _ = table
    mv = registry.register("m", skops_file, input_example=x.head().to_numpy())
    assert mv.signature is not None
    loaded = registry.load_model("m")
    np.testing.assert_array_equal(loaded.predict(x), logistic.predict(x))


@pytest.mark.parametrize(("attribute", "value"), [("classes_", 5), ("feature_names_in_", 5),
                                                  ("classes_", [[0], [1]])])
def test_an_estimator_with_malformed_fitted_attributes_is_a_flavor_error(
        registry: ModelRegistry, tmp_path: Path, attribute: str, value: object) -> None:
    """They were a TypeError ("unexpected") from deep inside the wrapper."""
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    setattr(model, attribute, value)
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps(model))
    with pytest.raises(FlavorError, match=f"The model's {attribute} is not a flat list"):
        registry.register("odd", path)


def test_a_parameter_nested_200000_deep_is_not_walked_into(registry: ModelRegistry,
                                                            tmp_path: Path) -> None:
    """Looking for nested estimators recursed into every list (a RecursionError)."""
    x = np.random.default_rng(0).normal(size=(40, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    model.C = "SENTINEL_C"
    data = pickle.dumps(model, protocol=4)
    n = 200_000
    path = tmp_path / "deep.pkl"
    path.write_bytes(data.replace(b"\x8c\x0aSENTINEL_C", b"]" * n + b"a" * (n - 1)))
    version = registry.register("deep", path).version
    assert registry.load_model("deep", version).predict(x[:3]).tolist() == \
        model.predict(x[:3]).tolist()
