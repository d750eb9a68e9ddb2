"""``mlops monitor status|drift|reference|baseline|evaluate`` and ``mlops alerts ...``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlops.cli.output import console, fmt, print_json
from mlops.errors import MonitoringError

monitor_app = typer.Typer(no_args_is_help=True, help="Performance, drift and health.")
alerts_app = typer.Typer(no_args_is_help=True, help="Alert incidents and rules.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
EnvOpt = Annotated[str | None, typer.Option("--env", help="Environment (default: all).")]


def _monitor() -> Any:
    from mlops.monitoring.monitor import ModelMonitor
    from mlops.registry.service import ModelRegistry

    return ModelMonitor(ModelRegistry())


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True)


@monitor_app.command("status")
def status(model: str, env: EnvOpt = None, as_json: JsonOpt = False) -> None:
    """The live window's metrics (the last MLOPS_MONITOR_WINDOW up to now), the latest
    evaluator pass's drift figures, health score and alerts of MODEL."""
    from mlops.monitoring.status import LIVE

    monitor = _monitor()
    try:
        result = monitor.status(model, env)
    finally:
        monitor.close()
    if as_json:
        print_json(result.to_dict())
        return
    where = f" in {env}" if env else ""
    health = result.health
    head = f"[bold]{model}[/]{where} (serving {result.version or '-'})"
    if health is not None and health.score is not None:
        colour = {"healthy": "green", "degraded": "yellow"}.get(health.status, "red")
        head += f": health [{colour}]{health.score:.0f}/100 {health.status}[/]"
    else:
        head += ": health - (nothing to judge in the live window)"
    console.print(head)
    span = (f"{result.window_start:%Y-%m-%d %H:%M:%S} to {result.window_end:%H:%M:%S} UTC")
    if result.empty:
        console.print(f"[yellow]The live window ({span}) is empty:[/] no predictions of "
                      f"{model}{where}. Rows marked empty are not measurements.")
    if not result.latest:
        console.print("No evaluator pass yet: drift figures appear once `mlops serve` runs "
                      "(every MLOPS_MONITOR_INTERVAL seconds) or `mlops monitor evaluate`.")
    table = Table(title=f"live window {span}")
    for col in ("metric", "value", "n", "from"):
        table.add_column(col)
    for name, metric in sorted(result.metrics.items()):
        value = "[dim]empty[/]" if metric.empty else fmt(metric.value)
        source = "live window" if metric.source == LIVE else \
            f"evaluator pass to {metric.window_end:%H:%M:%S}"
        table.add_row(name, value, str(metric.n), source)
    console.print(table)
    if health is not None:
        parts = Table(title="health parts")
        for col in ("part", "score", "why"):
            parts.add_column(col)
        for p in health.parts:
            parts.add_row(p.name, fmt(p.score), p.reason)
        console.print(parts)
    _alerts_table(result.recent, "alerts (newest first)")
    if result.firing:
        raise typer.Exit(1)


def _alerts_table(alerts: list[Any], title: str) -> None:
    if not alerts:
        console.print("No alerts.")
        return
    table = Table(title=title)
    for col in ("id", "state", "severity", "rule", "model", "env", "value", "limit", "fired",
                "acked"):
        table.add_column(col)
    for a in alerts:
        colour = "red" if a.state == "firing" else "green"
        table.add_row(str(a.id), f"[{colour}]{a.state}[/]", a.severity, a.rule,
                      a.model + (f" {a.version}" if a.version else ""), a.environment or "-",
                      fmt(a.value), fmt(a.threshold), a.fired_at.strftime("%m-%d %H:%M:%S"),
                      a.acked_by or "-")
    console.print(table)


