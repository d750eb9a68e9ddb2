"""The deployment snippets of the system README (seed 001), run verbatim."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mlops.deployment.deployment_automation import get_deployment_automation
from mlops.registry.model_registry import get_model_registry

README_DEPLOY = textwrap.dedent('''
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
''')


def test_readme_deployment_snippet_runs_verbatim(skops_file: Path) -> None:
    registry = get_model_registry()
    registry.register_model("task_classifier", str(skops_file), {"accuracy": 0.8})
    registry.register_model("task_classifier", str(skops_file), {"accuracy": 0.85},
                            bump="minor")
    registry.promote_to_stage("task_classifier", "1.0.0", "production")
    # the promotion policy wants the version in staging before production
    get_deployment_automation().deploy_model("task_classifier", "1.1.0", strategy="full",
                                             environment="staging")
    namespace: dict[str, object] = {}
    exec(compile(README_DEPLOY, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, dict) and result["weight"] == 10 and len(result["steps"]) == 10
    status = get_deployment_automation().status("task_classifier")
    assert status is not None and status["state"] == "rolled_back"


def test_registry_ab_setup_drives_an_ab_test_deployment(skops_file: Path) -> None:
    registry = get_model_registry()
    a = registry.register_model("model", str(skops_file), {"accuracy": 0.8})
    b = registry.register_model("model", str(skops_file), {"accuracy": 0.9})
    registry.promote_to_stage("model", a, "production")
    registry.setup_ab_test(model_name="model", version_a=a, version_b=b, traffic_split=0.3)
    deployment = get_deployment_automation()
    deployment.deploy_model("model", b, strategy="full", environment="staging")
    result = deployment.deploy_model("model", b, strategy="ab_test")
    assert result["weight"] == 30 and result["strategy"] == "ab_test"
