"""Governance: identities (API tokens) and, as they grow, approvals, cards and reports."""

from __future__ import annotations

from mlops.governance.tokens import TokenService

__all__ = ["TokenService"]
