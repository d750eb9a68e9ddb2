"""Model cards: generated from recorded evidence; a section without it is listed as
missing with the command that supplies it; --require fails on an incomplete card."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from mlops.ci.approvals import approve
from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.cli.app import app
from mlops.errors import ModelNotFound
from mlops.governance.card import REQUIRED_SECTIONS, SectionStatus, build_card
from mlops.governance.compliance import FRAMEWORKS, compliance_report
from mlops.governance.maturity import assess_maturity
from mlops.governance.memo import one_reading
from mlops.registry.service import ModelRegistry
from mlops.store.audit import VerifyResult
from mlops.ui.card import card_html, card_markdown

FEATURES = ["a", "b", "c", "d"]
HIGH = {"default_tier": "t", "tiers": {"t": {
    "gates": {"security": {}, "data_quality": {}, "metrics": {"accuracy": 0.7},
              "slices": {"slices": ["group"], "min_size": 20},
              "fairness": {"max_demographic_parity_difference": 0.5},
              "explainability": {"n_repeats": 2, "max_rows": 300}},
    "approvals": 1, "sensitive_features": ["group"]}}}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    x["group"] = np.where(np.arange(n) % 2 == 0, "x", "y")
    x["label"] = (x["a"] + 0.5 * x["b"] > 0).astype(int)
    return x


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    train = _frame(600, 1)
    model = LogisticRegression().fit(train[FEATURES], train["label"])
    paths = {"model": tmp_path / "m.skops", "test": tmp_path / "test.csv",
             "train": tmp_path / "train.csv"}
    sio.dump(model, paths["model"])
    _frame(400, 2).to_csv(paths["test"], index=False)
    train.to_csv(paths["train"], index=False)
    return paths


def test_a_bare_version_lists_what_is_missing_and_how_to_supply_it(
        registry: ModelRegistry, files: dict[str, Path]) -> None:
    registry.register("churn", str(files["model"]))
    card = build_card(registry, "churn", "1.0.0")
    details = card.section("model_details")
    assert details.status is SectionStatus.PRESENT
    assert details.content["artifact"]["sha256"] == registry.get_version("churn").artifact_digest
    assert details.content["registered_by"] == "tester"
    assert any("version.register" in ref for ref in details.evidence)
    missing = {s.key: s for s in card.missing()}
    for key in ("intended_use", "training_data", "evaluation", "slices_fairness",
                "explainability", "limitations", "monitoring", "deployments"):
        assert key in missing, key
        assert missing[key].supply.startswith(("mlops ", "register ", "add ")), key
    assert 'mlops models tag churn card.intended_use="' in missing["intended_use"].supply
    assert "mlops ci gates churn 1.0.0 --test-data" in missing["evaluation"].supply
    assert set(card.to_dict()["missing_required"]) <= set(REQUIRED_SECTIONS)


def test_sections_flip_to_present_as_evidence_is_recorded(
        registry: ModelRegistry, files: dict[str, Path]) -> None:
    result = ModelPipeline(registry, policy=Policy(HIGH)).run(
        files["model"], "churn", files["test"], stage="register",
        metadata={"training_data": str(files["train"])})
    assert result.passed, [(s.name, s.reason) for s in result.steps]
    card = build_card(registry, "churn", result.version or "")
    assert card.section("training_data").status is SectionStatus.PRESENT
    assert len(card.section("training_data").content["sha256"]) == 64
    evaluation = card.section("evaluation")
    assert evaluation.status is SectionStatus.PRESENT
    gates = {g["gate"]: g for g in evaluation.content["gates"]}
    assert gates["metrics"]["threshold"] == {"accuracy": 0.7}
    assert gates["metrics"]["actual"]["accuracy"] > 0.7
    fair = card.section("slices_fairness")
    assert fair.status is SectionStatus.PRESENT
    assert {r["slice"] for r in fair.content["slices"]["rows"]} >= {"group=x", "group=y"}
    assert "group" in fair.content["fairness"]["features"]
    importances = card.section("explainability").content["importances"]
    assert {i["feature"] for i in importances} == set(FEATURES)
    approvals = card.section("approvals")
    assert approvals.status is SectionStatus.MISSING and approvals.content["required"] == 1

    # people state intended use and limitations; someone else approves
    registry.set_tag("churn", "card.intended_use", "rank churn risk for retention calls",
                     version="1.0.0")
    registry.set_tag("churn", "card.limitations", "untested on accounts under 30 days",
                     version="1.0.0")
    reviewer = ModelRegistry(registry.settings.model_copy(update={"actor": "reviewer"}))
    approve(reviewer, "churn", "1.0.0", "gates and slices look fine")
    registry.promote("churn", "1.0.0", "staging")
    card = build_card(registry, "churn", "1.0.0")
    assert card.missing(REQUIRED_SECTIONS) == []
    decision = card.section("approvals").content["approvals"][0]
    assert (decision["by"], decision["decision"], decision["comment"], decision["counts"]) \
        == ("reviewer", "approve", "gates and slices look fine", True)
    assert any("tag.set" in ref for ref in card.section("limitations").evidence)
    history = card.section("deployments").content["events"]
    assert any(h["event"] == "stage None -> Staging" for h in history)

    md = card_markdown(card)
    assert "# Model card: churn 1.0.0" in md and "rank churn risk" in md
    assert "| metrics | yes |" in md
    page = card_html(card)
    assert "<svg" in page and "<script" not in page.lower()
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)


def test_cli_require_fails_on_an_incomplete_card_and_renders_each_format(
        registry: ModelRegistry, files: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    registry.register("churn", str(files["model"]))
    for key, value in (("MLOPS_HOME", str(registry.settings.home)),
                       ("MLOPS_DATABASE_URL", registry.settings.database_url),
                       ("MLOPS_ARTIFACTS_URI", registry.settings.artifacts_uri)):
        monkeypatch.setenv(key, value)
    runner = CliRunner()
    failed = runner.invoke(app, ["card", "churn", "1.0.0", "--require"])
    assert failed.exit_code == 1
    assert "missing Intended use" in failed.output and "mlops models tag churn" in failed.output
    ok = runner.invoke(app, ["card", "churn", "latest", "--format", "json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.output)
    assert doc["version"] == "1.0.0" and "evaluation" in doc["missing_required"]
    out = tmp_path / "card.html"
    wrote = runner.invoke(app, ["card", "churn", "1.0.0", "--format", "html", "--out", str(out)])
    assert wrote.exit_code == 0 and out.read_text().startswith("<!doctype html>")
    unknown = runner.invoke(app, ["card", "nope", "1.0.0"])
    assert isinstance(unknown.exception, ModelNotFound)  # main() prints its fix, exit 2


def test_one_reading_builds_each_card_once_and_only_inside_the_block(
        registry: ModelRegistry, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("churn", str(files["model"]))
    replays: list[int] = []
    replay = registry.verify_audit

    def counted() -> VerifyResult:
        replays.append(1)
        return replay()

    monkeypatch.setattr(registry, "verify_audit", counted)
    with one_reading():
        card = build_card(registry, "churn", "1.0.0")
        assert build_card(registry, "churn", "1.0.0") is card
        reports = [compliance_report(registry, "churn", "1.0.0", f) for f in FRAMEWORKS]
        assert {r.generated_at for r in reports} == {card.generated_at}
        assess_maturity(registry, model="churn")
        assert len(replays) == 1  # the audit chain is replayed once for all of them
        with pytest.raises(ModelNotFound):  # errors are not kept: asked again, raised again
            build_card(registry, "nope", "1.0.0")
        with pytest.raises(ModelNotFound):
            build_card(registry, "nope", "1.0.0")
    registry.set_tag("churn", "card.intended_use", "scoring churn", version="1.0.0")
    fresh = build_card(registry, "churn", "1.0.0")
    assert fresh is not card and build_card(registry, "churn", "1.0.0") is not fresh
    assert fresh.section("intended_use").status is SectionStatus.PRESENT
    assert card.section("intended_use").status is SectionStatus.MISSING
    compliance_report(registry, "churn", "1.0.0", "sr11-7")
    assert len(replays) == 2  # outside the block, every report replays afresh
