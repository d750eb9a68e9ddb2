"""Compliance reports: every item met (with evidence), missing (with what supplies it) or
not applicable (with the reason), flipping from missing to met as evidence is recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sqlalchemy import create_engine, text

from mlops.ci.approvals import approve
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.errors import GovernanceError
from mlops.governance.compliance import ItemStatus, compliance_report
from mlops.monitoring.alerts import Observation
from mlops.monitoring.snapshots import record_snapshots
from mlops.registry.service import ModelRegistry
from mlops.ui.compliance import compliance_html, compliance_markdown

FEATURES = ["a", "b", "c", "d"]
POLICY = {"default_tier": "t", "tiers": {"t": {
    "gates": {"security": {}, "data_quality": {}, "metrics": {"accuracy": 0.7},
              "slices": {"slices": ["a"], "min_size": 20, "min_metric": 0.5}},
    "approvals": 1}}}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    x["label"] = (x["a"] + 0.5 * x["b"] > 0).astype(int)
    return x


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = _frame(600, 1)
    paths = {"model": tmp_path / "m.skops", "test": tmp_path / "test.csv",
             "train": tmp_path / "train.csv"}
    sio.dump(LogisticRegression().fit(train[FEATURES], train["label"]), paths["model"])
    _frame(400, 2).to_csv(paths["test"], index=False)
    train.to_csv(paths["train"], index=False)
    return paths


def _status(registry: ModelRegistry, framework: str) -> dict[str, ItemStatus]:
    return {i.id: i.status for i in compliance_report(registry, "churn", "1.0.0",
                                                      framework).items}


def test_items_flip_from_missing_to_met_as_evidence_appears(
        registry: ModelRegistry, files: dict[str, Path]) -> None:
    registry.register("churn", str(files["model"]))
    sr = _status(registry, "sr11-7")
    assert sr == {"inventory": ItemStatus.MISSING, "development": ItemStatus.MISSING,
                  "independent_validation": ItemStatus.MISSING,
                  "ongoing_monitoring": ItemStatus.NOT_APPLICABLE,
                  "outcomes_analysis": ItemStatus.NOT_APPLICABLE,
                  "change_control": ItemStatus.MET}
    eu = _status(registry, "eu-ai-act")
    assert eu["annex_iv_7"] is eu["annex_iv_8"] is ItemStatus.NOT_APPLICABLE
    assert eu["art_12"] is ItemStatus.MET and eu["art_14"] is ItemStatus.MISSING
    missing = {i.id: i for i in compliance_report(registry, "churn", "1.0.0",
                                                  "sr11-7").items}
    assert 'mlops models tag churn card.intended_use="' in missing["inventory"].supply

    # a second version, now with its evidence: data, run, gates, purpose, an approval,
    # staging, and monitoring with labelled outcomes
    result = ModelPipeline(registry, policy=Policy(POLICY)).run(
        files["model"], "churn", files["test"], stage="register",
        metadata={"training_data": str(files["train"]), "params": {"C": 1.0},
                  "card.intended_use": "rank churn risk"})
    assert result.passed and result.version is not None
    v2 = result.version
    reviewer = ModelRegistry(registry.settings.model_copy(update={"actor": "reviewer"}))
    approve(reviewer, "churn", v2, "independent review of the gates")
    registry.promote("churn", v2, "staging")
    now = datetime.now(UTC)
    record_snapshots(registry, "churn", "", "staging", now - timedelta(hours=1), now,
                     {"accuracy": Observation(0.91, 300), "label_coverage": Observation(0.6, 500),
                      "health": Observation(95.0, 500)})
    report = compliance_report(registry, "churn", v2, "sr11-7")
    assert {i.id: i.status for i in report.items} == {k: ItemStatus.MET for k in sr}
    validation = next(i for i in report.items if i.id == "independent_validation")
    assert "reviewer (independent review of the gates)" in validation.detail
    assert any("version.approve" in e for e in validation.evidence)
    eu = {i.id: i.status for i in compliance_report(registry, "churn", v2,
                                                    "eu-ai-act").items}
    assert eu["art_14"] is eu["art_15"] is eu["art_72"] is eu["annex_iv_2"] is ItemStatus.MET
    assert eu["art_10"] is ItemStatus.MET
    assert eu["annex_iv_3"] is ItemStatus.MISSING  # no limitations stated yet
    md = compliance_markdown(report)
    assert md.startswith("# SR 11-7") and "6 met, 0 missing" in md
    page = compliance_html(report)
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page


def test_a_broken_audit_chain_fails_change_control_and_record_keeping(
        registry: ModelRegistry, files: dict[str, Path]) -> None:
    registry.register("churn", str(files["model"]))
    registry.set_tag("churn", "team", "risk", version="1.0.0")
    engine = create_engine(registry.settings.database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1"))
    engine.dispose()
    assert _status(registry, "sr11-7")["change_control"] is ItemStatus.MISSING
    assert _status(registry, "eu-ai-act")["art_12"] is ItemStatus.MISSING


def test_an_unknown_framework_is_refused(registry: ModelRegistry,
                                         files: dict[str, Path]) -> None:
    registry.register("churn", str(files["model"]))
    with pytest.raises(GovernanceError, match="sr11-7, eu-ai-act"):
        compliance_report(registry, "churn", "1.0.0", "iso-42001")
