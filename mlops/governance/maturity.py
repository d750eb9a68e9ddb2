"""The MLOps maturity assessment of ``../shared/seeds/002``, scored from what the platform
sees in use, with a questionnaire for what it cannot see.

Five dimensions weigh 20% each (data management, model development, deployment, monitoring,
governance); each has four capabilities of equal weight, scored 0-5. A capability the
platform can observe is scored from the store (the share of versions with hashed training
data, gate runs, staged promotions, progressive rollouts, a rollback that happened, drift
alerts wired, approvals, complete cards, a verifying audit chain); the others (a feature
store, infrastructure as code, SLAs, written data policies) come from the questionnaire and
score 0, marked *not answered*, without it. The overall score maps to the seed's levels:
below 2.0 is level 0, then 1 from 2.0, 2 from 3.0, 3 from 4.0, and 4 above 4.5. Each
capability under 4 comes with its next step, as a command where one exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mlops.ci.runs import RunStore
from mlops.errors import GovernanceError
from mlops.governance.card import REQUIRED_SECTIONS, build_card
from mlops.governance.memo import verified_chain
from mlops.monitoring.alerts import AlertManager
from mlops.monitoring.snapshots import latest_snapshots
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion

__all__ = ["DIMENSIONS", "LEVELS", "Capability", "MaturityReport", "assess_maturity",
           "maturity_level"]

#: the seed's level names, by level
LEVELS = {0: "Manual Process (Ad Hoc)", 1: "DevOps but no MLOps (Basic)",
          2: "Automated Training (Intermediate)", 3: "Automated Model Deployment (Advanced)",
          4: "Full MLOps Automation (Expert)"}
#: dimension -> its four capabilities (the seed's), each observed or asked
DIMENSIONS: dict[str, list[tuple[str, str]]] = {
    "data_management": [("data_versioning", "observed"), ("data_quality", "observed"),
                        ("feature_store", "asked"), ("data_governance", "asked")],
    "model_development": [("experiment_tracking", "observed"), ("model_versioning", "observed"),
                          ("collaboration", "observed"), ("code_quality", "observed")],
    "deployment": [("automated_pipelines", "observed"), ("multi_environment", "observed"),
                   ("rollback", "observed"), ("infrastructure_as_code", "asked")],
    "monitoring": [("performance_monitoring", "observed"), ("drift_detection", "observed"),
                   ("alerting", "observed"), ("sla_management", "asked")],
    "governance": [("risk_management", "observed"), ("audit_trail", "observed"),
                   ("compliance", "observed"), ("documentation", "observed")],
}
_ASKED = {c for caps in DIMENSIONS.values() for c, how in caps if how == "asked"}


def maturity_level(score: float) -> int:
    """The seed's thresholds: <2.0 -> 0, 2.0-3.0 -> 1, 3.0-4.0 -> 2, 4.0-4.5 -> 3, >4.5 -> 4."""
    if score > 4.5:
        return 4
    if score >= 4.0:
        return 3
    if score >= 3.0:
        return 2
    if score >= 2.0:
        return 1
    return 0


@dataclass(frozen=True)
class Capability:
    dimension: str
    name: str
    score: float  # 0-5
    source: str  # "observed", "questionnaire" or "not answered"
    evidence: str
    next_step: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "name": self.name, "score": round(self.score, 2),
                "source": self.source, "evidence": self.evidence,
                "next_step": self.next_step or None}


@dataclass(frozen=True)
class MaturityReport:
    overall_score: float
    maturity_level: int
    level_name: str
    dimension_scores: dict[str, float]
    capabilities: list[Capability] = field(default_factory=list)
    scope: str = "all models"

    @property
    def improvement_recommendations(self) -> list[str]:
        """Next steps, weakest capability first."""
        weak = sorted((c for c in self.capabilities if c.score < 4 and c.next_step),
                      key=lambda c: c.score)
        return [f"{c.dimension}/{c.name} ({c.score:.1f}/5): {c.next_step}" for c in weak]

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "overall_score": round(self.overall_score, 2),
                "maturity_level": self.maturity_level, "level_name": self.level_name,
                "dimension_scores": {k: round(v, 2) for k, v in self.dimension_scores.items()},
                "capabilities": [c.to_dict() for c in self.capabilities],
                "improvement_recommendations": self.improvement_recommendations}


def _share(part: int, whole: int) -> float:
    return 5.0 * part / whole if whole else 0.0


