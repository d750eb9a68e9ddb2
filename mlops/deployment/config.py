"""Rollout settings: one validated model per strategy, parsed before anything is stored.

A rollout's ``config`` mixes the plan of its strategy (``steps``, ``traffic_split``,
``mirror`` ...) with the analysis and controller settings every strategy shares
(:class:`RolloutConfig`: ``alpha``, ``min_samples``, margins, timers). Unknown keys, wrong
types and values out of range are refused by :func:`parse_rollout_config` with a
:class:`~mlops.errors.DeploymentError` that names the key, the problem, the nearest valid
key and the fix. The analysis part (:meth:`RolloutConfig.analysis`) is what a rollout row
stores; the controller parses it again with the same models.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlops.errors import DeploymentError

__all__ = [
    "MAX_STEPS",
    "PLAN_KEYS",
    "STRATEGIES",
    "ABTestConfig",
    "BanditConfig",
    "BlueGreenConfig",
    "CanaryConfig",
    "CanaryStep",
    "FullConfig",
    "RolloutConfig",
    "ShadowConfig",
    "config_model",
    "parse_pause",
    "parse_rollout_config",
]

MAX_STEPS = 100
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_PAUSE_FIX = 'Use seconds, "30s", "5m", "1h", "analysis" or "manual".'


def _pause(value: Any) -> float | str:
    """A pause as seconds or ``"analysis"``/``"manual"`` (raises a pydantic error)."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise PydanticCustomError("rollout", "Pause {value} is not a duration",
                                  {"value": repr(value), "fix": _PAUSE_FIX})
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise PydanticCustomError("rollout", "Pause {value} is not 0 or more seconds",
                                      {"value": repr(value), "fix": "Use 0 or more seconds."})
        return float(value)
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in {"analysis", "manual"}:
        return text
    match = _DURATION.match(text) if text is not None else None
    if match is None:
        raise PydanticCustomError("rollout", "Pause {value} is not a duration",
                                  {"value": repr(value), "fix": _PAUSE_FIX})
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_pause(value: Any) -> tuple[float, str]:
    """``(seconds, until)`` from a number, a duration string, "analysis" or "manual"."""
    try:
        pause = _pause(value)
    except PydanticCustomError as exc:
        raise DeploymentError(f"{exc.message()}.",
                              fix=str((exc.context or {}).get("fix", _PAUSE_FIX))) from None
    return (0.0, pause) if isinstance(pause, str) else (pause, "time")


