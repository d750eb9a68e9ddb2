"""Compiled runtimes: scikit-learn, XGBoost and LightGBM models compiled to ONNX are stored
as an alternate runtime of the same version only when they equal the original (identical
labels, probabilities and values within the stated tolerance); an inexact one is refused
with the largest difference and nothing is stored; compiling what production serves needs
the approver."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlops.config import Settings
from mlops.errors import CompileRefused, ModelNotFound, PermissionDenied
from mlops.identity import Principal, Role
from mlops.registry.service import ModelRegistry
from tests.cli.test_cli import run

pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

COLUMNS = [f"x{i}" for i in range(5)]
Data = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def data() -> Data:
    """Training rows, held-out rows the check uses, and other held-out rows the test uses;
    a class label and a regression target."""
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(900, 5)), columns=COLUMNS)
    label = (x["x0"] + x["x1"] * x["x2"] - 0.5 * x["x3"] > 0).astype(int).to_numpy()
    target = (3 * x["x0"] + 10 * np.sin(x["x1"]) + x["x2"] ** 2).to_numpy()
    return x.iloc[:500], x.iloc[500:700], x.iloc[700:], label, target


def _forest(d: Data, tmp: Path) -> dict[str, Any]:
    return {"model": RandomForestClassifier(200, max_depth=4, random_state=0).fit(
        d[0], d[3][:500])}


def _boosting(d: Data, tmp: Path) -> dict[str, Any]:
    return {"model": GradientBoostingRegressor(n_estimators=100, max_depth=3,
                                               random_state=0).fit(d[0], d[4][:500])}


def _logistic(d: Data, tmp: Path) -> dict[str, Any]:
    return {"model": LogisticRegression().fit(d[0], d[3][:500])}


def _xgboost(d: Data, tmp: Path) -> dict[str, Any]:
    xgb = pytest.importorskip("xgboost")
    path = tmp / "model.json"
    xgb.XGBClassifier(n_estimators=50, max_depth=3).fit(d[0], d[3][:500]).save_model(path)
    return {"path": path}


def _lightgbm(d: Data, tmp: Path) -> dict[str, Any]:
    lgb = pytest.importorskip("lightgbm")
    path = tmp / "model.txt"
    lgb.LGBMClassifier(n_estimators=50, max_depth=3, verbose=-1).fit(
        d[0], d[3][:500]).booster_.save_model(path)
    return {"path": path}


KINDS: dict[str, tuple[Callable[[Data, Path], dict[str, Any]], str, str]] = {
    # name: (builder, original flavor, compiled input precision)
    "random_forest": (_forest, "sklearn", "float32"),
    "gradient_boosting_regressor": (_boosting, "sklearn", "float32"),
    "logistic_regression": (_logistic, "sklearn", "float64"),
    "xgboost": (_xgboost, "xgboost", "float32"),
    "lightgbm": (_lightgbm, "lightgbm", "float32"),
}


def _register(registry: ModelRegistry, name: str, source: dict[str, Any], d: Data,
              **kwargs: Any) -> str:
    path = source.get("path")
    kwargs.setdefault("input_example", d[0].head(10))
    return registry.register(name, str(path) if path else None, model=source.get("model"),
                             **kwargs).version


@pytest.mark.parametrize("kind", list(KINDS))
def test_compiled_outputs_equal_the_original_on_held_out_rows(
        registry: ModelRegistry, data: Data, tmp_path: Path, kind: str) -> None:
    build, flavor, precision = KINDS[kind]
    version = _register(registry, kind, build(data, tmp_path), data)
    mv = registry.compile(kind, version, to="onnx", data=data[1])

    record = mv.runtimes["onnx"]
    assert record["format"] == "onnx" and record["input_dtype"] == precision
    assert record["rows_checked"] == 210
    assert record["checked"] == {"input_example": 10, "data": 200}
    assert record["size"] == len(registry.artifacts.get_bytes(record["digest"]))
    assert record["converter"]["onnxruntime"] and record["converter"]["onnx"]
    assert ("skl2onnx" if flavor == "sklearn" else "onnxmltools") in record["converter"]
    rtol, atol = record["tolerance"]["rtol"], record["tolerance"]["atol"]
    assert (rtol, atol) == ((1e-5, 1e-5) if precision == "float32" else (1e-7, 1e-9))
    assert 0 <= record["max_abs_diff"] <= atol + rtol
    assert record["created_by"] == "tester" and record["created_at"]
    assert mv.to_dict()["runtimes"]["onnx"]["digest"] == record["digest"]  # the API's JSON

    original = registry.load_model(kind, version)  # the default stays the original
    compiled = registry.load_model(kind, version, runtime="onnx")
    assert original.flavor == flavor and compiled.flavor == "onnx"
    assert registry.load_model(kind, version, runtime="auto").flavor == "onnx"
    unseen = data[2]  # rows the check never saw
    if kind == "gradient_boosting_regressor":
        np.testing.assert_allclose(compiled.predict(unseen), original.predict(unseen),
                                   rtol=rtol, atol=atol)
        assert not compiled.has_proba
    else:
        assert compiled.predict(unseen).tolist() == original.predict(unseen).tolist()
        assert compiled.classes == original.classes == [0, 1]
        np.testing.assert_allclose(compiled.predict_proba(unseen),
                                   original.predict_proba(unseen), rtol=rtol, atol=atol)
    # the gateway feeds a float64 matrix in the signature's column order
    matrix = unseen.to_numpy()
    assert np.array_equal(np.asarray(compiled.predict(matrix)),
                          np.asarray(compiled.predict(unseen)))


def test_an_inexact_conversion_is_refused_with_its_largest_difference(
        registry: ModelRegistry, data: Data, tmp_path: Path) -> None:
    """float32 trees cannot meet a zero tolerance: refused, and nothing is stored."""
    version = _register(registry, "forest", _forest(data, tmp_path), data)
    blobs = sorted(p.name for p in Path(registry.settings.artifacts_uri).rglob("*")
                   if p.is_file())
    with pytest.raises(CompileRefused) as refused:
        registry.compile("forest", version, data=data[1], rtol=0, atol=0)
    message = str(refused.value)
    assert "converts inexactly" in message and "largest difference is" in message
    assert "of the data (predict_proba[:, " in message or "of the input example" in message
    assert "Nothing was stored" in message and "--atol" in (refused.value.fix or "")
    assert registry.get_version("forest", version).runtimes == {}
    assert not registry.audit_log(action="version.compile")
    assert sorted(p.name for p in Path(registry.settings.artifacts_uri).rglob("*")
                  if p.is_file()) == blobs
    with pytest.raises(Exception, match="has no onnx runtime"):
        registry.load_model("forest", version, runtime="onnx")


def test_without_enough_rows_it_asks_for_held_out_data(registry: ModelRegistry, data: Data,
                                                       tmp_path: Path) -> None:
    version = _register(registry, "lr", _logistic(data, tmp_path), data)
    with pytest.raises(CompileRefused, match=r"only its stored input example \(10 rows\)") \
            as refused:
        registry.compile("lr", version)
    assert "--data FILE" in (refused.value.fix or "")
    with pytest.raises(CompileRefused, match="lacks the input column"):
        registry.compile("lr", version, data=data[1].rename(columns={"x0": "other"}))
    with pytest.raises(CompileRefused, match="Unknown compile target"):
        registry.compile("lr", version, to="tensorrt", data=data[1])


@pytest.mark.parametrize("tolerance", [{"atol": math.inf}, {"rtol": math.nan},
                                       {"atol": -1e-9}])
def test_a_tolerance_that_is_not_a_finite_number_is_refused_before_anything_is_stored(
        registry: ModelRegistry, data: Data, tmp_path: Path,
        tolerance: dict[str, float]) -> None:
    """An infinite atol passed the check, then failed the audit write (not JSON), leaving
    the compiled file behind."""
    version = _register(registry, "lr", _logistic(data, tmp_path), data)
    blobs = sorted(p.name for p in Path(registry.settings.artifacts_uri).rglob("*")
                   if p.is_file())
    with pytest.raises(CompileRefused, match="must be finite numbers >= 0"):
        registry.compile("lr", version, data=data[1], **tolerance)
    assert registry.get_version("lr", version).runtimes == {}
    assert sorted(p.name for p in Path(registry.settings.artifacts_uri).rglob("*")
                  if p.is_file()) == blobs


def test_compile_is_audited_with_both_digests_and_the_equality_result(
        registry: ModelRegistry, data: Data, tmp_path: Path) -> None:
    version = _register(registry, "lr", _logistic(data, tmp_path), data)
    mv = registry.compile("lr", version, data=data[1])
    (event,) = registry.audit_log(action="version.compile")
    assert event.subject == f"model/lr/{version}" and event.actor == "tester"
    payload = event.payload
    assert payload["runtime"] == "onnx" and payload["when"] == "compile"
    assert payload["sha256"] == mv.runtimes["onnx"]["digest"]
    assert payload["original_sha256"] == mv.artifact_digest and payload["replaces"] is None
    assert payload["equality"]["passed"] is True
    assert payload["equality"]["labels_identical"] is True
    assert payload["equality"]["rows_checked"] == 210
    assert payload["equality"]["max_abs_diff"] == mv.runtimes["onnx"]["max_abs_diff"]
    again = registry.compile("lr", version, data=data[1].head(50))  # replaces, audited
    assert registry.audit_log(action="version.compile")[0].payload["replaces"] == \
        payload["sha256"]
    assert again.runtimes["onnx"]["rows_checked"] == 60
    assert registry.verify_audit().ok


def test_register_with_compile_checks_the_example_and_refuses_all_or_nothing(
        registry: ModelRegistry, data: Data, tmp_path: Path) -> None:
    source = _forest(data, tmp_path)
    mv = registry.register("forest", model=source["model"], input_example=data[1],
                           compile="onnx")
    assert mv.runtimes["onnx"]["checked"] == {"input_example": 200}
    actions = [e.action for e in registry.audit_log(subject=f"model/forest/{mv.version}")]
    assert actions[:2] == ["version.compile", "version.register"]  # newest first
    assert registry.audit_log(action="version.compile")[0].payload["when"] == "register"
    with pytest.raises(CompileRefused, match="Only 5 row"):
        registry.register("tiny", model=source["model"], input_example=data[1].head(5),
                          compile="onnx")
    with pytest.raises(ModelNotFound):  # nothing was registered
        registry.get_model("tiny")


def test_an_onnx_model_is_not_compiled_again(registry: ModelRegistry, data: Data,
                                             tmp_path: Path) -> None:
    from skl2onnx import to_onnx

    model = _logistic(data, tmp_path)["model"]
    path = tmp_path / "model.onnx"
    path.write_bytes(to_onnx(model, data[0].to_numpy(np.float32)[:1]).SerializeToString())
    version = registry.register("native", str(path), input_example=data[0].head(10)).version
    with pytest.raises(CompileRefused, match="ONNX already"):
        registry.compile("native", version, data=data[1])


DEV = Principal("dev", Role.DEVELOPER, "token")
APPROVER = Principal("approver", Role.APPROVER, "token")
ADMIN = Principal("admin", Role.ADMIN, "token")


def test_a_developer_cannot_compile_what_production_serves(settings: Settings, data: Data,
                                                           tmp_path: Path) -> None:
    """Compiling changes what executes: for a version production serves (or served),
    that is the approver's decision, as every other change of what production serves."""
    admin = ModelRegistry(settings.model_copy(update={"auth": True}), principal=ADMIN)
    source = _logistic(data, tmp_path)
    _register(admin, "m", source, data)
    admin.promote("m", "1.0.0", "production", override="bootstrap of the test store")
    _register(admin, "m", source, data)  # 1.0.1: registered only
    dev, approver = admin.acting_as(DEV), admin.acting_as(APPROVER)

    assert dev.compile("m", "1.0.1", data=data[1]).runtimes["onnx"]
    with pytest.raises(PermissionDenied, match="production serves or has served"):
        dev.compile("m", "1.0.0", data=data[1])
    assert admin.get_version("m", "1.0.0").runtimes == {}
    mv = approver.compile("m", "1.0.0", data=data[1])
    assert mv.runtimes["onnx"]["created_by"] == "approver"
    event = admin.audit_log(subject="model/m/1.0.0", action="version.compile")[0]
    assert event.payload["protected_environment"] == "production"
    assert event.actor == "approver"
    # a version production served before stays protected (a rollback target)
    admin.promote("m", "1.0.1", "production", override="test")
    with pytest.raises(PermissionDenied):
        dev.compile("m", "1.0.0", data=data[1])
    with pytest.raises(PermissionDenied):
        admin.acting_as(Principal("viewer", Role.VIEWER, "token")).compile(
            "m", "1.0.1", data=data[1])


