"""The model pipeline end to end: DAG order, stop at the first failed gate, registration,
staging tests through a real gateway, approvals, the re-run cache, retries, timeouts."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.approvals import approvals, approve
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.ci.runs import RunStore
from mlops.deployment.rollouts import RolloutManager
from mlops.errors import CIError, DeploymentError
from mlops.registry.service import ModelRegistry

LOW = {"default_tier": "low"}
FAST = {"gates": {"security": {}, "data_quality": {}, "metrics": {"accuracy": 0.8},
                  "champion": {}}}


def _data(n: int, seed: int, flip: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    if flip:
        idx = rng.choice(n, int(flip * n), replace=False)
        y[idx] = 1 - y[idx]
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame["label"] = y
    return frame


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = _data(2000, 1)
    good = LogisticRegression().fit(train[["a", "b", "c", "d"]], train["label"])
    shuffled = LogisticRegression().fit(train[["a", "b", "c", "d"]],
                                        np.random.default_rng(5).permutation(train["label"]))
    paths = {"good": tmp_path / "good.skops", "bad": tmp_path / "bad.skops",
             "test": tmp_path / "test.csv"}
    sio.dump(good, paths["good"])
    sio.dump(shuffled, paths["bad"])
    _data(1000, 2).to_csv(paths["test"], index=False)
    return paths


def _pipeline(registry: ModelRegistry, policy: dict[str, object] | None = None,
              **kw: object) -> ModelPipeline:
    data = {"default_tier": "fast", "tiers": {"fast": FAST}} if policy is None else policy
    return ModelPipeline(registry, policy=Policy(data), **kw)  # type: ignore[arg-type]


def test_gates_run_in_policy_order_and_register(registry: ModelRegistry,
                                                files: dict[str, Path]) -> None:
    result = _pipeline(registry).run(files["good"], "churn", files["test"], stage="register")
    names = [s.name for s in result.steps]
    assert names == ["validate_data", "gate:security", "load_model", "gate:data_quality",
                     "gate:metrics", "gate:champion", "register"]
    assert result.passed and result.version == "1.0.0" and result.gates_passed
    champion = result.step("gate:champion")
    assert champion.gate is not None and champion.gate.skipped
    assert "no production version" in champion.reason.lower()
    mv = registry.get_version("churn", "1.0.0")
    assert mv.metrics["accuracy"] > 0.8  # the metrics gate's numbers become the version's
    assert registry.reference_profiles("churn", "1.0.0")  # reference profiled from test X
    assert RunStore(registry).gates_passed("churn", "1.0.0")


def test_first_failed_gate_stops_everything_after_it(registry: ModelRegistry,
                                                     files: dict[str, Path]) -> None:
    result = _pipeline(registry).run(files["bad"], "churn", files["test"], stage="register")
    metrics = result.step("gate:metrics")
    assert metrics.status == "failed" and "accuracy" in metrics.reason
    assert result.step("gate:champion").status == "skipped"
    assert result.step("register").status == "skipped"
    assert "gate:metrics did not pass" in result.step("register").reason
    assert not result.passed and result.version is None
    assert registry.list_models() == []  # nothing registered
    events = registry.audit_log(action="ci.step", limit=50)
    assert {e.payload["step"] for e in events} >= {"gate:metrics", "register"}


def test_champion_gate_fails_a_worse_challenger(registry: ModelRegistry,
                                                files: dict[str, Path]) -> None:
    pipeline = _pipeline(registry, {"default_tier": "fast", "tiers": {"fast": {
        "gates": {"security": {}, "champion": {"margin": 0.01}}}}})
    first = pipeline.run(files["good"], "churn", files["test"], stage="register")
    registry.promote("churn", first.version or "", "Production")
    second = pipeline.run(files["bad"], "churn", files["test"], stage="register")
    champion = second.step("gate:champion")
    assert champion.status == "failed" and "worse" in champion.reason
    assert champion.gate is not None and champion.gate.details["n"] == 1000


def test_rerun_reuses_passed_gates_unless_forced(registry: ModelRegistry,
                                                 files: dict[str, Path]) -> None:
    pipeline = _pipeline(registry)
    pipeline.run(files["good"], "churn", files["test"], stage="gates")
    again = pipeline.run(files["good"], "churn", files["test"], stage="gates")
    assert again.step("gate:metrics").status == "cached"
    assert again.passed
    forced = pipeline.run(files["good"], "churn", files["test"], stage="gates", force=True)
    assert forced.step("gate:metrics").status == "passed"
    changed = files["test"].with_name("other.csv")
    _data(1000, 3).to_csv(changed, index=False)
    other = pipeline.run(files["good"], "churn", changed, stage="gates")
    assert other.step("gate:metrics").status == "passed"  # new data: measured again


def test_step_timeout_is_reported_not_hung(registry: ModelRegistry,
                                           files: dict[str, Path]) -> None:
    pipeline = _pipeline(registry, {"default_tier": "t", "tiers": {"t": {
        "gates": {"security": {}, "latency": {"n_single": 5000}}}}},
        timeouts={"gate:latency": 0.05})
    result = pipeline.run(files["good"], "churn", files["test"], stage="gates")
    latency = result.step("gate:latency")
    assert latency.status == "timeout" and "0.05 s" in latency.reason
    assert result.status == "failed"


def test_service_steps_are_retried(registry: ModelRegistry, files: dict[str, Path]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    pipeline = _pipeline(registry, retries=3)
    result = pipeline.run(files["good"], "churn", files["test"], stage="staging",
                          gateway_url=dead)
    staging = result.step("staging_tests")
    assert staging.status == "error" and staging.attempts == 3
    assert "ConnectError" in staging.reason


def test_staging_tests_go_through_a_real_gateway(registry: ModelRegistry,
                                                 files: dict[str, Path]) -> None:
    result = _pipeline(registry).run(files["good"], "churn", files["test"], stage="staging")
    staging = result.step("staging_tests")
    assert staging.status == "passed", staging.reason
    assert staging.data["outputs_match"] and staging.data["served_version"] == "1.0.0"
    assert 400 <= staging.data["malformed_status"] < 500


def test_production_waits_for_approvals_then_promotes(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("default_tier: fast\ntiers:\n  fast:\n    approvals: 1\n"
                           "    rollout: {strategy: full}\n    gates:\n      security: {}\n"
                           "      metrics: {accuracy: 0.8}\n      champion: {}\n")
    registry = ModelRegistry(registry.settings.model_copy(
        update={"promotion_policy": "gated", "policy_file": str(policy_file)}))
    pipeline = ModelPipeline(registry, policy=Policy.load(policy_file))
    result = pipeline.run(files["good"], "churn", files["test"])
    assert result.status == "awaiting_approval"
    pending = result.step("deploy_production")
    assert pending.status == "pending" and "mlops ci approve churn 1.0.0" in pending.reason
    with pytest.raises(DeploymentError, match="approval"):
        pipeline.promote("churn", "1.0.0")
    with pytest.raises(CIError, match="cannot approve"):
        approve(registry, "churn", "1.0.0", "mine")  # the registering actor: four eyes
    reviewer = ModelRegistry(registry.settings.model_copy(update={"actor": "reviewer"}))
    assert approve(reviewer, "churn", "1.0.0", "looks good") == ["reviewer"]
    assert approvals(registry, "churn", "1.0.0") == ["reviewer"]
    rollout = pipeline.promote("churn", "1.0.0")
    assert rollout.state == "succeeded"
    assert RolloutManager(registry).status("churn", "production") is not None


def test_a_laxer_policy_or_a_new_champion_does_not_count_for_the_gated_rule(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path) -> None:
    strict = tmp_path / "policy.yaml"
    strict.write_text("default_tier: low\nmodels:\n  churn:\n    gates:\n"
                      "      metrics: {accuracy: 0.8}\n")
    registry = ModelRegistry(registry.settings.model_copy(
        update={"promotion_policy": "gated", "policy_file": str(strict)}))
    mv = registry.register("churn", files["bad"])  # trained on shuffled labels
    RolloutManager(registry).deploy("churn", mv.version, "staging", strategy="full")
    lax = _pipeline(registry, LOW).run_registered("churn", mv.version, files["test"])
    assert lax.passed  # feedback for the author ...
    with pytest.raises(DeploymentError, match="under the configured policy"):
        RolloutManager(registry).deploy("churn", mv.version, "production", strategy="full")
    official = ModelPipeline(registry, policy=Policy.load(strict)).run_registered(
        "churn", mv.version, files["test"])
    assert not official.passed  # ... but only the configured policy's verdict counts
    strict.write_text("default_tier: low\n")
    assert ModelPipeline(registry, policy=Policy.load(strict)).run_registered(
        "churn", mv.version, files["test"]).passed
    other = registry.register("churn", files["good"])
    registry.promote("churn", other.version, "Production",  # production changed since
                     override="the test replaces the champion")
    with pytest.raises(DeploymentError, match="against another production version"):
        RolloutManager(registry).deploy("churn", mv.version, "production", strategy="full")


def test_gated_rule_refuses_a_version_without_passed_gates(
        registry: ModelRegistry, skops_file: Path) -> None:
    registry = ModelRegistry(registry.settings.model_copy(update={"promotion_policy": "gated"}))
    mv = registry.register("churn", skops_file)
    manager = RolloutManager(registry)
    manager.deploy("churn", mv.version, "staging", strategy="full")
    with pytest.raises(DeploymentError, match="has not passed its quality gates"):
        manager.deploy("churn", mv.version, "production", strategy="full")
    done = manager.deploy("churn", mv.version, "production", strategy="full",
                          override="hotfix, gates run after")
    assert done.state == "succeeded"
    override = registry.audit_log(action="policy.override", limit=1)[0]
    assert override.payload["reason"] == "hotfix, gates run after"


def test_gates_on_a_registered_version_count_for_the_gated_rule(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_tier: low\n")
    registry = ModelRegistry(registry.settings.model_copy(
        update={"promotion_policy": "gated", "policy_file": str(policy)}))
    mv = registry.register("churn", files["good"])
    result = _pipeline(registry, LOW).run_registered("churn", mv.version, files["test"])
    assert result.passed and result.version == mv.version
    manager = RolloutManager(registry)
    manager.deploy("churn", mv.version, "staging", strategy="full")
    assert manager.deploy("churn", mv.version, "production", strategy="full").state == \
        "succeeded"  # the low tier asks for no approval


def test_a_changed_policy_file_asks_for_the_gates_again_and_its_approvals(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path) -> None:
    """The gated rule never parses the policy: it counts runs recorded under the policy
    file's current digest, with the approvals that run's policy required."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("default_tier: low\n")
    registry = ModelRegistry(registry.settings.model_copy(
        update={"promotion_policy": "gated", "policy_file": str(policy)}))
    mv = registry.register("churn", files["good"])
    assert _pipeline(registry, LOW).run_registered("churn", mv.version, files["test"]).passed
    manager = RolloutManager(registry)
    manager.deploy("churn", mv.version, "staging", strategy="full")
    policy.write_text("default_tier: low\ntiers:\n  low:\n    approvals: 2\n")
    with pytest.raises(DeploymentError, match="policy file that has changed since"):
        manager.deploy("churn", mv.version, "production", strategy="full")
    rerun = ModelPipeline(registry, policy=Policy.load(policy)).run_registered(
        "churn", mv.version, files["test"])
    assert rerun.passed
    with pytest.raises(DeploymentError, match="0 of the 2 approval"):
        manager.deploy("churn", mv.version, "production", strategy="full")


