"""YAML helpers shared by the policy and alert-rule loaders (private).

:func:`line_of` finds the line of a key path in YAML text, so that a validation error can
say ``policy.yaml, line 12: models.churn.gates.metrics.accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["line_of"]


def line_of(text: str, path: Sequence[Any]) -> int | None:
    """1-based line of the deepest node of ``path`` (mapping keys / list indexes) found."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if getattr(key, "value", None) == str(part):
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
