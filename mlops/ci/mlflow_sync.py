"""Register the model in MLflow too, when ``MLFLOW_TRACKING_URI`` is set.

Logs one run with the pipeline's params and metrics and the model with its signature
(``mlflow.sklearn`` for scikit-learn estimators; other flavors as the original file), and
registers it under the same name. mlflow is optional: without it this step fails with the
fix, it never silently passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.errors import CIError
from mlops.flavors.base import LoadedModel
from mlops.registry.mlflow_source import require_mlflow

__all__ = ["MlflowRegistration", "register_in_mlflow"]


@dataclass(frozen=True)
class MlflowRegistration:
    run_id: str
    model_uri: str
    version: str
    tracking_uri: str


def register_in_mlflow(tracking_uri: str, model_name: str, artifact_path: Path,
                       model: LoadedModel, X: pd.DataFrame, metrics: Mapping[str, float],
                       params: Mapping[str, Any]) -> MlflowRegistration:
    mlflow = require_mlflow(CIError, "MLFLOW_TRACKING_URI is set but mlflow is not installed.",
                            "pip install mlflow, or unset MLFLOW_TRACKING_URI.")
    from mlflow.models import infer_signature
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"mlops-ci/{model_name}")
    sample = X.head(200)
    signature = infer_signature(sample, np.asarray(model.predict(sample)))
    with mlflow.start_run(run_name=f"mlops ci {model_name}") as run:
        mlflow.log_params({str(k): str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics({str(k): float(v) for k, v in metrics.items()
                            if isinstance(v, int | float) and np.isfinite(v)})
        if model.flavor == "sklearn":
            info = mlflow.sklearn.log_model(model.raw, name="model", signature=signature,
                                            input_example=sample.head(5),
                                            skops_trusted_types=_trusted_types(model.raw))
            model_uri = info.model_uri
        else:
            mlflow.log_artifact(str(artifact_path), artifact_path="model_file")
            model_uri = f"runs:/{run.info.run_id}/model_file/{artifact_path.name}"
        registered = mlflow.register_model(model_uri, model_name)
    return MlflowRegistration(run.info.run_id, model_uri, str(registered.version), tracking_uri)


def _trusted_types(estimator: Any) -> list[str] | None:
    """The types skops would ask MLflow to trust when it loads the model back: those our
    own allow list accepts (the model was loaded through it), never more. ``None`` when the
    model cannot be saved with skops (MLflow then falls back to its other format)."""
    import skops.io as sio

    from mlops.flavors.files import safety_check

    try:
        data = sio.dumps(estimator)
        untrusted = sio.get_untrusted_types(data=data)
    except Exception:  # skops cannot save every estimator; MLflow reports its own error
        return None
    report = safety_check("skops", data)
    return sorted(set(untrusted)) if report.safe else None
