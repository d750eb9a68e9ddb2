"""Policy as code: which gates a model must pass, with which thresholds, who must approve
production, and how it rolls out.

A policy file (YAML)::

    version: 1
    default_tier: medium
    tiers:                       # optional: override the built-in tier defaults
      high: {approvals: 2}
    models:
      churn:
        tier: high
        sensitive_features: [gender]
        gates:
          metrics: {accuracy: 0.85, f1: 0.80}
          champion: {margin: 0.01}
          fairness: {max_demographic_parity_difference: 0.08}
          explainability: {enabled: false}
        approvals: 2
        rollout: {strategy: canary, steps: [{weight: 10, pause: 5m}, {weight: 100}]}

A model gets its tier's gates and settings, overridden key by key by its own entry;
``enabled: false`` turns a gate off. Every gate's settings are validated against that gate's
``Config`` when the file is loaded, and errors name the file, the line and the key.

Built-in tiers (:data:`TIERS`): ``low`` runs security, data quality and metrics, needs no
approval and deploys ``full``; ``medium`` adds champion, latency, resources and slices, one
approval, ``canary``; ``high`` adds fairness and explainability, two approvals, a slower
canary.
"""

from __future__ import annotations

import copy
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops._yaml import line_of, safe_load
from mlops.errors import PolicyError

__all__ = ["GATE_ORDER", "TIERS", "ModelPolicy", "Policy", "configured_policy", "gate_module"]

#: Gates in the order the pipeline runs them (cheap, decisive checks first).
GATE_ORDER = ("security", "data_quality", "metrics", "champion", "slices", "fairness",
              "latency", "resources", "explainability")

TIERS: dict[str, dict[str, Any]] = {
    "low": {"gates": {"security": {}, "data_quality": {}, "metrics": {}},
            "approvals": 0, "rollout": {"strategy": "full"}},
    "medium": {"gates": {"security": {}, "data_quality": {}, "metrics": {}, "champion": {},
                         "slices": {}, "latency": {}, "resources": {}},
               "approvals": 1,
               "rollout": {"strategy": "canary", "steps": [
                   {"weight": 10, "pause": "5m"}, {"weight": 50, "pause": "5m"},
                   {"weight": 100}]}},
    "high": {"gates": {"security": {"allow_pickle": False}, "data_quality": {}, "metrics": {},
                       "champion": {}, "slices": {}, "fairness": {}, "latency": {},
                       "resources": {}, "explainability": {}},
             "approvals": 2,
             "rollout": {"strategy": "canary", "steps": [
                 {"weight": 5, "pause": "10m"}, {"weight": 25, "pause": "10m"},
                 {"weight": 50, "pause": "10m"}, {"weight": 100}]}},
}


def gate_module(name: str) -> ModuleType:
    """The module of gate ``name`` (``mlops.ci.gates.<name>``)."""
    if name not in GATE_ORDER:
        raise PolicyError(f"Unknown gate {name!r}.", fix=f"Use one of {', '.join(GATE_ORDER)}.",
                          key=name)
    return importlib.import_module(f"mlops.ci.gates.{name}")


