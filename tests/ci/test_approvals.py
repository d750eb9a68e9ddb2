"""Approvals and rejections: each with a comment, bound to the artifact and the gate run read,
voided by a re-run with different results, refused to the registrant and the pipeline runner
(authenticated by real tokens), and listed while they are owed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.approvals import approvals, approve, decisions, pending, reject
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import configured_policy
from mlops.config import Settings
from mlops.errors import CIError, DeploymentError
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.store.credentials import Authenticator
from mlops.store.tokens import parse_duration

FEATURES = ["a", "b", "c", "d"]
POLICY = """version: 1
default_tier: low
models:
  churn:
    gates:
      metrics: {accuracy: 0.6}
    approvals: 1
"""


def _frame(n: int, seed: int, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    y = x["a"] + 0.5 * x["b"] + rng.normal(scale=noise or 1e-9, size=n) > 0
    x["label"] = y.astype(int)
    return x


@pytest.fixture
def team(settings: Settings, tmp_path: Path) -> dict[str, ModelRegistry]:
    """A store under the gated promotion rule, with people authenticated by their own
    tokens (the local admin creates them, as ``mlops tokens create`` does)."""
    policy = tmp_path / "policy.yml"
    policy.write_text(POLICY)
    admin = ModelRegistry(settings.model_copy(update={"promotion_policy": "gated",
                                                      "policy_file": str(policy)}))
    service = TokenService(admin)
    auth = Authenticator(admin.context.settings, admin.context.store)
    people = {}
    for name, role in (("ana", Role.DEVELOPER), ("rui", Role.APPROVER),
                       ("eva", Role.APPROVER), ("ci-bot", Role.APPROVER)):
        _, token = service.create(name, role, parse_duration("1d"))
        people[name] = admin.acting_as(auth.authenticate(token))
    model = LogisticRegression().fit(_frame(800, 1)[FEATURES], _frame(800, 1)["label"])
    sio.dump(model, tmp_path / "m.skops")
    _frame(400, 2).to_csv(tmp_path / "clean.csv", index=False)
    _frame(400, 3, noise=0.8).to_csv(tmp_path / "noisy.csv", index=False)
    ana = people["ana"]
    ana.register("churn", str(tmp_path / "m.skops"))
    return people


def _gates(who: ModelRegistry, data: Path) -> None:
    """The gates under the store's configured policy (the runs promotion reads)."""
    policy = configured_policy(who.context.settings.policy_file)
    result = ModelPipeline(who, policy=policy).run_registered("churn", "1.0.0", data)
    assert result.gates_passed, [(s.name, s.reason) for s in result.steps]


def test_both_decisions_need_a_comment_and_bind_the_run_read(
        team: dict[str, ModelRegistry], tmp_path: Path) -> None:
    rui = team["rui"]
    with pytest.raises(CIError, match="nothing to approve yet"):
        approve(rui, "churn", "1.0.0", "before any gate ran")
    _gates(team["ci-bot"], tmp_path / "clean.csv")
    with pytest.raises(CIError, match="needs a comment"):
        approve(rui, "churn", "1.0.0", "  ")
    assert approve(rui, "churn", "1.0.0", "metrics fine on the clean set") == ["rui"]
    state = decisions(rui, "churn", "1.0.0")
    event = rui.audit_log(subject="model/churn/1.0.0", action="version.approve")[0]
    assert event.actor == "rui"  # the token's holder, not MLOPS_ACTOR
    assert event.payload["sha256"] == rui.get_version("churn", "1.0.0").artifact_digest
    assert event.payload["run"] == state.run and event.payload["results"] == state.results
    assert event.payload["reason"] == "metrics fine on the clean set"
    pend = pending(rui)
    assert pend == []  # one approval was required


def test_a_re_run_with_different_results_voids_the_approval(
        team: dict[str, ModelRegistry], tmp_path: Path) -> None:
    _gates(team["ci-bot"], tmp_path / "clean.csv")
    approve(team["rui"], "churn", "1.0.0", "looks good")
    _gates(team["ci-bot"], tmp_path / "clean.csv")  # same inputs, same results: still counts
    assert approvals(team["rui"], "churn", "1.0.0") == ["rui"]
    _gates(team["ci-bot"], tmp_path / "noisy.csv")  # other data: other measured results
    assert approvals(team["rui"], "churn", "1.0.0") == []
    (decision,) = decisions(team["rui"], "churn", "1.0.0").decisions
    assert not decision.counts and "re-run with different results" in decision.void
    (owed,) = pending(team["rui"])
    assert (owed.version, owed.required, owed.approvers, owed.missing) == ("1.0.0", 1, [], 1)
    assert owed.excluded == ["ana", "ci-bot"]


def test_the_registrant_and_the_pipeline_runner_cannot_decide(
        team: dict[str, ModelRegistry], tmp_path: Path) -> None:
    _gates(team["ci-bot"], tmp_path / "clean.csv")
    with pytest.raises(CIError, match=r"ran the gates of churn 1\.0\.0"):
        approve(team["ci-bot"], "churn", "1.0.0", "my own run")
    with pytest.raises(CIError, match="ran the gates"):
        reject(team["ci-bot"], "churn", "1.0.0", "my own run")
    with pytest.raises(Exception, match="approver"):  # ana is a developer: the role first
        approve(team["ana"], "churn", "1.0.0", "my own model")
    _gates(team["rui"], tmp_path / "clean.csv")  # rui runs the (cached) gates himself
    with pytest.raises(CIError, match="rui ran the gates"):
        approve(team["rui"], "churn", "1.0.0", "now I ran them")
    assert approve(team["eva"], "churn", "1.0.0", "independent review") == ["eva"]


def test_a_rejection_blocks_production_until_new_results_or_a_change_of_mind(
        team: dict[str, ModelRegistry], tmp_path: Path) -> None:
    _gates(team["ci-bot"], tmp_path / "clean.csv")
    approve(team["rui"], "churn", "1.0.0", "fine")
    state = reject(team["eva"], "churn", "1.0.0", "slice for new accounts not checked")
    assert [d.actor for d in state.rejections] == ["eva"] and state.approvers == ["rui"]
    team["rui"].promote("churn", "1.0.0", "staging", reason="stage it")
    with pytest.raises(DeploymentError, match="rejected by eva"):
        team["rui"].promote("churn", "1.0.0", "production", reason="ship it")
    (owed,) = pending(team["rui"])
    assert owed.rejected_by == ["eva"]
    approve(team["eva"], "churn", "1.0.0", "checked the slice now")
    assert sorted(approvals(team["rui"], "churn", "1.0.0")) == ["eva", "rui"]
    assert pending(team["rui"]) == []
    with pytest.raises(CIError, match="already approved"):
        approve(team["eva"], "churn", "1.0.0", "again")
