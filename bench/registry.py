"""Registry benchmark: register + load N versions, mlops vs MLflow, same SQLite backend.

Run with ``make bench-registry`` (or ``.venv/bin/python bench/registry.py --versions 200``).
Both registries get the same fitted scikit-learn model (20 features), the same metrics and
the same 5-row input example, and write to a SQLite database in a fresh temporary folder.

MLflow is measured two ways, because users meet both:
- ``log_model``: ``mlflow.sklearn.log_model(..., registered_model_name=...)`` inside a run,
  the path the MLflow docs teach (stores the artifact, infers requirements and signature);
- ``create_model_version``: the bare registry call on an artifact logged once beforehand,
  MLflow's fastest way to add a version (it stores nothing new).
Loading is ``mlflow.sklearn.load_model("models:/name/N")`` against our ``load_model``
(which verifies the SHA-256 and checks the file's types before loading), measured alone
and followed by one single-row prediction (the first predict of a freshly loaded
scikit-learn estimator costs about 1 ms on its own, the same on both sides).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def _timed(fn: Callable[[int], object], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t0)
    return out


def _row(label: str, times: list[float]) -> tuple[str, int, float, float, float]:
    return (label, len(times), sum(times), statistics.median(times) * 1e3,
            sum(times) / len(times) * 1e3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--log-model-versions", type=int, default=20,
                        help="versions for MLflow's slow log_model path (about 1-2 s each)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(2000, 20)), columns=[f"f{i}" for i in range(20)])
    y = (x["f0"] + x["f1"] > 0).astype(int)
    model = LogisticRegression(max_iter=300).fit(x, y)
    example = x.head(5)
    one_row = x.head(1)
    metrics = {"accuracy": 0.91, "f1_score": 0.9}

    tmp = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    model_file = tmp / "model.skops"
    sio.dump(model, model_file)
    n = args.versions
    results = []

    # --- mlops ---------------------------------------------------------------------------
    from mlops.registry.service import ModelRegistry

    ours = ModelRegistry(home=tmp / "mlops", database_url=f"sqlite:///{tmp / 'mlops.db'}",
                         artifacts_uri=str(tmp / "mlops-artifacts"), actor="bench")
    versions: list[str] = []
    reg_times = _timed(lambda i: versions.append(
        ours.register("bench", model_file, metadata=metrics, input_example=example).version), n)
    load_only = _timed(lambda i: ours.load_model("bench", versions[i]), n)
    load_times = _timed(lambda i: ours.load_model("bench", versions[i]).predict(one_row), n)
    results += [_row("mlops register", reg_times), _row("mlops load", load_only),
                _row("mlops load+predict", load_times)]
    assert ours.verify_audit().ok

    # --- MLflow --------------------------------------------------------------------------
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
    exp = mlflow.create_experiment("bench", artifact_location=str(tmp / "mlflow-artifacts"))
    mlflow.set_experiment(experiment_id=exp)
    client = MlflowClient()
    signature = mlflow.models.infer_signature(example, model.predict(example))

    def log_model(i: int) -> None:
        with mlflow.start_run():
            mlflow.log_metrics(metrics)
            mlflow.sklearn.log_model(model, name="model", registered_model_name="bench_logged",
                                     input_example=example, signature=signature)

    k = min(args.log_model_versions, n)
    logged = _timed(log_model, k)
    results.append(_row("mlflow log_model+register", logged))

    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(model, name="model", signature=signature)
    client.create_registered_model("bench")

    def create_version(i: int) -> None:
        mv = client.create_model_version("bench", info.model_uri, run_id=run.info.run_id)
        for key, value in metrics.items():
            client.set_model_version_tag("bench", mv.version, key, str(value))

    created = _timed(create_version, n)
    results.append(_row("mlflow create_model_version", created))
    mlflow_load_only = _timed(lambda i: mlflow.sklearn.load_model(f"models:/bench/{i + 1}"), n)
    results.append(_row("mlflow load", mlflow_load_only))
    mlflow_load = _timed(
        lambda i: mlflow.sklearn.load_model(f"models:/bench/{i + 1}").predict(one_row), n)
    results.append(_row("mlflow load+predict", mlflow_load))

    # --- table ---------------------------------------------------------------------------
    print(f"\nRegistry benchmark: {n} versions (log_model path: {k}), SQLite backend, "
          f"{os.cpu_count()} CPUs, mlflow {mlflow.__version__}\n")
    print(f"{'operation':32} {'n':>5} {'total s':>9} {'median ms':>10} {'mean ms':>9}")
    for label, count, total, med, mean in results:
        print(f"{label:32} {count:5d} {total:9.2f} {med:10.2f} {mean:9.2f}")
    ours_reg = statistics.median(reg_times)
    ours_load = statistics.median(load_times)
    print("\nratios (MLflow median / mlops median; higher means mlops is faster):")
    print(f"  register vs log_model+register : {statistics.median(logged) / ours_reg:7.1f}x")
    print(f"  register vs create_model_version: {statistics.median(created) / ours_reg:7.1f}x")
    print(f"  load                            : "
          f"{statistics.median(mlflow_load_only) / statistics.median(load_only):7.1f}x")
    print(f"  load+predict                    : {statistics.median(mlflow_load) / ours_load:7.1f}x")
    print("\nmlops register stores the artifact (SHA-256), scans it, loads it to check it,"
          "\ninfers the signature, records lineage and appends an audit event;"
          "\nMLflow create_model_version stores nothing new (the artifact was logged once).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
