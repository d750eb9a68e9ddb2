"""``mlops audit log|verify|checkpoint|usage``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mlops.cli.output import console, fmt, open_registry, print_json

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
        table.add_row(str(e.seq), e.ts[:19], escape(e.actor), escape(e.action),
                      escape(e.subject), escape(payload[:80]), e.hash[:12])
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


@audit_app.command("usage")
def usage(
    name: str,
    since: Annotated[str, typer.Option(
        help="Start: an ISO date or time (UTC when naive), or a duration before now (30d, "
             "12h).")] = "30d",
    until: Annotated[str | None, typer.Option(help="End (exclusive); default now.")] = None,
    environment: Annotated[str | None, typer.Option(help="Only this environment.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who used a model in a period: predictions per version and per caller, failures and
    latency, security events (refused files and credentials, trust and rule overrides) and
    each serving version's compliance status."""
    from mlops.governance.usage import audit_model_usage, parse_when

    report = audit_model_usage(open_registry(), name, parse_when(since),
                               parse_when(until) if until else None, environment=environment)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(f"[bold]Usage of {escape(report.model)}[/] from "
                  f"{report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
                  + (f" in {escape(report.environment)}" if report.environment else "") + ": "
                  f"{report.predictions} predictions in {report.requests} requests, "
                  f"{report.failed} failed ({report.error_rate:.2%})")
    if report.versions:
        table = Table(title="Versions")
        for col in ("version", "rows", "requests", "failed", "shadow", "p50 ms", "p99 ms",
                    "CPU s", "first", "last"):
            table.add_column(col)
        for v in report.versions:
            table.add_row(escape(v.version), str(v.predictions), str(v.requests), str(v.failed),
                          str(v.shadow), fmt(v.latency_p50_ms), fmt(v.latency_p99_ms),
                          fmt(v.cpu_seconds), f"{v.first:%m-%d %H:%M}", f"{v.last:%m-%d %H:%M}")
        console.print(table)
        callers = Table(title="Callers")
        for col in ("caller", "rows", "requests", "failed", "versions"):
            callers.add_column(col)
        for c in report.callers:
            callers.add_row(escape(c.caller), str(c.predictions), str(c.requests),
                            str(c.failed), escape(", ".join(c.versions)))
        console.print(callers)
    else:
        console.print("No predictions logged in the period (the gateway logs them: "
                      "mlops serve, with log_predictions on).")
    if report.security_events:
        events = Table(title="Security events")
        for col in ("seq", "time (UTC)", "action", "subject", "what"):
            events.add_column(col, overflow="fold")
        for e in report.security_events:
            events.add_row(str(e.seq), e.ts[:19], escape(e.action), escape(e.subject),
                           escape(e.summary))
        console.print(events)
    else:
        console.print("Security events: none in the period.")
    for status in report.compliance:
        missing = escape(f"; missing: {', '.join(status.missing_items)}") \
            if status.missing_items else ""
        console.print(f"compliance {status.framework} of {escape(status.version)}: "
                      f"{status.met} met, "
                      f"{status.missing} missing, {status.not_applicable} not applicable"
                      f"{missing}")
