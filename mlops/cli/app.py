"""The ``mlops`` command. Exit codes: 0 ok, 1 a check failed, 2 usage or system error."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from mlops.cli.audit import audit_app
from mlops.cli.ci import ci_app
from mlops.cli.demo import demo
from mlops.cli.deploy import deploy, rollback, rollout_app
from mlops.cli.governance import approvals_app, card, compliance, lineage, maturity
from mlops.cli.impact import impact, kpi_app
from mlops.cli.k8s import k8s_app
from mlops.cli.models import models_app
from mlops.cli.monitor import alerts_app, monitor_app
from mlops.cli.output import err_console
from mlops.cli.retention import retention_app
from mlops.cli.retrain import retrain_app
from mlops.cli.serve import serve
from mlops.cli.tokens import tokens_app
from mlops.errors import MlopsError

__all__ = ["app", "main"]

app = typer.Typer(name="mlops", no_args_is_help=True, add_completion=False,
                  help="Register, gate, ship, watch and roll back production ML models.")
app.add_typer(models_app, name="models")
app.add_typer(audit_app, name="audit")
app.command("demo")(demo)
app.command("serve")(serve)
app.command("deploy")(deploy)
app.add_typer(rollout_app, name="rollout")
app.command("rollback")(rollback)
app.add_typer(monitor_app, name="monitor")
app.add_typer(alerts_app, name="alerts")
app.add_typer(ci_app, name="ci")
app.add_typer(tokens_app, name="tokens")
app.command("card")(card)
app.command("lineage")(lineage)
app.add_typer(approvals_app, name="approvals")
app.command("compliance")(compliance)
app.command("maturity")(maturity)
app.command("impact")(impact)
app.add_typer(kpi_app, name="kpi")
app.add_typer(retention_app, name="retention")
app.add_typer(retrain_app, name="retrain")
app.add_typer(k8s_app, name="k8s")


@app.command("version")
def version() -> None:
    """Print the mlops version."""
    import mlops

    typer.echo(mlops.__version__)


def main() -> None:
    """Console entry point: user errors print their fix and exit 2, never a traceback."""
    try:
        code = app(standalone_mode=False)
    except MlopsError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.fix:
            err_console.print(f"[bold]fix:[/] {escape(exc.fix)}", soft_wrap=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(2)
    except typer.TyperException as exc:  # usage errors: unknown option, missing argument
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug or an environment problem: one line, not a traceback
        err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: "
                          f"{escape(str(exc))}")
        err_console.print("fix: run with MLOPS_DEBUG=1 for the traceback and report it.")
        if os.environ.get("MLOPS_DEBUG"):
            raise
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
