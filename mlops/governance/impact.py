"""Business impact and cost of a model, from what was recorded and measured.

KPIs (:mod:`mlops.store.kpis`): a KPI has a baseline and a target (levels of the KPI) and a
direction; values are recorded over time. :func:`kpi_report` gives, per KPI, the latest
value, its change against the baseline in the seed's semantics (``percentage`` KPIs in
points, ``currency`` and ``absolute`` KPIs as a relative change in percent, *undefined*
when the baseline is 0), the improvement (the change signed so that positive is better)
and whether the target is met, respecting the direction.

ROI (:func:`calculate_roi`) guards both divisions of the seed's formula: with no
implementation cost the ROI is undefined (``None``) and the payback immediate (0 years);
with no or negative annual benefits the cost is never paid back (``None``). A negative
cost is refused.

Cost per 1,000 predictions (:func:`cost_report`), per version and from measured numbers
only:

- CPU: the prediction log's ``cpu_ms`` (the predicting thread's CPU time, each row's share
  of its batch) summed over the period, at ``cost_cpu_hour`` per CPU-hour; rows logged
  before the gateway measured CPU (``cpu_ms`` NULL) are counted but not costed, and the
  CPU cost per 1,000 is averaged over the rows that carry a measurement.
- Memory: the version's memory as the CI resources gate measured it (loading and
  predicting in a fresh interpreter, see :mod:`mlops.ci.gates.resources`), for the hours
  the version was serving, at ``cost_gb_hour`` per GB-hour (MiB / 1024). The hours serving
  are the span of the version's logged predictions in the period (first to last): a lower
  bound of the time a gateway held it loaded, from the same records as the count, per
  gateway replica (the log does not say how many replicas held it).

Whatever was not measured is a :class:`NotMeasured` with the command that supplies it;
no number is estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mlops.ci.runs import RunStore
from mlops.errors import ArtifactError, GovernanceError
from mlops.governance.memo import memoized
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.store.kpis import (
    KpiDefinition,
    KpiDirection,
    KpiUnit,
    KpiValue,
    finite_number,
)
from mlops.store.kpis import define_kpi as store_define
from mlops.store.kpis import kpi_values as store_values
from mlops.store.kpis import list_kpis as store_list
from mlops.store.kpis import record_kpi_value as store_record
from mlops.store.predlog import PREDICTIONS, LogReader, list_files, open_store, prediction_scan
from mlops.store.predlog.layout import day_name

__all__ = [
    "HOURS_BASIS",
    "CostReport",
    "ImpactReport",
    "KpiDefinition",
    "KpiDirection",
    "KpiStatus",
    "KpiUnit",
    "KpiValue",
    "NotMeasured",
    "RoiResult",
    "VersionCost",
    "calculate_roi",
    "cost_report",
    "define_kpi",
    "impact_report",
    "kpi_change",
    "kpi_history",
    "kpi_improvement",
    "kpi_report",
    "list_kpis",
    "record_kpi",
    "target_met",
]

#: how the hours a version was serving are measured (shown in every cost report)
HOURS_BASIS = ("span of the version's logged predictions in the period (first to last "
               "logged row): a lower bound of the time a gateway held it loaded, per replica")
_MS_PER_HOUR = 3_600_000.0
_MIB_PER_GB = 1024.0


# ---------------------------------------------------------------------------- ROI
@dataclass(frozen=True)
class RoiResult:
    """Return on investment over the first year.

    ``roi_percentage`` is ``(benefits - cost) / cost * 100``, ``None`` when the cost is 0
    (nothing was invested: a return on it is undefined). ``payback_period_years`` is
    ``cost / benefits``: 0 when there is no cost, ``None`` when benefits are 0 or negative
    (the cost is never paid back). ``note`` says which edge applied.
    """

    implementation_cost: float
    annual_benefits: float
    net_benefit: float
    roi_percentage: float | None
    payback_period_years: float | None
    note: str = ""

    @property
    def pays_back(self) -> bool:
        return self.payback_period_years is not None

    def to_dict(self) -> dict[str, Any]:
        return {"implementation_cost": self.implementation_cost,
                "annual_benefits": self.annual_benefits, "net_benefit": self.net_benefit,
                "roi_percentage": self.roi_percentage,
                "payback_period_years": self.payback_period_years,
                "pays_back": self.pays_back, "note": self.note}


def calculate_roi(implementation_cost: float, annual_benefits: float) -> RoiResult:
    """ROI and payback of ``implementation_cost`` against ``annual_benefits`` (see
    :class:`RoiResult` for the edges); a negative cost raises :class:`GovernanceError`."""
    cost = finite_number("implementation cost", implementation_cost)
    benefits = finite_number("annual benefits", annual_benefits)
    if cost < 0:
        raise GovernanceError(
            f"An implementation cost of {cost:g} is negative.",
            fix="Give what the model cost to build and run as a positive amount; count "
                "savings in the annual benefits instead.")
    net = benefits - cost
    if cost == 0:
        note = ("no implementation cost: the ROI is undefined (nothing was invested) and "
                "there is nothing to pay back")
        return RoiResult(cost, benefits, net, None, 0.0, note)
    roi = net / cost * 100.0
    if benefits <= 0:
        note = ("no annual benefits: the cost is never paid back" if benefits == 0 else
                "negative annual benefits (a yearly loss): the cost is never paid back")
        return RoiResult(cost, benefits, net, roi, None, note)
    return RoiResult(cost, benefits, net, roi, cost / benefits)


# ---------------------------------------------------------------------------- KPI math
def kpi_change(unit: KpiUnit | str, baseline: float, current: float) -> float | None:
    """The seed's change of a KPI: points for ``percentage`` (``current - baseline``), a
    relative change in percent for ``currency`` and ``absolute`` (``None``, undefined, when
    the baseline is 0; divided by the baseline's magnitude, so that a rise is positive
    whatever the baseline's sign)."""
    if KpiUnit(unit) is KpiUnit.PERCENTAGE:
        change = current - baseline
    elif baseline == 0:
        return None
    else:
        change = (current - baseline) / abs(baseline) * 100.0
    return change if math.isfinite(change) else None  # beyond a float: undefined


def kpi_improvement(unit: KpiUnit | str, direction: KpiDirection | str, baseline: float,
                    current: float) -> float | None:
    """:func:`kpi_change` signed so that positive means better (a fall of a
    lower-is-better KPI is an improvement)."""
    change = kpi_change(unit, baseline, current)
    if change is None:
        return None
    return change if KpiDirection(direction) is KpiDirection.HIGHER else -change


def target_met(direction: KpiDirection | str, target: float, value: float) -> bool:
    """Whether ``value`` reaches ``target``: at or above it when higher is better, at or
    below it when lower is better."""
    return value >= target if KpiDirection(direction) is KpiDirection.HIGHER \
        else value <= target


# ---------------------------------------------------------------------------- KPIs
@dataclass(frozen=True)
class NotMeasured:
    """Something a report could not state, why, and the command that supplies it."""

    what: str
    reason: str
    supply: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "reason": self.reason, "supply": self.supply}


