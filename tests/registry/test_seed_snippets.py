"""The registry snippets of the system README (seed 001), run verbatim."""

from __future__ import annotations

import textwrap
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlops.registry.model_registry import get_model_registry

README_REGISTRY = textwrap.dedent('''
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
''')

README_AB_SETUP = textwrap.dedent('''
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
''')


def _model(tmp: Path, name: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(100, 3)), columns=["x1", "x2", "x3"])
    y = (x["x1"] > 0).astype(int)
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression().fit(x, y), path)
    (tmp / "data").mkdir(exist_ok=True)
    x.assign(y=y).to_csv(tmp / "data" / "train.csv", index=False)


def test_readme_registry_snippet_runs_verbatim(tmp_path: Path) -> None:
    _model(tmp_path, "models/v1.pkl", 0)
    registry = get_model_registry()
    # versions 1.0.0 and 1.1.0 exist before, as the snippet's A/B test assumes
    registry.register_model("task_classifier", "models/v1.pkl", {"accuracy": 0.8})
    registry.register_model("task_classifier", "models/v1.pkl", {"accuracy": 0.82}, bump="minor")
    namespace: dict[str, object] = {}
    exec(compile(README_REGISTRY, "README.md", "exec"), namespace)
    version = namespace["version"]
    assert version == "1.1.1"
    mv = registry.get_version("task_classifier", stage="Production")
    assert mv.version == "1.1.1"
    assert mv.metrics == {"accuracy": 0.85}
    assert mv.tags == {"algorithm": "transformer"}
    assert mv.lineage.training_data == "data/train.csv"
    assert mv.lineage.training_data_sha256 is not None
    ab = registry.active_ab_test("task_classifier")
    assert ab is not None and (ab.version_a, ab.version_b, ab.traffic_split) == \
        ("1.0.0", "1.1.0", 0.5)
    assert registry.verify_audit().ok


def test_readme_ab_snippet_runs_verbatim(tmp_path: Path) -> None:
    _model(tmp_path, "path_a", 1)
    _model(tmp_path, "path_b", 2)
    namespace: dict[str, object] = {"get_model_registry": get_model_registry,
                                    "metadata_a": {"accuracy": 0.8},
                                    "metadata_b": {"accuracy": 0.9}}
    exec(compile(README_AB_SETUP, "README.md", "exec"), namespace)
    assert (namespace["version_a"], namespace["version_b"]) == ("1.0.0", "1.0.1")
    ab = get_model_registry().active_ab_test("model")
    assert ab is not None and ab.traffic_split == 0.5
