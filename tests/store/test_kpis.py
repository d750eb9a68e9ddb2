"""KPI rows: defined, redefined and recorded with their audit events in one transaction;
bad input refused with a fix; values read back by KPI and period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlops.errors import GovernanceError, ModelNotFound, VersionNotFound
from mlops.registry.service import ModelRegistry
from mlops.store.audit import list_events, verify_chain
from mlops.store.kpis import (
    KpiDirection,
    KpiUnit,
    define_kpi,
    kpi_subject,
    kpi_values,
    list_kpis,
    record_kpi_value,
)


@pytest.fixture
def churn(registry: ModelRegistry, skops_file: Path) -> ModelRegistry:
    registry.register("churn", str(skops_file))
    return registry


def test_define_redefine_record_and_read_back_each_audited(churn: ModelRegistry) -> None:
    store = churn.store
    with store.write() as s:
        d = define_kpi(s, "churn", "decision_minutes", unit="absolute", baseline=120,
                       target=30, direction="lower", description="time to decide",
                       actor="ana")
    assert (d.unit, d.direction, d.baseline, d.target) == (KpiUnit.ABSOLUTE,
                                                           KpiDirection.LOWER, 120.0, 30.0)
    with store.write() as s:  # redefinition keeps the row and says what it was
        d2 = define_kpi(s, "churn", "decision_minutes", unit=KpiUnit.ABSOLUTE, baseline=110,
                        target=30, direction=KpiDirection.LOWER, actor="bo")
        record_kpi_value(s, "churn", "decision_minutes", 45, actor="bo", version="v1.0.0")
        record_kpi_value(s, "churn", "decision_minutes", 15, actor="bo")
    assert d2.created_by == "ana" and d2.baseline == 110.0
    with store.read() as s:
        assert [k.name for k in list_kpis(s, "churn")] == ["decision_minutes"]
        values = kpi_values(s, "churn", "decision_minutes")
        events = list_events(s, subject=kpi_subject("churn", "decision_minutes"))
        assert verify_chain(s).ok
    assert [(v.value, v.version, v.recorded_by) for v in values] == [
        (45.0, "1.0.0", "bo"), (15.0, None, "bo")]
    assert [e.action for e in events] == ["kpi.record", "kpi.record", "kpi.define",
                                          "kpi.define"]
    assert events[2].payload["before"]["baseline"] == 120.0
    assert events[0].subject == "model/churn/kpi/decision_minutes"


def test_values_are_read_by_kpi_and_period(churn: ModelRegistry) -> None:
    now = datetime.now(UTC)
    with churn.store.write() as s:
        for kpi in ("a", "b"):
            define_kpi(s, "churn", kpi, unit="currency", baseline=0, target=1, actor="t")
        record_kpi_value(s, "churn", "a", 1, actor="t", ts=now - timedelta(days=3))
        record_kpi_value(s, "churn", "a", 2, actor="t", ts=now - timedelta(days=1))
        record_kpi_value(s, "churn", "b", 3, actor="t", ts=now - timedelta(hours=1))
    with churn.store.read() as s:
        assert [v.value for v in kpi_values(s, "churn")] == [1.0, 2.0, 3.0]
        assert [v.value for v in kpi_values(s, "churn", "a")] == [1.0, 2.0]
        assert [v.value for v in kpi_values(s, "churn", since=now - timedelta(days=2),
                                            until=now - timedelta(hours=2))] == [2.0]


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"unit": "dollars"}, "percentage, currency or absolute"),
    ({"direction": "up"}, "higher"),
    ({"baseline": float("nan")}, "plain number"),
    ({"target": "lots"}, "plain number"),
    ({"kpi": "1 bad name"}, "Start with a letter"),
])
def test_bad_definitions_are_refused_with_a_fix(churn: ModelRegistry, kwargs: dict[str, object],
                                                needle: str) -> None:
    args: dict[str, object] = {"kpi": "k", "unit": "percentage", "baseline": 1, "target": 2,
                               **kwargs}
    kpi = str(args.pop("kpi"))
    with churn.store.read() as s:
        before = verify_chain(s).events
    with pytest.raises(GovernanceError) as err, churn.store.write() as s:
        define_kpi(s, "churn", kpi, actor="t", **args)  # type: ignore[arg-type]
    assert needle in (err.value.fix or "")
    with churn.store.read() as s:
        assert list_kpis(s, "churn") == []
        assert verify_chain(s).events == before


def test_bad_records_are_refused_and_leave_no_row(churn: ModelRegistry) -> None:
    with churn.store.write() as s:
        define_kpi(s, "churn", "k", unit="percentage", baseline=1, target=2, actor="t")
    cases: list[tuple[dict[str, object], type[Exception]]] = [
        ({"kpi": "nope"}, GovernanceError), ({"model": "nope"}, ModelNotFound),
        ({"version": "9.9.9"}, VersionNotFound), ({"value": float("inf")}, GovernanceError),
        ({"ts": datetime.now(UTC) + timedelta(days=1)}, GovernanceError)]
    for change, error in cases:
        args: dict[str, object] = {"model": "churn", "kpi": "k", "value": 1.0, **change}
        with pytest.raises(error) as err, churn.store.write() as s:
            record_kpi_value(s, str(args.pop("model")), str(args.pop("kpi")),
                             args.pop("value"), actor="t", **args)  # type: ignore[arg-type]
        assert err.value.fix  # type: ignore[attr-defined]
    with churn.store.read() as s:
        assert kpi_values(s, "churn") == []


def test_deleting_the_model_deletes_its_kpis(churn: ModelRegistry) -> None:
    with churn.store.write() as s:
        define_kpi(s, "churn", "k", unit="percentage", baseline=1, target=2, actor="t")
        record_kpi_value(s, "churn", "k", 3, actor="t")
    churn.delete_model("churn")
    with churn.store.read() as s:
        with pytest.raises(ModelNotFound):
            list_kpis(s, "churn")
        assert verify_chain(s).ok