@dataclass(frozen=True)
class KpiStatus:
    """A KPI with its latest value (``None``: none recorded), the change and improvement
    against the baseline (``None``: no value, or undefined against a baseline of 0), and
    whether the target is met (``None``: no value)."""

    definition: KpiDefinition
    latest: KpiValue | None
    n_values: int
    change: float | None
    improvement: float | None
    target_met: bool | None
    missing: NotMeasured | None = None

    @property
    def change_unit(self) -> str:
        """``points`` (percentage KPIs) or ``%`` (relative change)."""
        return "points" if self.definition.unit is KpiUnit.PERCENTAGE else "%"

    def to_dict(self) -> dict[str, Any]:
        d = self.definition
        return {"kpi": d.name, "description": d.description, "unit": d.unit.value,
                "direction": d.direction.value, "baseline": d.baseline, "target": d.target,
                "latest": None if self.latest is None else self.latest.value,
                "latest_at": None if self.latest is None else self.latest.ts.isoformat(),
                "latest_version": None if self.latest is None else self.latest.version,
                "recorded_by": None if self.latest is None else self.latest.recorded_by,
                "values": self.n_values, "change": self.change,
                "change_unit": self.change_unit, "improvement": self.improvement,
                "target_met": self.target_met,
                "missing": None if self.missing is None else self.missing.to_dict()}


def define_kpi(registry: ModelRegistry, model: str, kpi: str, *, unit: KpiUnit | str,
               baseline: float, target: float,
               direction: KpiDirection | str = KpiDirection.HIGHER,
               description: str = "") -> KpiDefinition:
    """Define (or redefine) a KPI of ``model``; audited as ``kpi.define``."""
    registry.require(Role.DEVELOPER, f"define KPIs of {model}")
    with registry.store.write() as s:
        return store_define(s, model, kpi, unit=unit, baseline=baseline, target=target,
                            direction=direction, description=description,
                            actor=registry.actor)


