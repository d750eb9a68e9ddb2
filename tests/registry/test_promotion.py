"""The one gate in front of production: in team mode every path that changes what an
environment serves is refused for a version that has not earned it, and roles decide who
may ask; in single-user mode the same paths work and the unmet rules are recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops.config import Settings
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.routes import RoutingService
from mlops.errors import PermissionDenied, Unauthenticated
from mlops.identity import Principal, Role
from mlops.registry.promotion import PromotionRefused
from mlops.registry.service import ModelRegistry

DEV = Principal("dev", Role.DEVELOPER, "token")
APPROVER = Principal("approver", Role.APPROVER, "token")
VIEWER = Principal("viewer", Role.VIEWER, "token")
ADMIN = Principal("admin", Role.ADMIN, "token")


@pytest.fixture
def team(settings: Settings, skops_file: Path) -> ModelRegistry:
    """Team mode (gated by default): 1.0.0 in production, 1.0.1 registered only."""
    team_settings = settings.model_copy(update={"auth": True})
    admin = ModelRegistry(team_settings, principal=ADMIN)
    admin.register("m", skops_file)
    admin.promote("m", "1.0.0", "production", override="bootstrap of the test store")
    admin.register("m", skops_file)
    return admin


def test_team_mode_defaults_to_the_gated_policy(team: ModelRegistry) -> None:
    assert team.settings.effective_policy == "gated"
    assert team.settings.model_copy(update={"auth": False}).effective_policy == "open"


@pytest.mark.parametrize("path", ["deploy", "stage", "route", "route_candidate",
                                  "rollback_to"])
def test_every_production_path_refuses_an_ungated_version(team: ModelRegistry,
                                                          path: str) -> None:
    approver = team.acting_as(APPROVER)
    attempts = {
        "deploy": lambda: RolloutManager(approver).deploy("m", "1.0.1", "production",
                                                          strategy="full"),
        "stage": lambda: approver.promote("m", "1.0.1", "production"),
        "route": lambda: RoutingService(approver).set_route("m", "production", stable="1.0.1"),
        "route_candidate": lambda: RoutingService(approver).set_route(
            "m", "production", stable="1.0.0", candidate="1.0.1", weight=50),
        "rollback_to": lambda: RolloutManager(approver).rollback("m", "production",
                                                                 to="1.0.1"),
    }
    with pytest.raises(PromotionRefused, match="quality gates") as refused:
        attempts[path]()
    assert "--override" in (refused.value.fix or "")
    assert team.get_version("m", stage="production").version == "1.0.0"
    assert RoutingService(team).get_route("m", "production") is None


def test_developers_cannot_change_production_even_with_an_override(team: ModelRegistry
                                                                   ) -> None:
    dev = team.acting_as(DEV)
    with pytest.raises(PermissionDenied, match="approver"):
        RolloutManager(dev).deploy("m", "1.0.1", "production", strategy="full",
                                   override="I am sure")
    with pytest.raises(PermissionDenied, match="approver"):
        dev.promote("m", "1.0.1", "production", override="I am sure")
    with pytest.raises(PermissionDenied, match="approver"):
        dev.promote("m", "1.0.0", "archived")  # taking production's version away
    with pytest.raises(PermissionDenied, match="approver"):
        RolloutManager(dev).rollback("m", "production")
    # below production a developer deploys freely
    assert RolloutManager(dev).deploy("m", "1.0.1", "staging", strategy="full").state \
        == "succeeded"


def test_viewers_and_anonymous_callers_change_nothing(team: ModelRegistry,
                                                      skops_file: Path) -> None:
    with pytest.raises(PermissionDenied, match="developer"):
        team.acting_as(VIEWER).register("m", skops_file)
    with pytest.raises(PermissionDenied, match="developer"):
        team.acting_as(VIEWER).set_alias("m", "champion", "1.0.0")
    with pytest.raises(Unauthenticated, match="token"):
        team.acting_as(Principal.anonymous()).set_tag("m", "team", "risk")
    with pytest.raises(PermissionDenied, match="admin"):
        team.acting_as(APPROVER).delete_version("m", "1.0.1")


def test_an_approver_override_needs_a_reason_and_is_audited(team: ModelRegistry) -> None:
    approver = team.acting_as(APPROVER)
    with pytest.raises(Exception, match="reason"):
        RolloutManager(approver).deploy("m", "1.0.1", "production", strategy="full",
                                        override="  ")
    rollout = RolloutManager(approver).deploy("m", "1.0.1", "production", strategy="full",
                                              override="hotfix signed off by on-call")
    assert rollout.state == "succeeded"
    event = team.audit_log(action="policy.override")[0]
    assert event.actor == "approver" and event.payload["reason"] == \
        "hotfix signed off by on-call"
    assert "1.0.1 has not passed its quality gates under the configured policy" in \
        event.payload["rules"]
    start = team.audit_log(action="rollout.start")[0]
    assert start.actor == "approver" and start.payload["overridden_rules"]


def test_rolling_back_to_a_version_production_served_needs_no_gate(team: ModelRegistry
                                                                    ) -> None:
    approver = team.acting_as(APPROVER)
    RolloutManager(approver).deploy("m", "1.0.1", "production", strategy="full",
                                    override="emergency")
    assert RolloutManager(approver).rollback("m", "production") == "1.0.0"
    assert RolloutManager(approver).rollback("m", "production", to="1.0.1") == "1.0.1"


def test_single_user_mode_allows_the_path_and_records_what_the_gate_said(
        registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    mv = registry.promote("m", "1.0.0", "production")
    assert mv.stage == "Production" and registry.settings.effective_policy == "open"
    event = registry.audit_log(action="version.stage")[0]
    assert event.actor == "tester"
    assert any("quality gates" in rule for rule in event.payload["policy_advice"])


def test_unknown_environments_are_refused(registry: ModelRegistry, skops_file: Path) -> None:
    registry.register("m", skops_file)
    with pytest.raises(Exception, match="Unknown environment"):
        RoutingService(registry).set_route("m", "prod", stable="1.0.0")


def test_routes_and_rollouts_store_exact_versions_never_aliases(team: ModelRegistry) -> None:
    dev, approver = team.acting_as(DEV), team.acting_as(APPROVER)
    dev.set_alias("m", "champ", "1.0.0")
    spec = RoutingService(approver).set_route("m", "production", stable="champ")
    assert spec.stable == "1.0.0"  # resolved once; moving the alias later changes nothing
    dev.set_alias("m", "champ", "1.0.1")
    assert RoutingService(team).get_route("m", "production").stable == "1.0.0"
    with pytest.raises(PromotionRefused):  # the alias now names an ungated version
        RoutingService(approver).set_route("m", "production", stable="champ")
    rollout = RolloutManager(dev).deploy("m", "latest", "staging", strategy="full")
    assert rollout.candidate == "1.0.1"


def test_deploying_productions_version_to_staging_leaves_production_alone(
        team: ModelRegistry) -> None:
    RolloutManager(team.acting_as(DEV)).deploy("m", "1.0.0", "staging", strategy="full")
    assert team.get_version("m", "1.0.0").stage == "Production"


def test_route_writes_cannot_keep_versions_warm_for_explicit_urls(team: ModelRegistry
                                                                  ) -> None:
    with pytest.raises(Exception, match="set by rollouts"):
        RoutingService(team.acting_as(APPROVER)).set_route(
            "m", "production", stable="1.0.0",
            config={"keep_loaded": ["1.0.1"], "keep_until": 1e12})


def test_version_numbers_are_never_reused_after_a_delete(team: ModelRegistry,
                                                         skops_file: Path) -> None:
    from mlops.errors import DuplicateVersion

    team.delete_version("m", "1.0.1")
    with pytest.raises(DuplicateVersion, match="deleted"):
        team.register("m", skops_file, version="1.0.1")
    assert team.register("m", skops_file).version == "1.0.2"


def test_trusting_an_unsafe_file_needs_an_admin_in_team_mode(team: ModelRegistry,
                                                             tmp_path: Path) -> None:
    import pickle

    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            import os
            return os.system, (f"touch {canary}",)

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(PermissionDenied, match="admin"):
        team.acting_as(APPROVER).register("m", path, trust=True)
    assert not canary.exists()
    assert team.audit_log(action="security.trust_override") == []
