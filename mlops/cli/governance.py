"""``mlops card``, ``mlops lineage`` and ``mlops approvals``: a version's model card and
lineage graph, and the decisions people owe, from what the platform recorded."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.output import console, err_console, open_registry, print_json

__all__ = ["approvals_app", "card", "compliance", "lineage", "maturity"]

approvals_app = typer.Typer(no_args_is_help=True,
                            help="Approvals and rejections: what waits for whom.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class Framework(StrEnum):
    sr11_7 = "sr11-7"
    eu_ai_act = "eu-ai-act"


class CardFormat(StrEnum):
    md = "md"
    html = "html"
    json = "json"


def card(
    name: str,
    version: Annotated[str, typer.Argument(help="A version, alias or stage.")],
    fmt: Annotated[CardFormat, typer.Option("--format", help="md, html or json.")] =
    CardFormat.md,
    out: Annotated[Path | None, typer.Option("--out", help="Write it here instead of "
                                                          "printing it.")] = None,
    require: Annotated[bool, typer.Option(
        "--require", help="Exit 1 when a required section (details, intended use, training "
                          "data, evaluation, limitations, approvals) has no evidence.")] = False,
) -> None:
    """The model card of NAME VERSION: every section from recorded evidence, or listed as
    missing with the command that supplies it."""
    from mlops.governance.card import REQUIRED_SECTIONS, build_card
    from mlops.ui.card import card_html, card_markdown

    made = build_card(open_registry(), name, version)
    if fmt is CardFormat.json:
        text = None
    else:
        text = card_html(made) if fmt is CardFormat.html else card_markdown(made)
    if out is not None:
        import json

        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text if text is not None else json.dumps(made.to_dict(), indent=2,
                                                                 default=str))
        console.print(f"wrote {out}")
    elif text is None:
        print_json(made.to_dict())
    else:
        typer.echo(text)
    missing = made.missing(REQUIRED_SECTIONS)
    if require and missing:
        for section in missing:
            err_console.print(f"[bold red]missing[/] {section.title}: {section.missing} "
                              f"Supply it: {section.supply}", soft_wrap=True)
        raise typer.Exit(1)


def lineage(
    name: str,
    version: Annotated[str, typer.Argument(help="A version, alias or stage.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT.")] = False,
) -> None:
    """The lineage of NAME VERSION: dataset, training run, the version, its gate runs,
    rollouts and analyses, alerts, and the versions trained from it; each node with the
    audit event that recorded it."""
    from rich.markup import escape
    from rich.tree import Tree

    from mlops.governance.lineage import LineageNode, track_lineage
    from mlops.ui.lineage import lineage_dot

    root = track_lineage(open_registry(), name, version)
    if as_json:
        print_json(root.to_dict())
        return
    if dot:
        typer.echo(lineage_dot(root), nl=False)
        return

    def label(node: LineageNode) -> str:
        audit = f" [dim](audit #{node.audit})[/]" if node.audit is not None else ""
        return f"[bold]{node.kind}[/] {escape(node.label)}{audit}"

    def grow(branch: Tree, node: LineageNode) -> None:
        for child in node.children:
            grow(branch.add(label(child)), child)

    tree = Tree(label(root))
    grow(tree, root)
    console.print(tree)


@approvals_app.command("pending")
def approvals_pending(
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Versions that passed their gates and wait for approvals (or carry a rejection):
    how many more, and who may not give them (the registrant, the pipeline runner)."""
    from rich.table import Table

    from mlops.ci.approvals import pending

    waiting = pending(open_registry(), model)
    if as_json:
        print_json([p.to_dict() for p in waiting])
        return
    if not waiting:
        console.print("nothing waits for an approval")
        return
    table = Table(title="Waiting for approval")
    for col in ("model", "version", "stage", "CI run", "approvals", "rejected by",
                "not by", "next"):
        table.add_column(col, overflow="fold")
    for p in waiting:
        table.add_row(p.model, p.version, p.stage, f"#{p.run}",
                      f"{len(p.approvers)} of {p.required}", ", ".join(p.rejected_by),
                      ", ".join(p.excluded),
                      f'mlops ci approve {p.model} {p.version} --reason "..."'
                      + (" (an approver)" if p.missing else ""))
    console.print(table)