def record_kpi(registry: ModelRegistry, model: str, kpi: str, value: float, *,
               version: str | None = None, at: datetime | None = None) -> KpiValue:
    """Record a measured value of a KPI (of ``version``, a number, alias or stage, or of
    the model as a whole); audited as ``kpi.record``."""
    registry.require(Role.DEVELOPER, f"record KPIs of {model}")
    number = None if version is None else registry.get_version(model, version).version
    with registry.store.write() as s:
        return store_record(s, model, kpi, value, version=number, ts=at,
                            actor=registry.actor)


def list_kpis(registry: ModelRegistry, model: str) -> list[KpiDefinition]:
    """The KPIs defined for ``model``, by name."""
    with registry.store.read() as s:
        return store_list(s, model)


def kpi_history(registry: ModelRegistry, model: str, kpi: str | None = None, *,
                since: datetime | None = None, until: datetime | None = None
                ) -> list[KpiValue]:
    """Recorded values (of one KPI or all), oldest first."""
    with registry.store.read() as s:
        return store_values(s, model, kpi, since=since, until=until)


def kpi_report(registry: ModelRegistry, model: str, *, version: str | None = None,
               since: datetime | None = None, until: datetime | None = None
               ) -> list[KpiStatus]:
    """Every KPI of ``model`` with its latest value in ``[since, until)``; with
    ``version``, the latest value recorded for that version or for the model as a whole."""
    number = None if version is None else registry.get_version(model, version).version
    with registry.store.read() as s:
        definitions = store_list(s, model)
        values = store_values(s, model, since=since, until=until)
    out = []
    for d in definitions:
        mine = [v for v in values if v.kpi == d.name
                and (number is None or v.version in (None, number))]
        latest = mine[-1] if mine else None
        if latest is None:
            scope = f" --version {number}" if number else ""
            out.append(KpiStatus(d, None, 0, None, None, None, NotMeasured(
                f"KPI {d.name}", "No value was recorded" + (" in the period" if since or until
                                                            else "") + ".",
                f"mlops kpi record {model} {d.name} VALUE{scope}")))
            continue
        out.append(KpiStatus(d, latest, len(mine), kpi_change(d.unit, d.baseline, latest.value),
                             kpi_improvement(d.unit, d.direction, d.baseline, latest.value),
                             target_met(d.direction, d.target, latest.value)))
    return out


# ---------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class VersionCost:
    """What one version cost in the period, from measured numbers; ``None`` where nothing
    was measured (see ``missing``). Amounts are in the report's currency."""

    version: str
    n_predictions: int            # successful rows logged in the period
    n_cpu_measured: int           # of them, the rows carrying cpu_ms
    cpu_seconds: float | None     # their CPU time
    cpu_cost: float | None
    memory_mb: float | None       # as the resources gate measured it (MiB)
    memory_source: str            # e.g. "ci run #3 (resources gate)"
    first_at: datetime | None     # first and last logged prediction in the period
    last_at: datetime | None
    hours_serving: float | None   # last - first, in hours
    memory_cost: float | None
    cpu_cost_per_1000: float | None
    memory_cost_per_1000: float | None
    cost_per_1000: float | None   # both parts, only when both were measured
    mean_latency_ms: float | None
    missing: tuple[NotMeasured, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {"version": self.version, "predictions": self.n_predictions,
                "cpu_measured_rows": self.n_cpu_measured, "cpu_seconds": self.cpu_seconds,
                "cpu_cost": self.cpu_cost, "memory_mb": self.memory_mb,
                "memory_source": self.memory_source or None, "first_at": iso(self.first_at),
                "last_at": iso(self.last_at), "hours_serving": self.hours_serving,
                "memory_cost": self.memory_cost, "cpu_cost_per_1000": self.cpu_cost_per_1000,
                "memory_cost_per_1000": self.memory_cost_per_1000,
                "cost_per_1000": self.cost_per_1000, "mean_latency_ms": self.mean_latency_ms,
                "not_measured": [m.to_dict() for m in self.missing]}


@dataclass(frozen=True)
class CostReport:
    """Cost per 1,000 predictions per version in ``[since, until)``, at the configured
    prices."""

    model: str
    since: datetime | None
    until: datetime
    currency: str
    cpu_hour_price: float
    gb_hour_price: float
    versions: list[VersionCost]
    missing: tuple[NotMeasured, ...] = ()
    hours_basis: str = HOURS_BASIS

    def version(self, number: str) -> VersionCost | None:
        return next((v for v in self.versions if v.version == number), None)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model,
                "since": None if self.since is None else self.since.isoformat(),
                "until": self.until.isoformat(), "currency": self.currency,
                "prices": {"cpu_hour": self.cpu_hour_price, "gb_hour": self.gb_hour_price},
                "hours_basis": self.hours_basis,
                "versions": [v.to_dict() for v in self.versions],
                "not_measured": [m.to_dict() for m in self.missing]}


