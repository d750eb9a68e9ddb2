"""``mlops card`` and ``mlops lineage``: a version's model card and lineage graph, from
what the platform recorded."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.output import console, err_console, print_json
from mlops.registry.service import ModelRegistry

__all__ = ["card", "lineage"]


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

    made = build_card(ModelRegistry(), name, version)
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

    root = track_lineage(ModelRegistry(), name, version)
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
