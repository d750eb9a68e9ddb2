"""Business impact: ROI at its edges, the seed's KPI semantics, targets respecting the
direction, KPIs stored and audited, cost per 1,000 predictions from logged rows and the
resources gate's measured memory (or "not measured" with the command that supplies it),
the card's section, and the seed's tracker."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from mlops.ci.pipeline import ModelPipeline
from mlops.ci.policy import Policy
from mlops.errors import GovernanceError, PermissionDenied
from mlops.governance import BusinessImpactTracker, calculate_roi
from mlops.governance.card import REQUIRED_SECTIONS, SectionStatus, build_card
from mlops.governance.impact import (
    cost_report,
    define_kpi,
    impact_report,
    kpi_change,
    kpi_improvement,
    kpi_report,
    record_kpi,
    target_met,
)
from mlops.identity import Principal, Role
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PREDICTION_FILE_SCHEMA, PredictionLog, PredictionRecord
from mlops.store.predlog.layout import PREDICTIONS, part_name, partition_path
from mlops.ui.card import card_html, card_markdown

FEATURES = ["a", "b", "c", "d"]
RESOURCES_ONLY = {"default_tier": "t", "tiers": {"t": {"gates": {"resources": {}},
                                                       "approvals": 0}}}


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 4)), columns=FEATURES)
    x["label"] = (x["a"] + 0.5 * x["b"] > 0).astype(int)
    return x


@pytest.fixture
def churn(registry: ModelRegistry, tmp_path: Path) -> ModelRegistry:
    train = _frame(200, 1)
    path = tmp_path / "m.skops"
    sio.dump(LogisticRegression().fit(train[FEATURES], train["label"]), path)
    registry.register("churn", str(path))
    registry.register("churn", str(path), bump="minor")
    return registry


def _rows(version: str, start: datetime, n: int, *, cpu_ms: float | None,
          status: int = 200, step: timedelta = timedelta(minutes=1)) -> list[PredictionRecord]:
    return [PredictionRecord(uuid.uuid4().hex, (start + i * step).timestamp(), "churn",
                             version, "production", "stable", None, 0, json.dumps({"a": i}),
                             "1", 1.0, None, 4.0, status, None, "ana", cpu_ms)
            for i in range(n)]


def _log(registry: ModelRegistry, records: list[PredictionRecord]) -> None:
    log = PredictionLog(registry.settings.artifacts_uri, spool=False)
    log.log(records)
    log.close()


# ---------------------------------------------------------------------------- ROI
def test_roi_of_an_ordinary_investment() -> None:
    roi = calculate_roi(250_000, 800_000)
    assert roi.roi_percentage == pytest.approx(220.0)
    assert roi.payback_period_years == pytest.approx(0.3125)
    assert roi.net_benefit == 550_000 and roi.pays_back and roi.note == ""


def test_roi_with_no_cost_is_undefined_and_pays_back_at_once() -> None:
    roi = calculate_roi(0, 100_000)
    assert roi.roi_percentage is None and roi.payback_period_years == 0.0
    assert "undefined" in roi.note
    seed = BusinessImpactTracker().calculate_roi(0, 100_000)
    assert seed == {"roi_percentage": math.inf, "payback_period_years": 0.0,
                    "net_benefit": 100_000}
    assert BusinessImpactTracker().calculate_roi(0, 0)["roi_percentage"] is None


def test_roi_with_no_benefits_never_pays_back_instead_of_dividing_by_zero() -> None:
    roi = calculate_roi(50_000, 0)
    assert roi.roi_percentage == pytest.approx(-100.0)
    assert roi.payback_period_years is None and not roi.pays_back
    assert "never paid back" in roi.note
    seed = BusinessImpactTracker().calculate_roi(50_000, 0)
    assert seed["payback_period_years"] == math.inf and seed["net_benefit"] == -50_000


def test_roi_with_negative_benefits_is_a_loss_and_never_pays_back() -> None:
    roi = calculate_roi(50_000, -10_000)
    assert roi.roi_percentage == pytest.approx(-120.0)
    assert roi.payback_period_years is None and "negative" in roi.note


@pytest.mark.parametrize(("cost", "benefits"), [(-1, 10), (float("nan"), 10), (10, "x")])
def test_roi_refuses_nonsense_with_a_fix(cost: float, benefits: float) -> None:
    with pytest.raises(GovernanceError) as err:
        calculate_roi(cost, benefits)
    assert err.value.fix


# ---------------------------------------------------------------------------- KPI math
def test_percentage_kpis_change_in_points_and_amounts_relatively() -> None:
    assert kpi_change("percentage", 70, 87) == pytest.approx(17.0)
    assert kpi_change("currency", 100_000, 150_000) == pytest.approx(50.0)
    assert kpi_change("absolute", 120, 30) == pytest.approx(-75.0)
    assert kpi_change("currency", 0, 150_000) is None  # undefined, not an invented 0
    assert kpi_change("currency", -100, -50) == pytest.approx(50.0)  # a rise is positive
    assert kpi_improvement("absolute", "lower", 120, 30) == pytest.approx(75.0)
    assert kpi_improvement("percentage", "lower", 10, 12) == pytest.approx(-2.0)


def test_target_met_respects_the_direction() -> None:
    assert target_met("higher", 85, 87) and not target_met("higher", 85, 80)
    assert target_met("lower", 30, 15) and target_met("lower", 30, 30)
    assert not target_met("lower", 30, 45)


def test_the_seed_snippet_runs_as_written() -> None:
    tracker = BusinessImpactTracker()
    assert set(tracker.kpi_definitions) == {"prediction_accuracy_improvement",
                                            "response_time_improvement", "cost_reduction",
                                            "revenue_impact"}
    roi = tracker.calculate_roi(250000, 800000)
    assert set(roi) == {"roi_percentage", "payback_period_years", "net_benefit"}
    baseline = {"prediction_accuracy_improvement": 70, "response_time_improvement": 0,
                "cost_reduction": 0, "revenue_impact": 100000}
    current = {"prediction_accuracy_improvement": 87, "response_time_improvement": 75,
               "cost_reduction": 150000, "revenue_impact": 650000}
    impact = tracker.measure_business_impact(baseline, current)
    accuracy = impact["prediction_accuracy_improvement"]
    assert accuracy == {"baseline": 70, "current": 87, "improvement": pytest.approx(17.0),
                        "target_met": True,
                        "description": "Improvement in forecast accuracy vs baseline"}
    assert impact["response_time_improvement"]["target_met"] is True  # 75 points >= 50
    assert impact["cost_reduction"]["improvement"] == 0  # the seed's 0 against a 0 baseline
    assert impact["revenue_impact"]["improvement"] == pytest.approx(550.0)
    assert tracker.measure_business_impact({}, {})["cost_reduction"]["target_met"] is False


# ---------------------------------------------------------------------------- stored KPIs
def test_kpis_are_stored_audited_and_reported_against_their_target(
        churn: ModelRegistry) -> None:
    define_kpi(churn, "churn", "decision_minutes", unit="absolute", baseline=120, target=30,
               direction="lower", description="time to a retention decision")
    define_kpi(churn, "churn", "accuracy", unit="percentage", baseline=70, target=85)
    define_kpi(churn, "churn", "revenue", unit="currency", baseline=0, target=500_000)
    record_kpi(churn, "churn", "decision_minutes", 45, version="1.0.0")
    report = {k.definition.name: k for k in kpi_report(churn, "churn")}
    minutes = report["decision_minutes"]
    assert minutes.change == pytest.approx(-62.5) and minutes.improvement == pytest.approx(62.5)
    assert minutes.target_met is False and minutes.change_unit == "%"
    assert report["accuracy"].latest is None and report["accuracy"].target_met is None
    assert report["accuracy"].missing is not None
    assert report["accuracy"].missing.supply == "mlops kpi record churn accuracy VALUE"

    record_kpi(churn, "churn", "decision_minutes", 15, version="1.1.0")
    record_kpi(churn, "churn", "accuracy", 87)
    record_kpi(churn, "churn", "revenue", 650_000)
    report = {k.definition.name: k for k in kpi_report(churn, "churn")}
    assert report["decision_minutes"].target_met is True
    assert report["decision_minutes"].latest.version == "1.1.0"  # type: ignore[union-attr]
    assert report["accuracy"].change == pytest.approx(17.0)
    assert report["accuracy"].change_unit == "points" and report["accuracy"].target_met
    assert report["revenue"].change is None and report["revenue"].target_met is True

    # a version's report: its own values and the model-wide ones, not another version's
    first = {k.definition.name: k for k in kpi_report(churn, "churn", version="1.0.0")}
    assert first["decision_minutes"].latest.value == 45.0  # type: ignore[union-attr]
    assert first["accuracy"].latest.version is None  # type: ignore[union-attr]

    events = churn.audit_log(subject="model/churn/kpi/decision_minutes")
    assert [e.action for e in events] == ["kpi.record", "kpi.record", "kpi.define"]
    assert events[0].actor == "tester" and events[0].payload["version"] == "1.1.0"
    assert churn.verify_audit().ok


def test_a_viewer_cannot_define_or_record_kpis(churn: ModelRegistry) -> None:
    viewer = churn.acting_as(Principal("vic", Role.VIEWER))
    with pytest.raises(PermissionDenied):
        define_kpi(viewer, "churn", "k", unit="percentage", baseline=1, target=2)
    define_kpi(churn, "churn", "k", unit="percentage", baseline=1, target=2)
    with pytest.raises(PermissionDenied):
        record_kpi(viewer, "churn", "k", 3)
    assert kpi_report(viewer, "churn")[0].latest is None  # reading is for everyone


# ---------------------------------------------------------------------------- cost
def test_no_logged_prediction_is_not_measured_with_the_command_that_supplies_it(
        churn: ModelRegistry) -> None:
    report = cost_report(churn, "churn")
    assert report.versions == []
    assert report.missing[0].what == "predictions"
    assert report.missing[0].supply.startswith("mlops deploy churn")
    one = cost_report(churn, "churn", version="1.1.0").versions[0]
    assert one.n_predictions == 0 and one.cost_per_1000 is None and one.cpu_cost is None
    assert {m.what for m in one.missing} == {"memory", "predictions"}
    memory = next(m for m in one.missing if m.what == "memory")
    assert memory.supply.startswith("mlops ci gates churn 1.1.0 --test-data")
    full = impact_report(churn, "churn")
    assert {m.what for m in full.missing} == {"KPIs", "predictions"}


def test_cpu_cost_comes_from_logged_cpu_time_and_memory_needs_a_measurement(
        churn: ModelRegistry) -> None:
    now = datetime.now(UTC)
    start = now - timedelta(hours=2)
    # 100 rows of 1.0.0 at 2 ms of CPU each; 1.1.0: 40 rows at 5 ms, and 3 failures
    _log(churn, _rows("1.0.0", start, 100, cpu_ms=2.0)
         + _rows("1.1.0", start, 40, cpu_ms=5.0)
         + _rows("1.1.0", start, 3, cpu_ms=None, status=500))
    report = cost_report(churn, "churn")
    assert [v.version for v in report.versions] == ["1.0.0", "1.1.0"]
    price = churn.settings.cost_cpu_hour
    first, second = report.versions
    assert (first.n_predictions, first.n_cpu_measured) == (100, 100)
    assert first.cpu_seconds == pytest.approx(0.2)
    assert first.cpu_cost == pytest.approx(200.0 / 3.6e6 * price)
    assert first.cpu_cost_per_1000 == pytest.approx(2.0 * 1000 / 3.6e6 * price)
    assert second.n_predictions == 40  # failures are not predictions
    assert second.cpu_cost_per_1000 == pytest.approx(5.0 * 1000 / 3.6e6 * price)
    assert first.hours_serving == pytest.approx(99 / 60)
    assert first.memory_mb is None and first.memory_cost is None
    assert first.cost_per_1000 is None  # no total without the memory measurement
    assert [m.what for m in first.missing] == ["memory"]
    assert report.currency == "USD" and "span" in report.hours_basis

    # the period and the version narrow what is read
    later = cost_report(churn, "churn", version="1.0.0", since=start + timedelta(minutes=50),
                        until=start + timedelta(minutes=60))
    assert later.versions[0].n_predictions == 10
    with pytest.raises(GovernanceError):
        cost_report(churn, "churn", since=now, until=now - timedelta(hours=1))


def test_rows_logged_before_cpu_was_measured_are_counted_not_costed(
        churn: ModelRegistry) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    old_schema = pa.schema([f for f in PREDICTION_FILE_SCHEMA
                            if f.name not in {"propensity", "caller", "cpu_ms"}])
    n = 5
    table = pa.table({"request_id": [f"r{i}" for i in range(n)],
                      "ts": pa.array([start + timedelta(minutes=i) for i in range(n)],
                                     pa.timestamp("us", "UTC")),
                      "environment": ["production"] * n, "route": ["stable"] * n,
                      "unit_hash": [None] * n, "row": [0] * n, "inputs": ["{}"] * n,
                      "prediction": ["1"] * n, "prediction_num": [1.0] * n,
                      "proba": [None] * n, "latency_ms": [3.0] * n, "status": [200] * n},
                     schema=old_schema)
    folder = Path(churn.settings.artifacts_uri) / partition_path(
        PREDICTIONS, "churn", "1.0.0", start.date().isoformat())
    folder.mkdir(parents=True)
    pq.write_table(table, folder / part_name(start, "0" * 32))
    report = cost_report(churn, "churn")  # only old files: no cpu_ms column at all
    old = report.versions[0]
    assert (old.n_predictions, old.n_cpu_measured, old.cpu_cost) == (5, 0, None)
    assert old.mean_latency_ms == pytest.approx(3.0)
    assert {m.what for m in old.missing} == {"cpu", "memory"}
    _log(churn, _rows("1.0.0", start, 5, cpu_ms=1.0))  # new rows beside the old file
    mixed = cost_report(churn, "churn").versions[0]
    assert (mixed.n_predictions, mixed.n_cpu_measured) == (10, 5)
    assert mixed.cpu_cost_per_1000 == pytest.approx(1.0 * 1000 / 3.6e6 *
                                                    churn.settings.cost_cpu_hour)


def test_measured_memory_completes_the_cost_and_the_card_section(
        churn: ModelRegistry, tmp_path: Path) -> None:
    card = build_card(churn, "churn", "1.0.0")
    section = card.section("business_impact")
    assert section.status is SectionStatus.MISSING and "business_impact" not in \
        REQUIRED_SECTIONS
    assert "mlops kpi define churn" in section.supply
    assert "Supply it: `mlops kpi define churn" in card_markdown(card)

    test = tmp_path / "test.csv"
    _frame(50, 2).to_csv(test, index=False)
    result = ModelPipeline(churn, policy=Policy(RESOURCES_ONLY)).run_registered(
        "churn", "1.0.0", test, label="label")
    assert result.gates_passed, [(s.name, s.reason) for s in result.steps]
    start = datetime.now(UTC) - timedelta(hours=3)
    _log(churn, _rows("1.0.0", start, 121, cpu_ms=2.0))  # two hours apart, first to last
    define_kpi(churn, "churn", "accuracy", unit="percentage", baseline=70, target=85)
    record_kpi(churn, "churn", "accuracy", 87, version="1.0.0")

    cost = cost_report(churn, "churn", version="1.0.0").versions[0]
    assert cost.memory_mb is not None and cost.memory_mb > 0
    assert cost.memory_source.endswith("(resources gate)")
    assert cost.hours_serving == pytest.approx(2.0)
    settings = churn.settings
    memory_cost = cost.memory_mb / 1024 * 2.0 * settings.cost_gb_hour
    assert cost.memory_cost == pytest.approx(memory_cost)
    assert cost.cost_per_1000 == pytest.approx(
        (121 * 2.0 / 3.6e6 * settings.cost_cpu_hour) / 121 * 1000 + memory_cost / 121 * 1000)
    assert cost.missing == ()

    card = build_card(churn, "churn", "1.0.0")
    section = card.section("business_impact")
    assert section.status is SectionStatus.PRESENT
    assert section.content["cost"]["cost_per_1000"] == pytest.approx(cost.cost_per_1000)
    assert section.content["kpis"][0]["latest"] == 87.0
    assert any("kpi.record" in ref for ref in section.evidence)
    md = card_markdown(card)
    assert "## Business impact and cost — present" in md
    assert "| accuracy | percentage | higher | 70 | 85 | 87 | 1.0.0 | +17 points (better) | yes |" in md
    assert "Cost per 1,000 predictions:" in md
    page = card_html(card)
    assert "Business impact and cost" in page and "<script" not in page.lower()
    # another version's card has the model-wide KPIs but not this version's values
    other = build_card(churn, "churn", "1.1.0").section("business_impact")
    assert other.status is SectionStatus.MISSING


def test_the_bound_tracker_reads_and_records_the_stores_kpis(churn: ModelRegistry) -> None:
    tracker = BusinessImpactTracker("churn", registry=churn)
    tracker.define_kpi("revenue", baseline=100, target=150, measurement="currency")
    assert tracker.record_kpi("revenue", 160, version="1.1.0")["version"] == "1.1.0"
    assert tracker.kpi_report()["revenue"]["change"] == pytest.approx(60.0)
    assert tracker.kpi_report()["revenue"]["target_met"] is True
    assert tracker.cost_report()["versions"] == []
    with pytest.raises(GovernanceError) as err:
        BusinessImpactTracker().kpi_report()
    assert "BusinessImpactTracker(" in (err.value.fix or "")
