"""``mlops impact`` and ``mlops kpi``: a model's business KPIs and its cost per 1,000
predictions, from recorded values and measured CPU time and memory."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli.output import console, open_registry, print_json

if TYPE_CHECKING:
    from mlops.governance.impact import CostReport, KpiStatus, NotMeasured

__all__ = ["impact", "kpi_app"]

kpi_app = typer.Typer(no_args_is_help=True,
                      help="Business KPIs of a model: define them, record measured values, "
                           "list them with their latest value.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class Unit(StrEnum):
    PERCENTAGE = "percentage"
    CURRENCY = "currency"
    ABSOLUTE = "absolute"


class Direction(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"


def _when(text: str | None, option: str) -> datetime | None:
    """An ISO-8601 time (a date, or a date and time; no zone means UTC)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO-8601 time; write e.g. 2024-05-17 "
                                 "or 2024-05-17T12:00:00Z.", param_hint=option) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _num(value: float | None, suffix: str = "") -> str:
    """Whole amounts with thousands separators (500,000), others to 4 digits."""
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{value:,.0f}{suffix}"
    return f"{value:.4g}{suffix}"


def _change(k: KpiStatus) -> str:
    if k.latest is None:
        return "none recorded"
    if k.change is None:
        return "undefined (baseline 0)"
    better = "" if not k.improvement else " (better)" if k.improvement > 0 else " (worse)"
    return f"{k.change:+.4g} {k.change_unit}{better}"


def _kpi_table(title: str, kpis: list[KpiStatus]) -> object:
    from rich.table import Table

    table = Table(title=title)
    for col in ("kpi", "unit", "better", "baseline", "target", "latest", "version", "at",
                "change", "target met"):
        table.add_column(col, overflow="fold")
    for k in kpis:
        d = k.definition
        met = "-" if k.latest is None else "[green]met[/]" if k.target_met \
            else "[red]not met[/]"
        latest = k.latest
        table.add_row(d.name, d.unit.value, d.direction.value, _num(d.baseline),
                      _num(d.target), _num(None if latest is None else latest.value),
                      "-" if latest is None else (latest.version or "model"),
                      "-" if latest is None else latest.ts.isoformat(timespec="seconds"),
                      _change(k), met)
    return table


def _cost_table(report: CostReport) -> object:
    from rich.table import Table

    cur = report.currency
    since = report.since.isoformat(timespec="seconds") if report.since else "the start"
    table = Table(title=f"Cost per 1,000 predictions of {report.model} ({cur}), {since} to "
                        f"{report.until.isoformat(timespec='seconds')}")
    for col in ("version", "predictions", "CPU s", "memory MiB", "hours serving", "CPU",
                "memory", "per 1,000"):
        table.add_column(col, overflow="fold")
    for v in report.versions:
        table.add_row(v.version, str(v.n_predictions),
                      _num(v.cpu_seconds) + (f" ({v.n_cpu_measured} rows)"
                                             if v.n_cpu_measured != v.n_predictions else ""),
                      _num(v.memory_mb), _num(v.hours_serving), _num(v.cpu_cost_per_1000),
                      _num(v.memory_cost_per_1000),
                      "[bold]" + _num(v.cost_per_1000) + "[/]" if v.cost_per_1000 is not None
                      else "not measured")
    return table


def _not_measured(items: tuple[NotMeasured, ...] | list[NotMeasured]) -> None:
    from rich.markup import escape

    for m in items:
        console.print(f"[yellow]not measured[/] {escape(m.what)}: {escape(m.reason)} "
                      f"Supply it: {escape(m.supply)}", soft_wrap=True)


def impact(
    name: str,
    version: Annotated[str | None, typer.Option("--version", help="Only this version (a "
                                                                 "number, alias or stage).")
                       ] = None,
    since: Annotated[str | None, typer.Option("--since", help="From this ISO-8601 time.")
                     ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Up to this ISO-8601 time "
                                                             "(default now).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The business impact of NAME: each KPI against its baseline and target, and the cost
    per 1,000 predictions of each version from measured CPU time and memory."""
    from mlops.governance.impact import impact_report

    report = impact_report(open_registry(), name, version=version,
                           since=_when(since, "--since"), until=_when(until, "--until"))
    if as_json:
        print_json(report.to_dict())
        return
    if report.kpis:
        console.print(_kpi_table(f"KPIs of {name}", report.kpis))
    if report.cost.versions:
        console.print(_cost_table(report.cost))
        c = report.cost
        console.print(f"prices: {c.cpu_hour_price:g} {c.currency}/CPU-hour, "
                      f"{c.gb_hour_price:g} {c.currency}/GB-hour; hours serving: "
                      f"{c.hours_basis}", soft_wrap=True)
    _not_measured(report.missing)


@kpi_app.command("define")
def define(
    name: str,
    kpi: Annotated[str, typer.Argument(help="The KPI's name, e.g. revenue_impact.")],
    baseline: Annotated[float, typer.Option("--baseline", help="Its level before the model.")],
    target: Annotated[float, typer.Option("--target", help="The level to reach.")],
    unit: Annotated[Unit, typer.Option("--unit", help="percentage, currency or absolute.")],
    direction: Annotated[Direction, typer.Option(
        "--direction", help="higher (more is better) or lower (less is better).")
    ] = Direction.HIGHER,
    description: Annotated[str, typer.Option("--description", help="What it measures.")] = "",
) -> None:
    """Define (or redefine) a KPI of NAME; recorded in the audit chain."""
    from mlops.governance.impact import define_kpi

    d = define_kpi(open_registry(), name, kpi, unit=unit.value, baseline=baseline,
                   target=target, direction=direction.value, description=description)
    console.print(f"{d.model}: KPI {d.name} ({d.unit.value}, {d.direction.value} is better) "
                  f"baseline {d.baseline:g}, target {d.target:g}")


@kpi_app.command("record")
def record(
    name: str,
    kpi: str,
    value: Annotated[float, typer.Argument(help="The measured value (a negative one after "
                                                "--, e.g. -- -5).")],
    version: Annotated[str | None, typer.Option("--version", help="The version it was "
                                                                 "measured for.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="When it was measured (ISO-8601; "
                                                       "default now).")] = None,
) -> None:
    """Record a measured VALUE of KPI for NAME (or one of its versions); audited."""
    from mlops.governance.impact import record_kpi

    v = record_kpi(open_registry(), name, kpi, value, version=version, at=_when(at, "--at"))
    console.print(f"{v.model}: {v.kpi} = {v.value:g}"
                  + (f" for version {v.version}" if v.version else "")
                  + f" at {v.ts.isoformat(timespec='seconds')}")


@kpi_app.command("list")
def list_(name: str, as_json: JsonOpt = False) -> None:
    """The KPIs of NAME with their latest value, change against the baseline, and whether
    the target is met."""
    from mlops.governance.impact import kpi_report

    kpis = kpi_report(open_registry(), name)
    if as_json:
        print_json([k.to_dict() for k in kpis])
        return
    if not kpis:
        console.print(f"{name} has no KPI; define one with mlops kpi define {name} KPI "
                      "--baseline B --target T --unit percentage", soft_wrap=True)
        return
    console.print(_kpi_table(f"KPIs of {name}", kpis))
    _not_measured([k.missing for k in kpis if k.missing is not None])
