"""Governance: identities (API tokens), model cards and lineage, compliance reports, usage
audit, retention and compaction, business impact and cost, maturity, and the seeds'
facades."""

from __future__ import annotations

from mlops.governance.card import (
    CARD_TAGS,
    REQUIRED_SECTIONS,
    CardSection,
    ModelCard,
    SectionStatus,
    build_card,
)
from mlops.governance.compliance import (
    FRAMEWORKS,
    ComplianceItem,
    ComplianceReport,
    ItemStatus,
    compliance_report,
)
from mlops.governance.impact import ImpactReport, calculate_roi, impact_report
from mlops.governance.lineage import LineageNode, track_lineage
from mlops.governance.memo import memoized, one_reading
from mlops.governance.retention import (
    CompactionReport,
    RetentionPolicy,
    RetentionResult,
    apply_retention,
    compact_prediction_log,
    retention_policy,
)
from mlops.governance.seed_facades import BusinessImpactTracker, ModelGovernanceFramework
from mlops.governance.tokens import TokenService
from mlops.governance.usage import UsageAudit, audit_model_usage

__all__ = [
    "CARD_TAGS",
    "FRAMEWORKS",
    "REQUIRED_SECTIONS",
    "BusinessImpactTracker",
    "CardSection",
    "CompactionReport",
    "ComplianceItem",
    "ComplianceReport",
    "ImpactReport",
    "ItemStatus",
    "LineageNode",
    "ModelCard",
    "ModelGovernanceFramework",
    "RetentionPolicy",
    "RetentionResult",
    "SectionStatus",
    "TokenService",
    "UsageAudit",
    "apply_retention",
    "audit_model_usage",
    "build_card",
    "calculate_roi",
    "compact_prediction_log",
    "compliance_report",
    "impact_report",
    "memoized",
    "one_reading",
    "retention_policy",
    "track_lineage",
]
