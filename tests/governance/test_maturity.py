"""Maturity: the seed's levels at its thresholds, scores from what the store shows, the
questionnaire for what it cannot see, and the seed's facade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.approvals import approve
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.errors import GovernanceError, ModelNotFound
from mlops.governance.maturity import LEVELS, assess_maturity, maturity_level
from mlops.governance.seed_facades import MaturityAssessmentReport, MLOpsMaturityAssessment
from mlops.registry.service import ModelRegistry

FEATURES = ["a", "b", "c", "d"]


@pytest.mark.parametrize(("score", "level"), [
    (0.0, 0), (1.99, 0), (2.0, 1), (2.99, 1), (3.0, 2), (3.99, 2), (4.0, 3), (4.5, 3),
    (4.51, 4), (5.0, 4)])
def test_levels_follow_the_seed_thresholds(score: float, level: int) -> None:
    assert maturity_level(score) == level


def test_an_empty_store_is_level_0_and_says_what_to_do(registry: ModelRegistry) -> None:
    report = assess_maturity(registry)
    assert report.maturity_level == 0 and report.level_name == LEVELS[0]
    assert set(report.dimension_scores) == {"data_management", "model_development",
                                            "deployment", "monitoring", "governance"}
    by_name = {c.name: c for c in report.capabilities}
    assert by_name["audit_trail"].score == 5.0  # an empty chain verifies
    assert by_name["feature_store"].source == "not answered"
    assert report.improvement_recommendations  # next steps, weakest first


def test_recorded_practice_raises_the_scores(registry: ModelRegistry, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(600, 4)), columns=FEATURES)
    x["label"] = (x["a"] > 0).astype(int)
    x.to_csv(tmp_path / "train.csv", index=False)
    x.tail(300).to_csv(tmp_path / "test.csv", index=False)
    sio.dump(LogisticRegression().fit(x[FEATURES], x["label"]), tmp_path / "m.skops")
    before = assess_maturity(registry)
    policy = Policy({"default_tier": "low"})
    result = ModelPipeline(registry, policy=policy).run(
        tmp_path / "m.skops", "churn", tmp_path / "test.csv", stage="register",
        metadata={"training_data": str(tmp_path / "train.csv"), "params": {"C": 1.0},
                  "card.intended_use": "demo", "card.limitations": "synthetic"})
    assert result.version is not None
    reviewer = ModelRegistry(registry.settings.model_copy(update={"actor": "reviewer"}))
    approve(reviewer, "churn", result.version, "reviewed")
    registry.promote("churn", result.version, "staging")
    after = assess_maturity(registry, model="churn")
    caps = {c.name: c for c in after.capabilities}
    assert caps["data_versioning"].score == 5.0 and caps["experiment_tracking"].score == 5.0
    assert caps["automated_pipelines"].score == 5.0 and caps["documentation"].score == 5.0
    assert caps["collaboration"].score > 0
    assert after.overall_score > before.overall_score
    assert after.dimension_scores["data_management"] > before.dimension_scores[
        "data_management"]
    with pytest.raises(ModelNotFound):
        assess_maturity(registry, model="nope")


def test_the_questionnaire_scores_only_what_the_platform_cannot_see(
        registry: ModelRegistry, tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text("feature_store: 4\ninfrastructure_as_code: 5\n")
    report = assess_maturity(registry, questionnaire=answers)
    caps = {c.name: c for c in report.capabilities}
    assert (caps["feature_store"].score, caps["feature_store"].source) == (4.0, "questionnaire")
    assert caps["sla_management"].source == "not answered"
    with pytest.raises(GovernanceError, match="scores from what it observes"):
        assess_maturity(registry, questionnaire={"audit_trail": 5})
    with pytest.raises(GovernanceError, match="from 0 to 5"):
        assess_maturity(registry, questionnaire={"feature_store": 7})


def test_the_seed_facade_returns_the_seed_report(registry: ModelRegistry) -> None:
    class Dimension:
        def __init__(self, name: str) -> None:
            self.name = name

    class Framework:
        def __init__(self) -> None:
            self.dimensions = [Dimension(n) for n in (
                "data_management", "model_development", "deployment", "monitoring",
                "governance")]

    report = MLOpsMaturityAssessment(Framework()).conduct_assessment(
        {"registry": registry, "questionnaire": {"feature_store": 3}})
    assert isinstance(report, MaturityAssessmentReport)
    assert report.maturity_level == maturity_level(report.overall_score)
    assert len(report.dimension_scores) == 5 and report.roadmap[0]["steps"]
    assert report.roadmap[0]["score"] <= report.roadmap[-1]["score"]
    with pytest.raises(GovernanceError, match="does not score"):
        MLOpsMaturityAssessment(type("F", (), {"dimensions": ["culture"]})())