@approvals_app.command("show")
def approvals_show(name: str, version: str, as_json: JsonOpt = False) -> None:
    """Every approval and rejection of NAME VERSION, and whether it still counts."""
    from rich.table import Table

    from mlops.ci.approvals import decisions

    state = decisions(open_registry(), name, version)
    if as_json:
        print_json({"model": state.model, "version": state.version, "run": state.run,
                    "approvers": state.approvers,
                    "rejected_by": [d.actor for d in state.rejections],
                    "decisions": [d.to_dict() for d in state.decisions]})
        return
    table = Table(title=f"{name} {state.version}: decisions (bound run "
                        f"{'#' + str(state.run) if state.run else 'none'})")
    for col in ("audit", "at", "by", "decision", "comment", "run", "counts"):
        table.add_column(col, overflow="fold")
    for d in state.decisions:
        table.add_row(str(d.audit), d.at[:19], d.actor, d.kind, d.comment,
                      f"#{d.run}" if d.run else "", "yes" if d.counts else f"no: {d.void}")
    console.print(table)


def compliance(
    name: str,
    version: Annotated[str, typer.Argument(help="A version, alias or stage.")],
    framework: Annotated[Framework, typer.Option("--framework", help="sr11-7 or eu-ai-act.")],
    fmt: Annotated[CardFormat, typer.Option("--format", help="md, html or json.")] =
    CardFormat.md,
    out: Annotated[Path | None, typer.Option("--out", help="Write it here instead of "
                                                          "printing it.")] = None,
) -> None:
    """The SR 11-7 or EU AI Act report of NAME VERSION: each item met (with its evidence),
    missing (with the command that supplies it) or not applicable (with the reason)."""
    import json

    from mlops.governance.compliance import compliance_report
    from mlops.ui.compliance import compliance_html, compliance_markdown

    report = compliance_report(open_registry(), name, version, framework.value)
    if fmt is CardFormat.json:
        text = json.dumps(report.to_dict(), indent=2, default=str)
    else:
        text = compliance_html(report) if fmt is CardFormat.html else \
            compliance_markdown(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        typer.echo(text)


def maturity(
    model: Annotated[str | None, typer.Option("--model", help="Only this model's records.")
                     ] = None,
    questionnaire: Annotated[Path | None, typer.Option(
        "--questionnaire", help="YAML answers (0-5) for what the platform cannot see: "
                                "feature_store, data_governance, infrastructure_as_code, "
                                "sla_management.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The MLOps maturity level (0-4) from what the platform sees in use: five dimensions,
    20% each, and the next steps as commands."""
    from rich.table import Table

    from mlops.governance.maturity import assess_maturity

    report = assess_maturity(open_registry(), model=model, questionnaire=questionnaire)
    if as_json:
        print_json(report.to_dict())
        return
    table = Table(title=f"MLOps maturity ({report.scope}): level {report.maturity_level} "
                        f"{report.level_name}, score {report.overall_score:.2f}/5")
    for col in ("dimension", "capability", "score", "source", "evidence"):
        table.add_column(col, overflow="fold")
    for c in report.capabilities:
        table.add_row(c.dimension, c.name, f"{c.score:.1f}", c.source, c.evidence)
    console.print(table)
    for dim, score in report.dimension_scores.items():
        console.print(f"{dim}: {score:.2f}")
    if report.improvement_recommendations:
        console.print("[bold]next steps[/]")
        for step in report.improvement_recommendations[:8]:
            console.print(f"  {step}", soft_wrap=True)