class _Rollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: str = "canary"
    steps: list[dict[str, Any]] | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: str | None = None
    gates: dict[str, dict[str, Any]] = Field(default_factory=dict)
    approvals: int | None = Field(default=None, ge=0, le=10)
    rollout: _Rollout | None = None
    sensitive_features: list[str] = Field(default_factory=list)
    label: str | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    default_tier: str = "medium"
    tiers: dict[str, _Entry] = Field(default_factory=dict)
    models: dict[str, _Entry] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelPolicy:
    """The resolved policy of one model: gate configs (validated), approvals, rollout."""

    model: str
    tier: str
    gates: dict[str, Any]               # gate name -> its validated Config, in run order
    approvals: int
    rollout: dict[str, Any]
    sensitive_features: list[str] = field(default_factory=list)
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "tier": self.tier,
                "gates": {k: v.model_dump() for k, v in self.gates.items()},
                "approvals": self.approvals, "rollout": self.rollout,
                "sensitive_features": self.sensitive_features, "label": self.label}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class Policy:
    """A loaded, validated policy file (or the built-in defaults)."""

    def __init__(self, data: dict[str, Any] | None = None, *, source: str = "<defaults>",
                 text: str = "") -> None:
        self.source = source
        self._text = text
        try:
            self._file = _File.model_validate(data or {})
        except ValidationError as exc:
            raise self._error(exc, ()) from exc
        tiers = {name: copy.deepcopy(spec) for name, spec in TIERS.items()}
        for name, entry in self._file.tiers.items():
            tiers[name] = _merge(tiers.get(name, {"gates": {}, "approvals": 0,
                                                  "rollout": {"strategy": "full"}}),
                                 entry.model_dump(exclude_none=True, exclude_unset=True))
        self._tiers = tiers
        if self._file.default_tier not in tiers:
            raise self._at(("default_tier",), f"unknown tier {self._file.default_tier!r}",
                           f"use one of {', '.join(tiers)}")
        for name in self._file.models:
            self.for_model(name)  # validate every entry now, not at deploy time

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read and validate a YAML policy file."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"Cannot read the policy file {file}: {exc}.",
                              fix="Check the path.", path=str(file)) from exc
        try:
            data = safe_load(text)
        except yaml.YAMLError as exc:
            # the construct that is left open (context) is where people look, not the
            # end of the stream where the parser noticed
            mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            context = getattr(exc, "context", None)
            raise PolicyError(f"{file}{where}: not valid YAML"
                              f"{' (' + context + ')' if context else ''}: "
                              f"{getattr(exc, 'problem', None) or exc}.",
                              fix="Fix the YAML syntax at that line.", path=str(file),
                              line=mark.line + 1 if mark is not None else None) from exc
        if data is not None and not isinstance(data, dict):
            raise PolicyError(f"{file}: the policy must be a mapping (version, models, ...).",
                              fix="See `mlops ci policy check --help` for an example.",
                              path=str(file))
        return cls(data or {}, source=str(file), text=text)

    def _at(self, path: tuple[Any, ...], problem: str, fix: str) -> PolicyError:
        line = line_of(self._text, path) if self._text else None
        key = ".".join(str(p) for p in path)
        where = f"{self.source}, line {line}" if line else self.source
        return PolicyError(f"{where}: {key}: {problem}.", fix=fix, path=self.source, line=line,
                           key=key)

    def _error(self, exc: ValidationError, prefix: tuple[Any, ...]) -> PolicyError:
        first = exc.errors()[0]
        loc = (*prefix, *first.get("loc", ()))
        msg = str(first.get("msg", "invalid"))
        fix = "Remove or rename the key." if first.get("type") == "extra_forbidden" else \
            "Fix the value; see the gate's settings in the docs."
        return self._at(tuple(loc), msg, fix)

    def _check_rollout(self, model: str, entry: _Entry | None, tier: str,
                       rollout: dict[str, Any]) -> dict[str, Any]:
        """A typo in the rollout must fail at load time, with its line, not at promotion.

        The rollout is layered: the built-in tier, the file's tier, the model's entry. A
        layer that sets the plan (writes ``steps``, ``traffic_split``, ... or names another
        strategy) replaces the plan below it, so a model that turns a canary tier into
        ``blue_green`` does not inherit the tier's steps; analysis keys merge key by key.
        The result is validated with the strategy's settings model and returned."""
        from mlops.deployment.config import PLAN_KEYS, parse_rollout_config
        from mlops.errors import DeploymentError

        section: tuple[Any, ...] = ("tiers", tier, "rollout")
        layers: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
            (section, copy.deepcopy(TIERS.get(tier, {}).get("rollout") or
                                    {"strategy": "full"}))]
        for path, written in ((section, self._file.tiers.get(tier)),
                              (("models", model, "rollout"), entry)):
            if written is not None and written.rollout is not None:
                layers.append((path, written.rollout.model_dump(exclude_unset=True)))
                section = path
        strategy = str(rollout.get("strategy", "canary"))
        current = str(layers[0][1].get("strategy", "canary"))
        plan: dict[str, Any] = {}
        analysis: dict[str, Any] = {}
        origin: dict[str, tuple[Any, ...]] = {}
        for path, layer in layers:
            flat = {**dict(layer.get("config") or {}),
                    **({"steps": layer["steps"]} if layer.get("steps") else {})}
            mine = {k: v for k, v in flat.items() if k in PLAN_KEYS}
            named = layer.get("strategy")
            if mine or (named is not None and named != current):
                plan = mine
            current = str(named or current)
            analysis.update({k: v for k, v in flat.items() if k not in PLAN_KEYS})
            origin.update({k: path for k in flat})
        try:
            parse_rollout_config(strategy, {**analysis, **plan})
        except DeploymentError as exc:
            key = str(exc.context.get("key") or "")
            parts: list[Any] = [int(p) if p.isdigit() else p
                                for p in re.findall(r"[^.\[\]]+", key)]
            where = section if not parts or parts[0] == "strategy" else \
                (*origin.get(str(parts[0]), section),
                 *(parts if parts[0] == "steps" else ["config", *parts]))
            problem = exc.message.rstrip(".")
            cut = problem.rfind("; did you mean")
            if cut > 0 and problem.endswith("?"):  # the suggestion is in the fix
                problem = problem[:cut]
            raise self._at(where, problem, exc.fix or "Fix the rollout.") from exc
        config = {**analysis, **{k: v for k, v in plan.items() if k != "steps"}}
        return {"strategy": strategy, **({"steps": plan["steps"]} if "steps" in plan else {}),
                **({"config": config} if config else {})}

    def models(self) -> list[str]:
        """Models with an entry of their own."""
        return list(self._file.models)

    def for_model(self, model: str) -> ModelPolicy:
        """The resolved policy of ``model`` (its tier, overridden by its own entry)."""
        entry = self._file.models.get(model)
        tier = (entry.tier if entry and entry.tier else None) or self._file.default_tier
        if tier not in self._tiers:
            raise self._at(("models", model, "tier"), f"unknown tier {tier!r}",
                           f"use one of {', '.join(self._tiers)}")
        spec = copy.deepcopy(self._tiers[tier])
        if entry is not None:
            spec = _merge(spec, entry.model_dump(exclude_none=True, exclude_unset=True))
        gates: dict[str, Any] = {}
        for name, settings in spec.get("gates", {}).items():
            path: tuple[Any, ...] = ("models", model, "gates", name) if entry and \
                name in entry.gates else ("tiers", tier, "gates", name)
            if name not in GATE_ORDER:
                raise self._at(path, f"unknown gate {name!r}",
                               f"use one of {', '.join(GATE_ORDER)}")
            module = gate_module(name)
            try:
                config = module.Config.model_validate(settings or {})
            except ValidationError as exc:
                raise self._error(exc, path) from exc
            if config.enabled:
                gates[name] = config
        ordered = {n: gates[n] for n in GATE_ORDER if n in gates}
        rollout = spec.get("rollout") or {"strategy": "full"}
        rollout = self._check_rollout(model, entry, tier, rollout)
        return ModelPolicy(model=model, tier=tier, gates=ordered,
                           approvals=int(spec.get("approvals", 0)), rollout=dict(rollout),
                           sensitive_features=list(spec.get("sensitive_features", [])),
                           label=spec.get("label"))


def configured_policy(policy_file: str) -> Policy:
    """The store's authoritative policy (``MLOPS_POLICY_FILE``, else the built-in tiers).

    The promotion rule reads approvals from it, whatever policy a pipeline run was given,
    so a lax ``--policy`` file cannot skip the approvals the organisation configured.
    """
    return Policy.load(policy_file) if policy_file else Policy()
