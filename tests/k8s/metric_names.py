"""The metric names the gateway exports and the names a PromQL query uses (shared by the
Kubernetes and the compose/Grafana tests)."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import mlops.serving.metrics  # noqa: F401  (registers the gateway's metrics)

__all__ = ["exported_metric_names", "promql_metric_names"]

#: PromQL words that are not metric names
_KEYWORDS = {"sum", "rate", "irate", "increase", "histogram_quantile", "by", "without", "or",
             "and", "unless", "on", "ignoring", "vector", "clamp_min", "clamp_max", "avg",
             "max", "min", "count", "topk", "bottomk", "le", "abs", "delta", "deriv",
             "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "time",
             "label_replace", "bool", "offset", "group_left", "group_right", "scalar",
             "count_over_time", "quantile_over_time", "sort", "sort_desc", "round"}


def exported_metric_names() -> set[str]:
    """Every sample name the gateway's registry exposes (``_total``, ``_bucket`` ...)."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith(("mlops_", "process_", "python_")):
            continue
        kind = family.type
        base = family.name
        if kind == "counter":
            names |= {f"{base}_total", f"{base}_created"}
        elif kind == "histogram":
            names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count", f"{base}_created"}
        else:
            names.add(base)
        names |= {s.name for s in family.samples}
    return names


def promql_metric_names(query: str) -> set[str]:
    """The metric names in ``query``: identifiers outside braces, strings and durations
    that are not functions, operators or keywords (``by (le)``'s labels excluded)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)      # strings
    text = re.sub(r"\{[^}]*\}", "{}", text)                # label matchers
    text = re.sub(r"\[[^\]]*\]", "[]", text)               # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", " ", text)  # grouping labels
    text = re.sub(r"(?<![A-Za-z0-9_:])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", " ", text)  # numbers
    words = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
    return {w for w in words if w not in _KEYWORDS}