def test_mlflow_registration_against_a_real_sqlite_store(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = _pipeline(registry).run(files["good"], "churn", files["test"], stage="register")
    step = result.step("register_mlflow")
    assert step.status == "passed", step.reason
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    (version,) = client.search_model_versions("name='churn'")
    run = client.get_run(version.run_id)
    assert run.data.metrics["accuracy"] == pytest.approx(
        registry.get_version("churn", "1.0.0").metrics["accuracy"])
    assert run.data.params["mlops_version"] == "1.0.0"


def test_mlflow_registration_of_a_skops_tree_model(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow saves scikit-learn models with skops and loads them back to check the input
    example: the tree's internal types must be passed as trusted (they are on our list)."""
    pytest.importorskip("mlflow")
    from sklearn.ensemble import RandomForestClassifier

    train = _data(2000, 1)
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(
        train[["a", "b", "c", "d"]], train["label"])
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = _pipeline(registry).run(path, "trees", files["test"], stage="register")
    step = result.step("register_mlflow")
    assert step.status == "passed", step.reason
    import mlflow

    mlflow.set_tracking_uri(uri)
    loaded = mlflow.sklearn.load_model("models:/trees/1")  # the types logged as trusted
    x = pd.read_csv(files["test"])[["a", "b", "c", "d"]]
    assert (loaded.predict(x) == forest.predict(x)).all()


def test_missing_label_and_bad_stage_are_clear_errors(registry: ModelRegistry,
                                                      files: dict[str, Path],
                                                      tmp_path: Path) -> None:
    unlabeled = tmp_path / "nolabel.csv"
    pd.read_csv(files["test"]).drop(columns="label").to_csv(unlabeled, index=False)
    result = _pipeline(registry).run(files["good"], "churn", unlabeled, stage="gates")
    assert result.step("validate_data").status == "failed"
    assert "--label" in result.step("validate_data").reason
    with pytest.raises(CIError, match="Unknown stage"):
        _pipeline(registry).run(files["good"], "churn", files["test"], stage="prod")
    missing = _pipeline(registry).run(files["good"], "churn", files["test"], label="target",
                                      stage="gates")
    assert missing.step("validate_data").status == "error"
    assert "no label column 'target'" in missing.step("validate_data").reason


def test_newest_run_per_version_in_one_read(registry: ModelRegistry) -> None:
    runs = RunStore(registry)
    ids = {}
    for model, version in (("a", "1.0.0"), ("a", "1.0.0"), ("a", "1.0.1"), ("b", "1.0.0"),
                           ("a", None)):
        run = runs.start(model, "d" * 64, "e" * 64, {})
        runs.finish(run, model, version, "passed", {"steps": []})
        ids[model, version] = run
    newest = runs.newest_per_version({"a": ["1.0.0", "1.0.1"], "b": ["1.0.1"], "c": []})
    assert {k: v["run"] for k, v in newest.items()} == {
        ("a", "1.0.0"): ids["a", "1.0.0"], ("a", "1.0.1"): ids["a", "1.0.1"]}
    assert newest["a", "1.0.0"] == runs.runs("a", "1.0.0", limit=1)[0]
    assert runs.newest_per_version({}) == {}