@monitor_app.command("drift")
def drift(
    model: str,
    current: Annotated[Path | None, typer.Option(help="CSV/Parquet/JSON of current inputs.")
                       ] = None,
    window: Annotated[str | None, typer.Option(
        help="Use the logged inputs of the last WINDOW (e.g. 1h, 30m) instead.")] = None,
    version: Annotated[str | None, typer.Option(help="Reference version (default: served).")
                       ] = None,
    env: EnvOpt = None,
    fdr: Annotated[float, typer.Option(min=1e-6, max=0.5,
                                       help="False discovery rate across features.")] = 0.05,
    html: Annotated[Path | None, typer.Option(help="Write a self-contained HTML report.")
                    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Data drift of current inputs against the reference profile; exit 1 when drifted."""
    from mlops.monitoring.rules import parse_duration
    from mlops.monitoring.window import read_window
    from mlops.stats.drift import detect_drift

    if (current is None) == (window is None):
        raise MonitoringError("Give exactly one of --current FILE or --window DURATION.",
                              fix="e.g. mlops monitor drift churn --window 1h")
    monitor = _monitor()
    version = version or monitor.served_version(model, env) or \
        monitor.registry.get_version(model).version
    with _progress() as progress:
        task = progress.add_task("loading the reference profile", total=None)
        profile = monitor.registry.reference_profile(model, version, "features")
        if current is not None:
            progress.update(task, description=f"reading {current}")
            frame = _read_frame(current, "current data", MonitoringError)
        else:
            assert window is not None
            progress.update(task, description=f"reading the logged inputs of the last {window}")
            now = datetime.now(UTC)
            # that version's rows only: another version's inputs are not drift
            logged = read_window(monitor.artifacts_uri, model, environment=env,
                                 version=version,
                                 start=now - timedelta(seconds=parse_duration(window)), end=now)
            frame = logged.inputs
            if frame.empty:
                raise MonitoringError(f"No logged predictions of {model!r} {version} in the "
                                      f"last {window}.",
                                      fix="Widen --window, name the --version that served, or "
                                          "pass --current FILE.", model=model)
        progress.update(task, description=f"testing {len(profile.columns)} features on "
                                          f"{len(frame):,} rows")
        report = detect_drift(profile, frame, fdr=fdr)
    if html is not None:
        from mlops.ui.drift_report import render_drift_report

        html.write_text(render_drift_report(report, profile, frame, model=model,
                                            version=version or ""), encoding="utf-8")
    if as_json:
        print_json(report.to_dict())
    else:
        table = Table(title=f"drift of {model} v{version} ({len(frame):,} rows, FDR {fdr:g})")
        for col in ("feature", "kind", "test", "statistic", "p", "p (BH)", "effect", "drifted"):
            table.add_column(col)
        for f in sorted(report.features, key=lambda f: (not f.drifted, f.feature)):
            table.add_row(f.feature, f.kind, f.method, fmt(f.statistic), fmt(f.p_value),
                          fmt(f.p_adjusted), f"{f.effect_metric} {fmt(f.effect_size)}",
                          "[red]yes[/]" if f.drifted else "no")
        console.print(table)
        console.print(f"{report.n_drifted} of {report.n_features} features drifted"
                      + (f"; missing columns: {', '.join(report.missing_columns)}"
                         if report.missing_columns else "")
                      + (f"; report: {html}" if html else ""))
    if report.n_drifted:
        raise typer.Exit(1)


@monitor_app.command("reference")
def reference(model: str, version: str,
              data: Annotated[Path, typer.Option(help="CSV/Parquet/JSON of reference inputs.")],
              as_json: JsonOpt = False) -> None:
    """Profile DATA as the reference of MODEL VERSION (replaces the stored profile)."""
    from mlops.registry.service import ModelRegistry

    frame = _read_frame(data, "reference data", MonitoringError)
    with _progress() as progress:
        progress.add_task(f"profiling {len(frame):,} rows", total=None)
        infos = ModelRegistry().set_reference(model, version, frame, source=str(data))
    if as_json:
        print_json([{"kind": i.kind, "digest": i.digest, "n_rows": i.n_rows,
                     "columns": i.columns} for i in infos])
        return
    for i in infos:
        console.print(f"{i.kind}: {len(i.columns)} column(s) from {i.n_rows:,} rows "
                      f"(sha256 {i.digest[:12]})")


@monitor_app.command("baseline")
def baseline(model: str, metrics: Annotated[list[str] | None, typer.Argument(
        help="KEY=VALUE pairs, e.g. accuracy=0.91")] = None,
             version: Annotated[str | None, typer.Option()] = None,
             remove: Annotated[list[str] | None, typer.Option(
                 "--remove", help="Remove this baseline metric (repeatable).")] = None,
             ) -> None:
    """Set (or --remove) baseline metrics that alerts and the health score compare with."""
    if remove:
        if metrics:
            raise MonitoringError("Pass KEY=VALUE pairs or --remove, not both.",
                                  fix="Run the command once for each.")
        left = _monitor().remove_baseline(model, remove, version)
        console.print(", ".join(f"{k}={v:g}" for k, v in sorted(left.items()))
                      or "no baseline metrics left", markup=False)
        return
    if not metrics:
        raise MonitoringError("Name the baseline metrics to set.",
                              fix="e.g. mlops monitor baseline MODEL accuracy=0.91")
    values: dict[str, float] = {}
    for item in metrics:
        key, sep, value = item.partition("=")
        if not sep:
            raise MonitoringError(f"{item!r} is not KEY=VALUE.", fix="e.g. accuracy=0.91")
        try:
            values[key] = float(value)
        except ValueError as exc:
            raise MonitoringError(f"{item!r}: {value!r} is not a number.",
                                  fix="e.g. accuracy=0.91") from exc
    stored = _monitor().set_baseline(model, values, version)
    console.print(", ".join(f"{k}={v:g}" for k, v in sorted(stored.items())))


@monitor_app.command("evaluate")
def evaluate(model: Annotated[str | None, typer.Argument()] = None, env: EnvOpt = None,
             as_json: JsonOpt = False) -> None:
    """Run one evaluator pass now (every deployment, or MODEL in --env)."""
    monitor = _monitor()
    try:
        with _progress() as progress:
            progress.add_task("evaluating windows, drift and alerts", total=None)
            if model is None:
                results = monitor.evaluate_all()
            else:
                results = [monitor.evaluate(model, env or "production")]
        monitor.alerts.flush(5.0)
    finally:
        monitor.close()
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    if not results:
        console.print("Nothing deployed: deploy a version first (mlops deploy).")
    for r in results:
        health = r.health.score
        console.print(f"{r.model} in {r.environment} (v{r.version}): health "
                      f"{'-' if health is None else f'{health:.0f}'}; "
                      + ", ".join(f"{k}={fmt(v.value)}" for k, v in sorted(r.values.items())
                                  if k in ("accuracy", "mae", "error_rate", "latency_p99_ms",
                                           "drift_share", "concept_drift", "label_coverage")))
        for t in r.transitions:
            console.print(f"  alert {t.rule}: {t.change} (value {fmt(t.value)}, limit "
                          f"{fmt(t.limit)})")


@alerts_app.command("list")
def list_alerts(model: Annotated[str | None, typer.Option()] = None,
                state: Annotated[str | None, typer.Option(help="firing or resolved.")] = None,
                env: EnvOpt = None,
                limit: Annotated[int, typer.Option(min=1, max=10_000, help="Most alerts.")] = 50,
                as_json: JsonOpt = False) -> None:
    """Alert incidents, newest first."""
    manager = _monitor().alerts
    found = manager.alerts(model, state=state, environment=env, limit=limit)
    if as_json:
        print_json([a.to_dict() for a in found])
        return
    _alerts_table(found, "alerts")


@alerts_app.command("ack")
def ack(alert_id: int, note: str = "", as_json: JsonOpt = False) -> None:
    """Acknowledge an incident (recorded in the audit log)."""
    alert = _monitor().alerts.ack(alert_id, note=note)
    if as_json:
        print_json(alert.to_dict())
        return
    console.print(f"alert {alert.id} ({alert.rule} on {alert.model}) acknowledged by "
                  f"{alert.acked_by}")


@alerts_app.command("rules")
def rules(model: Annotated[str | None, typer.Option()] = None,
          add: Annotated[Path | None, typer.Option(help="YAML/JSON file of rules to store.")
                         ] = None,
          delete: Annotated[str | None, typer.Option(help="Name of a rule to delete.")] = None,
          as_json: JsonOpt = False) -> None:
    """List the rules that apply (stored, then defaults); --add FILE / --delete NAME."""
    from mlops.monitoring.rules import load_rules

    manager = _monitor().alerts
    if add is not None:
        for rule in load_rules(add, egress=manager.egress):
            manager.put_rule(rule)
    if delete is not None:
        manager.delete_rule(delete)
    found = manager.rules(model)
    if as_json:
        print_json([r.to_dict() for r in found])
        return
    table = Table(title="alert rules")
    for col in ("name", "condition", "window", "min n", "severity", "cooldown", "scope"):
        table.add_column(col)
    for r in found:
        table.add_row(r.name, r.describe(), f"{r.window:g}s", str(r.min_samples), r.severity,
                      f"{r.cooldown:g}s", (r.model or "all models")
                      + (f" / {r.environment}" if r.environment else ""))
    console.print(table)


@monitor_app.command("chart")
def chart(model: str, metric: str, env: EnvOpt = None,
          method: Annotated[str, typer.Option(help="cusum or ewma.")] = "cusum",
          warmup: Annotated[int, typer.Option(
              min=2, help="First points that set the target and sigma.")] = 20,
          target: Annotated[float | None, typer.Option(help="Known in-control mean.")] = None,
          sigma: Annotated[float | None, typer.Option(help="Known in-control sd.")] = None,
          as_json: JsonOpt = False) -> None:
    """A CUSUM or EWMA control chart over METRIC's stored history; exit 1 on a signal."""
    from mlops.monitoring.snapshots import snapshot_series
    from mlops.registry.service import ModelRegistry
    from mlops.stats.control import cusum, ewma

    if method not in ("cusum", "ewma"):
        raise MonitoringError(f"Unknown chart {method!r}.", fix="Use --method cusum or ewma.")
    registry = ModelRegistry()
    registry.get_model(model)
    points = [p for p in snapshot_series(registry, model, metric, environment=env, limit=5000)
              if p.value is not None]
    if len(points) <= warmup and (target is None or sigma is None):
        raise MonitoringError(
            f"{metric} of {model!r} has {len(points)} stored point(s); the chart needs more "
            f"than --warmup {warmup} to learn its target and sigma.",
            fix="Let the evaluator run longer, lower --warmup, or give --target and --sigma.",
            model=model)
    values = [float(p.value) for p in points if p.value is not None]
    run = cusum if method == "cusum" else ewma
    result = run(values, target=target, sigma=sigma, warmup=warmup)
    if as_json:
        print_json({"model": model, "metric": metric, "chart": result.chart,
                    "target": result.target, "sigma": result.sigma,
                    "signals": [{"at": points[i].window_end.isoformat(), "value": values[i],
                                 "direction": d}
                                for i, d in zip(result.signals, result.directions, strict=True)]})
    else:
        console.print(f"{method.upper()} of {metric} for {model}: {len(values)} points, target "
                      f"{result.target:.4g}, sigma {result.sigma:.4g}"
                      + (" (learned from the first points)" if result.target_estimated else ""))
        if result.signals:
            table = Table(title="signals")
            for col in ("window end", "value", "direction"):
                table.add_column(col)
            for i, d in zip(result.signals, result.directions, strict=True):
                table.add_row(points[i].window_end.strftime("%Y-%m-%d %H:%M:%S"),
                              fmt(values[i]), d)
            console.print(table)
        else:
            console.print("no signal: the series stays in control")
    if result.signals:
        raise typer.Exit(1)


def _read_frame(*args: Any) -> Any:
    from mlops._tables import read_frame

    return read_frame(*args)