def _count(value: Any) -> Any:
    """Whole-number floats (``500.0``) count as integers; everything else is left as is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Pause = Annotated[float | Literal["analysis", "manual"], BeforeValidator(_pause)]
Weight = Annotated[float, Field(gt=0.0, le=100.0)]
Count = Annotated[int, BeforeValidator(_count)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class RolloutConfig(_Strict):
    """The analysis and controller settings every strategy shares."""

    strategy: ClassVar[str] = ""
    #: keys that shape the plan (steps); the rest is the analysis part stored on the row
    STEP_KEYS: ClassVar[tuple[str, ...]] = ()

    alpha: float = Field(default=0.05, gt=0.0, le=0.5, description=(
        "a number in (0, 0.5], the false-decision rate of the sequential tests"))
    error_margin: float = Field(default=0.01, ge=0.0, le=1.0, description=(
        "a number in [0, 1], the absolute 5xx-rate points the candidate may add"))
    accuracy_margin: float = Field(default=0.02, gt=0.0, le=1.0, description=(
        "a number in (0, 1], the absolute accuracy points the candidate may lose"))
    mae_margin: float | None = Field(default=None, gt=0.0, description=(
        "a number above 0, the mean absolute error the candidate may add "
        "(regression; unset: 5% of stable's MAE)"))
    label_delay: float = Field(default=0.0, ge=0.0, description=(
        "0 or more seconds before a prediction's label counts as mature"))
    label_window: float = Field(default=86_400.0, gt=0.0, description=(
        "seconds above 0 a prediction waits for its label; a later label is not counted "
        "(default one day)"))
    latency_tolerance: float = Field(default=0.5, ge=0.0, description=(
        "a fraction, 0 or more, by which candidate p99 may exceed stable p99"))
    latency_slack_ms: float = Field(default=5.0, ge=0.0, description=(
        "0 or more milliseconds added to the p99 limit"))
    min_samples: Count = Field(default=50, ge=1, description=(
        "a whole number, 1 or more, of requests per arm before a verdict (labelled "
        "requests for a bandit)"))
    require_labels: bool = Field(default=False, description=(
        "true or false (whether success needs a verdict on labels: accuracy or MAE)"))
    srm_threshold: float = Field(default=0.001, gt=0.0, le=0.5, description=(
        "a number in (0, 0.5], the p-value below which the split counts as broken"))
    srm_settle_seconds: float = Field(default=5.0, ge=0.0, description=(
        "0 or more seconds the newest log rows wait before the sample-ratio check"))
    keep_previous_seconds: float = Field(default=600.0, ge=0.0, description=(
        "0 or more seconds the previous version stays loaded after a switch"))
    max_step_seconds: float | None = Field(default=None, gt=0.0, description=(
        "seconds above 0 a step may stay inconclusive before the rollout pauses "
        "(unset: max(3600, 10 x the step's pause))"))

    def analysis(self) -> dict[str, Any]:
        """The settings a rollout row stores (everything but the plan), JSON-ready."""
        return self.model_dump(exclude=set(self.STEP_KEYS), exclude_none=True)


class FullConfig(RolloutConfig):
    """``full``: all traffic to the candidate at once."""

    strategy: ClassVar[str] = "full"


class CanaryStep(_Strict):
    """One canary step: ``weight`` percent to the candidate, then ``pause``."""

    weight: Weight = Field(description="a percent in (0, 100] sent to the candidate")
    pause: Pause = Field(default=0.0, description=(
        'seconds or "30s", "5m", "1h", "analysis", "manual"'))


class CanaryConfig(RolloutConfig):
    """``canary``: explicit ``steps``, or the seed's ``initial_traffic`` + ``increment``
    every ``interval_minutes``."""

    strategy: ClassVar[str] = "canary"
    STEP_KEYS: ClassVar[tuple[str, ...]] = ("steps", "initial_traffic", "increment",
                                            "interval_minutes")
    _SEED: ClassVar[tuple[str, ...]] = ("initial_traffic", "increment", "interval_minutes")

    steps: list[CanaryStep] | None = Field(default=None, min_length=1, max_length=MAX_STEPS,
                                           description=(
        'a non-empty list such as [{"weight": 10, "pause": "5m"}, {"weight": 100}] with '
        'rising weights'))
    initial_traffic: Weight = Field(default=10.0, description=(
        "a percent in (0, 100] sent to the candidate at the first step"))
    increment: Weight | None = Field(default=None, description=(
        "a percent in (0, 100] added at each step (unset: initial_traffic)"))
    interval_minutes: float = Field(default=5.0, ge=0.0, description=(
        "0 or more minutes between steps"))

    @model_validator(mode="after")
    def _plan(self) -> CanaryConfig:
        seed = [k for k in self._SEED if k in self.model_fields_set]
        if self.steps is not None and seed:
            raise PydanticCustomError(
                "rollout", "canary takes steps or {seed}, not both",
                {"seed": "/".join(seed), "fix": f"Remove {', '.join(seed)} or remove steps."})
        last = 0.0
        for i, step in enumerate(self.steps or []):
            if step.weight < last:
                raise PydanticCustomError(
                    "rollout", "canary step {i} lowers the weight ({last} -> {weight})",
                    {"i": i, "last": last, "weight": step.weight,
                     "fix": "Give steps in increasing weight."})
            last = step.weight
        if self.steps is None:
            count = math.ceil((100.0 - self.initial_traffic) / self.step_increment)
            if count > MAX_STEPS:
                raise PydanticCustomError(
                    "rollout", "canary of {count} steps (increment {increment})",
                    {"count": count, "increment": self.step_increment,
                     "fix": f"Use an increment that reaches 100% in {MAX_STEPS} steps or "
                            "fewer."})
        return self

    @property
    def step_increment(self) -> float:
        return self.initial_traffic if self.increment is None else self.increment


class BlueGreenConfig(RolloutConfig):
    """``blue_green``: green loaded beside blue, smoke requests, then everything to green
    for an ``observe`` window."""

    strategy: ClassVar[str] = "blue_green"
    STEP_KEYS: ClassVar[tuple[str, ...]] = ("observe",)

    observe: Pause = Field(default="analysis", description=(
        'seconds or "5m", "analysis", "manual": how long all traffic stays on green '
        'under observation'))


class ABTestConfig(RolloutConfig):
    """``ab_test``: a fixed split held until the analysis decides."""

    strategy: ClassVar[str] = "ab_test"
    STEP_KEYS: ClassVar[tuple[str, ...]] = ("traffic_split", "pause")

    traffic_split: float = Field(default=0.5, gt=0.0, le=100.0, description=(
        "a fraction in (0, 1) (0.3 = 30%) or a percent in (1, 100): the candidate's share"))
    pause: Pause = Field(default="analysis", description=(
        'seconds or "5m", "analysis", "manual": how long the split holds'))

    @model_validator(mode="after")
    def _both_arms(self) -> ABTestConfig:
        if self.weight >= 100.0:
            raise PydanticCustomError(
                "rollout", "an A/B test needs traffic on both versions (traffic_split {split})",
                {"split": self.traffic_split, "fix": "Use a traffic_split below 1 (e.g. 0.5)."})
        return self

    @property
    def weight(self) -> float:
        """The candidate's percent: a split up to 1 is a fraction, above 1 a percent."""
        split = self.traffic_split
        return split * 100.0 if split <= 1.0 else split