def test_cli_compile_refuses_then_compiles_and_show_lists_the_runtime(
        tmp_path: Path, data: Data) -> None:
    import skops.io as sio

    model_file, example, held_out = (tmp_path / "m.skops", tmp_path / "example.csv",
                                     tmp_path / "held_out.csv")
    sio.dump(RandomForestClassifier(200, max_depth=4, random_state=0).fit(
        data[0], data[3][:500]), model_file)
    data[0].head(10).to_csv(example, index=False)
    held = data[1].copy()
    held["label"] = data[3][500:700]  # extra columns (the label) are ignored
    held.to_csv(held_out, index=False)
    assert run("models", "register", str(model_file), "--name", "forest",
               "--input-example", str(example), cwd=tmp_path).returncode == 0

    refused = run("models", "compile", "forest", "1.0.0", "--to", "onnx", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr
    assert "refused" in refused.stderr and "--data FILE" in refused.stderr
    done = run("models", "compile", "forest", "1.0.0", "--to", "onnx", "--data",
               str(held_out), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["runtime"] == "onnx" and record["rows_checked"] == 210

    shown = run("models", "show", "forest", "1.0.0", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"runtime onnx: sha256 {record['digest'][:12]}" in shown.stdout
    assert "max diff" in shown.stdout and "on 210 rows" in shown.stdout
    assert "sklearn/skops +onnx" in shown.stdout


def test_a_missing_converter_names_the_pip_command(registry: ModelRegistry, data: Data,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mlops.errors import MissingDependency

    version = _register(registry, "lr", _logistic(data, tmp_path), data)
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # import skl2onnx raises ImportError
    with pytest.raises(MissingDependency, match="needs skl2onnx") as missing:
        registry.compile("lr", version, data=data[1])
    assert missing.value.fix is not None and "pip install 'mlops[compile]'" in missing.value.fix
    assert registry.get_version("lr", version).runtimes == {}
