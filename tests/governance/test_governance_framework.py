"""The seed's ModelGovernanceFramework (seed 000): its method names and return shapes, every
measured field read from the records, and the statements people make recorded as tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.errors import GovernanceError
from mlops.governance.seed_facades import ModelGovernanceFramework
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord

FEATURES = ["a", "b", "c"]


@pytest.fixture
def registered(registry: ModelRegistry, tmp_path: Path) -> ModelRegistry:
    rng = np.random.default_rng(2)
    x = pd.DataFrame(rng.normal(size=(200, 3)), columns=FEATURES)
    y = (x["a"] > 0).astype(int)
    path = tmp_path / "m.skops"
    sio.dump(LogisticRegression().fit(x, y), path)
    registry.register("churn", path, version="1.0.0", training_frame=x,
                      training_data=str(tmp_path / "train.csv"))
    return registry


# the seed's own example of model_metadata: every key its create_model_card reads
SEED_METADATA = {
    "name": "churn", "version": "1.0.0", "creation_date": "2024-01-01",
    "model_type": "classifier", "architecture": "logistic regression",
    "primary_use": "rank customers for retention offers", "primary_users": ["CRM team"],
    "limitations": "not for credit decisions", "training_dataset": "made up",
    "dataset_size": 10**9, "preprocessing_steps": ["made up"], "test_dataset": "made up",
    "evaluation_metrics": ["accuracy"], "performance_results": {"accuracy": 0.99},
    "bias_analysis": "made up", "fairness_metrics": {}, "potential_harms": "spam",
    "known_limitations": "trained on one country", "usage_recommendations": "retrain monthly",
}


def test_policies_are_the_ones_in_force(registered: ModelRegistry) -> None:
    policies = ModelGovernanceFramework(registered).governance_policies
    assert policies["data_retention"] == 365 and policies["audit_trail_required"] is True
    assert policies["model_approval_required"] is False  # single-user mode: the open rule
    assert set(policies) == {"data_retention", "model_approval_required",
                             "audit_trail_required", "bias_monitoring_required",
                             "explainability_required"}


def test_the_card_has_the_seeds_shape_and_invents_nothing(registered: ModelRegistry) -> None:
    framework = ModelGovernanceFramework(registered)
    card = framework.create_model_card(SEED_METADATA)
    assert set(card) >= {"model_details", "intended_use", "training_data", "evaluation_data",
                         "ethical_considerations", "caveats_and_recommendations"}
    assert card["model_details"]["name"] == "churn" and card["model_details"]["version"] \
        == "1.0.0"
    assert card["model_details"]["type"] == "sklearn"  # recorded, not the caller's claim
    # people's statements are recorded (version tags, audited) and read back from there
    assert card["intended_use"]["primary_use"] == "rank customers for retention offers"
    assert card["intended_use"]["primary_users"] == "CRM team"
    tags = registered.get_version("churn", "1.0.0").tags
    assert tags["card.limitations"] == "trained on one country"
    # claimed measurements are not copied: nothing was evaluated, so it is listed missing
    assert card["training_data"]["size"] == 200
    assert card["evaluation_data"]["performance"] is None
    assert "evaluation" in {m["section"] for m in card["missing"]}
    assert any(e.action == "tag.set" for e in registered.audit_log(subject="model/churn"))
    with pytest.raises(GovernanceError, match="name"):
        framework.create_model_card({"model_type": "x"})


def test_lineage_and_usage_in_the_seeds_shape(registered: ModelRegistry,
                                              tmp_path: Path) -> None:
    framework = ModelGovernanceFramework(registered)
    lineage = framework.track_model_lineage("churn")
    assert set(lineage) >= {"data_sources", "training_jobs", "model_versions", "deployments",
                            "performance_history"}
    assert [v["version"] for v in lineage["model_versions"]] == ["1.0.0"]
    assert lineage["data_sources"] and lineage["data_sources"][0]["audit"] is not None
    log = PredictionLog(registered.settings.artifacts_uri, spool=tmp_path / "spool")
    log.start()
    now = datetime.now(UTC)
    log.log([PredictionRecord(f"r{i}", now.timestamp(), "churn", "1.0.0", "production",
                              "stable", None, 0, "{}", "1", 1.0, None, 1.0, 200,
                              caller="token:ana", cpu_ms=0.2) for i in range(4)])
    log.close()
    report = framework.audit_model_usage("churn", (now - timedelta(hours=1),
                                                   now + timedelta(minutes=1)))
    assert set(report) == {"model_id", "audit_period", "prediction_requests", "users",
                           "performance_metrics", "compliance_status", "security_events"}
    assert report["prediction_requests"]["predictions"] == 4
    assert [u["caller"] for u in report["users"]] == ["token:ana"]
    assert framework.audit_model_usage("churn", {"start": "1d"})["prediction_requests"][
        "requests"] == 4
    with pytest.raises(GovernanceError, match="time range"):
        framework.audit_model_usage("churn", "yesterday")
