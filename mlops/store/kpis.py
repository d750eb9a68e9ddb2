"""Business KPIs of a model and their recorded values: the rows and their audit events.

A KPI (:class:`KpiDefinition`) names what the business measures (``revenue_impact``), its
unit (``percentage``, ``currency`` or ``absolute``), its baseline and target (both levels
of the KPI, e.g. accuracy 70 -> 85, or decision time 120 -> 30 minutes) and which direction
is better. Values (:class:`KpiValue`) are recorded over time, for one version or for the
model as a whole, each with who recorded it. Defining (or redefining) a KPI appends a
``kpi.define`` event and recording a value a ``kpi.record`` event, in the same transaction
as the row; the subject of both is ``model/NAME/kpi/KPI``.

>>> with ctx.store.write() as s:                                            # doctest: +SKIP
...     define_kpi(s, "churn", "revenue_impact", unit=KpiUnit.CURRENCY, baseline=0,
...                target=500_000, actor=ctx.actor)
...     record_kpi_value(s, "churn", "revenue_impact", 650_000, actor=ctx.actor)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import GovernanceError
from mlops.store.audit import append_event
from mlops.store.catalog import audit_subject, model_row, version_row
from mlops.store.schema import KpiRow, KpiValueRow, ModelRow, utcnow

__all__ = [
    "KpiDefinition",
    "KpiDirection",
    "KpiUnit",
    "KpiValue",
    "define_kpi",
    "finite_number",
    "kpi_subject",
    "kpi_values",
    "list_kpis",
    "record_kpi_value",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$")


class KpiUnit(StrEnum):
    """``percentage``: a value in percent (improvement in points); ``currency`` and
    ``absolute``: amounts (improvement as a relative change)."""

    PERCENTAGE = "percentage"
    CURRENCY = "currency"
    ABSOLUTE = "absolute"


class KpiDirection(StrEnum):
    """Which way is better: ``higher`` (revenue) or ``lower`` (decision time, cost)."""

    HIGHER = "higher"
    LOWER = "lower"


@dataclass(frozen=True)
class KpiDefinition:
    """A KPI of a model as defined (and last redefined)."""

    model: str
    name: str
    description: str
    unit: KpiUnit
    direction: KpiDirection
    baseline: float
    target: float
    created_by: str
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "name": self.name, "description": self.description,
                "unit": self.unit.value, "direction": self.direction.value,
                "baseline": self.baseline, "target": self.target,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class KpiValue:
    """One recorded value; ``version`` None: a value of the model as a whole."""

    model: str
    kpi: str
    value: float
    ts: datetime
    version: str | None
    recorded_by: str

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "kpi": self.kpi, "value": self.value,
                "ts": self.ts.isoformat(), "version": self.version,
                "recorded_by": self.recorded_by}


def kpi_subject(model: str, kpi: str) -> str:
    """The audit subject of a KPI (under the model's, so ``audit log model/NAME`` finds it)."""
    return f"{audit_subject(model)}/kpi/{kpi}"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def finite_number(what: str, value: float, model: str | None = None) -> float:
    """``value`` as a float; :class:`GovernanceError` naming ``what`` unless finite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise GovernanceError(f"The {what} {value!r} is not a finite number.",
                              fix=f"Give the {what} as a plain number, e.g. 85 or 120000.",
                              **({} if model is None else {"model": model}))
    return number


def _check_name(kpi: str, model: str) -> None:
    if not _NAME.fullmatch(kpi or ""):
        raise GovernanceError(f"{kpi!r} is not a KPI name.",
                              fix="Start with a letter; use up to 128 letters, digits, '_', "
                                  "'.' or '-', e.g. revenue_impact.", model=model)


def _definition(row: KpiRow, model: str) -> KpiDefinition:
    return KpiDefinition(model, row.name, row.description, KpiUnit(row.unit),
                         KpiDirection(row.direction), row.baseline, row.target,
                         row.created_by, _utc(row.created_at), _utc(row.updated_at))


def _kpi_row(session: Session, model: ModelRow, kpi: str) -> KpiRow:
    row = session.scalar(select(KpiRow).where(KpiRow.model_id == model.id,
                                              KpiRow.name == kpi))
    if row is None:
        raise GovernanceError(f"Model {model.name!r} has no KPI named {kpi!r}.",
                              fix=f"See its KPIs with `mlops kpi list {model.name}`, or "
                                  f"define it: mlops kpi define {model.name} {kpi} "
                                  "--baseline B --target T --unit percentage",
                              model=model.name)
    return row


def define_kpi(session: Session, model: str, kpi: str, *, unit: KpiUnit | str,
               baseline: float, target: float, actor: str,
               direction: KpiDirection | str = KpiDirection.HIGHER,
               description: str = "") -> KpiDefinition:
    """Define ``kpi`` of ``model`` or redefine it (the event keeps what it was before)."""
    _check_name(kpi, model)
    try:
        unit = KpiUnit(str(unit).strip().lower())
    except ValueError:
        raise GovernanceError(f"{unit!r} is not a KPI unit.",
                              fix="Use percentage, currency or absolute.",
                              model=model) from None
    try:
        direction = KpiDirection(str(direction).strip().lower())
    except ValueError:
        raise GovernanceError(f"{direction!r} is not a direction.",
                              fix="Use higher (more is better) or lower (less is better).",
                              model=model) from None
    base, goal = finite_number("baseline", baseline, model), finite_number("target", target, model)
    mrow = model_row(session, model)
    row = session.scalar(select(KpiRow).where(KpiRow.model_id == mrow.id, KpiRow.name == kpi))
    before = None if row is None else _definition(row, model).to_dict()
    now = utcnow()
    if row is None:
        row = KpiRow(model_id=mrow.id, name=kpi, created_by=actor, created_at=now)
        session.add(row)
    row.description, row.unit, row.direction = description, unit.value, direction.value
    row.baseline, row.target, row.updated_at = base, goal, now
    session.flush()
    payload: dict[str, object] = {"unit": unit.value, "direction": direction.value,
                                  "baseline": base, "target": goal,
                                  "description": description}
    if before is not None:
        payload["before"] = {k: before[k] for k in ("unit", "direction", "baseline", "target",
                                                     "description")}
    append_event(session, actor=actor, action="kpi.define", subject=kpi_subject(model, kpi),
                 payload=payload)
    return _definition(row, model)


def record_kpi_value(session: Session, model: str, kpi: str, value: float, *, actor: str,
                     version: str | None = None, ts: datetime | None = None) -> KpiValue:
    """Record a measured value of ``kpi`` (of one version, or of the model when
    ``version`` is None), measured at ``ts`` (default now)."""
    number = finite_number("value", value, model)
    mrow = model_row(session, model)
    krow = _kpi_row(session, mrow, kpi)
    number_of = None if version is None else version_row(session, mrow, version).version
    moment = utcnow() if ts is None else _utc(ts)
    if moment > utcnow():
        raise GovernanceError(f"The time {moment.isoformat()} is in the future.",
                              fix="Record a value when it was measured, or leave the time "
                                  "out (now).", model=model)
    session.add(KpiValueRow(kpi_id=krow.id, value=number, version=number_of, ts=moment,
                            recorded_by=actor))
    session.flush()
    append_event(session, actor=actor, action="kpi.record", subject=kpi_subject(model, kpi),
                 payload={"value": number, "version": number_of, "ts": moment.isoformat(),
                          "unit": krow.unit})
    return KpiValue(model, kpi, number, moment, number_of, actor)


def list_kpis(session: Session, model: str) -> list[KpiDefinition]:
    """The KPIs of ``model``, by name (ModelNotFound for an unknown model)."""
    mrow = model_row(session, model)
    rows = session.scalars(select(KpiRow).where(KpiRow.model_id == mrow.id)
                           .order_by(KpiRow.name)).all()
    return [_definition(r, model) for r in rows]


def kpi_values(session: Session, model: str, kpi: str | None = None, *,
               since: datetime | None = None, until: datetime | None = None
               ) -> list[KpiValue]:
    """Recorded values of ``model`` (of one ``kpi``, or all), measured in ``[since,
    until)`` when given, oldest first."""
    mrow = model_row(session, model)
    query = (select(KpiRow.name, KpiValueRow).join(KpiRow, KpiValueRow.kpi_id == KpiRow.id)
             .where(KpiRow.model_id == mrow.id))
    if kpi is not None:
        query = query.where(KpiRow.id == _kpi_row(session, mrow, kpi).id)
    if since is not None:
        query = query.where(KpiValueRow.ts >= _utc(since))
    if until is not None:
        query = query.where(KpiValueRow.ts < _utc(until))
    rows = session.execute(query.order_by(KpiValueRow.ts, KpiValueRow.id)).all()
    return [KpiValue(model, name, r.value, _utc(r.ts), r.version, r.recorded_by)
            for name, r in rows]