@dataclass(frozen=True)
class _Logged:
    n: int
    n_cpu: int
    cpu_ms: float | None
    first: datetime | None
    last: datetime | None
    latency_ms: float | None


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _logged(registry: ModelRegistry, model: str, version: str | None,
            since: datetime | None, until: datetime) -> dict[str, _Logged]:
    """Per version: successful rows, rows with cpu_ms, their sum, first/last time and mean
    latency, from the prediction log in ``[since, until)``."""
    try:
        store = open_store(registry.settings.artifacts_uri)
        files = list_files(store, PREDICTIONS, model,
                           versions=None if version is None else [version],
                           first_day=None if since is None else day_name(since),
                           last_day=day_name(until - timedelta(microseconds=1)))
        if not files:
            return {}
        scan = prediction_scan(files, start=since, end=until,
                               versions=None if version is None else [version],
                               union_by_name=True)
        with LogReader(store) as reader:
            # files written before the gateway measured CPU have no cpu_ms column at all
            columns = reader.arrow(f"SELECT * FROM ({scan.sql}) LIMIT 0", scan.params
                                   ).column_names
            cpu = "cpu_ms" if "cpu_ms" in columns else "NULL::DOUBLE"
            ok = "FILTER (WHERE status = 200)"
            rows = reader.fetchall(
                f"SELECT version, count(*) {ok}, count({cpu}) {ok}, sum({cpu}) {ok}, "
                f"min(ts) {ok}, max(ts) {ok}, avg(latency_ms) {ok} "
                f"FROM ({scan.sql}) GROUP BY version ORDER BY version", scan.params)
    except ArtifactError as exc:
        raise GovernanceError(f"Cannot read the prediction log of {model!r}: {exc.message}",
                              fix=exc.fix, model=model) from exc
    return {str(v): _Logged(int(n), int(n_cpu), None if s is None else float(s),
                            None if lo is None else _utc(lo), None if hi is None else _utc(hi),
                            None if lat is None else float(lat))
            for v, n, n_cpu, s, lo, hi, lat in rows}


def _memory_mb(registry: ModelRegistry, model: str, version: str) -> tuple[float, int] | None:
    """The newest memory measurement of the version by the CI resources gate, and its run."""
    for run in RunStore(registry).runs(model, version, limit=50):
        for step in (run.get("report") or {}).get("steps", []):
            gate = step.get("gate")
            if not isinstance(gate, dict) or gate.get("gate") != "resources":
                continue
            value = (gate.get("actual") or {}).get("memory_mb")
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and math.isfinite(value):
                return float(value), int(run["run"])
    return None


def _serve_supply(model: str, version: str) -> str:
    return (f"mlops deploy {model} {version} --env staging, then send it requests through "
            f"the gateway (mlops serve; POST /v2/models/{model}/infer)")


