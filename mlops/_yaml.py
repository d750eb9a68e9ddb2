"""YAML helpers shared by the policy and alert-rule loaders (private).

:func:`line_of` finds the line of a key path in YAML text, so that a validation error can
say ``policy.yaml, line 12: models.churn.gates.metrics.accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["MAX_NODES", "line_of", "safe_load"]


#: Nodes a document may hold once its aliases (``*name``) are expanded. Anchors and merge
#: keys keep working for configuration files; a few nested aliases (the "billion laughs")
#: would otherwise expand a 1 KB file into a structure with 10^9 leaves, which every
#: validator, JSON encoder and audit payload walks.
MAX_NODES = 100_000


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts the nodes of the document with its aliases expanded
    and refuses it past :data:`MAX_NODES`, or when an alias is inside its own anchor."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}
        self._open: list[str | None] = []  # anchors of the nodes being composed

    def compose_node(self, parent: Any, index: Any) -> Any:
        alias = self.check_event(yaml.AliasEvent)
        event = self.peek_event()
        mark, anchor = event.start_mark, getattr(event, "anchor", None)
        if alias and anchor in self._open:
            raise yaml.composer.ComposerError(None, None, f"the alias *{anchor} is inside "
                                              f"its own anchor &{anchor}", mark)
        self._open.append(None if alias else anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._open.pop()
        self._expanded += self._size(node) if alias else 1
        if self._expanded > MAX_NODES:
            raise yaml.composer.ComposerError(
                None, None, f"the document holds more than {MAX_NODES:,} values once its "
                "aliases (*name) are expanded", mark)
        return node

    def _size(self, node: Any) -> int:
        """Nodes under ``node`` (a complete one: no alias is inside its own anchor) with
        aliases expanded, memoised; capped just past the limit."""
        key = id(node)
        size = self._sizes.get(key)
        if size is None:
            size = 1
            if isinstance(node, yaml.SequenceNode):
                size += sum(self._size(child) for child in node.value)
            elif isinstance(node, yaml.MappingNode):
                size += sum(self._size(k) + self._size(v) for k, v in node.value)
            self._sizes[key] = size = min(size, MAX_NODES + 1)
        return size


#: YAML 1.1 reads ``1:0:0:...`` as a base-60 integer, which PyYAML builds by repeated
#: big-number multiplication: a 0.7 MB scalar took 12 s. Times of day need a few digits.
MAX_SEXAGESIMAL = 32


def _construct_int(loader: _BoundedLoader, node: Any) -> Any:
    value = str(loader.construct_scalar(node))
    if ":" in value and len(value) > MAX_SEXAGESIMAL:
        raise yaml.constructor.ConstructorError(
            None, None, f"a base-60 integer (digits separated by ':') of more than "
            f"{MAX_SEXAGESIMAL} characters; quote it if it is text", node.start_mark)
    return loader.construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, whose other failures are YAML errors too: a value its
    constructors reject (``2019-02-30``, ``!!float abc``, ``!!int 0x``) raises ValueError,
    and deep nesting RecursionError; both become a ``yaml.YAMLError`` the callers report
    with the line, instead of an unexpected 500. A document past :data:`MAX_NODES` values
    with its aliases expanded, or with an alias inside its own anchor, is refused the same
    way."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)
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
