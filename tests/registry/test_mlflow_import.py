"""MLflow models in, unmodified: model directories, ``models:/`` URIs and whole registries,
against a real MLflow SQLite tracking store created here."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.errors import FlavorError, PermissionDenied, RegistryError, UnsafeModel
from mlops.identity import Principal, Role
from mlops.registry.mlflow_import import import_mlflow
from mlops.registry.service import ModelRegistry
from tests.registry.mlflow_store import (
    FEATURES,
    REQS,
    Custom,
    MlflowStore,
    build,
    data,
    hostile_dir,
    log_sklearn,
    tracking,
)

mlflow = pytest.importorskip("mlflow")

ALL = ["churn", "boost", "custom", "hostile"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MlflowStore:
    return build(tmp_path_factory.mktemp("mlflow"))


# ---------------------------------------------------------------------------- directories
def _sklearn(fmt: str) -> Callable[[Path, pd.DataFrame, np.ndarray], Any]:
    def save(path: Path, x: pd.DataFrame, y: np.ndarray) -> Any:
        model = LogisticRegression().fit(x, y)
        mlflow.sklearn.save_model(model, str(path), serialization_format=fmt,
                                  input_example=x.head(5), pip_requirements=REQS)
        return model
    return save


def _xgboost(path: Path, x: pd.DataFrame, y: np.ndarray) -> Any:
    import xgboost as xgb

    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(x, y)
    mlflow.xgboost.save_model(model, str(path), input_example=x.head(5), pip_requirements=REQS)
    return model


def _lightgbm_booster(path: Path, x: pd.DataFrame, y: np.ndarray) -> Any:
    import lightgbm as lgb

    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(x, y),
                        num_boost_round=10)
    mlflow.lightgbm.save_model(booster, str(path), input_example=x.head(5),
                               pip_requirements=REQS)
    return booster


def _lightgbm_sklearn(path: Path, x: pd.DataFrame, y: np.ndarray) -> Any:
    import lightgbm as lgb

    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y)
    mlflow.lightgbm.save_model(model, str(path), serialization_format="cloudpickle",
                               input_example=x.head(5), pip_requirements=REQS)
    return model


def _onnx(path: Path, x: pd.DataFrame, y: np.ndarray) -> Any:
    from skl2onnx import to_onnx

    model = LogisticRegression().fit(x, y)
    onx = to_onnx(model, x.to_numpy()[:1].astype(np.float32), options={"zipmap": False})
    mlflow.onnx.save_model(onx, str(path), pip_requirements=REQS)
    return model


SAVERS = {"sklearn-cloudpickle": (_sklearn("cloudpickle"), "pickle"),
          "sklearn-pickle": (_sklearn("pickle"), "pickle"),
          "sklearn-skops": (_sklearn("skops"), "skops"),
          "xgboost": (_xgboost, "xgboost"),
          "lightgbm-booster": (_lightgbm_booster, "lightgbm"),
          "lightgbm-sklearn": (_lightgbm_sklearn, "pickle"),
          "onnx": (_onnx, "onnx")}


@pytest.mark.parametrize("kind", list(SAVERS))
def test_an_mlflow_directory_registers_and_predicts_like_the_original(
        kind: str, tmp_path: Path, registry: ModelRegistry) -> None:
    save, fmt = SAVERS[kind]
    x, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = save(tmp_path / "model", x, y)
    mv = registry.register("m", tmp_path / "model")
    assert mv.format == fmt
    assert mv.metadata["mlflow"]["flavor"] == kind.split("-")[0]
    loaded = registry.load_model("m", mv.version)
    rows = x.iloc[50:250]
    if kind == "lightgbm-booster":  # a Booster predicts probabilities; mlops labels them
        np.testing.assert_allclose(loaded.predict_proba(rows)[:, 1], original.predict(rows))
    elif kind == "onnx":  # float32 graph: same probabilities within float32 precision
        np.testing.assert_allclose(loaded.predict_proba(rows), original.predict_proba(rows),
                                   atol=1e-5)
        assert mv.signature is None  # no example, no signature: the gateway takes any width
        return
    else:
        np.testing.assert_array_equal(loaded.predict(rows), original.predict(rows))
        np.testing.assert_allclose(loaded.predict_proba(rows), original.predict_proba(rows))
    assert mv.signature is not None and mv.signature.columns == FEATURES
    assert mv.input_example is not None and len(mv.input_example) == 5


def _declared(path: Path, inputs: Any, *, on_array: bool = False) -> Any:
    """An MLflow directory of a skops model with the declared ``inputs`` and no example."""
    from mlflow.models import ModelSignature

    x, y = data()
    model = LogisticRegression().fit(x.to_numpy() if on_array else x, y)
    mlflow.sklearn.save_model(model, str(path), serialization_format="skops",
                              signature=ModelSignature(inputs=inputs), pip_requirements=REQS)
    return model


def test_a_declared_signature_that_no_request_could_meet_is_refused(
        tmp_path: Path, registry: ModelRegistry) -> None:
    from mlflow.types import ColSpec, Schema, TensorSpec

    cases = [
        ("subset", Schema([ColSpec("double", "a")]), False,
         "the model's column(s) 'b', 'c', 'd' are not declared"),
        ("twice", Schema([ColSpec("double", "a")] * 4), False, "'a' more than once"),
        ("foreign", Schema([ColSpec("double", n) for n in ["a", "b", "c", "e"]]), False,
         "'d' are not declared; 'e' are not the model's"),
        ("narrow", Schema([TensorSpec(np.dtype("float64"), (-1, 3))]), True,
         "declares 3 input column(s); the model was fitted on 4"),
    ]
    for label, inputs, on_array, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _declared(tmp_path / label, inputs, on_array=on_array)
        with pytest.raises(FlavorError) as err:
            registry.register("m", tmp_path / label)
        assert message in err.value.message, (label, err.value.message)
        assert "input example" in (err.value.fix or "")
    assert registry.list_models() == []


def test_positional_declared_columns_take_the_models_names(
        tmp_path: Path, registry: ModelRegistry) -> None:
    from mlflow.types import Schema, TensorSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _declared(tmp_path / "m", Schema([TensorSpec(np.dtype("float64"), (-1, 4))]))
    mv = registry.register("m", tmp_path / "m")
    assert mv.signature is not None and mv.signature.columns == FEATURES
    assert not mv.signature.positional
    x, _ = data()
    np.testing.assert_array_equal(registry.load_model("m", mv.version).predict(x),
                                  model.predict(x))


def test_a_models_uri_registers_by_version_and_by_alias(store: MlflowStore,
                                                        registry: ModelRegistry) -> None:
    x = store.x.head(100)
    v1 = registry.register("c", "models:/churn/1", tracking_uri=store.uri)
    assert v1.format == "pickle" and v1.lineage.mlflow_run_id == store.run_ids["churn/1"]
    assert v1.metadata["mlflow"]["source"] == "models:/churn/1"
    np.testing.assert_array_equal(registry.load_model("c", v1.version).predict(x),
                                  store.models["churn/1"].predict(x))
    champion = registry.register("c", "models:/churn@champion", tracking_uri=store.uri)
    assert champion.format == "skops"
    np.testing.assert_array_equal(registry.load_model("c", champion.version).predict(x),
                                  store.models["churn/2"].predict(x))


def test_a_models_uri_names_what_is_missing(store: MlflowStore, registry: ModelRegistry,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(RegistryError) as err:
        registry.register("c", "models:/churn/1")
    assert "MLFLOW_TRACKING_URI" in (err.value.fix or "")
    with pytest.raises(RegistryError, match="Cannot download models:/churn/99"):
        registry.register("c", "models:/churn/99", tracking_uri=store.uri)
    (Path.cwd() / "folder").mkdir()
    with pytest.raises(RegistryError, match="directory without an MLmodel file"):
        registry.register("c", "folder")
    assert registry.list_models() == []


def test_a_pyfunc_model_with_its_own_class_is_refused(tmp_path: Path,
                                                      registry: ModelRegistry) -> None:
    x, _ = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(str(tmp_path / "custom"), python_model=Custom(),
                                 input_example=x.head(3), pip_requirements=REQS)
    with pytest.raises(UnsafeModel) as err:
        registry.register("custom", tmp_path / "custom")
    assert "python_function model" in err.value.message
    assert "runs its own Python code" in (err.value.fix or "")
    assert 'serialization_format="skops"' in (err.value.fix or "")


def test_a_hostile_pickle_in_a_handmade_directory_is_refused_by_the_scan(
        tmp_path: Path, registry: ModelRegistry) -> None:
    canary = tmp_path / "canary"
    root = hostile_dir(tmp_path / "hostile", canary)
    with pytest.raises(UnsafeModel) as err:
        registry.register("hostile", root)
    assert any("system" in o for o in err.value.offending)
    assert not canary.exists()
    assert registry.list_models() == []


# ---------------------------------------------------------------------------- import
def test_import_brings_every_version_with_its_metadata(store: MlflowStore,
                                                       registry: ModelRegistry) -> None:
    report = import_mlflow(registry, store.uri, ALL)
    by = {(r.model, r.mlflow_version): r for r in report.results}
    assert {k: r.status for k, r in by.items()} == {
        ("churn", "1"): "imported", ("churn", "2"): "imported", ("boost", "1"): "imported",
        ("custom", "1"): "refused", ("hostile", "1"): "refused"}
    assert not report.ok and len(report.refused) == 2
    assert "python_function model" in by["custom", "1"].reason
    assert "runs its own Python code" in by["custom", "1"].fix
    assert "not on the allow list" in by["hostile", "1"].reason
    assert not store.canary.exists()

    v1 = registry.get_version("churn", "1.0.0")
    assert v1.stage == "Production" and by["churn", "1"].stage == "Production"
    assert v1.description == "first churn model" and v1.format == "pickle"
    assert v1.tags == {"team": "risk", "mlflow.source": "models:/churn/1",
                       "mlflow.version": "1", "mlflow.tracking_uri": store.uri}
    assert v1.metrics == {"accuracy": 0.91, "auc": 0.95}
    assert v1.lineage.mlflow_run_id == store.run_ids["churn/1"]
    assert v1.signature is not None and v1.signature.columns == FEATURES
    v2 = registry.get_version("churn", alias="champion")
    assert v2.version == "2.0.0" and v2.format == "skops" and v2.metrics == {"accuracy": 0.93}
    model = registry.get_model("churn")
    assert model.description == "who leaves next month" and model.tags == {"owner": "ana"}
    x = store.x
    for key, version in (("churn/1", "1.0.0"), ("churn/2", "2.0.0")):
        np.testing.assert_array_equal(registry.load_model("churn", version).predict(x),
                                      store.models[key].predict(x))
    np.testing.assert_allclose(registry.load_model("boost", "1.0.0").predict_proba(x),
                               store.models["boost/1"].predict_proba(x), rtol=1e-6)
    stage_events = registry.audit_log(subject="model/churn/1.0.0", action="version.stage")
    assert stage_events[0].payload["reason"] == "imported from MLflow models:/churn/1"

    again = import_mlflow(registry, store.uri, ALL)
    assert again.imported == []
    assert {(r.model, r.status, r.version) for r in again.skipped} == {
        ("churn", "skipped", "1.0.0"), ("churn", "skipped", "2.0.0"),
        ("boost", "skipped", "1.0.0")}
    assert len(registry.list_versions("churn")) == 2


def test_a_new_mlflow_version_is_the_only_one_imported(store: MlflowStore,
                                                       registry: ModelRegistry) -> None:
    x, y = store.x, store.y
    name = f"later-{uuid.uuid4().hex[:8]}"  # the MLflow store is shared by the module's tests
    with tracking(store.uri):
        log_sklearn(mlflow, LogisticRegression(C=0.5).fit(x, y), name, x, "skops")
    first = import_mlflow(registry, store.uri, [name])
    assert [(r.mlflow_version, r.status, r.version) for r in first.results] == \
        [("1", "imported", "1.0.0")]
    assert import_mlflow(registry, store.uri, [name]).imported == []
    newer = LogisticRegression(C=0.02).fit(x, y)
    with tracking(store.uri):
        log_sklearn(mlflow, newer, name, x, "cloudpickle")
    second = import_mlflow(registry, store.uri, [name])
    assert [(r.mlflow_version, r.status, r.version) for r in second.results] == \
        [("1", "skipped", "1.0.0"), ("2", "imported", "2.0.0")]
    np.testing.assert_array_equal(registry.load_model(name, "2.0.0").predict(x),
                                  newer.predict(x))


def test_taken_version_numbers_fall_back_to_the_next_major(store: MlflowStore,
                                                           registry: ModelRegistry,
                                                           skops_file: Path) -> None:
    registry.register("churn", skops_file, version="1.0.0")
    report = import_mlflow(registry, store.uri, ["churn"])
    assert [(r.mlflow_version, r.version) for r in report.imported] == [("1", "2.0.0"),
                                                                        ("2", "3.0.0")]
    assert registry.get_version("churn", "2.0.0").tags["mlflow.source"] == "models:/churn/1"


def test_the_promotion_gate_keeps_a_refused_stage_out(store: MlflowStore,
                                                      settings: Settings) -> None:
    team = ModelRegistry(settings.model_copy(update={"auth": True}),
                         principal=Principal("dev", Role.DEVELOPER, "token"))
    report = import_mlflow(team, store.uri, ["churn"])
    first = report.results[0]
    assert first.status == "imported" and first.stage_refused and first.stage == "None"
    assert "stage Production refused" in first.reason and "approver" in first.reason
    assert not report.ok and report.refused == [first]
    assert team.get_version("churn", "1.0.0").stage == "None"
    with pytest.raises(RegistryError, match="no registered model 'nope'"):
        import_mlflow(team, store.uri, ["nope"])
    viewer = team.acting_as(Principal("viewer", Role.VIEWER, "token"))
    with pytest.raises(PermissionDenied, match="developer"):
        import_mlflow(viewer, store.uri, ["churn"])


def test_an_imported_model_answers_through_the_gateway(store: MlflowStore,
                                                       tmp_path: Path) -> None:
    from tests.serving.conftest import start_server

    home = tmp_path / "gw" / ".mlops"
    registry = ModelRegistry(Settings(home=home, actor="tester"))
    assert import_mlflow(registry, store.uri, ["churn"]).ok
    rows = store.x.iloc[:20]
    expected = store.models["churn/1"].predict(rows).tolist()  # 1.0.0 is in Production
    server = start_server(home)
    try:
        with server.client() as c:
            # the body MLflow's own serving_input_example.json has: dataframe_split
            split = {"dataframe_split": {"columns": FEATURES, "data": rows.to_numpy().tolist()}}
            r = c.post("/invocations", json=split, headers={"x-mlops-model": "churn"})
            assert r.status_code == 200, r.text
            assert r.json() == {"predictions": expected}
            body = {"inputs": [{"name": "x", "shape": [20, 4], "datatype": "FP64",
                                "data": rows.to_numpy().ravel().tolist()}]}
            r = c.post("/v2/models/churn/infer", json=body)
            assert r.status_code == 200, r.text
            assert r.json()["model_version"] == "1.0.0"
            assert r.json()["outputs"][0]["data"] == expected
    finally:
        server.stop()


def test_reading_mlflow_turns_its_telemetry_off_unless_the_user_set_it() -> None:
    """mlops imports mlflow only through require_mlflow, which keeps MLflow's telemetry
    thread (calls to its servers from this process) off; an explicit choice is kept."""
    code = ("from mlops.registry.mlflow_source import require_mlflow; require_mlflow(); "
            "from mlflow.telemetry.utils import is_telemetry_disabled; "
            "import os; print(os.environ['MLFLOW_DISABLE_TELEMETRY'], "
            "is_telemetry_disabled())")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI")
           and not k.startswith("PYTEST")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out == ["true", "True"]
    env["MLFLOW_DISABLE_TELEMETRY"] = "false"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[0] == "false"


# ---------------------------------------------------------------------------- tampered stores
def _copy(store: MlflowStore, where: Path, *statements: tuple[str, tuple[Any, ...]]) -> str:
    """The tracking store's database copied to ``where`` (its artifacts stay where they
    are), with ``statements`` run on the copy; its URI."""
    import shutil
    import sqlite3

    where.mkdir(parents=True, exist_ok=True)
    db = where / "mlflow.db"
    shutil.copy(store.root / "mlflow.db", db)
    with sqlite3.connect(db) as conn:
        for sql, args in statements:
            conn.execute(sql, args)
    return f"sqlite:///{db}"


def test_a_source_that_is_another_models_uri_is_resolved_by_the_same_server(
        store: MlflowStore, registry: ModelRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """mlflow's own resolver read the process-wide registry (or created ./mlflow.db)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = _copy(store, tmp_path / "copy", (
        "UPDATE model_versions SET storage_location = ? WHERE name = 'churn' AND version = 1",
        ("models:/boost/1",)), (
        "UPDATE model_versions SET storage_location = ? WHERE name = 'churn' AND version = 2",
        ("models:/nowhere/1",)))
    report = import_mlflow(registry, uri, ["churn"])
    by = {r.mlflow_version: r for r in report.results}
    assert by["1"].status == "imported" and registry.get_version("churn", "1.0.0").format \
        == "xgboost"  # boost/1's files, as that server says
    assert by["2"].status == "refused" and "nowhere" in by["2"].reason
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_one_failing_version_or_model_field_does_not_end_the_import(
        store: MlflowStore, registry: ModelRegistry, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    uri = _copy(store, tmp_path / "copy", (
        "UPDATE registered_model_tags SET value = ? WHERE name = 'churn' AND key = 'owner'",
        ("a\x00b",)))
    register = registry.register

    def flaky(name: str, path: Any, **kwargs: Any) -> Any:
        if str(path) == "models:/churn/1":  # what no check foresaw (here: a bug)
            raise RuntimeError("boom")
        return register(name, path, **kwargs)

    monkeypatch.setattr(registry, "register", flaky)
    report = import_mlflow(registry, uri, ["churn", "boost"])
    by = {(r.model, r.mlflow_version): r for r in report.results}
    assert by["churn", "1"].status == "refused"
    assert by["churn", "1"].reason == "unexpected RuntimeError: boom"
    assert by["churn", "2"].status == "imported" and by["boost", "1"].status == "imported"
    assert any("tag 'owner' not set" in n and "NUL" in n for n in by["churn", "2"].notes)
    assert "owner" not in registry.get_model("churn").tags


def test_the_same_name_on_another_server_is_not_taken_for_imported(
        store: MlflowStore, registry: ModelRegistry, tmp_path: Path) -> None:
    first = _copy(store, tmp_path / "a")
    second = _copy(store, tmp_path / "b")
    assert [r.status for r in import_mlflow(registry, first, ["boost"]).results] == \
        ["imported"]
    again = import_mlflow(registry, second, ["boost"])
    assert [(r.status, r.version) for r in again.results] == [("imported", "2.0.0")]
    assert [r.status for r in import_mlflow(registry, second, ["boost"]).results] == \
        ["skipped"]