def _read_questionnaire(source: str | Path | Mapping[str, Any] | None) -> dict[str, float]:
    if source is None:
        return {}
    if isinstance(source, str | Path):
        try:
            doc = yaml.safe_load(Path(source).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise GovernanceError(f"The questionnaire {source} cannot be read: {exc}",
                                  fix="Give a YAML file of capability: score (0-5).") from exc
    else:
        doc = dict(source)
    if not isinstance(doc, dict):
        raise GovernanceError("The questionnaire must map capability names to scores 0-5.",
                              fix=f"Answer any of: {', '.join(sorted(_ASKED))}.")
    out = {}
    for key, value in doc.items():
        if key not in _ASKED:
            raise GovernanceError(f"The questionnaire answers {key!r}, which the platform "
                                  "scores from what it observes (or does not know).",
                                  fix=f"Answer only: {', '.join(sorted(_ASKED))}.")
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 <= value <= 5:
            raise GovernanceError(f"The questionnaire's {key!r} is {value!r}; scores run "
                                  "from 0 to 5.", fix=f"{key}: 3")
        out[key] = float(value)
    return out


class _Observed:
    """What the store shows, read once."""

    def __init__(self, registry: ModelRegistry, model: str | None) -> None:
        self.registry = registry
        names = [model] if model else [m.name for m in registry.list_models()]
        self.models = names
        self.versions: list[ModelVersion] = [v for n in names for v in
                                             registry.list_versions(n)]
        subjects = [f"model/{n}" for n in names]
        self.events = [e for subject in subjects
                       for e in registry.audit_log(subject=subject, limit=100_000)]
        self.runs = [r for n in names for r in RunStore(registry).runs(n, limit=10_000)]
        alerts = AlertManager(registry)
        self.rules = [r for n in names for r in alerts.rules(n)]
        self.alerts = [a for n in names for a in alerts.alerts(n, limit=10_000)]
        self.verified = verified_chain(registry)

    def actions(self, action: str) -> list[Any]:
        return [e for e in self.events if e.action == action]


def _observe(o: _Observed) -> dict[str, tuple[float, str, str]]:
    """capability -> (score, evidence, next step)."""
    vs = o.versions
    n = len(vs)
    example = o.models[0] if o.models else "NAME"
    out: dict[str, tuple[float, str, str]] = {}
    hashed = sum(1 for v in vs if v.lineage.training_data_sha256)
    out["data_versioning"] = (_share(hashed, n), f"{hashed} of {n} versions record hashed "
                              "training data", "register with -m training_data=PATH (a file)")
    gated = {r["version"] for r in o.runs if any(
        (s.get("gate") or {}).get("gate") == "data_quality"
        for s in (r.get("report") or {}).get("steps", []))}
    profiled = sum(1 for v in vs if o.registry.reference_profiles(v.model, v.version))
    out["data_quality"] = (
        (_share(len(gated & {v.version for v in vs}), n) + _share(profiled, n)) / 2,
        f"{len(gated)} versions passed a data quality gate, {profiled} have a reference "
        "profile", f"mlops ci gates {example} VERSION --test-data FILE")
    tracked = sum(1 for v in vs if v.lineage.params or v.lineage.mlflow_run_id)
    out["experiment_tracking"] = (_share(tracked, n), f"{tracked} of {n} versions record "
                                  "their training parameters or MLflow run",
                                  "register with -m params=... or from MLflow (mlops models "
                                  "import-mlflow)")
    multi = sum(1 for m in o.models if len([v for v in vs if v.model == m]) >= 2)
    out["model_versioning"] = (_share(multi, len(o.models)) if n else 0.0,
                               f"{n} versions of {len(o.models)} models in the registry",
                               "register each retrained model as a new version")
    people = {e.actor for e in o.events if e.action in ("version.register", "version.approve",
                                                          "rollout.start")}
    out["collaboration"] = (min(5.0, 2.0 * len(people) - 1) if people else 0.0,
                            f"{len(people)} people registered, approved or shipped versions",
                            "team mode with a token per person (mlops tokens create)")
    clean = sum(1 for v in vs if v.lineage.git_commit and not v.lineage.git_dirty)
    out["code_quality"] = (_share(clean, n), f"{clean} of {n} versions were registered "
                           "from a clean git commit", "register from a committed checkout")
    piped = {r["version"] for r in o.runs if r.get("version")}
    out["automated_pipelines"] = (_share(len(piped & {v.version for v in vs}), n),
                                  f"{len(piped)} versions went through the CI pipeline",
                                  f"mlops ci run --model-path FILE --name {example} "
                                  "--test-data FILE")
    staged = {e.subject.rsplit("/", 1)[1] for e in o.actions("version.stage")
              if e.payload.get("to") == "Staging"}
    rolled = {e.payload.get("candidate") for e in o.actions("rollout.start")
              if e.payload.get("strategy") not in (None, "full")}
    in_prod = {e.subject.rsplit("/", 1)[1] for e in o.actions("version.stage")
               if e.payload.get("to") == "Production"} | {
        e.payload.get("version") for e in o.actions("rollout.succeed")}
    in_prod.discard(None)
    promoted = len(in_prod & (staged | {v for v in rolled if v}))
    out["multi_environment"] = (
        _share(promoted, len(in_prod)) if in_prod else (2.0 if staged else 0.0),
        f"{len(in_prod)} versions reached production, {promoted} of them through staging or "
        "a progressive rollout", f"mlops deploy {example} VERSION --env staging first")
    rollbacks = o.actions("rollout.rollback")
    auto = [e for e in rollbacks if "rollout" in e.payload]  # ended a rollout (analysis)
    out["rollback"] = (5.0 if auto else 4.0 if rollbacks else 1.0 if rolled else 0.0,
                       f"{len(rollbacks)} rollbacks happened ({len(auto)} ending a rollout), "
                       f"{len(rolled)} progressive rollouts",
                       f"mlops deploy {example} VERSION --strategy canary (the controller "
                       "rolls back a failed analysis)")
    monitored = [m for m in o.models if latest_snapshots(o.registry, m)]
    out["performance_monitoring"] = (_share(len(monitored), len(o.models)),
                                     f"{len(monitored)} of {len(o.models)} models have "
                                     "monitoring windows",
                                     f"mlops serve (the evaluator) or mlops monitor evaluate "
                                     f"{example}")
    drift_rules = [r for r in o.rules if r.metric in ("drift_share", "prediction_drift",
                                                       "concept_drift")]
    out["drift_detection"] = (
        (_share(profiled, n) + (5.0 if drift_rules else 0.0)) / 2,
        f"{profiled} versions have reference profiles, {len(drift_rules)} drift alert rules",
        f"mlops monitor reference {example} VERSION --data FILE and a drift alert rule")
    handled = [a for a in o.alerts if a.acked_at or a.resolved_at]
    out["alerting"] = (
        min(5.0, (2.5 if o.rules else 0.0) + (2.5 * len(handled) / len(o.alerts)
                                              if o.alerts else 0.0)),
        f"{len(o.rules)} alert rules, {len(o.alerts)} alerts ({len(handled)} acknowledged or "
        "resolved)", "mlops alerts rules, and acknowledge what fires")
    official = [r for r in o.runs if (r.get("report") or {}).get("official_policy")]
    approved = {e.subject.rsplit("/", 1)[1] for e in o.actions("version.approve")}
    out["risk_management"] = (
        (_share(len({r["version"] for r in official if r.get("version")}), n)
         + _share(len(approved & {v.version for v in vs}), n)) / 2,
        f"{len(official)} gate runs under the configured policy, {len(approved)} versions "
        "approved", "set MLOPS_POLICY_FILE and have versions approved (mlops ci approve)")
    out["audit_trail"] = (5.0 if o.verified.ok else 0.0,
                          f"the audit chain {'verifies' if o.verified.ok else 'is BROKEN'} "
                          f"({o.verified.events} events)", "mlops audit verify")
    important = [v for v in vs if v.stage in ("Production", "Staging")] or vs
    complete = sum(1 for v in important
                   if not build_card(o.registry, v.model, v.version).missing(REQUIRED_SECTIONS))
    out["compliance"] = (_share(complete, len(important)),
                         f"{complete} of {len(important)} staged or production versions have a "
                         "complete model card", f"mlops card {example} production --require")
    stated = sum(1 for v in important if v.tags.get("card.intended_use")
                 and v.tags.get("card.limitations"))
    out["documentation"] = (_share(stated, len(important)),
                            f"{stated} of {len(important)} staged or production versions state "
                            "their intended use and limitations",
                            f'mlops models tag {example} card.intended_use="..." --version V')
    return out


_ASK_STEPS = {
    "feature_store": "answer feature_store in the questionnaire (mlops maturity "
                     "--questionnaire FILE)",
    "data_governance": "write retention and access rules; answer data_governance",
    "infrastructure_as_code": "render manifests from the registry and keep them in git; "
                              "answer infrastructure_as_code",
    "sla_management": "set latency and error-rate alert rules as SLOs; answer sla_management",
}


def assess_maturity(registry: ModelRegistry, *, model: str | None = None,
                    questionnaire: str | Path | Mapping[str, Any] | None = None
                    ) -> MaturityReport:
    """Score the five dimensions from the store (one model's records, or all), plus the
    questionnaire's answers for what the platform cannot see."""
    if model is not None:
        registry.get_model(model)  # an unknown name is an error, not a zero score
    answers = _read_questionnaire(questionnaire)
    observed = _observe(_Observed(registry, model))
    caps: list[Capability] = []
    dims: dict[str, float] = {}
    for dim, items in DIMENSIONS.items():
        scores = []
        for name, how in items:
            if how == "observed":
                score, evidence, step = observed[name]
                cap = Capability(dim, name, max(0.0, min(5.0, score)), "observed", evidence,
                                 step)
            elif name in answers:
                cap = Capability(dim, name, answers[name], "questionnaire",
                                 "answered in the questionnaire", _ASK_STEPS[name])
            else:
                cap = Capability(dim, name, 0.0, "not answered",
                                 "the platform cannot see this", _ASK_STEPS[name])
            caps.append(cap)
            scores.append(cap.score)
        dims[dim] = sum(scores) / len(scores)
    overall = sum(dims.values()) / len(dims)  # 20% each
    level = maturity_level(overall)
    return MaturityReport(overall, level, LEVELS[level], dims, caps,
                          f"model {model}" if model else "all models")
