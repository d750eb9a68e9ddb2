"""The search filter language and its translation to SQL.

``name = fraud* and stage = production and tags.team = risk and accuracy > 0.9``

Clauses are joined by ``and``. A field is ``name``, ``version``, ``stage``, ``alias``,
``flavor``, ``tags.<key>`` (or ``tag.<key>``), ``metrics.<key>`` (or ``metric.<key>``),
or a bare metric name. Operators: ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, and ``~``
(glob with ``*``, case-insensitive; ``=`` also globs when the value has ``*``, and is exact
otherwise). Values may be quoted. ``tags.KEY`` matches a version's own tags and its model's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select

from mlops.errors import InvalidQuery
from mlops.store.schema import (
    AliasRow,
    MetricRow,
    ModelRow,
    ModelTagRow,
    VersionRow,
    VersionTagRow,
)
from mlops.store.versions import normalize_stage

__all__ = ["MAX_CLAUSES", "Clause", "compile_clauses", "parse_query"]

_TOKEN = re.compile(
    r"""\s*(?:(?P<op>>=|<=|!=|==|=|>|<|~)|(?P<str>'[^']*'|"[^"]*")|(?P<word>[^\s=!<>~'"]+))"""
)
_OPS = {"=", "==", "!=", ">", ">=", "<", "<=", "~"}
_PLAIN = {"name", "version", "stage", "alias", "flavor"}
#: A longer filter is refused: the database's expression depth has limits, and no person
#: writes one this long.
MAX_CLAUSES = 64
MAX_QUERY_CHARS = 8192


@dataclass(frozen=True)
class Clause:
    kind: str  # name|version|stage|alias|flavor|tag|metric
    key: str
    op: str
    value: str | float


def _tokens(query: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    query = query.strip()
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            raise InvalidQuery(f"Cannot read the search query at {query[pos:]!r}.",
                               fix="Write clauses like accuracy > 0.9 and stage = production.")
        pos = m.end()
        kind = m.lastgroup or "word"
        text = m.group(kind)
        if kind == "str":
            text = text[1:-1]
        out.append((kind, text))
    return out


def parse_query(query: str) -> list[Clause]:
    """Parse a filter string into clauses; an empty string matches everything."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidQuery(f"The search query is {len(query)} characters long; the limit is "
                           f"{MAX_QUERY_CHARS}.", fix="Search with fewer, broader clauses.")
    toks = _tokens(query)
    clauses: list[Clause] = []
    i = 0
    while i < len(toks):
        if clauses:
            if toks[i][0] != "word" or toks[i][1].lower() != "and":
                raise InvalidQuery(f"Expected 'and' between clauses, got {toks[i][1]!r}.",
                                   fix="Join clauses with 'and'.")
            i += 1
        if len(toks) - i < 3:
            raise InvalidQuery(f"Incomplete clause in {query!r}.",
                               fix="Each clause is FIELD OP VALUE, e.g. accuracy > 0.9.")
        (fkind, field), (okind, op), (vkind, value) = toks[i], toks[i + 1], toks[i + 2]
        if fkind != "word" or okind != "op" or op not in _OPS or vkind == "op":
            raise InvalidQuery(f"Cannot read clause {field} {op} {value}.",
                               fix="Each clause is FIELD OP VALUE, e.g. accuracy > 0.9.")
        clauses.append(_clause(field, op, value))
        if len(clauses) > MAX_CLAUSES:
            raise InvalidQuery(f"The search query has more than {MAX_CLAUSES} clauses.",
                               fix="Search with fewer, broader clauses (globs such as "
                                   "name = fraud* match many names at once).")
        i += 3
    return clauses


def _clause(field: str, op: str, value: str) -> Clause:
    low = field.lower()
    op = "=" if op == "==" else op
    if low in _PLAIN:
        if op not in {"=", "!=", "~"}:
            raise InvalidQuery(f"{field} can be compared with =, != or ~ only, not {op}.",
                               fix=f"Write {field} = VALUE.")
        if low == "stage" and not (op == "~" or "*" in value):
            value = normalize_stage(value)
        return Clause(low, "", op, value)
    prefix, _, key = field.partition(".")
    if prefix.lower() in {"tags", "tag"} and key:
        if op not in {"=", "!=", "~"}:
            raise InvalidQuery(f"Tags compare as text: use =, != or ~, not {op}.",
                               fix=f"Write {field} = VALUE.")
        return Clause("tag", key, op, value)
    if prefix.lower() in {"metrics", "metric"} and key:
        field = key
    if op == "~":
        raise InvalidQuery(f"Metric {field} is a number: use =, !=, >, >=, < or <=.",
                           fix=f"Write {field} > 0.9.")
    try:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
    except ValueError:
        raise InvalidQuery(f"Metric {field} needs a number, got {value!r}.",
                           fix=f"Write {field} {op} 0.9, or tags.{field} = {value} for a tag."
                           ) from None
    return Clause("metric", field, op, number)


def _text_cond(column: Any, op: str, value: str) -> ColumnElement[bool]:
    if op == "~" or "*" in value:
        pattern = value.replace("%", r"\%").replace("_", r"\_").replace("*", "%")
        cond = func.lower(column).like(pattern.lower(), escape="\\")
        return not_(cond) if op == "!=" else cond
    return column != value if op == "!=" else column == value


def _num_cond(column: Any, op: str, value: float) -> ColumnElement[bool]:
    return {"=": column == value, "!=": column != value, ">": column > value,
            ">=": column >= value, "<": column < value, "<=": column <= value}[op]


def compile_clauses(clauses: list[Clause]) -> ColumnElement[bool]:
    """SQL conditions over ``VersionRow`` joined to ``ModelRow``."""
    conds: list[ColumnElement[bool]] = []
    for c in clauses:
        if c.kind == "name":
            conds.append(_text_cond(ModelRow.name, c.op, str(c.value)))
        elif c.kind == "version":
            conds.append(_text_cond(VersionRow.version, c.op, str(c.value)))
        elif c.kind == "flavor":
            conds.append(_text_cond(VersionRow.flavor, c.op, str(c.value)))
        elif c.kind == "stage":
            conds.append(_text_cond(VersionRow.stage, c.op, str(c.value)))
        elif c.kind == "alias":
            sub = exists(select(AliasRow.alias).where(
                AliasRow.version_id == VersionRow.id,
                _text_cond(AliasRow.alias, "~" if c.op == "~" else "=", str(c.value))))
            conds.append(not_(sub) if c.op == "!=" else sub)
        elif c.kind == "tag":
            # a version matches on its own tags or on its model's tags
            positive = "=" if c.op == "!=" else c.op
            has = or_(
                exists(select(VersionTagRow.key).where(
                    VersionTagRow.version_id == VersionRow.id, VersionTagRow.key == c.key,
                    _text_cond(VersionTagRow.value, positive, str(c.value)))),
                exists(select(ModelTagRow.key).where(
                    ModelTagRow.model_id == VersionRow.model_id, ModelTagRow.key == c.key,
                    _text_cond(ModelTagRow.value, positive, str(c.value)))))
            conds.append(not_(has) if c.op == "!=" else has)
        else:
            assert isinstance(c.value, float)
            conds.append(exists(select(MetricRow.key).where(
                MetricRow.version_id == VersionRow.id, MetricRow.key == c.key,
                _num_cond(MetricRow.value, c.op, c.value))))
    return and_(True, *conds)
