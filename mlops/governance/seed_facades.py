"""The seeds' governance classes, as thin facades over :mod:`mlops.governance`.

``MLOpsMaturityAssessment`` (``../shared/seeds/002``): ``conduct_assessment`` returns a
``MaturityAssessmentReport`` with the seed's fields, scored by
:func:`~mlops.governance.maturity.assess_maturity` from what the platform recorded.

The seed's assessment framework object (its ``dimensions``) is accepted and, when given,
must name the five dimensions the platform scores; the organisation context may carry
``model`` (one model's records), ``questionnaire`` (answers 0-5 for what the platform cannot
see, a mapping or a YAML path) and ``registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlops.errors import GovernanceError
from mlops.governance.maturity import DIMENSIONS, assess_maturity
from mlops.registry.service import ModelRegistry

__all__ = ["MLOpsMaturityAssessment", "MaturityAssessmentReport"]


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
