"""A lineage graph (:class:`~mlops.governance.lineage.LineageNode`) as Graphviz DOT."""

from __future__ import annotations

from mlops.governance.lineage import LineageNode

__all__ = ["lineage_dot"]

_SHAPES = {"dataset": "cylinder", "training_run": "box", "version": "box3d",
           "ci_run": "note", "rollout": "component", "analysis": "ellipse",
           "serving": "cds", "alert": "octagon"}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def lineage_dot(root: LineageNode) -> str:
    """``digraph lineage { ... }``: one node per lineage node (its label and audit event),
    one edge per parent-child link."""
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in root.walk():
        label = node.label + (f"\naudit #{node.audit}" if node.audit is not None else "")
        lines.append(f"  {_q(node.id)} [label={_q(label)}, "
                     f"shape={_SHAPES.get(node.kind, 'box')}];")
        for child in node.children:
            lines.append(f"  {_q(node.id)} -> {_q(child.id)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
