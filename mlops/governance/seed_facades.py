"""The seeds' governance classes, as thin facades over :mod:`mlops.governance`.

``MLOpsMaturityAssessment`` (``../shared/seeds/002``): ``conduct_assessment`` returns a
``MaturityAssessmentReport`` with the seed's fields, scored by
:func:`~mlops.governance.maturity.assess_maturity` from what the platform recorded.

The seed's assessment framework object (its ``dimensions``) is accepted and, when given,
must name the five dimensions the platform scores; the organisation context may carry
``model`` (one model's records), ``questionnaire`` (answers 0-5 for what the platform cannot
see, a mapping or a YAML path) and ``registry``.

``ModelGovernanceFramework`` (``../shared/seeds/000``, step 6.3): the policies in force,
``create_model_card``, ``track_model_lineage`` and ``audit_model_usage`` in the seed's
shapes, from :mod:`~mlops.governance.card`, :mod:`~mlops.governance.lineage` and
:mod:`~mlops.governance.usage`.

``BusinessImpactTracker`` (``../shared/seeds/000``, step 6.4): the seed's ``kpi_definitions``
(its four KPIs by default), ``calculate_roi`` and ``measure_business_impact`` returning the
seed's dicts, computed by :mod:`mlops.governance.impact`. Bound to a model
(``BusinessImpactTracker("churn")``), it also defines, records and reports the model's KPIs
and its cost per 1,000 predictions in the metadata store.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlops.ci.policy import configured_policy
from mlops.errors import GovernanceError
from mlops.governance.card import CARD_TAGS, build_card
from mlops.governance.impact import (
    KpiUnit,
    calculate_roi,
    cost_report,
    define_kpi,
    kpi_change,
    kpi_report,
    record_kpi,
)
from mlops.governance.lineage import track_lineage
from mlops.governance.maturity import DIMENSIONS, assess_maturity
from mlops.governance.usage import audit_model_usage, parse_when
from mlops.registry.service import ModelRegistry

__all__ = ["SEED_KPI_DEFINITIONS", "BusinessImpactTracker", "MLOpsMaturityAssessment",
           "MaturityAssessmentReport", "ModelGovernanceFramework"]


@dataclass
class MaturityAssessmentReport:
    """The seed's report: ``overall_score`` (0-5), ``maturity_level`` (0-4),
    ``dimension_scores``, ``improvement_recommendations`` and a ``roadmap`` (the
    dimensions, weakest first, each with the next steps of its weak capabilities)."""

    overall_score: float
    maturity_level: int
    dimension_scores: dict[str, float]
    improvement_recommendations: list[str] = field(default_factory=list)
    roadmap: list[dict[str, Any]] = field(default_factory=list)


class MLOpsMaturityAssessment:
    def __init__(self, assessment_framework: Any = None) -> None:
        self.framework = assessment_framework
        names = [getattr(d, "name", d) for d in
                 getattr(assessment_framework, "dimensions", None) or []]
        unknown = [n for n in names if n not in DIMENSIONS]
        if unknown:
            raise GovernanceError(f"The framework names dimensions the platform does not "
                                  f"score: {unknown}.",
                                  fix=f"Use the seed's five: {', '.join(DIMENSIONS)}.")
        self.dimensions = names or list(DIMENSIONS)

    def conduct_assessment(self, organization_context: Any = None
                           ) -> MaturityAssessmentReport:
        context: dict[str, Any] = dict(organization_context or {}) if not isinstance(
            organization_context, ModelRegistry) else {"registry": organization_context}
        registry = context.get("registry") or ModelRegistry()
        report = assess_maturity(registry, model=context.get("model"),
                                 questionnaire=context.get("questionnaire"))
        recommendations = report.improvement_recommendations
        # weakest dimension first, each with the next steps of its weak capabilities
        roadmap = [{"dimension": dim, "score": round(score, 2),
                    "steps": [c.next_step for c in report.capabilities
                              if c.dimension == dim and c.score < 4 and c.next_step]}
                   for dim, score in sorted(report.dimension_scores.items(),
                                            key=lambda kv: kv[1])
                   if dim in self.dimensions]
        return MaturityAssessmentReport(
            overall_score=report.overall_score, maturity_level=report.maturity_level,
            dimension_scores={k: v for k, v in report.dimension_scores.items()
                              if k in self.dimensions},
            improvement_recommendations=recommendations, roadmap=roadmap)


#: the seed's four KPIs: ``target`` is the improvement to reach (points for percentage
#: KPIs, a relative change in percent for currency ones)
SEED_KPI_DEFINITIONS: dict[str, dict[str, Any]] = {
    "prediction_accuracy_improvement": {
        "description": "Improvement in forecast accuracy vs baseline",
        "measurement": "percentage", "target": 15},
    "response_time_improvement": {
        "description": "Reduction in decision-making time",
        "measurement": "percentage", "target": 50},
    "cost_reduction": {
        "description": "Operational cost savings",
        "measurement": "currency", "target": 100000},
    "revenue_impact": {
        "description": "Additional revenue from better predictions",
        "measurement": "currency", "target": 500000},
}


class BusinessImpactTracker:
    """The seed's ROI and KPI tracker.

    ``calculate_roi`` always returns the seed's dict (``roi_percentage``,
    ``payback_period_years``, ``net_benefit``), with both divisions guarded: no cost gives
    ``roi_percentage`` ``inf`` when there are benefits (the seed's own answer) and ``None``
    otherwise (undefined), and a payback of 0 years; no or negative benefits give a payback
    of ``inf`` (never). A negative cost raises :class:`GovernanceError`.

    ``measure_business_impact`` keeps the seed's semantics (improvement in points for
    percentage KPIs, relative change in percent otherwise, 0 against a baseline of 0,
    ``target_met`` when the improvement reaches the KPI's ``target``); a negative baseline
    is divided by its magnitude, so that a rise is a positive improvement.

    With ``model`` (and optionally ``registry``) it also works on the stored KPIs:
    :meth:`define_kpi`, :meth:`record_kpi`, :meth:`kpi_report` and :meth:`cost_report`.
    """

    def __init__(self, model: str | None = None, registry: ModelRegistry | None = None
                 ) -> None:
        self.kpi_definitions: dict[str, dict[str, Any]] = copy.deepcopy(SEED_KPI_DEFINITIONS)
        self.model = model
        self._registry = registry

    def calculate_roi(self, implementation_cost: float, annual_benefits: float
                      ) -> dict[str, Any]:
        """Calculate return on investment."""
        roi = calculate_roi(implementation_cost, annual_benefits)
        percentage = roi.roi_percentage
        if percentage is None and roi.annual_benefits > 0:
            percentage = math.inf
        return {"roi_percentage": percentage,
                "payback_period_years": math.inf if roi.payback_period_years is None
                else roi.payback_period_years,
                "net_benefit": roi.net_benefit}

    def measure_business_impact(self, baseline_metrics: Mapping[str, float],
                                current_metrics: Mapping[str, float]) -> dict[str, Any]:
        """Measure overall business impact."""
        impact_analysis: dict[str, Any] = {}
        for kpi_name, kpi_def in self.kpi_definitions.items():
            baseline_value = baseline_metrics.get(kpi_name, 0)
            current_value = current_metrics.get(kpi_name, 0)
            unit = KpiUnit.PERCENTAGE if kpi_def.get("measurement") == "percentage" \
                else KpiUnit.ABSOLUTE
            change = kpi_change(unit, float(baseline_value), float(current_value))
            improvement = 0 if change is None else change
            impact_analysis[kpi_name] = {
                "baseline": baseline_value,
                "current": current_value,
                "improvement": improvement,
                "target_met": improvement >= kpi_def["target"],
                "description": kpi_def.get("description", ""),
            }
        return impact_analysis

    # ---------------------------------------------------------------- bound to a model
    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry()
        return self._registry

    def _model(self) -> str:
        if not self.model:
            raise GovernanceError("This BusinessImpactTracker is not bound to a model.",
                                  fix='Create it with the model\'s name: '
                                      'BusinessImpactTracker("churn").')
        return self.model

    def define_kpi(self, name: str, *, baseline: float, target: float,
                   measurement: str = "percentage", direction: str = "higher",
                   description: str = "") -> dict[str, Any]:
        """Store a KPI of the bound model (``target`` a level of the KPI, like the
        baseline); returns its definition."""
        return define_kpi(self.registry, self._model(), name, unit=measurement,
                          baseline=baseline, target=target, direction=direction,
                          description=description).to_dict()

    def record_kpi(self, name: str, value: float, version: str | None = None,
                   at: datetime | None = None) -> dict[str, Any]:
        """Record a measured value of a stored KPI."""
        return record_kpi(self.registry, self._model(), name, value, version=version,
                          at=at).to_dict()

    def kpi_report(self, version: str | None = None) -> dict[str, Any]:
        """Each stored KPI of the bound model with its latest value, by name."""
        return {k.definition.name: k.to_dict()
                for k in kpi_report(self.registry, self._model(), version=version)}

    def cost_report(self, version: str | None = None, since: datetime | None = None,
                    until: datetime | None = None) -> dict[str, Any]:
        """Cost per 1,000 predictions per version, from measured numbers."""
        return cost_report(self.registry, self._model(), version=version, since=since,
                           until=until).to_dict()


class ModelGovernanceFramework:
    """Seed 000's governance framework, read from what the platform recorded.

    ``governance_policies`` are the ones in force (retention days from the settings, the
    promotion rule, the policy file's gates for the default tier), not a wish list.
    ``create_model_card`` records the statements only people can make (intended use,
    users, out-of-scope uses, limitations: version tags, audited) and returns the card in
    the seed's shape, every measured field from the recorded evidence, plus ``missing``:
    the sections without evidence and the command that supplies each.
    """

    def __init__(self, registry: ModelRegistry | None = None) -> None:
        self.registry = registry or ModelRegistry()
        self.governance_policies = self.policies_for(None)

    def policies_for(self, model: str | None) -> dict[str, Any]:
        """The policies in force for ``model`` (None: the default tier)."""
        settings = self.registry.settings
        policy = configured_policy(settings.policy_file).for_model(model or "")
        return {"data_retention": settings.retention_predictions_days
                or settings.retention_days,
                "model_approval_required": settings.effective_policy == "gated"
                and policy.approvals > 0,
                "audit_trail_required": True,  # every change is a chain event, always
                "bias_monitoring_required": "fairness" in policy.gates,
                "explainability_required": "explainability" in policy.gates}

    def create_model_card(self, model_metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The card of ``model_metadata['name']`` ``['version']`` in the seed's shape."""
        name, version = _name_version(model_metadata)
        mv = self.registry.get_version(name, version)
        stated = {CARD_TAGS["intended_use"]: model_metadata.get("primary_use"),
                  CARD_TAGS["primary_users"]: model_metadata.get("primary_users"),
                  CARD_TAGS["out_of_scope"]: model_metadata.get("limitations"),
                  CARD_TAGS["limitations"]: model_metadata.get("known_limitations")}
        for tag, value in stated.items():
            text = _statement(value)
            if text and mv.tags.get(tag) != text:
                self.registry.set_tag(name, tag, text, version=mv.version)
        card = build_card(self.registry, name, mv.version)
        c = {s.key: s.content for s in card.sections}
        details, use, data = c["model_details"], c["intended_use"], c["training_data"]
        evaluation, fair = c["evaluation"], c["slices_fairness"]
        return {
            "model_details": {"name": card.model, "version": card.version,
                              "date": details.get("registered_at"),
                              "type": details.get("flavor"), "architecture": details.get(
                                  "format"), "sha256": (details.get("artifact") or {}).get(
                                  "sha256")},
            "intended_use": {"primary_use": use.get("intended_use"),
                             "primary_users": use.get("primary_users"),
                             "out_of_scope_uses": use.get("out_of_scope_uses")},
            "training_data": {"dataset": data.get("dataset"), "sha256": data.get("sha256"),
                              "size": next((p["rows"] for p in data.get("profiles") or []
                                            if p["kind"] == "features"), None),
                              "preprocessing": None},
            "evaluation_data": {"dataset": evaluation.get("run"),
                                "metrics": evaluation.get("registered_metrics"),
                                "performance": evaluation.get("gates")},
            "ethical_considerations": {"bias_analysis": fair.get("slices"),
                                       "fairness_metrics": fair.get("fairness"),
                                       "potential_harms": None},
            "caveats_and_recommendations": {
                "limitations": c["limitations"].get("stated"),
                "recommendations": c["limitations"].get("recorded_caveats")},
            "missing": [{"section": s.key, "missing": s.missing, "supply": s.supply}
                        for s in card.missing()],
        }

    def track_model_lineage(self, model_id: str, version: str | None = None
                            ) -> dict[str, Any]:
        """The seed's lineage lists (data sources, training jobs, versions, deployments,
        performance history) for ``model_id`` (``NAME`` or ``NAME/VERSION``; default the
        newest version), and the ``graph`` they come from."""
        name, _, given = model_id.partition("/")
        version = version or given or _newest(self.registry, name)
        root = track_lineage(self.registry, name, version)
        nodes = root.walk()

        def kind(*kinds: str) -> list[dict[str, Any]]:
            return [{"id": n.id, "label": n.label, **n.attrs, "audit": n.audit}
                    for n in nodes if n.kind in kinds]

        return {"data_sources": kind("dataset"), "training_jobs": kind("training_run"),
                "model_versions": [{"version": v.version, "stage": v.stage,
                                    "registered_at": v.created_at.isoformat(),
                                    "sha256": v.artifact_digest}
                                   for v in self.registry.list_versions(name)],
                "deployments": kind("rollout", "serving"),
                "performance_history": kind("ci_run", "alert"),
                "graph": root.to_dict()}

    def audit_model_usage(self, model_id: str, time_range: Any) -> dict[str, Any]:
        """The seed's usage audit of ``model_id`` in ``time_range`` (a ``(start, end)``
        pair or a mapping with ``start``/``end``: datetimes, ISO strings or ``30d``)."""
        start, end = _period(time_range)
        report = audit_model_usage(self.registry, model_id, start, end)
        data = report.to_dict()
        return {"model_id": model_id, "audit_period": time_range,
                "prediction_requests": {"predictions": report.predictions,
                                        "requests": report.requests,
                                        "by_version": {v["version"]: v["predictions"] - v["shadow"]
                                                       for v in data["versions"]}},
                "users": data["callers"],
                "performance_metrics": {"failed": report.failed,
                                        "error_rate": report.error_rate,
                                        "versions": data["versions"]},
                "compliance_status": data["compliance"],
                "security_events": data["security_events"]}


def _name_version(meta: Mapping[str, Any]) -> tuple[str, str]:
    if not isinstance(meta, Mapping) or not meta.get("name") or not meta.get("version"):
        raise GovernanceError("create_model_card needs the registered model's 'name' and "
                              "'version'.",
                              fix="Pass {'name': 'churn', 'version': '1.2.0', ...}; the card's "
                                  "measured sections come from the registry.")
    return str(meta["name"]), str(meta["version"])


def _statement(value: Any) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return str(value)


def _period(time_range: Any) -> tuple[datetime, datetime | None]:
    if isinstance(time_range, Mapping):
        start, end = time_range.get("start"), time_range.get("end")
    elif isinstance(time_range, list | tuple) and len(time_range) == 2:
        start, end = time_range
    else:
        raise GovernanceError(f"{time_range!r} is not a time range.",
                              fix="Pass (start, end) or {'start': ..., 'end': ...}: "
                                  "datetimes, ISO strings or durations before now (30d).")

    def when(value: Any) -> datetime:
        return value if isinstance(value, datetime) else parse_when(str(value))

    if start is None:
        raise GovernanceError("The time range has no start.",
                              fix="Give a start: a datetime, an ISO string or 30d.")
    return when(start), None if end is None else when(end)


def _newest(registry: ModelRegistry, name: str) -> str:
    versions = registry.list_versions(name)
    if not versions:
        raise GovernanceError(f"{name} has no versions.",
                              fix=f"Register one: mlops models register {name} FILE.")
    return versions[-1].version
