"""YAML helpers shared by the policy and alert-rule loaders (private).

:func:`line_of` finds the line of a key path in YAML text, so that a validation error can
say ``policy.yaml, line 12: models.churn.gates.metrics.accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["line_of", "safe_load"]


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, whose other failures are YAML errors too: a value its
    constructors reject (``2019-02-30``, ``!!float abc``, ``!!int 0x``) raises ValueError,
    and deep nesting RecursionError; both become a ``yaml.YAMLError`` the callers report
    with the line, instead of an unexpected 500."""
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as exc:
        what = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise yaml.constructor.ConstructorError(None, None, f"a value cannot be read: {what}",
                                                None) from exc


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