class ShadowConfig(RolloutConfig):
    """``shadow``: the candidate answers a mirrored share; clients always get stable."""

    strategy: ClassVar[str] = "shadow"
    STEP_KEYS: ClassVar[tuple[str, ...]] = ("mirror", "pause")

    mirror: Weight = Field(default=100.0, description="a percent in (0, 100] of requests mirrored")
    pause: Pause = Field(default="analysis", description=(
        'seconds or "5m", "analysis", "manual": how long to mirror'))


class BanditConfig(RolloutConfig):
    """``bandit``: Thompson sampling moves the split until one arm wins."""

    strategy: ClassVar[str] = "bandit"
    STEP_KEYS: ClassVar[tuple[str, ...]] = ("initial_weight",)

    initial_weight: Weight = Field(default=50.0, description=(
        "a percent in (0, 100], the candidate's first share (at most 99 applies)"))
    floor: float = Field(default=1.0, gt=0.0, lt=50.0, description=(
        "a percent in (0, 50), the smallest share either arm keeps"))
    decide_at: float = Field(default=0.95, gt=0.5, lt=1.0, description=(
        "a probability in (0.5, 1): P(candidate better) that ends the bandit"))
    draws: Count = Field(default=20_000, ge=100, le=1_000_000, description=(
        "a whole number from 100 to 1,000,000 of posterior draws per look"))
    seed: Count = Field(default=0, ge=0, description="a whole number, 0 or more: the random seed")


_MODELS: dict[str, type[RolloutConfig]] = {m.strategy: m for m in (
    FullConfig, CanaryConfig, BlueGreenConfig, ABTestConfig, ShadowConfig, BanditConfig)}
STRATEGIES: tuple[str, ...] = tuple(_MODELS)
#: every key that shapes a plan, whatever the strategy
PLAN_KEYS: frozenset[str] = frozenset(k for m in _MODELS.values() for k in m.STEP_KEYS)


