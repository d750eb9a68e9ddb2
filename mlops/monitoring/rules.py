"""Alert rules as data: what to watch, when it is bad, how loud to be.

A rule names a ``metric`` of a monitoring window (see :data:`METRICS`), a ``comparator``
and either an absolute ``threshold`` or a ``baseline_change`` (relative to the model's
baseline value of that metric: ``-0.05`` with ``<`` fires on a drop of more than 5%).
It is evaluated over ``window`` once at least ``min_samples`` observations back the value;
after an incident resolves, the same series cannot fire again for ``cooldown``.

Rules come from Python, JSON or YAML::

    - name: accuracy-drop
      metric: accuracy
      comparator: "<"
      baseline_change: -0.05
      window: 1h
      min_samples: 200
      severity: high
      channels: [{type: webhook, url: "https://hooks.example/mlops"}]

:func:`load_rules` also checks each rule's channels, including the egress policy (webhook
and Slack URLs may not reach internal addresses unless ``egress_allow`` lists them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mlops._yaml import line_of, safe_load
from mlops.errors import MonitoringError
from mlops.monitoring.channels import channel_from_config
from mlops.store.egress import EgressPolicy

__all__ = [
    "COMPARATORS",
    "DEFAULT_RULES",
    "METRICS",
    "SEVERITIES",
    "AlertRule",
    "load_rules",
    "parse_duration",
]

SEVERITIES = ("critical", "high", "medium", "low")
COMPARATORS = (">", ">=", "<", "<=")
#: Metrics the evaluator computes per window (quality metrics need labels).
METRICS = (
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss",
    "mae", "rmse", "r2",
    "error_rate", "client_error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "throughput_rps", "label_coverage", "n_predictions",
    "drift_share", "drift_max_effect", "prediction_drift", "concept_drift", "missing_rate_max",
    "health",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


#: The longest window or cooldown a rule may have.
MAX_DURATION = 366 * 86_400.0


def parse_duration(value: str | float | int, *, field: str = "duration") -> float:
    """Seconds in ``"90s"``, ``"5m"``, ``"1h"``, ``"2d"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise MonitoringError(f"{field}={value!r} is not a duration.",
                              fix="Write it as 30s, 5m, 1h or 2d.")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise MonitoringError(f"{field}={value!r} is not a duration.",
                                  fix="Write it as 30s, 5m, 1h or 2d.")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise MonitoringError(f"{field}={value!r} is not a finite positive duration.",
                              fix="Use a positive duration.")
    if seconds > MAX_DURATION:
        raise MonitoringError(f"{field}={value!r} is longer than a year.",
                              fix="Use at most 366d: the prediction log is kept for a year.")
    return seconds


