"""``mlops models import-mlflow`` and ``mlops models register`` of MLflow models, as the real
command in a subprocess, against a real MLflow SQLite tracking store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_cli import run
from tests.registry.mlflow_store import MlflowStore, build

pytest.importorskip("mlflow")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MlflowStore:
    return build(tmp_path_factory.mktemp("mlflow-cli"))


def test_import_mlflow_reports_imports_refusals_and_reruns(store: MlflowStore,
                                                           tmp_path: Path) -> None:
    first = run("models", "import-mlflow", "--tracking-uri", store.uri, cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # custom and hostile were refused
    out = first.stdout
    assert "MLflow import from" in out and "imported" in out and "refused" in out
    assert "python_function model" in out and "not on the allow list" in out
    assert "3 imported, 0 skipped, 2 refused" in out

    again = run("models", "import-mlflow", "--tracking-uri", store.uri, "--json", cwd=tmp_path)
    assert again.returncode == 1
    report = json.loads(again.stdout)
    assert report["counts"] == {"imported": 0, "skipped": 3, "refused": 2}
    assert not report["ok"]
    refused = {r["model"]: r for r in report["results"] if r["status"] == "refused"}
    assert 'serialization_format="skops"' in refused["custom"]["fix"]

    only = run("models", "import-mlflow", "--tracking-uri", store.uri, "--name", "churn",
               "--name", "boost", "--json", cwd=tmp_path)
    assert only.returncode == 0, only.stderr
    assert json.loads(only.stdout)["counts"]["skipped"] == 3

    shown = json.loads(run("models", "show", "churn", "champion", "--json",
                           cwd=tmp_path).stdout)
    assert shown["version"] == "2.0.0" and shown["tags"]["mlflow.source"] == "models:/churn/2"
    listed = json.loads(run("models", "list", "--json", cwd=tmp_path).stdout)
    assert {m["name"]: m["stages"] for m in listed} == {"boost": {},
                                                        "churn": {"Production": "1.0.0"}}


def test_usage_errors_exit_2(store: MlflowStore, tmp_path: Path) -> None:
    no_uri = run("models", "import-mlflow", cwd=tmp_path)
    assert no_uri.returncode == 2 and "MLFLOW_TRACKING_URI" in no_uri.stderr
    unknown = run("models", "import-mlflow", "--tracking-uri", store.uri, "--name", "nope",
                  cwd=tmp_path)
    assert unknown.returncode == 2 and "no registered model 'nope'" in unknown.stderr
    assert "churn" in unknown.stderr  # the fix names the models there are


def test_register_takes_a_models_uri_and_a_directory(store: MlflowStore,
                                                     tmp_path: Path) -> None:
    r = run("models", "register", "models:/churn@champion", "--name", "c",
            "--tracking-uri", store.uri, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    mv = json.loads(r.stdout)
    assert mv["format"] == "skops" and mv["metadata"]["mlflow"]["source"] == \
        "models:/churn@champion"
    assert [c["name"] for c in mv["signature"]["inputs"]] == ["a", "b", "c", "d"]
    hostile = run("models", "register", str(store.root / "hostile"), "--name", "h",
                  cwd=tmp_path)
    assert hostile.returncode == 2 and "not on the allow list" in hostile.stderr
    assert not store.canary.exists()