def config_model(strategy: str) -> type[RolloutConfig]:
    """The settings model of ``strategy``; unknown names name the nearest strategy."""
    model = _MODELS.get(strategy) if isinstance(strategy, str) else None
    if model is None:
        near = difflib.get_close_matches(str(strategy), STRATEGIES, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else "."
        raise DeploymentError(f"Unknown strategy {strategy!r}{hint}",
                              fix=f"Use one of {', '.join(STRATEGIES)}.", key="strategy",
                              strategy=str(strategy))
    return model


def parse_rollout_config(strategy: str, config: Mapping[str, Any] | None) -> RolloutConfig:
    """Validate ``config`` for ``strategy``: a typed, normalised :class:`RolloutConfig`."""
    model = config_model(strategy)
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise DeploymentError(f"The {strategy} rollout config must be a mapping, not "
                              f"{type(config).__name__}.",
                              fix='Give an object such as {"min_samples": 500}.',
                              strategy=strategy)
    try:
        return model.model_validate(dict(config))
    except ValidationError as exc:
        raise _error(model, exc) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _a(strategy: str) -> str:
    return f"{'an' if strategy[:1] in 'aeiou' else 'a'} {strategy}"


def _where(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field(model: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    """The pydantic field at ``loc`` (through lists of steps), or None."""
    current: Any = model
    found = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        found = fields.get(part)
        if found is None:
            return None
        current = CanaryStep if part == "steps" else None
    return found


def _error(model: type[RolloutConfig], exc: ValidationError) -> DeploymentError:
    """One :class:`DeploymentError` for every problem pydantic found, the first named."""
    problems: list[str] = []
    fixes: list[str] = []
    for err in exc.errors()[:5]:
        loc = tuple(err.get("loc", ()))
        key = str(loc[-1]) if loc else ""
        where = _where(loc[:-1])
        kind = err.get("type", "")
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            parent = CanaryStep if where else model
            valid = sorted(parent.model_fields)
            near = difflib.get_close_matches(key, valid, n=1)
            owners = [name for name, m in _MODELS.items() if key in m.model_fields]
            inside = f" in {where}" if where else ""
            text = f"unknown key {key!r}{inside} for {_a(model.strategy)} rollout"
            if near:
                text += f"; did you mean {near[0]!r}?"
                fixes.append(f"Rename {key!r} to {near[0]!r}.")
            elif owners and not where:
                text += f" (a setting of {', '.join(owners)})"
                fixes.append(f"Remove {key!r}, or use strategy {owners[0]}.")
            else:
                fixes.append(f"Remove {key!r}; valid keys: {', '.join(valid)}.")
        elif kind == "missing":
            text = f"missing key {key!r} in {where or 'the config'} for {_a(model.strategy)} " \
                   "rollout"
            fixes.append('Write each step as {"weight": 10, "pause": "5m"}.')
        elif kind == "rollout":
            text = f"{err.get('msg')}" if not loc else f"{_where(loc)}: {err.get('msg')}"
            fixes.append(str(ctx.get("fix", "Fix the value.")))
        else:
            msg = str(err.get("msg", "invalid"))
            text = f"invalid {_where(loc) or 'config'} for {_a(model.strategy)} rollout: " \
                   f"{msg[:1].lower() + msg[1:]} (got {_short(err.get('input'))})"
            name = next((str(p) for p in reversed(loc) if not isinstance(p, int)), key)
            field = _field(model, loc)
            described = getattr(field, "description", None)
            default = getattr(field, "default", None)
            hint = f" (default {default})" if isinstance(default, int | float | str) \
                and not isinstance(default, bool) and default is not None else ""
            fixes.append(f"Set {name} to {described}{hint}." if described
                         else "Fix the value.")
        problems.append(text)
    more = len(exc.errors()) - len(problems)
    message = "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    first = tuple(exc.errors()[0].get("loc", ())) if exc.errors() else ()
    if not message.endswith(("?", ".")):
        message += "."
    return DeploymentError(message, fix=" ".join(dict.fromkeys(fixes)),
                           strategy=model.strategy, key=_where(first) or None)