def _version_cost(registry: ModelRegistry, model: str, version: str, logged: _Logged | None
                  ) -> VersionCost:
    settings = registry.settings
    missing: list[NotMeasured] = []
    memory = _memory_mb(registry, model, version)
    if memory is None:
        missing.append(NotMeasured(
            "memory", f"No CI resources gate measured the memory of {model} {version}.",
            f"mlops ci gates {model} {version} --test-data TEST_FILE (a policy tier with the "
            "resources gate: medium or high)"))
    if logged is None or logged.n == 0:
        missing.append(NotMeasured("predictions", f"No successful prediction of {model} "
                                   f"{version} was logged in the period.",
                                   _serve_supply(model, version)))
        return VersionCost(version, 0, 0, None, None, memory[0] if memory else None,
                           f"ci run #{memory[1]} (resources gate)" if memory else "",
                           None, None, None, None, None, None, None, None, tuple(missing))
    cpu_seconds = cpu_cost = cpu_1000 = None
    if logged.n_cpu and logged.cpu_ms is not None:
        cpu_seconds = logged.cpu_ms / 1000.0
        cpu_cost = logged.cpu_ms / _MS_PER_HOUR * settings.cost_cpu_hour
        cpu_1000 = cpu_cost / logged.n_cpu * 1000.0
    else:
        missing.append(NotMeasured(
            "cpu", f"The {logged.n} logged predictions of {model} {version} carry no CPU "
                   "time (they were logged before the gateway measured it).",
            "serve the version with this release's gateway (mlops serve): every prediction "
            "it logs carries cpu_ms"))
    hours = None
    if logged.first is not None and logged.last is not None and logged.last > logged.first:
        hours = (logged.last - logged.first).total_seconds() / 3600.0
    elif memory is not None:
        missing.append(NotMeasured(
            "hours serving", f"The logged predictions of {model} {version} span no time "
                             "(one request or one batch), so the time it held memory is "
                             "unknown.", "serve more traffic over time, then ask again"))
    mem_cost = mem_1000 = None
    if memory is not None and hours is not None:
        mem_cost = memory[0] / _MIB_PER_GB * hours * settings.cost_gb_hour
        mem_1000 = mem_cost / logged.n * 1000.0
    total = None if cpu_1000 is None or mem_1000 is None else cpu_1000 + mem_1000
    return VersionCost(version, logged.n, logged.n_cpu, cpu_seconds, cpu_cost,
                       memory[0] if memory else None,
                       f"ci run #{memory[1]} (resources gate)" if memory else "",
                       logged.first, logged.last, hours, mem_cost, cpu_1000, mem_1000, total,
                       logged.latency_ms, tuple(missing))


@memoized
def cost_report(registry: ModelRegistry, model: str, *, version: str | None = None,
                since: datetime | None = None, until: datetime | None = None) -> CostReport:
    """Cost per 1,000 predictions of each version of ``model`` that logged predictions in
    ``[since, until)`` (default: everything up to now), or of ``version`` alone."""
    registry.get_model(model)  # ModelNotFound with its fix
    number = None if version is None else registry.get_version(model, version).version
    end = datetime.now(UTC) if until is None else _utc(until)
    start = None if since is None else _utc(since)
    if start is not None and start >= end:
        raise GovernanceError(f"The period starts ({start.isoformat()}) at or after it ends "
                              f"({end.isoformat()}).", fix="Give --since before --until.",
                              model=model)
    logged = _logged(registry, model, number, start, end)
    wanted = [number] if number is not None else sorted(logged)
    versions = [_version_cost(registry, model, v, logged.get(v)) for v in wanted]
    missing: tuple[NotMeasured, ...] = ()
    if not versions:
        missing = (NotMeasured("predictions", f"No prediction of {model} was logged in the "
                               "period.", _serve_supply(model, "VERSION")),)
    s = registry.settings
    return CostReport(model, start, end, s.cost_currency, s.cost_cpu_hour, s.cost_gb_hour,
                      versions, missing)


# ---------------------------------------------------------------------------- together
@dataclass(frozen=True)
class ImpactReport:
    """KPIs and cost of a model (``mlops impact``)."""

    model: str
    version: str | None
    kpis: list[KpiStatus]
    cost: CostReport
    missing: tuple[NotMeasured, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version,
                "kpis": [k.to_dict() for k in self.kpis], "cost": self.cost.to_dict(),
                "not_measured": [m.to_dict() for m in self.missing]}


def impact_report(registry: ModelRegistry, model: str, *, version: str | None = None,
                  since: datetime | None = None, until: datetime | None = None
                  ) -> ImpactReport:
    """The KPI table and the cost per 1,000 predictions of ``model`` (of ``version``)."""
    cost = cost_report(registry, model, version=version, since=since, until=until)
    number = None if version is None else registry.get_version(model, version).version
    kpis = kpi_report(registry, model, version=number, since=since, until=until)
    missing: list[NotMeasured] = []
    if not kpis:
        missing.append(NotMeasured("KPIs", f"No KPI is defined for {model}.",
                                   f"mlops kpi define {model} KPI --baseline B --target T "
                                   "--unit percentage|currency|absolute"))
    missing += [k.missing for k in kpis if k.missing is not None]
    missing += list(cost.missing)
    missing += [m for v in cost.versions for m in v.missing]
    return ImpactReport(model, number, kpis, cost, tuple(missing))
