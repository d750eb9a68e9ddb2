"""A real MLflow SQLite tracking store with registered models, built for the import tests.

``churn``: version 1 scikit-learn saved with cloudpickle (in Production, tagged, described,
run metrics), version 2 saved with skops (alias ``champion``). ``boost``: an XGBoost
classifier. ``custom``: a pyfunc model with its own PythonModel class. ``hostile``: an
MLmodel directory written by hand whose pickle calls ``os.system``.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from sklearn.linear_model import LogisticRegression

FEATURES = ["a", "b", "c", "d"]
REQS = ["scikit-learn"]  # skips MLflow's slow requirement inference


@dataclass
class MlflowStore:
    uri: str
    root: Path
    x: pd.DataFrame
    y: np.ndarray
    models: dict[str, Any]  # "churn/1" -> the original estimator
    run_ids: dict[str, str]
    canary: Path


class Custom(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A user's own PythonModel: mlflow cloudpickles it, and loading it runs its code."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None
                ) -> pd.Series:
        return model_input.sum(axis=1)


def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.normal(size=(300, 4)), columns=FEATURES)
    y = (x["a"] + 0.5 * x["b"] - x["c"] > 0).astype(int).to_numpy()
    return x, y


class _System:
    """Unpickles as os.system(command): what a hostile model file does."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def hostile_dir(root: Path, canary: Path) -> Path:
    """An MLflow sklearn model directory, by hand, whose model.pkl runs a shell command."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.pkl").write_bytes(pickle.dumps(_System(f"touch {canary}"), protocol=4))
    (root / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {"python_function": {"loader_module": "mlflow.sklearn",
                                        "model_path": "model.pkl"},
                    "sklearn": {"pickled_model": "model.pkl",
                                "serialization_format": "cloudpickle",
                                "sklearn_version": "1.5.0"}},
        "mlflow_version": "2.14.0"}))
    return root


@contextmanager
def tracking(uri: str) -> Iterator[Any]:
    """mlflow's fluent API pointed at ``uri``, and the process left as it was (mlflow sets
    MLFLOW_TRACKING_URI in os.environ, which the CI pipeline reads)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield mlflow
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


def log_sklearn(mlflow: Any, model: Any, name: str, x: pd.DataFrame, fmt: str,
                metrics: dict[str, float] | None = None) -> tuple[str, str]:
    """Log ``model`` in a run of its own and register it as a new version of ``name``;
    (run id, MLflow version)."""
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics or {})
        info = mlflow.sklearn.log_model(model, name="model", serialization_format=fmt,
                                        input_example=x.head(5), pip_requirements=REQS,
                                        registered_model_name=name)
    return run.info.run_id, str(info.registered_model_version)


def build(root: Path) -> MlflowStore:
    import xgboost as xgb

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    x, y = data()
    models: dict[str, Any] = {}
    runs: dict[str, str] = {}
    canary = root / "canary"
    with tracking(uri) as mlflow:
        exp = mlflow.create_experiment("import", artifact_location=(root / "art").as_uri())
        mlflow.set_experiment(experiment_id=exp)
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)

        models["churn/1"] = LogisticRegression(C=1.0).fit(x, y)
        runs["churn/1"], _ = log_sklearn(mlflow, models["churn/1"], "churn", x, "cloudpickle",
                                         {"accuracy": 0.91, "auc": 0.95})
        models["churn/2"] = LogisticRegression(C=0.01).fit(x, y)
        runs["churn/2"], _ = log_sklearn(mlflow, models["churn/2"], "churn", x, "skops",
                                         {"accuracy": 0.93})
        client.set_model_version_tag("churn", "1", "team", "risk")
        client.update_model_version("churn", "1", description="first churn model")
        client.update_registered_model("churn", description="who leaves next month")
        client.set_registered_model_tag("churn", "owner", "ana")
        client.set_registered_model_alias("churn", "champion", "2")
        client.transition_model_version_stage("churn", "1", "Production")

        models["boost/1"] = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
        with mlflow.start_run() as run:
            mlflow.xgboost.log_model(models["boost/1"], name="model", input_example=x.head(5),
                                     pip_requirements=["xgboost"],
                                     registered_model_name="boost")
        runs["boost/1"] = run.info.run_id

        with mlflow.start_run():
            mlflow.pyfunc.log_model(name="model", python_model=Custom(),
                                    input_example=x.head(3), pip_requirements=REQS,
                                    registered_model_name="custom")

        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(hostile_dir(root / "hostile", canary)), "model")
        mlflow.register_model(f"runs:/{run.info.run_id}/model", "hostile")
    return MlflowStore(uri, root, x, y, models, runs, canary)

