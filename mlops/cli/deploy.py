"""``mlops deploy``, ``mlops rollout status|promote|pause|resume|abort`` and ``mlops rollback``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlops.cli.output import console, err_console, open_registry, print_json
from mlops.config import get_settings
from mlops.errors import DeploymentError, MaterializeError

if TYPE_CHECKING:
    from mlops.deployment.materialize import Materialized

rollout_app = typer.Typer(no_args_is_help=True, help="Progressive rollouts.")

EnvOpt = Annotated[str, typer.Option("--env", help="Environment.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _manager() -> Any:
    from mlops.deployment.rollouts import RolloutManager

    return RolloutManager(open_registry())


def materialise_served(*, to_stderr: bool = False) -> None:
    """After a command changed what an environment serves: bring the configured model
    folders (``*_MODEL_PATH``) in line now, so they are right without a server."""
    from mlops.deployment.materialize import materialize, model_paths
    from mlops.store.context import Context

    settings = get_settings()
    if not model_paths(settings):
        return
    out = err_console if to_stderr else console
    try:
        done = materialize(Context.open(settings))
    except MaterializeError as exc:
        _print_materialised(exc.results, out)
        raise
    _print_materialised(done, out)


def _print_materialised(done: list[Materialized], out: Console) -> None:
    for item in done:
        if not item.changed:
            continue
        if item.version is None:
            out.print(f"removed {item.model} from {_shown(item.path.parent)} (no longer "
                      f"served in {item.environment})", soft_wrap=True)
        else:
            out.print(f"materialised {item.model} {item.version} at {_shown(item.path)}",
                      soft_wrap=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def deploy(
    model: str,
    version: str,
    env: EnvOpt = "production",
    strategy: Annotated[str, typer.Option(help="full, canary, blue_green, ab_test, shadow or bandit.")
                        ] = "canary",
    steps: Annotated[str | None, typer.Option(
        help='Canary steps as JSON: [{"weight": 10, "pause": "5m"}, {"weight": 100}].')] = None,
    config: Annotated[str | None, typer.Option(
        help='Strategy and analysis settings as JSON, e.g. {"min_samples": 500}.')] = None,
    reason: str = "",
    override: Annotated[str | None, typer.Option(
        help="Skip the promotion policy (staging before production); the reason is "
             "recorded in the audit log.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start rolling VERSION of MODEL out to an environment."""
    settings: dict[str, Any] = {}
    for text, what in ((config, "--config"), (steps, "--steps")):
        if text:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DeploymentError(f"{what} is not valid JSON: {exc}.",
                                      fix=f"Quote the JSON for the shell: {what} '[...]'.") from exc
            if what == "--steps":
                settings["steps"] = value
            elif isinstance(value, dict):
                settings.update(value)
            else:
                raise DeploymentError("--config must be a JSON object.", fix="Use {...}.")
    rollout = _manager().deploy(model, version, env, strategy=strategy, config=settings,
                                reason=reason, override=override)
    show_rollout(rollout, as_json)
    materialise_served(to_stderr=as_json)


def show_rollout(rollout: Any, as_json: bool) -> None:
    if as_json:
        print_json(rollout.to_dict())
        return
    console.print(f"{rollout.model} in {rollout.environment}: {rollout.strategy} of "
                  f"{rollout.candidate} (stable {rollout.stable or '-'}) is [bold]{rollout.state}"
                  f"[/] at step {rollout.step_index + 1}/{len(rollout.steps)}, "
                  f"{rollout.weight:g}% to the candidate. {rollout.reason}")
    if rollout.analyses:
        table = Table(title="analyses")
        for col in ("step", "outcome", "metric", "stable", "candidate", "always-valid CI",
                    "p (worse)", "decision"):
            table.add_column(col)
        for a in rollout.analyses[-6:]:
            metrics = a.get("metrics", {})
            first = True
            for name, m in metrics.items():
                ci = f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]" \
                    if m.get("ci_low") is not None and m.get("ci_high") is not None else "-"
                table.add_row(str(a["step"] + 1) if first else "", a["outcome"] if first else "",
                              name, _num(m.get("stable")), _num(m.get("candidate")), ci,
                              _num(m.get("p_inferior", m.get("p_value"))),
                              str(m.get("decision", m.get("mismatch", ""))))
                first = False
            if first:
                table.add_row(str(a["step"] + 1), a["outcome"], "-", "-", "-", "-", "-",
                              a.get("reason", ""))
        console.print(table)


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


@rollout_app.command("status")
def status(model: str, env: EnvOpt = "production", as_json: JsonOpt = False) -> None:
    """The latest rollout of MODEL in an environment, with its analyses."""
    rollout = _manager().status(model, env)
    if rollout is None:
        if as_json:
            print_json(None)
        else:
            console.print(f"{model} has no rollout in {env}.")
        return
    show_rollout(rollout, as_json)


def _command(action: str) -> Any:
    def run(model: str, env: EnvOpt = "production", reason: str = "",
            as_json: JsonOpt = False) -> None:
        show_rollout(getattr(_manager(), action)(model, env, reason=reason), as_json)
        if action in {"promote", "abort"}:
            materialise_served(to_stderr=as_json)

    run.__doc__ = {"promote": "Send all traffic to the candidate now.",
                   "pause": "Hold the rollout at its step until resumed.",
                   "resume": "Continue a paused rollout.",
                   "abort": "Send all traffic back to stable and end the rollout."}[action]
    return run


for _action in ("promote", "pause", "resume", "abort"):
    rollout_app.command(_action)(_command(_action))


def rollback(model: str, env: EnvOpt = "production",
             to: Annotated[str | None, typer.Option(help="Version to go back to.")] = None,
             reason: str = "") -> None:
    """All traffic back to the previous (or named) version, within a second."""
    version = _manager().rollback(model, env, to=to, reason=reason)
    console.print(f"{model} in {env} now serves {version}")
    materialise_served()
