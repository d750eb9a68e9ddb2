"""``mlops ci run|gates|approve|promote|init|policy check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from mlops.cli.output import console, fmt, print_json
from mlops.errors import CIError

ci_app = typer.Typer(no_args_is_help=True, help="Quality gates and the model pipeline.")
policy_app = typer.Typer(no_args_is_help=True, help="Policy files.")
ci_app.add_typer(policy_app, name="policy")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PolicyOpt = Annotated[Path | None, typer.Option(
    "--policy", help="YAML policy file (default: MLOPS_POLICY_FILE or the built-in tiers).")]
_COLOUR = {"passed": "green", "cached": "green", "failed": "red", "error": "red",
           "timeout": "red", "skipped": "dim", "pending": "yellow", "running": "cyan"}


def _pipeline(policy: Path | None) -> Any:
    from mlops.ci.pipeline import ModelPipeline
    from mlops.ci.policy import Policy
    from mlops.registry.service import ModelRegistry

    registry = ModelRegistry()
    path = policy or (Path(registry.context.settings.policy_file) if registry.context.settings.policy_file
                      else None)
    return ModelPipeline(registry, policy=Policy.load(path) if path else Policy())


def pipeline_table(result: Any) -> Table:
    version = result.version or "(not registered)"
    table = Table(title=f"pipeline {result.model} {version}: {result.status}")
    for col in ("step", "status", "measured", "threshold", "reason", "s"):
        table.add_column(col, overflow="fold")
    for s in result.steps:
        colour = _COLOUR.get(s.status, "white")
        table.add_row(s.name, f"[{colour}]{s.status}[/]",
                      fmt(s.gate.actual) if s.gate else "",
                      fmt(s.gate.threshold) if s.gate else "", s.reason,
                      f"{s.duration_s:.2f}")
    return table


def _run_live(pipeline: Any, call: Any) -> Any:
    """Run with a live table of steps (Rich), then the summary."""
    status: dict[str, str] = {}

    def render() -> Table:
        table = Table(title="running the pipeline")
        table.add_column("step")
        table.add_column("status")
        for name, state in status.items():
            table.add_row(name, f"[{_COLOUR.get(state, 'white')}]{state}[/]")
        return table

    with Live(render(), console=console, transient=True, refresh_per_second=8) as live:
        def progress(step: str, state: str) -> None:
            status[step] = state
            live.update(render())

        pipeline.progress = progress
        return call()


def _finish(result: Any, report_dir: Path | None, as_json: bool) -> None:
    from mlops.ci.reports import write_reports

    paths = write_reports(result, report_dir) if report_dir is not None else {}
    if as_json:
        print_json({**result.to_dict(), "reports": {k: str(v) for k, v in paths.items()}})
    else:
        console.print(pipeline_table(result))
        for step in result.steps:
            for warning in step.gate.warnings if step.gate else ():
                console.print(f"[yellow]warning[/] {step.name}: {warning}")
        if paths:
            console.print("reports: " + ", ".join(str(p) for p in paths.values()))
    if result.status == "failed":
        raise typer.Exit(1)


@ci_app.command("run")
def run(
    model_path: Annotated[Path, typer.Option("--model-path", help="The model file.")],
    name: Annotated[str, typer.Option("--name", help="Registered model name.")],
    test_data: Annotated[Path, typer.Option("--test-data", help="CSV/Parquet/JSON test set.")],
    policy: PolicyOpt = None,
    label: Annotated[str | None, typer.Option(help="Label column of the test data.")] = None,
    sensitive: Annotated[list[str] | None, typer.Option(
        help="Sensitive feature column (repeat for several).")] = None,
    stage: Annotated[str, typer.Option(
        help="How far to go: gates, register, staging or production.")] = "production",
    trust: Annotated[bool, typer.Option(help="Load a pickle the scanner flags (audited).")
                     ] = False,
    force: Annotated[bool, typer.Option(help="Re-run gates that passed before.")] = False,
    report_dir: Annotated[Path | None, typer.Option(
        help="Write report.json, report.md and junit.xml here.")] = Path("mlops-reports"),
    as_json: JsonOpt = False,
) -> None:
    """Validate data, run the gates, register, test in staging, roll out to production."""
    pipeline = _pipeline(policy)
    result = _run_live(pipeline, lambda: pipeline.run(
        model_path, name, test_data, label=label, sensitive=sensitive, stage=stage,
        trust=trust, force=force))
    _finish(result, report_dir, as_json)


@ci_app.command("gates")
def gates(
    name: str, version: str,
    test_data: Annotated[Path, typer.Option("--test-data", help="CSV/Parquet/JSON test set.")],
    policy: PolicyOpt = None,
    label: Annotated[str | None, typer.Option(help="Label column of the test data.")] = None,
    sensitive: Annotated[list[str] | None, typer.Option(help="Sensitive feature column.")
                         ] = None,
    force: Annotated[bool, typer.Option(help="Re-run gates that passed before.")] = False,
    report_dir: Annotated[Path | None, typer.Option(help="Write the reports here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the gates on a registered VERSION (nothing is registered or deployed)."""
    pipeline = _pipeline(policy)
    result = _run_live(pipeline, lambda: pipeline.run_registered(
        name, version, test_data, label=label, sensitive=sensitive, force=force))
    _finish(result, report_dir, as_json)


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (required; recorded with "
                                                              "the decision).")]


