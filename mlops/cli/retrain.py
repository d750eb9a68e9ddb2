"""``mlops retrain triggers set|show|delete``, ``run``, ``jobs``, ``logs``, ``cancel``,
``decisions``, ``pass``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlops.cli.output import console, open_registry, print_json

retrain_app = typer.Typer(no_args_is_help=True, help="Retrain a model when its triggers fire: "
                          "configurations, jobs, decisions.")
triggers_app = typer.Typer(no_args_is_help=True, help="A model's retraining configuration.")
retrain_app.add_typer(triggers_app, name="triggers")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _service() -> Any:
    from mlops.retraining.service import RetrainService

    return RetrainService(open_registry())


@triggers_app.command("set")
def triggers_set(
    name: str,
    file: Annotated[Path, typer.Argument(help="The YAML configuration: command (or webhook), "
                                              "guardrails and triggers.")],
) -> None:
    """Validate and store NAME's retraining configuration (replaces the previous one)."""
    from mlops.errors import ConfigError

    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read {file}: {exc.strerror or exc}.",
                          fix="Give the path of a YAML file.") from exc
    record = _service().set_config(name, text, source=str(file))
    triggers = record.spec.get("triggers") or []
    console.print(f"{name}: retraining configured with {len(triggers)} trigger(s): "
                  + ", ".join(f"{t['name']} ({t['kind']})" for t in triggers))


@triggers_app.command("show")
def triggers_show(name: str, as_json: JsonOpt = False) -> None:
    """NAME's retraining configuration, as stored (alias: list)."""
    from mlops.retraining.config import RetrainConfig

    record = _service().config_record(name)
    if record is None:
        if as_json:
            print_json(None)
            return
        console.print(f"{name} has no retraining configuration; set one with "
                      f"mlops retrain triggers set {name} FILE")
        return
    if as_json:
        print_json({"model": name, "config": record.spec, "updated_by": record.updated_by,
                    "updated_at": record.updated_at.isoformat()})
        return
    console.print(f"# {name}, set by {record.updated_by} at {record.updated_at:%Y-%m-%d %H:%M} "
                  "UTC", markup=False)
    console.print(RetrainConfig.from_dict(record.spec).to_yaml(), markup=False)


triggers_app.command("list")(triggers_show)


@triggers_app.command("delete")
def triggers_delete(name: str) -> None:
    """Remove NAME's retraining configuration (its jobs and decisions stay)."""
    gone = _service().delete_config(name)
    console.print(f"{name}: retraining configuration deleted" if gone
                  else f"{name} had no retraining configuration")


@retrain_app.command("run")
def run(
    name: str,
    reason: Annotated[str, typer.Option(help="Why, for the job's record.")] = "",
    priority: Annotated[str, typer.Option(
        help="critical, high, medium or low.")] = "high",
    wait: Annotated[bool, typer.Option(
        "--wait", help="Run the queued job here and now, to its end (otherwise the "
                       "scheduler of `mlops serve` starts it).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue a retraining job for NAME by hand (it joins a job already queued)."""
    service = _service()
    job = service.run(name, reason, priority)
    if wait:
        service.run_pass(wait=True)
        job, _ = service.job(job.id)
    if as_json:
        print_json(job.to_dict())
        return
    console.print(f"job {job.id} of {name}: {job.state.value}"
                  + (f" ({_outcome(job.outcome)})" if job.state.done else ""), markup=False)
    if job.state.done and job.outcome.get("exit_code") not in (None, 0):
        console.print(f"its output: mlops retrain logs {job.id}", markup=False)


def _outcome(outcome: dict[str, Any]) -> str:
    if outcome.get("error"):
        return str(outcome["error"])
    parts = []
    if outcome.get("version"):
        parts.append(f"version {outcome['version']}")
    if outcome.get("pipeline"):
        parts.append(f"pipeline {outcome['pipeline']}")
    deploy = outcome.get("deploy") or {}
    if deploy:
        parts.append(f"deploy {deploy.get('status')}: {deploy.get('reason', '')}".rstrip(": "))
    return "; ".join(parts) or "-"


@retrain_app.command("jobs")
def jobs(
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Retraining jobs, newest first."""
    from rich.markup import escape
    from rich.table import Table

    found = _service().jobs(model, limit=limit)
    if as_json:
        print_json([j.to_dict() for j in found])
        return
    table = Table(title="Retraining jobs")
    for col in ("job", "model", "state", "priority", "reasons", "queued", "wall s", "peak MiB",
                "outcome"):
        table.add_column(col, overflow="fold")
    for j in found:
        reasons = "; ".join(str(r.get("reason", "")) for r in j.reasons)
        table.add_row(str(j.id), escape(j.model), j.state.value, j.priority,
                      escape(reasons[:120]), f"{j.created_at:%m-%d %H:%M}",
                      "-" if j.wall_seconds is None else f"{j.wall_seconds:.1f}",
                      "-" if j.peak_rss_mb is None else f"{j.peak_rss_mb:.0f}",
                      escape(_outcome(j.outcome)[:160]))
    console.print(table)


@retrain_app.command("logs")
def logs(job: int) -> None:
    """The captured output of a job (capped: its head and tail)."""
    found, text = _service().job(job)
    console.print(f"# job {found.id} of {found.model}: {found.state.value}", markup=False)
    console.print(text or "(no output captured)", markup=False, highlight=False)


@retrain_app.command("cancel")
def cancel(job: int) -> None:
    """Cancel a queued job, or stop a running one (its process group is killed)."""
    found = _service().cancel(job)
    console.print(f"job {found.id} of {found.model}: "
                  + ("cancelled" if found.state.done else "asked to stop"), markup=False)


@retrain_app.command("decisions")
def decisions(name: str, limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
              as_json: JsonOpt = False) -> None:
    """Why NAME was, or was not, retrained: each trigger's decisions, newest first."""
    from rich.markup import escape
    from rich.table import Table

    found = _service().decisions(name, limit=limit)
    if as_json:
        print_json([d.to_dict() for d in found])
        return
    table = Table(title=f"Retraining decisions of {escape(name)}")
    for col in ("last", "trigger", "decision", "times", "job", "reason"):
        table.add_column(col, overflow="fold")
    for d in found:
        table.add_row(f"{d.last_at:%m-%d %H:%M}", escape(d.trigger), d.decision, str(d.count),
                      "-" if d.job_id is None else str(d.job_id), escape(d.reason))
    console.print(table)


@retrain_app.command("pass")
def run_pass(
    wait: Annotated[bool, typer.Option("--wait", help="Run started jobs to their end.")]
    = True,
    as_json: JsonOpt = False,
) -> None:
    """One scheduler pass here (what `mlops serve` does every interval): evaluate every
    configured model's triggers, queue jobs, start what may start."""
    from dataclasses import asdict

    report = _service().run_pass(wait=wait)
    if as_json:
        print_json(asdict(report))
        return
    console.print(f"queued {report.queued or 'none'}, started {report.started or 'none'}, "
                  f"interrupted {report.interrupted or 'none'}", markup=False)
    for line in [*report.skipped, *report.errors]:
        console.print(f"  {line}", markup=False)
