"""Every Python snippet of the system README (seed 001), verbatim, on a fresh store with
default settings: each runs in a new process whose environment holds no ``MLOPS_*``
variable at all, in an empty folder (so the store is ``./.mlops`` with every default).

The snippets assume things the README does not create (a model file on disk, earlier
versions, a trained model and its metrics, a prediction): the preamble of each case makes
exactly those with the library's public API, then the snippet runs unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the seed README runs verbatim on the embedded default, whatever MLOPS_TEST_STORE says
pytestmark = pytest.mark.default_store

# --------------------------------------------------------------------------- the snippets
CI = '''
from mlops.ci.model_ci_pipeline import ModelCIPipeline

pipeline = ModelCIPipeline()
result = pipeline.run_full_pipeline(
    model_path="models/task_classifier.pkl",
    model_name="task_classifier",
    test_data_path="data/test.csv",
    validation_metrics={
        'accuracy': 0.85,
        'precision': 0.82,
        'recall': 0.80,
        'f1_score': 0.81
    }
)
'''

MONITORING = '''
from mlops.monitoring.model_monitor import get_model_monitor

monitor = get_model_monitor()

# Record prediction
monitor.record_prediction(
    model_name="task_classifier",
    prediction=prediction,
    actual=actual,
    latency_ms=50
)

# Check performance
performance = monitor.check_model_performance("task_classifier")

# Detect drift
drift = monitor.detect_data_drift("task_classifier", current_features)
'''

REGISTRY = '''
from mlops.registry.model_registry import get_model_registry

registry = get_model_registry()

# Register model
version = registry.register_model(
    model_name="task_classifier",
    model_path="models/v1.pkl",
    metadata={
        'accuracy': 0.85,
        'training_data': 'data/train.csv',
        'algorithm': 'transformer'
    }
)

# Promote to production
registry.promote_to_stage("task_classifier", version, "production")

# Setup A/B test
registry.setup_ab_test(
    model_name="task_classifier",
    version_a="1.0.0",
    version_b="1.1.0",
    traffic_split=0.5
)
'''

DEPLOYMENT = '''
from mlops.deployment.deployment_automation import get_deployment_automation

deployment = get_deployment_automation()

# Canary deployment
result = deployment.deploy_model(
    model_name="task_classifier",
    model_version="1.1.0",
    strategy="canary",
    config={
        'initial_traffic': 10,
        'increment': 10,
        'interval_minutes': 5
    }
)

# Rollback if needed
deployment.rollback("task_classifier")
'''

WORKFLOW = [
    '''
# Train model
model = train_model(training_data)

# Evaluate
metrics = evaluate_model(model, test_data)
''', '''
# Run CI/CD pipeline
pipeline = ModelCIPipeline()
result = pipeline.run_full_pipeline(
    model_path="models/model.pkl",
    model_name="my_model",
    test_data_path="data/test.csv",
    validation_metrics=metrics
)
''', '''
# Register in registry
registry = get_model_registry()
version = registry.register_model(
    model_name="my_model",
    model_path="models/model.pkl",
    metadata=metrics
)
''', '''
# Deploy to staging
deployment = get_deployment_automation()
deployment.deploy_model(
    model_name="my_model",
    model_version=version,
    strategy="canary"
)
''', '''
# Monitor in production
monitor = get_model_monitor()
monitor.set_baseline("my_model", metrics)

# Continuous monitoring
monitor.record_prediction("my_model", prediction, actual)
performance = monitor.check_model_performance("my_model")
''', '''
registry = get_model_registry()

# Register both versions
version_a = registry.register_model("model", "path_a", metadata_a)
version_b = registry.register_model("model", "path_b", metadata_b)

# Setup A/B test
registry.setup_ab_test(
    model_name="model",
    version_a=version_a,
    version_b=version_b,
    traffic_split=0.5  # 50% to each
)

# Deploy
deployment.deploy_model("model", version_b, strategy="ab_test")
''', '''
# Compare performance
performance_a = monitor.check_model_performance("model", version_a)
performance_b = monitor.check_model_performance("model", version_b)

# Decide winner
if performance_b['accuracy'] > performance_a['accuracy']:
    registry.promote_to_stage("model", version_b, "production")
''']

# --------------------------------------------------------------------------- preambles
FILES = '''
import pathlib
import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(1500, 3)), columns=["a", "b", "c"])
y = (X["a"] - X["b"] > 0).astype(int).to_numpy().copy()
flip = rng.choice(1500, 75, replace=False)
y[flip] = 1 - y[flip]
pathlib.Path("models").mkdir()
pathlib.Path("data").mkdir()
clf = LogisticRegression().fit(X[:1000], y[:1000])
for name in ("models/task_classifier.pkl", "models/v1.pkl", "models/model.pkl", "path_a",
             "path_b"):
    joblib.dump(clf, name)
X[1000:].assign(label=y[1000:]).to_csv("data/test.csv", index=False)
X[:1000].assign(label=y[:1000]).to_csv("data/train.csv", index=False)
'''

CASES: dict[str, tuple[str, list[str], str]] = {
    "ci": ("", [CI], '''
assert result["steps"]["gate:metrics"]["status"] == "passed", result["steps"]
assert result["steps"]["staging_tests"]["status"] == "passed", result["steps"]
'''),
    "monitoring": ('''
from mlops.registry.model_registry import get_model_registry
get_model_registry().register_model("task_classifier", "models/v1.pkl",
                                   training_frame=X[:1000])  # the reference drift needs
prediction, actual = 1, 1
current_features = X[1000:]
''', [MONITORING], '''
assert performance["accuracy"] == 1.0 and performance.window.n_predictions == 1
assert drift.n_drifted == 0  # the same distribution: no column flagged
'''),
    "registry": ('''
from mlops.registry.model_registry import get_model_registry
get_model_registry().register_model("task_classifier", "models/v1.pkl")
get_model_registry().register_model("task_classifier", "models/v1.pkl", bump="minor")
''', [REGISTRY], '''
assert version == "1.1.1"
assert registry.get_version("task_classifier", stage="production").version == "1.1.1"
assert registry.active_ab_test("task_classifier").traffic_split == 0.5
'''),
    "deployment": ('''
from mlops.registry.model_registry import get_model_registry
get_model_registry().register_model("task_classifier", "models/v1.pkl")
get_model_registry().register_model("task_classifier", "models/v1.pkl", bump="minor")
get_model_registry().promote_to_stage("task_classifier", "1.0.0", "production")
''', [DEPLOYMENT], '''
assert result["weight"] == 10 and result["state"] == "progressing"
assert deployment.status("task_classifier")["state"] == "rolled_back"
'''),
    "workflow and A/B testing": ('''
from mlops.ci.model_ci_pipeline import ModelCIPipeline
from mlops.deployment.deployment_automation import get_deployment_automation
from mlops.monitoring.model_monitor import get_model_monitor
from mlops.registry.model_registry import get_model_registry

training_data, test_data = X[:1000], X[1000:]
def train_model(data):
    return LogisticRegression().fit(data, y[:1000])
def evaluate_model(model, data):
    return {"accuracy": float((model.predict(data) == y[1000:]).mean())}
prediction, actual = 1, 1
metadata_a, metadata_b = {"accuracy": 0.80}, {"accuracy": 0.90}
''', WORKFLOW, '''
assert version == "1.0.1" and version_b == "1.0.1"
assert registry.active_ab_test("model").traffic_split == 0.5
assert performance["accuracy"] == 1.0
'''),
}


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.parametrize("case", list(CASES))
def test_seed_001_snippets_run_verbatim_with_default_settings(case: str,
                                                               tmp_path: Path) -> None:
    preamble, snippets, checks = CASES[case]
    parts = [FILES, preamble, *snippets, checks, "print('ok')"]
    script = "\n".join(textwrap.dedent(p) for p in parts)
    folder = tmp_path / "fresh"
    folder.mkdir()
    run = subprocess.run([sys.executable, "-c", script], cwd=folder, env=_clean_env(),
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip().endswith("ok")
    assert (folder / ".mlops" / "mlops.db").is_file()  # the default store, nothing else
