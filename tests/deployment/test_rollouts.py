"""The rollout state machine driven by real prediction-log files and the controller tick."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.steps import plan_steps
from mlops.errors import DeploymentError
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import FeedbackRecord, PredictionLog, PredictionRecord

STEPS = {"steps": [{"weight": 10, "pause": 0}, {"weight": 50, "pause": 0}, {"weight": 100}],
         "min_samples": 200}


@pytest.fixture
def two_versions(registry: ModelRegistry, skops_file: Path) -> ModelRegistry:
    registry.register("m", skops_file)
    registry.register("m", skops_file, bump="minor")
    registry.promote("m", "1.0.0", "production")
    return registry


def write_log(registry: ModelRegistry, records: list[PredictionRecord],
              labels: list[FeedbackRecord] | None = None) -> None:
    """Write what the gateway would have logged, flushed to real Parquet files."""
    log = PredictionLog(registry.settings.artifacts_uri)
    log.log(records)
    log.log_feedback(labels or [])
    log.close()


def traffic(registry: ModelRegistry, version: str, n: int, *, error_rate: float = 0.0,
            accuracy: float | None = None, seed: int = 0, env: str = "production") -> None:
    """Write what the gateway would log for ``n`` requests (and their labels)."""
    rng = np.random.default_rng(seed)
    now = time.time()
    records, labels = [], []
    for i in range(n):
        status = 500 if rng.random() < error_rate else 200
        rid = f"{version}-{seed}-{i}"
        records.append(PredictionRecord(rid, now, "m", version, env, "stable", None, 0, "{}",
                                        "1" if status == 200 else "null",
                                        1.0 if status == 200 else None, None,
                                        float(rng.gamma(4, 1.0)), status))
        if accuracy is not None and status == 200:
            actual = 1 if rng.random() < accuracy else 0
            labels.append(FeedbackRecord(rid, 0, "m", str(actual), float(actual), now))
    write_log(registry, records, labels)


def test_plans() -> None:
    assert [s.weight for s in plan_steps("canary", {"initial_traffic": 10, "increment": 30,
                                                    "interval_minutes": 5})] == \
        [10, 40, 70, 100]
    assert plan_steps("canary", {"initial_traffic": 10, "increment": 30,
                                 "interval_minutes": 5})[0].pause == 300
    steps = plan_steps("canary", {"steps": [{"weight": 25, "pause": "2m"},
                                            {"weight": 50, "pause": "manual"}]})
    assert [(s.weight, s.pause, s.until) for s in steps] == \
        [(25, 120, "time"), (50, 0, "manual"), (100, 0, "time")]
    assert [s.weight for s in plan_steps("ab_test", {"traffic_split": 0.3})] == [30, 100]
    assert [(s.weight, s.until) for s in plan_steps("blue_green", {})] == \
        [(0, "smoke"), (100, "analysis"), (100, "time")]
    with pytest.raises(DeploymentError, match="lowers"):
        plan_steps("canary", {"steps": [{"weight": 50}, {"weight": 10}]})
    with pytest.raises(DeploymentError, match="not a duration"):
        plan_steps("canary", {"steps": [{"weight": 50, "pause": "soon"}]})
    with pytest.raises(DeploymentError, match="Unknown strategy"):
        plan_steps("yolo", {})


def test_good_canary_advances_and_is_promoted(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    rollout = manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production", config=STEPS)
    assert (rollout.stable, rollout.candidate, rollout.weight) == ("1.0.0", "1.1.0", 10)
    assert manager.routes.get_route("m", "production").weight == 10  # type: ignore[union-attr]
    traffic(two_versions, "1.0.0", 3600, seed=1)
    traffic(two_versions, "1.1.0", 400, seed=2)
    [after] = manager.tick()
    assert after.step_index == 1 and after.state == "progressing", after.analyses
    assert after.analyses[-1]["outcome"] == "Successful"
    assert manager.routes.get_route("m", "production").weight == 50  # type: ignore[union-attr]
    time.sleep(0.01)
    traffic(two_versions, "1.0.0", 2500, seed=4)
    traffic(two_versions, "1.1.0", 2500, seed=3)
    [done] = manager.tick()
    assert done.state == "succeeded"
    route = manager.routes.get_route("m", "production")
    assert route is not None and (route.stable, route.candidate) == ("1.1.0", None)
    assert two_versions.get_version("m", stage="production").version == "1.1.0"
    actions = [e.action for e in reversed(two_versions.audit_log(limit=20))]
    # every route change is a route.set event, beside the rollout's own events
    assert actions[-6:] == ["route.set", "rollout.step", "route.set", "version.stage",
                            "version.stage", "rollout.succeed"]
    moved = two_versions.audit_log(action="route.set", limit=3)
    assert [e.payload["after"]["weight"] for e in moved] == [0.0, 50.0, 10.0]
    assert all(e.payload["rollout"] == rollout.id for e in moved)
    assert two_versions.verify_audit().ok


def test_failing_candidate_is_rolled_back_on_errors(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production", config=STEPS)
    traffic(two_versions, "1.0.0", 2700, error_rate=0.005, seed=1)
    traffic(two_versions, "1.1.0", 300, error_rate=0.2, seed=2)
    [after] = manager.tick()
    assert after.state == "rolled_back"
    assert "error rate" in after.reason
    route = manager.routes.get_route("m", "production")
    assert route is not None and (route.stable, route.candidate) == ("1.0.0", None)
    metrics = after.analyses[-1]["metrics"]["error_rate"]
    assert metrics["decision"] == "inferior" and metrics["ci_low"] is not None


def test_worse_accuracy_from_feedback_rolls_back(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production",
                   config={**STEPS, "require_labels": True})
    traffic(two_versions, "1.0.0", 2700, accuracy=0.9, seed=1)
    traffic(two_versions, "1.1.0", 1500, accuracy=0.7, seed=2)
    [after] = manager.tick()
    assert after.state == "rolled_back" and "accuracy" in after.reason


def test_noise_is_inconclusive_then_paused_for_a_person(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production",
                   config={**STEPS, "max_step_seconds": 60})
    traffic(two_versions, "1.0.0", 30, seed=1)
    traffic(two_versions, "1.1.0", 5, seed=2)
    [first] = manager.tick()
    assert first.state == "progressing" and first.analyses[-1]["outcome"] == "Inconclusive"
    [later] = manager.tick(now=time.time() + 120)
    assert later.state == "paused" and "inconclusive" in later.reason
    resumed = manager.resume("m", "production", reason="more traffic coming")
    assert resumed.state == "progressing"


def test_state_survives_a_new_controller(two_versions: ModelRegistry) -> None:
    """The controller holds nothing: a fresh one continues from the database."""
    RolloutManager(two_versions).deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production",
                                        config=STEPS)
    traffic(two_versions, "1.0.0", 3600, seed=1)
    traffic(two_versions, "1.1.0", 400, seed=2)
    RolloutManager(two_versions).tick()
    fresh = RolloutManager(ModelRegistry(two_versions.settings))
    status = fresh.status("m", "production")
    assert status is not None and status.step_index == 1 and status.weight == 50
    assert fresh.routes.get_route("m", "production").weight == 50  # type: ignore[union-attr]


def test_manual_commands_and_rollback(two_versions: ModelRegistry, skops_file: Path) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production", config=STEPS)
    with pytest.raises(DeploymentError, match="already has an active rollout"):
        manager.deploy("m", "1.1.0", "production", strategy="canary", override="tests go straight to production", config=STEPS)
    assert manager.pause("m", "production").state == "paused"
    assert manager.promote("m", "production", reason="looks fine").state == "succeeded"
    assert manager.rollback("m", "production", reason="customer report") == "1.0.0"
    route = manager.routes.get_route("m", "production")
    assert route is not None and route.stable == "1.0.0"
    two_versions.register("m", skops_file, version="2.0.0")
    assert manager.rollback("m", "production", to="2.0.0") == "2.0.0"
    with pytest.raises(DeploymentError):
        manager.abort("m", "production")
    reasons = [e.payload.get("reason") for e in two_versions.audit_log(action="rollout.rollback")]
    assert "customer report" in reasons


def test_full_and_first_deployments_finish_at_once(registry: ModelRegistry,
                                                   skops_file: Path) -> None:
    registry.register("m", skops_file)
    manager = RolloutManager(registry)
    first = manager.deploy("m", "1.0.0", "staging", strategy="canary", config=STEPS)
    assert first.state == "succeeded" and first.stable is None
    assert registry.get_version("m", stage="staging").version == "1.0.0"
    registry.register("m", skops_file)
    full = manager.deploy("m", "1.0.1", "staging", strategy="full")
    assert full.state == "succeeded"
    assert manager.routes.get_route("m", "staging").stable == "1.0.1"  # type: ignore[union-attr]


def test_production_requires_staging_first_unless_overridden(two_versions: ModelRegistry
                                                             ) -> None:
    two_versions = ModelRegistry(two_versions.settings.model_copy(
        update={"promotion_policy": "staged"}))
    manager = RolloutManager(two_versions)
    with pytest.raises(DeploymentError, match="staging") as err:
        manager.deploy("m", "1.1.0", "production", strategy="canary", config=STEPS)
    assert "--override" in (err.value.fix or "")
    with pytest.raises(DeploymentError, match="Unknown environment"):
        manager.deploy("m", "1.1.0", "qa", strategy="full")
    manager.deploy("m", "1.1.0", "staging", strategy="full")
    assert manager.deploy("m", "1.1.0", "production", strategy="canary",
                          config=STEPS).state == "progressing"
    manager.abort("m", "production")
    two_versions.register("m", two_versions.artifacts.local_path(
        two_versions.get_version("m", "1.0.0").artifact_digest), version="3.0.0")
    rollout = manager.deploy("m", "3.0.0", "production", strategy="full",
                             override="hotfix approved by on-call")
    assert rollout.state == "succeeded"
    event = two_versions.audit_log(action="policy.override")[0]
    assert event.payload["reason"] == "hotfix approved by on-call"


def shadow_traffic(registry: ModelRegistry, n: int, stable_acc: float, shadow_acc: float,
                   seed: int) -> None:
    """Pairs as the gateway logs them in shadow mode: one stable and one shadow row per
    request id, plus the label."""
    rng = np.random.default_rng(seed)
    now = time.time()
    records, labels = [], []
    for i in range(n):
        rid = f"shadow-{seed}-{i}"
        actual = int(rng.integers(2))
        for route, version, acc in (("stable", "1.0.0", stable_acc),
                                    ("shadow", "1.1.0", shadow_acc)):
            pred = actual if rng.random() < acc else 1 - actual
            records.append(PredictionRecord(rid, now, "m", version, "production", route, None,
                                            0, "{}", str(pred), float(pred), None, 2.0, 200))
        labels.append(FeedbackRecord(rid, 0, "m", str(actual), float(actual), now))
    write_log(registry, records, labels)


@pytest.mark.parametrize(("shadow_acc", "state"), [(0.9, "succeeded"), (0.6, "rolled_back")])
def test_shadow_rollout_decides_on_paired_outcomes(two_versions: ModelRegistry,
                                                   shadow_acc: float, state: str) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="shadow",
                   config={"min_samples": 100, "accuracy_margin": 0.05},
                   override="tests go straight to production")
    route = manager.routes.get_route("m", "production")
    assert route is not None and route.mode == "shadow" and route.weight == 100
    shadow_traffic(two_versions, 1500, 0.9, shadow_acc, seed=5)
    [after] = manager.tick()
    assert after.state == state, after.analyses
    metrics = after.analyses[-1]["metrics"]
    assert metrics["mcnemar"]["b_stable_only"] + metrics["mcnemar"]["c_candidate_only"] > 0
    assert "paired_accuracy" in metrics
    final = manager.routes.get_route("m", "production")
    assert final is not None and final.mode == "split" and final.candidate is None
    assert final.stable == ("1.1.0" if state == "succeeded" else "1.0.0")


def labelled(registry: ModelRegistry, version: str, n: int, accuracy: float, seed: int,
             propensity: float) -> None:
    rng = np.random.default_rng(seed)
    now = time.time()
    records, labels = [], []
    for i in range(n):
        rid = f"bandit-{version}-{seed}-{i}"
        actual = int(rng.integers(2))
        pred = actual if rng.random() < accuracy else 1 - actual
        records.append(PredictionRecord(rid, now, "m", version, "production", "stable", None, 0,
                                        "{}", str(pred), float(pred), None, 2.0, 200,
                                        propensity))
        labels.append(FeedbackRecord(rid, 0, "m", str(actual), float(actual), now))
    write_log(registry, records, labels)


def test_bandit_shifts_traffic_to_the_better_arm(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="bandit",
                   config={"min_samples": 400}, override="tests go straight to production")
    assert manager.routes.get_route("m", "production").weight == 50  # type: ignore[union-attr]
    labelled(two_versions, "1.0.0", 150, 0.80, seed=1, propensity=0.5)
    labelled(two_versions, "1.1.0", 150, 0.90, seed=2, propensity=0.5)
    [first] = manager.tick()
    weight = manager.routes.get_route("m", "production").weight  # type: ignore[union-attr]
    assert first.state == "progressing" and weight > 50
    assert first.analyses[-1]["metrics"]["reward"]["p_candidate_better"] > 0.5
    labelled(two_versions, "1.0.0", 400, 0.80, seed=3, propensity=1 - weight / 100)
    labelled(two_versions, "1.1.0", 800, 0.90, seed=4, propensity=weight / 100)
    [done] = manager.tick()
    assert done.state == "succeeded"
    assert manager.routes.get_route("m", "production").stable == "1.1.0"  # type: ignore[union-attr]


def test_bandit_keeps_a_floor_and_ends_for_the_worse_candidate(two_versions: ModelRegistry
                                                               ) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="bandit",
                   config={"min_samples": 2000}, override="tests go straight to production")
    labelled(two_versions, "1.0.0", 600, 0.90, seed=5, propensity=0.5)
    labelled(two_versions, "1.1.0", 600, 0.70, seed=6, propensity=0.5)
    [first] = manager.tick()
    assert first.state == "progressing"  # not enough samples to end yet
    assert manager.routes.get_route("m", "production").weight == 1.0  # type: ignore[union-attr]
    labelled(two_versions, "1.0.0", 2000, 0.90, seed=7, propensity=0.99)
    labelled(two_versions, "1.1.0", 1500, 0.70, seed=8, propensity=0.01)
    [done] = manager.tick()
    assert done.state == "rolled_back"


def test_blue_green_switches_and_switches_back(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    green = manager.deploy("m", "1.1.0", "production", strategy="blue_green",
                           config={"min_samples": 200},
                           override="tests go straight to production")
    route = manager.routes.get_route("m", "production")
    assert route is not None and route.weight == 0 and route.candidate == "1.1.0"  # loaded
    assert green.state == "progressing"
    [smoked] = manager.tick()  # smoke requests (locally here: no gateway) then the switch
    assert smoked.step_index == 1 and "smoke" in smoked.analyses[-1]["reason"]
    route = manager.routes.get_route("m", "production")
    assert route is not None and route.weight == 100 and route.stable == "1.0.0"  # blue kept
    traffic(two_versions, "1.1.0", 300, error_rate=0.2, seed=9)
    [back] = manager.tick()
    assert back.state == "rolled_back" and "error rate" in back.reason
    route = manager.routes.get_route("m", "production")
    assert route is not None and (route.stable, route.candidate) == ("1.0.0", None)

    again = manager.deploy("m", "1.1.0", "production", strategy="blue_green",
                           config={"min_samples": 200}, override="second try")
    assert again.state == "progressing"
    manager.tick()
    time.sleep(0.01)
    traffic(two_versions, "1.1.0", 300, seed=10)
    [switched] = manager.tick()
    assert switched.state == "succeeded"


def test_ab_test_holds_the_split_until_a_decision(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="ab_test",
                   config={"traffic_split": 0.5, "min_samples": 200, "require_labels": True},
                   override="tests go straight to production")
    assert manager.routes.get_route("m", "production").weight == 50  # type: ignore[union-attr]
    traffic(two_versions, "1.0.0", 100, accuracy=0.9, seed=11)
    traffic(two_versions, "1.1.0", 100, accuracy=0.9, seed=12)
    [waiting] = manager.tick()
    assert waiting.state == "progressing" and waiting.weight == 50
    traffic(two_versions, "1.0.0", 2500, accuracy=0.9, seed=13)
    traffic(two_versions, "1.1.0", 2500, accuracy=0.92, seed=14)
    [decided] = manager.tick()
    assert decided.state == "succeeded", decided.analyses[-1]


def test_only_one_controller_holds_the_lease(two_versions: ModelRegistry) -> None:
    from mlops.deployment.controller import Controller
    from mlops.store.leases import LeaseKind
    from tests.store.test_leases import kill_leader

    first = Controller(two_versions, holder="a", lease_seconds=30)
    second = Controller(two_versions, holder="b", lease_seconds=30)
    expected = LeaseKind.ADVISORY if two_versions.store.dialect == "postgresql" \
        else LeaseKind.ROW
    assert first.lease.kind is expected
    try:
        assert first.acquire() and first.acquire()  # renewal
        assert not second.acquire() and second.run_once() == []
        kill_leader(first.lease)  # the leader died
        assert second.acquire() and not first.acquire()
    finally:
        first.release()
        second.release()


def regression_traffic(registry: ModelRegistry, version: str, n: int, noise: float,
                       seed: int) -> None:
    rng = np.random.default_rng(seed)
    now = time.time()
    records, labels = [], []
    for i in range(n):
        rid = f"reg-{version}-{seed}-{i}"
        actual = float(rng.normal(10, 2))
        pred = actual + float(rng.normal(0, noise))
        records.append(PredictionRecord(rid, now, "m", version, "production", "stable", None, 0,
                                        "{}", str(pred), pred, None, 2.0, 200))
        labels.append(FeedbackRecord(rid, 0, "m", str(actual), actual, now))
    write_log(registry, records, labels)


@pytest.mark.parametrize(("noise", "state"), [(1.0, "succeeded"), (3.0, "rolled_back")])
def test_regression_candidate_is_judged_on_absolute_error(two_versions: ModelRegistry,
                                                          noise: float, state: str) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 200, "require_labels": True, "mae_margin": 0.2},
                   override="tests go straight to production")
    regression_traffic(two_versions, "1.0.0", 2000, 1.0, seed=21)
    regression_traffic(two_versions, "1.1.0", 2000, noise, seed=22)
    [after] = manager.tick()
    assert after.state == state, after.analyses[-1]
    mae = after.analyses[-1]["metrics"]["mae"]
    assert mae["rmse_candidate"] >= mae["candidate"] > 0
    assert "p_inferior_bh" in mae


def test_previous_version_stays_loaded_after_a_switch(two_versions: ModelRegistry) -> None:
    from mlops.serving.routing import RouteTable

    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="full",
                   override="tests go straight to production")
    table = RouteTable(two_versions.context, "production")
    table.refresh(force=True)
    assert table.route("m").stable.version == "1.1.0"
    loaded = {s.version for s in table.loaded()}
    assert loaded == {"1.0.0", "1.1.0"}  # the previous version is kept warm
    warm = table.cached("m", "1.0.0")
    manager.rollback("m", "production", reason="instant")
    assert table.wait_for_change(5.0)  # NOTIFY arrives asynchronously on PostgreSQL
    table.refresh()
    assert table.route("m").stable is warm  # the rollback swapped, nothing was loaded


def routed(registry: ModelRegistry, version: str, n: int, propensity: float, seed: int
           ) -> None:
    now = time.time()
    write_log(registry, [PredictionRecord(f"p-{version}-{seed}-{i}", now, "m", version,
                                          "production", "stable", None, 0, "{}", "1", 1.0,
                                          None, 2.0, 200, propensity) for i in range(n)])


def test_requests_routed_before_the_switch_do_not_fake_a_ratio_mismatch(
        two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 100}, override="tests go straight to production")
    routed(two_versions, "1.0.0", 600, 1.0, seed=1)  # the gateway had not switched yet
    routed(two_versions, "1.0.0", 500, 0.5, seed=2)
    routed(two_versions, "1.1.0", 500, 0.5, seed=3)
    [after] = manager.tick(time.time() + 6)  # the rows have settled (srm_settle_seconds)
    assert after.state != "rolled_back", after.analyses[-1]
    assert after.analyses[-1]["metrics"]["sample_ratio"]["observed"] == [500, 500]


def test_a_real_imbalance_under_the_split_is_a_mismatch(two_versions: ModelRegistry) -> None:
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 100}, override="tests go straight to production")
    routed(two_versions, "1.0.0", 700, 0.5, seed=4)
    routed(two_versions, "1.1.0", 500, 0.5, seed=5)
    [after] = manager.tick(time.time() + 6)
    assert after.state == "rolled_back" and "sample ratio" in after.reason


def test_a_half_written_flush_does_not_fake_a_mismatch(two_versions: ModelRegistry) -> None:
    """A gateway writes one file per version per flush: a look between the two files sees
    only stable's newest rows. The ratio check waits until rows have settled."""
    manager = RolloutManager(two_versions)
    manager.deploy("m", "1.1.0", "production", strategy="canary",
                   config={"steps": [{"weight": 50, "pause": 0}, {"weight": 100}],
                           "min_samples": 100}, override="tests go straight to production")
    routed(two_versions, "1.0.0", 300, 0.5, seed=6)  # the candidate's file is not there yet
    [now] = manager.tick()
    assert now.state == "progressing"
    assert "sample_ratio" not in now.analyses[-1]["metrics"]


