"""Rollout configs: validated per strategy at submission; a broken rollout pauses, once."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from mlops.deployment.config import (
    ABTestConfig,
    BanditConfig,
    CanaryConfig,
    ShadowConfig,
    parse_rollout_config,
)
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.steps import plan_steps
from mlops.errors import DeploymentError
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord
from mlops.store.schema import AnalysisRow, AuditEventRow, RolloutRow

OVERRIDE = "tests go straight to production"


@pytest.fixture
def two_models(registry: ModelRegistry, skops_file: Path) -> ModelRegistry:
    """Models ``m`` and ``n``, each with 1.0.0 in production and a candidate 1.1.0."""
    for name in ("m", "n"):
        registry.register(name, skops_file)
        registry.register(name, skops_file, bump="minor")
        registry.promote(name, "1.0.0", "production")
    return registry


def requests(registry: ModelRegistry, model: str, version: str, n: int, seed: int) -> None:
    """What the gateway logs for ``n`` successful requests, flushed to Parquet."""
    rng = np.random.default_rng(seed)
    now = time.time()
    log = PredictionLog(registry.settings.artifacts_uri)
    log.log([PredictionRecord(f"{model}-{version}-{seed}-{i}", now, model, version,
                              "production", "stable", None, 0, "{}", "1", 1.0, None,
                              float(rng.gamma(4, 1.0)), 200) for i in range(n)])
    log.close()


def counts(registry: ModelRegistry) -> tuple[int, int]:
    """(rollout rows, audit events) in the store."""
    with registry.store.read() as s:
        return (int(s.scalar(select(func.count()).select_from(RolloutRow)) or 0),
                int(s.scalar(select(func.count()).select_from(AuditEventRow)) or 0))


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(("strategy", "config", "weights"), [
    ("full", {}, [100]),
    ("full", {"keep_previous_seconds": 0, "min_samples": 10}, [100]),
    ("canary", {"steps": [{"weight": 25, "pause": "manual"}]}, [25, 100]),
    ("canary", {"steps": [{"weight": 10, "pause": "5m"}, {"weight": 100}],
                "min_samples": 500, "alpha": 0.01}, [10, 100]),
    ("canary", {"initial_traffic": 10, "increment": 10, "interval_minutes": 5},
     [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    ("canary", {}, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    ("blue_green", {"observe": "10m", "min_samples": 200}, [0, 100, 100]),
    ("ab_test", {"traffic_split": 0.3}, [30, 100]),
    ("ab_test", {"traffic_split": 30, "pause": "1h", "require_labels": True}, [30, 100]),
    ("shadow", {"mirror": 50, "pause": "manual", "accuracy_margin": 0.05}, [50, 100]),
    ("bandit", {"initial_weight": 20, "floor": 2, "decide_at": 0.9, "draws": 5000,
                "seed": 3, "min_samples": 400}, [20, 100]),
])
def test_each_strategy_accepts_its_valid_config(strategy: str, config: dict[str, Any],
                                                weights: list[float]) -> None:
    settings = parse_rollout_config(strategy, config)
    assert settings.strategy == strategy
    assert [s.weight for s in plan_steps(strategy, settings)] == weights
    assert [s.weight for s in plan_steps(strategy, config)] == weights
    stored = settings.analysis()
    assert not set(stored) & set(type(settings).STEP_KEYS)
    assert parse_rollout_config(strategy, stored).analysis() == stored  # re-parses as is


def test_values_are_normalised_with_todays_meaning() -> None:
    canary = parse_rollout_config("canary", {"steps": [{"weight": 10, "pause": "5m"},
                                                       {"weight": 50, "pause": "Manual"}],
                                             "min_samples": 500.0})
    assert isinstance(canary, CanaryConfig) and canary.steps is not None
    assert [(s.weight, s.pause) for s in canary.steps] == [(10, 300.0), (50, "manual")]
    assert canary.min_samples == 500 and isinstance(canary.min_samples, int)
    assert canary.analysis()["alpha"] == 0.05 and "steps" not in canary.analysis()
    split = parse_rollout_config("ab_test", {"traffic_split": 0.3})
    assert isinstance(split, ABTestConfig) and split.weight == 30
    assert isinstance(parse_rollout_config("ab_test", {"traffic_split": 45}), ABTestConfig)
    bandit = parse_rollout_config("bandit", {})
    assert isinstance(bandit, BanditConfig)
    assert (bandit.floor, bandit.decide_at, bandit.draws) == (1.0, 0.95, 20_000)
    shadow = parse_rollout_config("shadow", None)
    assert isinstance(shadow, ShadowConfig) and shadow.mirror == 100


@pytest.mark.parametrize(("strategy", "config", "message", "fix"), [
    ("canary", {"min_sample": 500},
     "unknown key 'min_sample' for a canary rollout; did you mean 'min_samples'?",
     "Rename 'min_sample' to 'min_samples'."),
    ("canary", {"steps": [{"wieght": 10}]}, "unknown key 'wieght' in steps[0]", "'weight'"),
    ("bandit", {"decide": 0.9}, "did you mean 'decide_at'?", "'decide_at'"),
    ("shadow", {"mirrors": 50}, "did you mean 'mirror'?", "'mirror'"),
    ("blue_green", {"observ": "5m"}, "did you mean 'observe'?", "'observe'"),
    ("ab_test", {"traffic_splt": 0.3}, "did you mean 'traffic_split'?", "'traffic_split'"),
    ("full", {"requires_labels": True}, "did you mean 'require_labels'?", "'require_labels'"),
    ("canary", {"traffic_split": 0.3}, "unknown key 'traffic_split' for a canary rollout "
     "(a setting of ab_test)", "use strategy ab_test"),
    ("full", {"steps": [{"weight": 10}]}, "unknown key 'steps' for a full rollout",
     "use strategy canary"),
    ("canary", {"xyzzy": 1}, "unknown key 'xyzzy'", "valid keys: accuracy_margin"),
])
def test_unknown_keys_are_refused_with_the_nearest_valid_key(
        strategy: str, config: dict[str, Any], message: str, fix: str) -> None:
    with pytest.raises(DeploymentError) as info:
        parse_rollout_config(strategy, config)
    assert message in info.value.message
    assert info.value.fix is not None and fix in info.value.fix


def test_unknown_strategies_name_the_nearest_strategy() -> None:
    with pytest.raises(DeploymentError, match="did you mean 'canary'") as info:
        parse_rollout_config("canery", {})
    assert info.value.fix is not None and "blue_green" in info.value.fix
    with pytest.raises(DeploymentError) as unknown:
        plan_steps("yolo", {})
    assert unknown.value.message == "Unknown strategy 'yolo'."


@pytest.mark.parametrize(("strategy", "config", "key", "problem"), [
    ("canary", {"alpha": "x"}, "alpha", "valid number"),
    ("canary", {"alpha": 2}, "alpha", "less than or equal to 0.5"),
    ("canary", {"alpha": 0}, "alpha", "greater than 0"),
    ("canary", {"steps": [{"weight": math.nan}]}, "steps[0].weight", "finite number"),
    ("canary", {"steps": [{"weight": 150}]}, "steps[0].weight", "less than or equal to 100"),
    ("canary", {"steps": [{"weight": 10, "pause": "soon"}]}, "steps[0].pause",
     "not a duration"),
    ("canary", {"steps": [{"weight": 50}, {"weight": 10}]}, None, "lowers the weight"),
    ("canary", {"steps": []}, "steps", "at least 1 item"),
    ("canary", {"steps": [{"weight": 10}], "initial_traffic": 5}, None,
     "steps or initial_traffic, not both"),
    ("canary", {"interval_minutes": -1}, "interval_minutes", "greater than or equal to 0"),
    ("canary", {"increment": 0.01}, None, "canary of 9000 steps"),
    ("ab_test", {"traffic_split": {"a": 1}}, "traffic_split", "valid number"),
    ("ab_test", {"traffic_split": 1}, None, "traffic on both versions"),
    ("full", {"min_samples": 0}, "min_samples", "greater than or equal to 1"),
    ("full", {"min_samples": 2.5}, "min_samples", "valid integer"),
    ("full", {"require_labels": "yes"}, "require_labels", "valid boolean"),
    ("full", {"keep_previous_seconds": math.inf}, "keep_previous_seconds", "finite"),
    ("bandit", {"decide_at": 0.4}, "decide_at", "greater than 0.5"),
    ("bandit", {"draws": 10}, "draws", "greater than or equal to 100"),
    ("shadow", {"mirror": True}, "mirror", "valid number"),
])
def test_wrong_types_and_ranges_name_the_key_and_the_fix(
        strategy: str, config: dict[str, Any], key: str | None, problem: str) -> None:
    with pytest.raises(DeploymentError) as info:
        parse_rollout_config(strategy, config)
    assert problem in info.value.message
    if key is not None:
        assert key in info.value.message and info.value.context["key"] == key
    assert info.value.fix


def test_a_config_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(DeploymentError, match="must be a mapping"):
        parse_rollout_config("canary", [{"weight": 10}])  # type: ignore[arg-type]


# ------------------------------------------------------------------ in a policy file


def _policy(tmp_path: Path, text: str) -> Any:
    from mlops.ci.policy import Policy

    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return Policy.load(path)


def test_a_policy_that_changes_the_strategy_does_not_inherit_the_tiers_steps(
        tmp_path: Path) -> None:
    policy = _policy(tmp_path, "models:\n  churn:\n    rollout: {strategy: blue_green}\n"
                               "  seed:\n    rollout:\n"
                               "      config: {initial_traffic: 20, increment: 40}\n")
    assert policy.for_model("churn").rollout == {"strategy": "blue_green"}
    seed = policy.for_model("seed").rollout  # the medium tier's steps are replaced
    assert seed == {"strategy": "canary", "config": {"initial_traffic": 20, "increment": 40}}
    assert policy.for_model("other").rollout["steps"][0] == {"weight": 10, "pause": "5m"}


def test_a_policy_typo_names_the_line_the_key_and_the_nearest_key(tmp_path: Path) -> None:
    from mlops.errors import PolicyError

    with pytest.raises(PolicyError) as info:
        _policy(tmp_path, "models:\n  churn:\n    rollout:\n      strategy: canary\n"
                          "      config:\n        min_sample: 500\n")
    assert info.value.context["line"] == 6
    assert "models.churn.rollout.config.min_sample: unknown key 'min_sample'" \
        in info.value.message
    assert info.value.fix == "Rename 'min_sample' to 'min_samples'."
    with pytest.raises(PolicyError, match="alpha") as bad:
        _policy(tmp_path, "tiers:\n  medium:\n    rollout:\n      config: {alpha: x}\n"
                ).for_model("churn")  # a tier is checked for the models that use it
    assert bad.value.context["line"] == 4


# ------------------------------------------------------------------ at deploy time


@pytest.mark.parametrize(("strategy", "config", "key"), [
    ("canary", {"alpha": "x"}, "alpha"),
    ("canary", {"alpha": 2}, "alpha"),
    ("canary", {"steps": [{"weight": math.nan}]}, "steps[0].weight"),
    ("ab_test", {"traffic_split": {"a": 1}}, "traffic_split"),
    ("canary", {"interval_minutes": -1}, "interval_minutes"),
    ("canary", {"min_sample": 500}, "min_sample"),
    ("shadow", {"mirror": 0}, "mirror"),
])
def test_a_bad_config_is_refused_at_deploy_and_nothing_is_stored(
        two_models: ModelRegistry, strategy: str, config: dict[str, Any], key: str) -> None:
    manager = RolloutManager(two_models)
    before = counts(two_models)
    route = manager.routes.get_route("m", "production")
    with pytest.raises(DeploymentError) as info:
        manager.deploy("m", "1.1.0", "production", strategy=strategy, config=config,
                       override=OVERRIDE)
    assert key in info.value.message and info.value.fix
    assert counts(two_models) == before  # no rollout row, no audit event
    assert manager.routes.get_route("m", "production") == route
    assert manager.status("m", "production") is None


def test_the_seed_facade_refuses_a_bad_config(two_models: ModelRegistry) -> None:
    from mlops.deployment.deployment_automation import DeploymentAutomation

    before = counts(two_models)
    with pytest.raises(DeploymentError, match="did you mean 'interval_minutes'"):
        DeploymentAutomation(two_models).deploy_model(
            "m", "1.1.0", "canary", {"initial_traffic": 10, "interval_minute": 5},
            override=OVERRIDE)
    assert counts(two_models) == before


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_the_api_answers_400_for_a_bad_config(two_models: ModelRegistry) -> None:
    from fastapi.testclient import TestClient

    from mlops.api.app import create_api

    with TestClient(create_api(two_models), base_url="http://127.0.0.1") as client:
        r = client.post("/v1/rollouts/m/production",
                        json={"version": "1.1.0", "strategy": "ab_test", "override": OVERRIDE,
                              "config": {"traffic_split": {"a": 1}}})
    assert r.status_code == 400, r.text
    assert "traffic_split" in r.json()["error"] and r.json()["fix"]
    assert counts(two_models)[0] == 0


def test_the_validated_analysis_part_is_stored(two_models: ModelRegistry) -> None:
    manager = RolloutManager(two_models)
    rollout = manager.deploy("m", "1.1.0", "production", strategy="canary", override=OVERRIDE,
                             config={"steps": [{"weight": 25, "pause": "2m"}],
                                     "min_samples": 500})
    assert [(s.weight, s.pause) for s in rollout.steps] == [(25, 120), (100, 0)]
    with two_models.store.read() as s:
        row = s.get(RolloutRow, rollout.id)
        assert row is not None
        stored = dict(row.config)
    assert stored["min_samples"] == 500 and stored["alpha"] == 0.05
    assert "steps" not in stored and "max_step_seconds" not in stored


# ------------------------------------------------------------------ mid-rollout failures


def _corrupt(registry: ModelRegistry, rollout_id: int, config: dict[str, Any]) -> None:
    with registry.store.write() as s:
        row = s.get(RolloutRow, rollout_id)
        assert row is not None
        row.config = config


def _pauses(registry: ModelRegistry) -> list[dict[str, Any]]:
    return [e.payload for e in registry.audit_log(action="rollout.pause")]


def test_a_rollout_whose_stored_config_broke_is_paused_once_and_the_others_go_on(
        two_models: ModelRegistry, caplog: pytest.LogCaptureFixture) -> None:
    manager = RolloutManager(two_models)
    steps = {"steps": [{"weight": 50, "pause": 0}, {"weight": 100}], "min_samples": 100}
    broken = manager.deploy("m", "1.1.0", "production", strategy="canary", config=steps,
                            override=OVERRIDE)
    healthy = manager.deploy("n", "1.1.0", "production", strategy="canary", config=steps,
                             override=OVERRIDE)
    _corrupt(two_models, broken.id, {"alpha": "x"})  # an old or hand-edited row
    requests(two_models, "n", "1.0.0", 2000, seed=1)
    requests(two_models, "n", "1.1.0", 2000, seed=2)

    with caplog.at_level(logging.ERROR, logger="mlops.deployment"):
        first = {r.model: r for r in manager.tick()}
    assert first["m"].state == "paused" and "alpha" in first["m"].reason
    assert first["n"].state == "succeeded", first["n"].analyses
    [pause] = _pauses(two_models)
    assert pause["rollout"] == broken.id and "alpha" in pause["error"]
    assert manager.routes.get_route("m", "production").weight == 50  # type: ignore[union-attr]

    events = len(two_models.audit_log(limit=1000))
    with caplog.at_level(logging.ERROR, logger="mlops.deployment"):
        assert manager.tick() == [] and manager.tick() == []
    assert len(two_models.audit_log(limit=1000)) == events  # nothing more happened
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR
              and f"rollout {broken.id} " in r.getMessage()]
    assert len(logged) == 1
    with two_models.store.read() as s:
        assert not s.scalars(select(AnalysisRow).where(
            AnalysisRow.rollout_id == broken.id)).all()
    assert first["n"].id == healthy.id


def test_a_paused_broken_rollout_cannot_resume_but_can_be_aborted(
        two_models: ModelRegistry) -> None:
    manager = RolloutManager(two_models)
    rollout = manager.deploy("m", "1.1.0", "production", strategy="canary",
                             config={"min_samples": 100}, override=OVERRIDE)
    _corrupt(two_models, rollout.id, {"min_sample": 100})
    [paused] = manager.tick()
    assert paused.state == "paused" and "min_sample" in paused.reason
    with pytest.raises(DeploymentError, match="no longer parses") as info:
        manager.resume("m", "production")
    assert info.value.fix is not None and "Abort" in info.value.fix
    assert manager.status("m", "production").state == "paused"  # type: ignore[union-attr]
    assert manager.promote("m", "production", reason="checked by hand").state == "succeeded"


def test_an_analysis_that_raises_pauses_its_rollout_not_the_controller(
        two_models: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = RolloutManager(two_models)
    manager.deploy("m", "1.1.0", "production", strategy="canary", config={"min_samples": 100},
                   override=OVERRIDE)
    manager.deploy("n", "1.1.0", "production", strategy="canary", config={"min_samples": 100},
                   override=OVERRIDE)
    from mlops.deployment.traffic import RolloutTraffic

    real = RolloutTraffic.read_new

    def corrupt_log(self: RolloutTraffic, files_per_read: int = 16) -> Any:
        if self.model == "m":
            raise OSError("Parquet magic bytes not found in footer")
        return real(self, files_per_read)

    monkeypatch.setattr(RolloutTraffic, "read_new", corrupt_log)
    first = {r.model: r for r in manager.tick()}
    assert first["m"].state == "paused" and "OSError: Parquet magic" in first["m"].reason
    assert first["n"].state == "progressing" and first["n"].analyses  # analysed as usual
    [again] = manager.tick()
    assert again.model == "n"
    assert len(_pauses(two_models)) == 1
