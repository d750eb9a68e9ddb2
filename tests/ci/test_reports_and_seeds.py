"""Reports (JSON, Markdown, JUnit parsed by a JUnit parser), the seed snippets verbatim, the
GitHub Actions template, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import yaml
from junitparser import Error, Failure, JUnitXml, Skipped
from sklearn.linear_model import LogisticRegression

from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.ci.reports import to_junit_xml, to_markdown, write_reports
from mlops.ci.templates import write_github_actions
from mlops.registry.service import ModelRegistry


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1500, 3))
    y = (x[:, 0] - x[:, 1] > 0).astype(int)
    noisy = rng.choice(1500, 75, replace=False)  # 5% label noise: accuracy about 0.95
    y[noisy] = 1 - y[noisy]
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["label"] = y
    model = LogisticRegression().fit(frame[["a", "b", "c"]][:1000], y[:1000])
    (tmp_path / "models").mkdir()
    (tmp_path / "data").mkdir()
    sio.dump(model, tmp_path / "models" / "task_classifier.skops")
    frame[1000:].to_csv(tmp_path / "data" / "test.csv", index=False)
    return {"model": tmp_path / "models" / "task_classifier.skops",
            "test": tmp_path / "data" / "test.csv"}


def test_junit_report_parses_with_one_case_per_step(registry: ModelRegistry,
                                                    project: dict[str, Path],
                                                    tmp_path: Path) -> None:
    policy = Policy({"default_tier": "t", "tiers": {"t": {"gates": {
        "security": {}, "metrics": {"accuracy": 0.99}, "latency": {}}}}})
    result = ModelPipeline(registry, policy=policy).run(project["model"], "churn",
                                                        project["test"], stage="register")
    paths = write_reports(result, tmp_path / "reports")
    xml = JUnitXml.fromfile(str(paths["junit"]))
    cases = {case.name: case for suite in xml for case in suite}
    assert list(cases) == [s.name for s in result.steps]
    assert isinstance(cases["gate:metrics"].result[0], Failure)
    assert "accuracy" in cases["gate:metrics"].result[0].message
    assert isinstance(cases["gate:latency"].result[0], Skipped)
    assert cases["gate:security"].is_passed
    assert not any(isinstance(r, Error) for c in cases.values() for r in c.result)
    data = json.loads(paths["json"].read_text())
    assert data["status"] == "failed" and data["steps"][0]["name"] == "validate_data"
    md = to_markdown(result)
    assert "| `gate:metrics` | ❌ failed |" in md and "0.99" in md
    assert to_junit_xml(result).startswith("<?xml")


README_CI = textwrap.dedent('''
    from mlops.ci.model_ci_pipeline import ModelCIPipeline

    pipeline = ModelCIPipeline()
    result = pipeline.run_full_pipeline(
        model_path="models/task_classifier.skops",
        model_name="task_classifier",
        test_data_path="data/test.csv",
        validation_metrics={
            'accuracy': 0.85,
            'precision': 0.82,
            'recall': 0.80,
            'f1_score': 0.81
        }
    )
''')


def test_readme_ci_snippet_runs_verbatim(project: dict[str, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(README_CI, "README.md", "exec"), namespace)
    result = namespace["result"]
    steps = result["steps"]  # type: ignore[index]
    assert steps["gate:metrics"]["status"] == "passed"
    assert steps["staging_tests"]["status"] == "passed"
    # the built-in medium tier needs one approval before production
    assert result.status == "awaiting_approval"  # type: ignore[attr-defined]
    assert steps["deploy_production"]["status"] == "pending"


def test_seed_quality_gates_shape(project: dict[str, Path], registry: ModelRegistry) -> None:
    from mlops.ci.quality_gates import ModelQualityGates

    test = pd.read_csv(project["test"])
    gates = ModelQualityGates(registry)
    results = gates.run_quality_checks(str(project["model"]), {
        "features": test[["a", "b", "c"]], "labels": test["label"]})
    assert set(results) == {"performance", "latency", "resources", "security", "fairness",
                            "data_quality"}
    assert results["performance"]["passed"] and results["performance"]["actual_value"][
        "accuracy"] > 0.85
    assert results["fairness"].skipped  # no sensitive feature given: says so, passes
    verdict = gates.evaluate_gate_results(results)
    assert verdict["passed"], verdict
    gates.quality_thresholds["accuracy_threshold"] = 0.999
    failed = gates.evaluate_gate_results(gates.run_quality_checks(
        str(project["model"]), {"features": test[["a", "b", "c"]], "labels": test["label"]}))
    assert not failed["passed"] and failed["failed_gates"][0]["gate"] == "performance"
    assert "performance" in failed["recommendation"]


def test_seed_gates_all_report_when_the_security_score_fails(
        project: dict[str, Path], registry: ModelRegistry, tmp_path: Path) -> None:
    """A clean pickle scores 7, below the seed's 8.0: security fails, and every other gate
    still runs and reports (the file loads through the allow list)."""
    import joblib

    from mlops.ci.quality_gates import ModelQualityGates

    pickled = tmp_path / "model.pkl"
    model = sio.load(project["model"],
                     trusted=["sklearn.linear_model._logistic.LogisticRegression"])
    joblib.dump(model, pickled)
    test = pd.read_csv(project["test"])
    results = ModelQualityGates(registry).run_quality_checks(
        str(pickled), {"features": test[["a", "b", "c"]], "labels": test["label"]})
    assert not results["security"]["passed"] and results["security"]["actual_value"][
        "score"] == 7.0
    for key in ("performance", "latency", "resources", "data_quality"):
        assert results[key]["passed"], (key, results[key]["reason"])
    assert results["fairness"].skipped


def test_github_actions_template_parses_with_the_expected_jobs(tmp_path: Path) -> None:
    path = write_github_actions(tmp_path)
    doc = yaml.safe_load(path.read_text())
    assert set(doc["jobs"]) == {"test", "train", "pipeline"}
    assert doc["jobs"]["train"]["needs"] == "test"
    assert doc["jobs"]["pipeline"]["needs"] == "train"
    steps = " ".join(str(s) for s in doc["jobs"]["pipeline"]["steps"])
    assert "mlops ci run" in steps and "upload-artifact" in steps
    with pytest.raises(Exception, match="exists"):
        write_github_actions(tmp_path)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlops", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_ci_run_writes_reports_and_exit_codes(project: dict[str, Path],
                                                  tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_tier: low\nmodels:\n  churn:\n    gates:\n"
                      "      metrics: {accuracy: 0.8}\n")
    ok = _cli("ci", "run", "--model-path", str(project["model"]), "--name", "churn",
              "--test-data", str(project["test"]), "--policy", str(policy), "--stage",
              "register", "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "gate:metrics" in ok.stdout and (tmp_path / "r" / "junit.xml").exists()
    policy.write_text(policy.read_text().replace("0.8}", "0.999}"))
    bad = _cli("ci", "run", "--model-path", str(project["model"]), "--name", "churn",
               "--test-data", str(project["test"]), "--policy", str(policy), "--stage",
               "gates", "--json", cwd=tmp_path)
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["status"] == "failed"
    broken = tmp_path / "broken.yaml"
    broken.write_text("models:\n  churn:\n    gates:\n      metrics: {acuracy: 0.8}\n")
    check = _cli("ci", "policy", "check", str(broken), cwd=tmp_path)
    assert check.returncode == 2 and "line 4" in check.stderr and "acuracy" in check.stderr
    assert _cli("ci", "policy", "check", str(policy), cwd=tmp_path).returncode == 0