class AlertRule(BaseModel):
    """One alert rule (validated; see the module docstring for the meaning of each field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    metric: str
    comparator: Literal[">", ">=", "<", "<="]
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    baseline_change: float | None = Field(default=None, allow_inf_nan=False, ge=-1e6, le=1e6)
    window: float = 3600.0
    min_samples: int = Field(default=100, ge=0)
    severity: Literal["critical", "high", "medium", "low"] = "medium"
    cooldown: float = 900.0
    model: str | None = None
    environment: str | None = None
    channels: list[dict[str, Any]] = Field(default_factory=list)
    description: str = ""

    @field_validator("window", "cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        try:
            return parse_duration(value)
        except MonitoringError as exc:
            raise ValueError(exc.message) from None

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in METRICS and not value.startswith("custom:"):
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)} "
                             "(or custom:NAME for a metric you record yourself)")
        return value

    @model_validator(mode="after")
    def _one_limit(self) -> AlertRule:
        if (self.threshold is None) == (self.baseline_change is None):
            raise ValueError("give exactly one of threshold (absolute) or baseline_change "
                             "(relative to the baseline, e.g. -0.05)")
        return self

    def breached(self, value: float, baseline: float | None) -> tuple[bool, float | None]:
        """Whether ``value`` breaks the rule, and the limit it was compared with.

        A baseline-relative rule without a baseline never fires (the limit is ``None``).
        """
        if self.threshold is not None:
            limit: float | None = self.threshold
        elif baseline is None or self.baseline_change is None:
            return False, None
        else:
            limit = baseline * (1.0 + self.baseline_change) if baseline >= 0 else \
                baseline * (1.0 - self.baseline_change)
        assert limit is not None
        hit = {">": value > limit, ">=": value >= limit, "<": value < limit,
               "<=": value <= limit}[self.comparator]
        return hit, limit

    def describe(self) -> str:
        if self.threshold is not None:
            return f"{self.metric} {self.comparator} {self.threshold:g}"
        assert self.baseline_change is not None
        return f"{self.metric} {self.comparator} baseline {self.baseline_change:+.1%}"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


#: Rules every model gets unless a rule with the same name is defined.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    AlertRule(name="error-rate", metric="error_rate", comparator=">", threshold=0.05,
              window=900, min_samples=100, severity="critical",
              description="More than 5% of requests fail with a server error."),
    AlertRule(name="latency-p99", metric="latency_p99_ms", comparator=">", threshold=1000.0,
              window=900, min_samples=100, severity="medium",
              description="The slowest 1% of requests take over a second."),
    AlertRule(name="accuracy-drop", metric="accuracy", comparator="<", baseline_change=-0.05,
              window=3600, min_samples=200, severity="high",
              description="Accuracy on labelled requests fell 5% below the baseline."),
    AlertRule(name="mae-rise", metric="mae", comparator=">", baseline_change=0.10,
              window=3600, min_samples=200, severity="high",
              description="Mean absolute error rose 10% above the baseline."),
    AlertRule(name="data-drift", metric="drift_share", comparator=">=", threshold=0.3,
              window=3600, min_samples=500, severity="high",
              description="At least 30% of the features drifted (BH + effect floor)."),
    AlertRule(name="prediction-drift", metric="prediction_drift", comparator=">=",
              threshold=1.0, window=3600, min_samples=500, severity="medium",
              description="The output distribution drifted from the reference."),
    AlertRule(name="concept-drift", metric="concept_drift", comparator=">=", threshold=1.0,
              window=3600, min_samples=200, severity="high",
              description="A concept-drift detector fired on the error stream."),
)


def load_rules(source: str | Path | list[dict[str, Any]], *,
               egress: EgressPolicy | None = None) -> list[AlertRule]:
    """Rules from a YAML/JSON file path, YAML text, or a list of dicts; errors name the rule,
    the key and (for files) the line. Channels are checked against ``egress`` (default: the
    ``egress_allow`` setting)."""
    text = ""
    where = "rules"
    nested: tuple[str, ...] = ()
    if isinstance(source, list):
        data: Any = source
    else:
        path = Path(source) if isinstance(source, Path) or "\n" not in str(source) else None
        if path is not None and path.exists():
            text, where = path.read_text(encoding="utf-8"), str(path)
        elif path is not None and isinstance(source, Path):
            raise MonitoringError(f"No rules file at {path}.", fix="Check the path.")
        else:
            text = str(source)
        try:
            data = safe_load(text)
        except yaml.YAMLError as exc:
            raise MonitoringError(f"{where} is not valid YAML: {exc}",
                                  fix="Fix the syntax at the line shown.") from exc
        if isinstance(data, dict) and "rules" in data:
            data = data["rules"]
            nested = ("rules",)
    if not isinstance(data, list):
        raise MonitoringError(f"{where} must hold a list of rules.",
                              fix="Write a YAML list (- name: ...) or {rules: [...]}.")
    rules: list[AlertRule] = []
    for i, item in enumerate(data):
        try:
            rules.append(AlertRule.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = (i, *first.get("loc", ()))
            key = ".".join(str(p) for p in first.get("loc", ())) or "(rule)"
            found = line_of(text, loc) if text else None
            line = f"line {found}" if found else ""
            name = item.get("name", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
            raise MonitoringError(
                f"Alert rule {name!r} in {where}{', ' + line if line else ''}: "
                f"{key}: {first.get('msg', 'invalid')}.",
                fix="See `mlops alerts rules --help` for the fields of a rule.",
                key=key) from exc
    names = [r.name for r in rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MonitoringError(f"Rule names repeat in {where}: {', '.join(dupes)}.",
                              fix="Give every rule its own name.")
    for i, rule in enumerate(rules):
        for j, spec in enumerate(rule.channels):
            if egress is None:
                egress = EgressPolicy.from_settings()
            try:
                channel_from_config(spec, egress=egress)
            except MonitoringError as exc:
                inner = exc.context.get("key")
                where_in = (*nested, i, "channels", j, *([inner] if inner else []))
                key = ".".join(str(p) for p in where_in[len(nested) + 1:])
                found = line_of(text, where_in) if text else None
                line = f", line {found}" if found else ""
                raise MonitoringError(f"Alert rule {rule.name!r} in {where}{line}: {key}: "
                                      f"{exc.message}", fix=exc.fix, key=key) from exc
    return rules
