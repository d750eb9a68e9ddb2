"""``mlops retention``: the retention policy in force, applying it (recorded in the audit
chain), and compacting the prediction log's small files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mlops.cli.output import console, err_console, open_registry, print_json

if TYPE_CHECKING:
    from mlops.governance.retention import RetentionResult

__all__ = ["retention_app"]

retention_app = typer.Typer(no_args_is_help=True, help=(
    "How long prediction logs, feedback and metric snapshots are kept; delete what is older "
    "(recorded in the audit chain, which is never purged) and compact the log's files."))
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List what would change; change "
                                                           "nothing.")]


def _partitions_table(result: RetentionResult, title: str) -> None:
    """One row per kind, model and version: how many days and which."""
    from rich.markup import escape
    from rich.table import Table

    groups: dict[tuple[str, str, str], list[str]] = {}
    for p in result.partitions:
        groups.setdefault((p.kind, p.model, p.version or ""), []).append(p.day)
    table = Table(title=title)
    for col in ("kind", "model", "version", "days", "oldest", "newest"):
        table.add_column(col, overflow="fold")
    for (kind, model, version), days in sorted(groups.items()):
        table.add_row(kind, escape(model), escape(version) or "-", str(len(days)), min(days),
                      max(days))
    console.print(table)


def _policy(result: RetentionResult) -> None:
    from rich.table import Table

    table = Table(title=f"Retention policy (today {result.today.isoformat()} UTC)")
    for col in ("kind", "kept (days)", "cutoff: first day kept"):
        table.add_column(col)
    for kind, cutoff in result.cutoffs.items():
        table.add_row(kind, str(result.policy.days(kind)), cutoff.isoformat())
    console.print(table)
    console.print("the audit chain is never purged", style="dim")


def _summary(result: RetentionResult, verb: str) -> None:
    from rich.markup import escape

    if result.partitions:
        _partitions_table(result, f"Day partitions {verb}")
    console.print(f"{verb}: {result.count('predictions')} prediction and "
                  f"{result.count('feedback')} feedback day partitions, {result.snapshots} "
                  "metric snapshots")
    if result.resumed:
        console.print(f"finishes {len(result.resumed)} interrupted run(s): "
                      f"{', '.join(result.resumed)}")
    if result.sources_deleted or result.sources_waiting:
        deleted = "would be deleted" if result.dry_run else "deleted"
        console.print(f"compacted source files: {result.sources_deleted} {deleted} (their "
                      f"grace has passed), {result.sources_waiting} waiting for deletion "
                      f"(hidden from readers; kept {_grace()} after their merge)")
    for p in result.abandoned:
        err_console.print(f"[yellow]kept[/] {escape(p.relative)}: an interrupted run had "
                          "listed it, but the policy in force keeps it (it may be incomplete)",
                          soft_wrap=True)


def _grace() -> str:
    from mlops.store.predlog.maintenance import SOURCE_GRACE

    minutes = int(SOURCE_GRACE.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


@retention_app.command("show")
def show(as_json: JsonOpt = False) -> None:
    """The policy in force and what is expired now."""
    from mlops.governance.retention import apply_retention

    result = apply_retention(open_registry(), dry_run=True)
    if as_json:
        print_json(result.to_dict())
        return
    _policy(result)
    _summary(result, "expired now")


@retention_app.command("apply")
def apply(dry_run: DryRunOpt = False, as_json: JsonOpt = False) -> None:
    """Delete the expired day partitions of the prediction log and feedback and the expired
    metric snapshots, and record them in one audit event (`retention.apply`). A run that
    stopped half-way is completed by the next one. Also deletes the source files that
    compaction kept (hidden) for an hour after merging them."""
    from mlops.governance.retention import apply_retention

    result = apply_retention(open_registry(), dry_run=dry_run)
    if as_json:
        print_json(result.to_dict())
        return
    _policy(result)
    _summary(result, "would delete" if dry_run else "deleted")
    if result.audit_seq is not None:
        console.print(f"recorded as audit event #{result.audit_seq}")


@retention_app.command("compact")
def compact(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    min_age_hours: Annotated[float, typer.Option(
        "--min-age-hours", min=24.0,
        help="Merge only files flushed at least this many hours ago; at least 24, so that "
             "every incremental reader (the rollout controller) has read them and never "
             "counts a row twice.")] = 24.0,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Merge each log partition's small Parquet files into one (rows sorted by time); no
    query result changes. The merged source files stay, hidden from readers, for an hour
    (a reader may have listed them just before); the next `compact` or `apply` after that
    deletes them. Exits 1 when a partition had to be skipped (e.g. a corrupt file)."""
    from datetime import timedelta

    from rich.markup import escape
    from rich.table import Table

    from mlops.governance.retention import compact_prediction_log

    report = compact_prediction_log(open_registry(), model, dry_run=dry_run,
                                    min_age=timedelta(hours=min_age_hours))
    if as_json:
        print_json(report.to_dict())
    else:
        if report.outcomes:
            table = Table(title="Compaction" + (" (dry run)" if dry_run else ""))
            for col in ("kind", "model", "version", "date", "status", "files", "rows",
                        "note"):
                table.add_column(col, overflow="fold")
            for o in report.outcomes:
                p = o.partition
                colour = {"skipped": "red", "waiting": "cyan", "compacted": "green",
                          "would_compact": "green"}.get(o.status, "yellow")
                merged = o.status in ("compacted", "would_compact")
                table.add_row(p.kind, escape(p.model), escape(p.version or "-"), p.day,
                              f"[{colour}]{o.status}[/]", str(len(o.sources)),
                              str(o.rows) if merged else "-", escape(o.message))
            console.print(table)
        verb = "would merge" if dry_run else "merged"
        console.print(f"{verb} {report.files_before} files into {report.files_after} "
                      f"(files flushed before {report.settled_before.isoformat()})")
        deleted = "would delete" if dry_run else "deleted"
        console.print(f"{deleted} {report.sources_deleted} source files of earlier merges; "
                      f"{report.sources_waiting} source files "
                      f"{'would wait' if dry_run else 'wait'} for deletion (hidden from "
                      f"readers, kept {_grace()} after their merge; a later `mlops retention "
                      "compact` or `apply` deletes them)")
        if report.audit_seq is not None:
            console.print(f"recorded as audit event #{report.audit_seq}")
    if report.skipped:
        for o in report.skipped:
            err_console.print(f"[bold red]skipped[/] {escape(o.partition.relative)}: "
                              f"{escape(o.message)}", soft_wrap=True)
        raise typer.Exit(1)
