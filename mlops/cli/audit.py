"""``mlops audit log|verify|checkpoint``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from mlops.cli.output import console, open_registry, print_json

audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@audit_app.command("log")
def log(
    subject: Annotated[str | None, typer.Option(help="model/NAME or model/NAME/VERSION")] = None,
    action: Annotated[str | None, typer.Option(help="e.g. version.stage")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most events to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show audit events, newest first."""
    events = open_registry().audit_log(subject=subject, action=action, limit=limit)
    if as_json:
        print_json([asdict(e) for e in events])
        return
    table = Table(title="Audit log")
    for col in ("seq", "time (UTC)", "actor", "action", "subject", "payload", "hash"):
        table.add_column(col, overflow="fold")
    for e in events:
        payload = ", ".join(f"{k}={v}" for k, v in e.payload.items())
        table.add_row(str(e.seq), e.ts[:19], e.actor, e.action, e.subject, payload[:80],
                      e.hash[:12])
    console.print(table)


@audit_app.command("verify")
def verify(
    checkpoint: Annotated[str | None, typer.Option(
        help="COUNT:HEAD from `mlops audit checkpoint`, kept elsewhere: also detects a "
             "truncated tail or a rewritten chain.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay the chain: ``ok N events`` (exit 0) or the first broken entry (exit 1)."""
    result = open_registry().verify_audit(checkpoint)
    if as_json:
        print_json(asdict(result))
    elif result.ok:
        console.print(f"ok {result.events} events (head {result.head[:16]})")
    else:
        console.print(f"[bold red]broken[/] at event {result.broken_seq}: {result.reason} "
                      f"({result.events} events verified before it)")
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("checkpoint")
def checkpoint_cmd(as_json: JsonOpt = False) -> None:
    """Print the head hash and event count to publish outside the database."""
    from mlops.store.audit import checkpoint

    registry = open_registry()
    with registry.context.store.read() as s:
        cp = checkpoint(s)
    if as_json:
        print_json(asdict(cp))
    else:
        console.print(f"{cp.events}:{cp.head}  (taken {cp.at}; keep it outside this database and"
                      " check with `mlops audit verify --checkpoint`)")
