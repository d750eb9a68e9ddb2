"""A model's retraining configuration: what trains it, and which triggers may ask for it.

Stored per model as data (YAML from a file or the CLI, JSON in the store)::

    command: ["python", "train.py"]   # or a string, split like a shell would (shlex)
    # webhook: {url: "https://ci.example/hooks/retrain", headers: {...}}   (instead)
    workdir: .
    timeout: 30m                      # durations: 90s, 30m, 6h, 2d (or seconds)
    data_window: 7d                   # the recent labelled window exported for the job
    auto_deploy: false                # deploy a version that passes its gates
    requeue_interrupted: true
    min_expected_gain: 0.01           # skip a retrain whose expected gain is below this
    max_runs_per_day: 4               # every trigger of the model together
    triggers:
      - {name: drift, kind: drift, share: 0.3, sustained: 2, priority: high, cooldown: 6h}
      - {name: income, kind: drift, features: [income, age]}
      - {name: acc, kind: performance, metric: accuracy, margin: 0.05, min_labels: 200}
      - {name: nightly, kind: schedule, cron: "0 3 * * *"}      # or every: 24h
      - {name: labels, kind: volume, rows: 10000}
      - {name: on-alert, kind: alert, rule: accuracy-drop}
      - {name: by-hand, kind: manual}

Every mapping refuses unknown keys. :func:`parse_config` reports the first problem with
the file, the line and the key (``retrain.yaml, line 9: triggers[0].share: ...``) as a
:class:`~mlops.errors.ConfigError` whose ``fix`` says what to write instead.
"""

from __future__ import annotations

import difflib
import re
import shlex
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlops._yaml import line_of, safe_load
from mlops.errors import ConfigError, MonitoringError
from mlops.monitoring.rules import parse_duration as rules_duration
from mlops.store.egress import redact_secrets

__all__ = [
    "QUALITY_METRICS",
    "AlertTrigger",
    "DriftTrigger",
    "ManualTrigger",
    "PerformanceTrigger",
    "Priority",
    "RetrainConfig",
    "ScheduleTrigger",
    "Trigger",
    "TriggerKind",
    "VolumeTrigger",
    "Webhook",
    "format_duration",
    "parse_config",
    "parse_duration",
]

#: Metrics a performance trigger can watch: the labelled quality metrics the monitoring
#: evaluator snapshots per window.
QUALITY_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae",
                   "rmse", "r2")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
                 "@hourly")
_CRON_FIX = ("Write 5 fields, minute hour day-of-month month day-of-week: \"0 3 * * *\" is "
             "03:00 every day, \"*/30 * * * *\" every 30 minutes (or @daily, @hourly ...).")


class Priority(StrEnum):
    """How urgent a trigger's job is; the queue runs the most urgent first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical ... 3 for low (lower runs first)."""
        return list(Priority).index(self)


class TriggerKind(StrEnum):
    DRIFT = "drift"
    PERFORMANCE = "performance"
    SCHEDULE = "schedule"
    VOLUME = "volume"
    ALERT = "alert"
    MANUAL = "manual"