def test_a_pass_that_lost_its_lease_writes_nothing(two_versions: ModelRegistry,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass outlives its lease (a long analysis, a stalled process) and a new leader
    takes over before it writes: its verdict is dropped, the new leader's stands."""
    from mlops.deployment.controller import Controller
    from mlops.deployment.tick import RolloutTicker
    from mlops.errors import LeaseLost
    from mlops.store.schema import AnalysisRow
    from tests.store.test_leases import kill_leader

    RolloutManager(two_versions).deploy("m", "1.1.0", "production", strategy="canary",
                                        override="tests go straight to production",
                                        config=STEPS)
    traffic(two_versions, "1.0.0", 3600, seed=1)
    traffic(two_versions, "1.1.0", 400, seed=2)
    leader = Controller(two_versions, holder="a", lease_seconds=30)
    rival = Controller(two_versions, holder="b", lease_seconds=30)
    real_look = RolloutTicker.look

    def outlived(self: RolloutTicker, snap: object, evidence: object) -> object:
        found = real_look(self, snap, evidence)  # type: ignore[arg-type]
        kill_leader(leader.lease)
        assert rival.acquire()
        return found

    try:
        monkeypatch.setattr(RolloutTicker, "look", outlived)
        events = len(two_versions.audit_log(limit=1000))
        with pytest.raises(LeaseLost):
            leader.run_once()
        with two_versions.store.read() as s:
            assert s.query(AnalysisRow).count() == 0
        assert len(two_versions.audit_log(limit=1000)) == events
        status = RolloutManager(two_versions).status("m", "production")
        assert status is not None and status.step_index == 0 and status.weight == 10
        monkeypatch.undo()
        [moved] = rival.run_once()  # the new leader acts on the same evidence
        assert moved.step_index == 1 and moved.analyses[-1]["outcome"] == "Successful"
    finally:
        leader.release()
        rival.release()


def test_ticks_read_only_new_rows_and_match_a_full_recount(two_versions: ModelRegistry
                                                           ) -> None:
    """The running aggregates after several ticks equal a full re-read of the log, and a
    tick with no new files reads none."""
    manager = RolloutManager(two_versions)
    rollout = manager.deploy("m", "1.1.0", "production", strategy="ab_test",
                             config={"traffic_split": 0.5, "min_samples": 100_000,
                                     "require_labels": True},
                             override="tests go straight to production")
    for seed in range(3):
        traffic(two_versions, "1.0.0", 300, accuracy=0.9, seed=10 + seed)
        traffic(two_versions, "1.1.0", 300, accuracy=0.9, seed=20 + seed)
        manager.tick()
    tracked = manager.ticker.tracked[rollout.id]
    files = tracked.traffic.files_read
    assert files == 12  # 3 ticks x (2 prediction files + 2 feedback files)
    manager.tick()
    assert tracked.traffic.files_read == files  # nothing new: nothing read
    now = time.time()
    full = manager.recount("m", "production", now=now)
    running = tracked.evidence
    running.settle(now, 5.0)
    for arm in (0, 1):
        assert running.traffic[arm].requests == full.traffic[arm].requests == 900
        assert running.traffic[arm].errors == full.traffic[arm].errors
        assert running.quality[arm].n == full.quality[arm].n > 0
        assert running.quality[arm].correct == full.quality[arm].correct


def test_a_label_that_arrives_after_its_prediction_was_counted_is_joined(
        two_versions: ModelRegistry) -> None:
    """Predictions are counted at one tick, their labels arrive for a later one: the
    labels join the waiting predictions without re-reading them."""
    manager = RolloutManager(two_versions)
    rollout = manager.deploy("m", "1.1.0", "production", strategy="ab_test",
                             config={"traffic_split": 0.5, "min_samples": 100_000,
                                     "require_labels": True},
                             override="tests go straight to production")
    now = time.time()
    records = [PredictionRecord(f"late-{v}-{i}", now, "m", v, "production", "stable", None, 0,
                                "{}", "1", 1.0, None, 2.0, 200)
               for v in ("1.0.0", "1.1.0") for i in range(200)]
    write_log(two_versions, records)
    manager.tick()
    evidence = manager.ticker.tracked[rollout.id].evidence
    assert evidence.traffic[0].requests == 200 and evidence.quality[0].n == 0
    write_log(two_versions, [], [FeedbackRecord(f"late-{v}-{i}", 0, "m", "1", 1.0, time.time())
                                 for v in ("1.0.0", "1.1.0") for i in range(150)])
    [after] = manager.tick()
    assert evidence.quality[0].n == evidence.quality[1].n == 150
    assert after.analyses[-1]["metrics"]["accuracy"]["stable"] == 1.0
