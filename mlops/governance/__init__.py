"""Governance: identities (API tokens), model cards, and, as they grow, approvals and
reports."""

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
from mlops.governance.lineage import LineageNode, track_lineage
from mlops.governance.tokens import TokenService

__all__ = ["CARD_TAGS", "FRAMEWORKS", "REQUIRED_SECTIONS", "CardSection", "ComplianceItem",
           "ComplianceReport", "ItemStatus", "LineageNode", "ModelCard", "SectionStatus",
           "TokenService", "build_card", "compliance_report", "track_lineage"]