@ci_app.command("approve")
def approve(name: str, version: str, reason: ReasonOpt) -> None:
    """Approve VERSION for production, bound to its artifact and the gate run you read (as
    the token's holder or MLOPS_ACTOR; recorded in the audit chain)."""
    from mlops.ci.approvals import approve as record
    from mlops.registry.service import ModelRegistry

    who = record(ModelRegistry(), name, version, reason)
    console.print(f"{name} {version} approved; approvals that count: {', '.join(who)}")


@ci_app.command("reject")
def reject(name: str, version: str, reason: ReasonOpt) -> None:
    """Reject VERSION: production refuses it until its gates are run again with different
    results, or you approve it."""
    from mlops.ci.approvals import reject as record
    from mlops.registry.service import ModelRegistry

    state = record(ModelRegistry(), name, version, reason)
    console.print(f"{name} {state.version} rejected by "
                  f"{', '.join(d.actor for d in state.rejections)} (CI run #{state.run})")


@ci_app.command("promote")
def promote(name: str, version: str, policy: PolicyOpt = None, as_json: JsonOpt = False
            ) -> None:
    """Start the production rollout of a version that passed its gates and has its
    approvals, with the strategy its policy names."""
    rollout = _pipeline(policy).promote(name, version)
    if as_json:
        print_json(rollout.to_dict())
        return
    console.print(f"{rollout.strategy} rollout of {name} {version} to production: "
                  f"{rollout.state}")


@policy_app.command("check")
def policy_check(file: Path, model: Annotated[list[str] | None, typer.Option(
        help="Show the resolved policy of this model.")] = None, as_json: JsonOpt = False
                 ) -> None:
    """Validate a policy file; errors name the line and the key."""
    from mlops.ci.policy import Policy

    loaded = Policy.load(file)
    names = list(model or []) or loaded.models() or ["<any model>"]
    resolved = [loaded.for_model(n).to_dict() for n in names]
    if as_json:
        print_json(resolved)
        return
    console.print(f"[green]ok[/] {file}")
    for item in resolved:
        console.print(f"{item['model']}: tier {item['tier']}, gates "
                      f"{', '.join(item['gates'])}, {item['approvals']} approval(s), rollout "
                      f"{item['rollout'].get('strategy')}")


@ci_app.command("init")
def init(github_actions: Annotated[bool, typer.Option(
        "--github-actions", help="Write .github/workflows/mlops.yml.")] = False,
         force: bool = False) -> None:
    """Write CI templates into the current folder."""
    from mlops.ci.templates import write_github_actions

    if not github_actions:
        raise CIError("Nothing to write.", fix="Pass --github-actions.")
    path = write_github_actions(Path.cwd(), force=force)
    console.print(f"wrote {path}: jobs test -> train -> pipeline (reports uploaded as "
                  "artifacts)")
