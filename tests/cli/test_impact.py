"""``mlops kpi define|record|list`` and ``mlops impact``: tables, --json, and bad input
refused with exit code 2 and a clear message, never a traceback."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from mlops.cli.impact import impact, kpi_app
from mlops.cli.output import console
from mlops.registry.service import ModelRegistry
from mlops.store.predlog import PredictionLog, PredictionRecord

cli_app = importlib.import_module("mlops.cli.app")  # the module (mlops.cli.app is the Typer)
app = typer.Typer()
app.command("impact")(impact)
app.add_typer(kpi_app, name="kpi")


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 200)  # tables whole, whatever the terminal


@pytest.fixture
def churn(skops_file: Path) -> ModelRegistry:
    """A model in the store the CLI opens (MLOPS_HOME of the test)."""
    registry = ModelRegistry()
    registry.register("churn", str(skops_file))
    return registry


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
         ) -> tuple[int, str]:
    """What ``mlops ...`` does: the entry point's error handling around these commands."""
    monkeypatch.setattr(cli_app, "app", app)
    monkeypatch.setattr(sys, "argv", ["mlops", *args])
    with pytest.raises(SystemExit) as done:
        cli_app.main()
    captured = capsys.readouterr()
    return int(done.value.code or 0), captured.out + captured.err


def test_define_record_and_list(churn: ModelRegistry) -> None:
    code, out = invoke("kpi", "define", "churn", "decision_minutes", "--baseline", "120",
                       "--target", "30", "--unit", "absolute", "--direction", "lower",
                       "--description", "minutes to a retention decision")
    assert code == 0, out
    assert "KPI decision_minutes (absolute, lower is better) baseline 120, target 30" in out
    code, out = invoke("kpi", "record", "churn", "decision_minutes", "45", "--version",
                       "1.0.0")
    assert code == 0, out and "decision_minutes = 45 for version 1.0.0" in out
    assert invoke("kpi", "define", "churn", "margin", "--baseline", "-10", "--target", "5",
                  "--unit", "currency")[0] == 0
    code, out = invoke("kpi", "record", "churn", "margin", "--", "-5")  # a negative value
    assert code == 0, out
    code, out = invoke("kpi", "list", "churn", "--json")
    assert code == 0, out
    rows = {r["kpi"]: r for r in json.loads(out)}
    assert rows["decision_minutes"]["improvement"] == pytest.approx(62.5)
    assert rows["decision_minutes"]["target_met"] is False
    assert rows["margin"]["latest"] == -5.0 and rows["margin"]["change"] == pytest.approx(50.0)
    code, out = invoke("kpi", "list", "churn")
    assert code == 0 and "decision_minutes" in out and "not met" in out
    assert churn.verify_audit().ok


def test_impact_shows_kpis_and_cost_per_1000_predictions(churn: ModelRegistry) -> None:
    code, out = invoke("impact", "churn")
    assert code == 0, out
    assert "not measured KPIs: No KPI is defined for churn." in out
    assert "mlops kpi define churn KPI" in out and "mlops deploy churn VERSION" in out
    start = datetime.now(UTC) - timedelta(hours=1)
    log = PredictionLog(churn.settings.artifacts_uri, spool=False)
    log.log([PredictionRecord(uuid.uuid4().hex, (start + timedelta(seconds=i)).timestamp(),
                              "churn", "1.0.0", "production", "stable", None, 0, "{}", "1",
                              1.0, None, 3.0, 200, None, None, 4.0) for i in range(10)])
    log.close()
    invoke("kpi", "define", "churn", "accuracy", "--baseline", "70", "--target", "85",
           "--unit", "percentage")
    invoke("kpi", "record", "churn", "accuracy", "87")
    code, out = invoke("impact", "churn")
    assert code == 0, out
    assert "KPIs of churn" in out and "+17 points" in out and "met" in out
    assert "Cost per 1,000 predictions of churn (USD)" in out
    assert "not measured memory: No CI resources gate measured the memory of churn 1.0.0" \
        in out
    code, out = invoke("impact", "churn", "--version", "latest", "--since",
                       start.date().isoformat(), "--json")
    assert code == 0, out
    doc = json.loads(out)
    cost = doc["cost"]["versions"][0]
    assert (doc["version"], cost["predictions"]) == ("1.0.0", 10)
    assert cost["cpu_seconds"] == pytest.approx(0.04) and cost["cost_per_1000"] is None
    assert doc["kpis"][0]["target_met"] is True


@pytest.mark.parametrize(("args", "needle"), [
    (("kpi", "define", "churn", "k", "--baseline", "1", "--target", "2", "--unit", "dollars"),
     "'dollars' is not one of"),
    (("kpi", "define", "churn", "k", "--baseline", "lots", "--target", "2", "--unit",
      "currency"), "Invalid value for '--baseline'"),
    (("kpi", "record", "churn", "k", "many"), "Invalid value for 'value'"),
    (("impact", "churn", "--since", "yesterday"), "is not an ISO-8601 time"),
])
def test_bad_input_is_a_usage_error(churn: ModelRegistry, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                    needle: str) -> None:
    code, out = main(monkeypatch, capsys, *args)
    assert code == 2 and needle in out and "Traceback" not in out


@pytest.mark.parametrize(("args", "needle", "fix"), [
    (("impact", "nope"), "No registered model named 'nope'", "mlops models list"),
    (("kpi", "list", "nope"), "No registered model named 'nope'", "mlops models list"),
    (("kpi", "record", "churn", "missing", "1"), "has no KPI named 'missing'",
     "mlops kpi define churn missing"),
    (("kpi", "record", "churn", "k", "1", "--version", "9.9.9"), "has no version '9.9.9'",
     "mlops models show churn"),
])
def test_unknown_names_exit_2_with_the_fix(churn: ModelRegistry,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str],
                                           args: tuple[str, ...], needle: str, fix: str
                                           ) -> None:
    assert invoke("kpi", "define", "churn", "k", "--baseline", "1", "--target", "2",
                  "--unit", "percentage")[0] == 0
    code, out = main(monkeypatch, capsys, *args)
    assert code == 2, out
    assert needle in out and "fix:" in out and fix in out and "Traceback" not in out