class _Invalid(ValueError):
    """A validation problem and its fix (pydantic keeps the exception; :func:`_error` reads
    ``fix`` back)."""

    def __init__(self, message: str, fix: str, path: tuple[Any, ...] | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.path = path


_DURATION_FIX = "Write a duration such as 90s, 30m, 6h or 2d."


def parse_duration(value: Any) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"6h"``, ``"2d"`` or a plain number of seconds, as
    monitoring rules read them (:func:`mlops.monitoring.rules.parse_duration`: at most
    366 days); :class:`ValueError` naming the fix otherwise."""
    if not isinstance(value, int | float | str):
        raise _Invalid(f"{value!r} is not a duration", _DURATION_FIX)
    try:
        return rules_duration(value)
    except MonitoringError as exc:  # its message names the field as "duration=..."
        raise _Invalid(exc.message.removeprefix("duration=").rstrip("."),
                       _DURATION_FIX) from exc


def format_duration(seconds: float) -> str:
    """The shortest exact form: ``21600`` -> ``"6h"``, ``90`` -> ``"90s"``."""
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def _duration(value: Any) -> float:
    return parse_duration(value)


#: A duration field: parsed from "6h" (or seconds), dumped back as "6h".
Duration = Annotated[float, BeforeValidator(_duration),
                     PlainSerializer(format_duration, return_type=str, when_used="json")]


def _positive(value: float, what: str) -> float:
    if value <= 0:
        raise _Invalid(f"{what} must be longer than 0s", _DURATION_FIX)
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Webhook(_Strict):
    """Call an orchestrator (Airflow, a GitHub ``workflow_dispatch``, ...) instead of a
    command; it reports back on ``/api/v1/retrain/jobs/ID/complete``."""

    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | None = None   # merged into the JSON the job sends

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Invalid(f"{value!r} is not an http(s) URL",
                           "Write the full URL, e.g. https://ci.example/hooks/retrain.")
        return value


class _Trigger(_Strict):
    name: str
    priority: Priority = Priority.MEDIUM
    cooldown: Duration = 3600.0           # after it fired, it may not fire again for this
    max_runs_per_day: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise _Invalid(f"trigger name {value!r} is not allowed",
                           "Use 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                           "or digit (e.g. drift-high).")
        return value


class DriftTrigger(_Trigger):
    """Fires when, in ``sustained`` consecutive evaluated windows of ``environment``, the
    share of drifted features is at least ``share``, or one of ``features`` drifted."""

    kind: Literal[TriggerKind.DRIFT]
    share: float | None = Field(default=None, gt=0, le=1)
    features: list[str] = Field(default_factory=list)
    sustained: int = Field(default=1, ge=1, le=100)
    environment: str = "production"

    @model_validator(mode="after")
    def _something(self) -> DriftTrigger:
        if self.share is None and not self.features:
            raise _Invalid("a drift trigger needs share or features",
                           "Add share: 0.3 (the share of drifted features) or features: "
                           "[income, age] (any of them drifted).")
        return self


class PerformanceTrigger(_Trigger):
    """Fires when ``metric`` is worse than its baseline by more than ``margin`` (in the
    metric's units) in ``sustained`` consecutive windows of at least ``min_labels``
    labelled rows each."""

    kind: Literal[TriggerKind.PERFORMANCE]
    metric: str
    margin: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    sustained: int = Field(default=1, ge=1, le=100)
    min_labels: int = Field(default=100, ge=1)
    environment: str = "production"
    higher_is_better: bool | None = None  # None: guessed from the name (loss, mae: lower)

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value not in QUALITY_METRICS:
            close = difflib.get_close_matches(value, QUALITY_METRICS, n=1)
            hint = f"; did you mean {close[0]!r}" if close else ""
            raise _Invalid(f"unknown metric {value!r}{hint}",
                           f"Use one of {', '.join(QUALITY_METRICS)}.")
        return value


class ScheduleTrigger(_Trigger):
    """Fires at the times of a cron expression, or ``every`` so long after the last run."""

    kind: Literal[TriggerKind.SCHEDULE]
    cooldown: Duration = 0.0              # the schedule spaces its runs already
    cron: str | None = None
    every: Duration | None = None
    timezone: str = "UTC"                 # of the cron expression

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from croniter import croniter

        text = " ".join(value.split())
        fields = text.split(" ")
        if not (len(fields) == 5 or (len(fields) == 1 and text.lower() in _CRON_ALIASES)):
            raise _Invalid(f"cron {value!r} has {len(fields)} fields, not 5", _CRON_FIX)
        try:
            croniter(text)
        except (ValueError, KeyError) as exc:
            raise _Invalid(f"cron {value!r} is not valid ({exc})", _CRON_FIX) from None
        return text

    @field_validator("every")
    @classmethod
    def _every(cls, value: float | None) -> float | None:
        return None if value is None else _positive(value, "every")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _Invalid(f"unknown time zone {value!r}",
                           "Use an IANA name such as UTC or Europe/Paris.") from None
        return value

    @model_validator(mode="after")
    def _one(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.every is None):
            raise _Invalid("a schedule trigger needs exactly one of cron or every",
                           "Keep one: cron: \"0 3 * * *\" (03:00 every day) or every: 24h.")
        return self


class VolumeTrigger(_Trigger):
    """Fires when ``rows`` new labelled rows arrived since the last training."""

    kind: Literal[TriggerKind.VOLUME]
    rows: int = Field(ge=1)


class AlertTrigger(_Trigger):
    """Fires when an alert of ``rule`` for the model fires (in ``environment``, or any)."""

    kind: Literal[TriggerKind.ALERT]
    rule: str = Field(min_length=1, max_length=128)
    environment: str | None = None


class ManualTrigger(_Trigger):
    """Never fires by itself: ``mlops retrain run`` names it."""

    kind: Literal[TriggerKind.MANUAL]
    cooldown: Duration = 0.0


#: One trigger of any kind, told apart by ``kind``.
Trigger = Annotated[DriftTrigger | PerformanceTrigger | ScheduleTrigger | VolumeTrigger |
                    AlertTrigger | ManualTrigger, Field(discriminator="kind")]
_KINDS: dict[str, type[_Trigger]] = {
    "drift": DriftTrigger, "performance": PerformanceTrigger, "schedule": ScheduleTrigger,
    "volume": VolumeTrigger, "alert": AlertTrigger, "manual": ManualTrigger}


class RetrainConfig(_Strict):
    """One model's retraining configuration (see the module docstring)."""

    command: list[str] | None = None
    webhook: Webhook | None = None
    workdir: str | None = None
    timeout: Duration = 3600.0
    data_window: Duration = 7 * 86_400.0
    auto_deploy: bool = False
    requeue_interrupted: bool = True
    min_expected_gain: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    max_runs_per_day: int = Field(default=4, ge=1, le=1000)
    triggers: list[Trigger] = Field(default_factory=list)

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise _Invalid(f"command {value!r} cannot be split ({exc})",
                               "Close the quotes, or write the command as a list: "
                               "[python, train.py].") from None
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not value[0].strip()):
            raise _Invalid("command is empty", "Write the command, e.g. [python, train.py].")
        return value

    @field_validator("timeout", "data_window")
    @classmethod
    def _longer_than_zero(cls, value: float, info: ValidationInfo) -> float:
        return _positive(value, str(info.field_name))

    @model_validator(mode="after")
    def _check(self) -> RetrainConfig:
        if self.command is None and self.webhook is None:
            raise _Invalid("no command or webhook",
                           "Add command: [python, train.py] (or webhook: {url: "
                           "https://ci.example/hooks/retrain}).")
        if self.command is not None and self.webhook is not None:
            raise _Invalid("both command and webhook are set",
                           "Keep one: a job runs a command or calls a webhook.", ("webhook",))
        seen: set[str] = set()
        for i, trigger in enumerate(self.triggers):
            if trigger.name in seen:
                raise _Invalid(f"two triggers are named {trigger.name!r}",
                               "Rename one: trigger names are unique within a model.",
                               ("triggers", i, "name"))
            seen.add(trigger.name)
        return self

    def trigger(self, name: str) -> DriftTrigger | PerformanceTrigger | ScheduleTrigger | \
            VolumeTrigger | AlertTrigger | ManualTrigger:
        """The trigger called ``name`` (:class:`ConfigError` if there is none)."""
        for trigger in self.triggers:
            if trigger.name == name:
                return trigger
        names = ", ".join(t.name for t in self.triggers) or "none"
        raise ConfigError(f"No trigger named {name!r}.",
                          fix=f"Use one of the configured triggers ({names}).", key=name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, durations as ``"6h"``; :meth:`from_dict` reads it back equal."""
        out: dict[str, Any] = self.model_dump(mode="json", exclude_none=True)
        out["triggers"] = [{"name": t["name"], "kind": t["kind"], **t}
                           for t in out["triggers"]]
        return out

    def to_yaml(self, *, redacted: bool = False) -> str:
        """The configuration as YAML (what ``parse_config`` reads back equal); ``redacted``
        hides the webhook's secrets (:func:`~mlops.store.egress.redact_secrets`), for pages."""
        data = self.to_dict()
        return yaml.safe_dump(redact_secrets(data) if redacted else data, sort_keys=False,
                              default_flow_style=None, allow_unicode=True)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "retraining configuration"
                  ) -> RetrainConfig:
        """Validate a mapping (e.g. the stored JSON); errors name the key, not a line."""
        return _validate(data, source, "")


def parse_config(text: str, source: str = "retrain.yaml") -> RetrainConfig:
    """Parse and validate YAML text; errors name ``source``, the line and the key."""
    try:
        data = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        where = f"{source}, line {line}" if line else source
        context = getattr(exc, "context", None)
        raise ConfigError(f"{where}: not valid YAML{' (' + context + ')' if context else ''}: "
                          f"{getattr(exc, 'problem', None) or exc}.",
                          fix="Fix the YAML syntax at that line.", path=source,
                          line=line) from exc
    return _validate(data, source, text)


# ---------------------------------------------------------------------------- errors


def _validate(data: Any, source: str, text: str) -> RetrainConfig:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a retraining configuration must be a mapping with command (or "
            f"webhook) and triggers, not {type(data).__name__}.",
            fix="Write a mapping, e.g. `command: [python, train.py]` and `triggers: "
                "[{name: drift, kind: drift, share: 0.3}]`.", path=source)
    try:
        return RetrainConfig.model_validate(data)
    except ValidationError as exc:
        raise _error(exc, data, source, text) from None


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The loc without pydantic's union tag (``triggers, 0, drift, share``)."""
    if len(loc) >= 3 and loc[0] == "triggers" and isinstance(loc[1], int) and loc[2] in _KINDS:
        return (*loc[:2], *loc[3:])
    return loc


def _key(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _fields_at(path: tuple[Any, ...], data: Any) -> list[str]:
    """Keys allowed in the mapping at ``path`` (for 'did you mean')."""
    model: type[BaseModel] | None = None
    if path == ():
        model = RetrainConfig
    elif path == ("webhook",):
        model = Webhook
    elif len(path) == 2 and path[0] == "triggers":
        try:
            model = _KINDS.get(str(data["triggers"][path[1]]["kind"]))
        except (KeyError, IndexError, TypeError):
            model = None
    return list(model.model_fields) if model is not None else []


_EXAMPLES = {"name": "drift", "rows": "10000", "metric": "accuracy", "rule": "accuracy-drop",
             "url": "https://ci.example/hooks/retrain"}
_WHOLE = "Use a whole number, 1 or more."
_HINTS = {
    "share": "Use a share of features above 0 and at most 1, e.g. 0.3 (30% of them drifted).",
    "sustained": "Use a whole number of consecutive windows, 1 or more.",
    "min_labels": _WHOLE, "rows": _WHOLE, "max_runs_per_day": _WHOLE,
    "margin": "Use a number of 0 or more, in the metric's units (0.05: five points of "
              "accuracy).",
    "min_expected_gain": "Use a number of 0 or more, in the metric's units (0 never skips).",
}


def _error(exc: ValidationError, data: Any, source: str, text: str) -> ConfigError:
    first = exc.errors()[0]
    kind = str(first.get("type", ""))
    path = _clean_loc(tuple(first.get("loc", ())))
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    cause = (first.get("ctx") or {}).get("error")
    fix = "Fix the value."
    if isinstance(cause, _Invalid):
        fix = cause.fix
        path = cause.path if cause.path is not None else path
    elif kind == "extra_forbidden":
        allowed = _fields_at(path[:-1], data)
        close = difflib.get_close_matches(str(path[-1]), allowed, n=1)
        msg = "unknown key"
        fix = (f"Did you mean {close[0]!r}? " if close else "Remove or rename it. ") + \
            (f"Allowed here: {', '.join(allowed)}." if allowed else "")
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        path = (*path, "kind")
        msg = "unknown trigger kind" if kind == "union_tag_invalid" else "kind is missing"
        fix = f"Set kind to one of {', '.join(_KINDS)}."
    elif kind == "missing":
        msg = "missing"
        if path:
            example = _EXAMPLES.get(str(path[-1]))
            fix = f"Add {path[-1]}" + (f", e.g. {path[-1]}: {example}." if example else ".")
    elif path and path[-1] == "priority":
        fix = f"Use one of {', '.join(p.value for p in Priority)}."
    elif path and str(path[-1]) in _HINTS:
        fix = _HINTS[str(path[-1])]
    line = line_of(text, path) if text else None
    where = f"{source}, line {line}" if line else source
    return ConfigError(f"{where}: {_key(path)}: {msg.rstrip('.')}.", fix=fix.strip(),
                       path=source, line=line, key=_key(path))
