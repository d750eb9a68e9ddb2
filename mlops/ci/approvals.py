"""Approvals for production: people sign off a version; the policy says how many.

An approval is an audit event (``version.approve``) in the hash chain, so it cannot be
edited away unnoticed. Four eyes: the person who registered the version cannot approve
it, and one person counts once.
"""

from __future__ import annotations

from mlops.errors import CIError
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event

__all__ = ["approvals", "approve"]


def approvals(registry: ModelRegistry, model: str, version: str) -> list[str]:
    """The distinct people who approved ``model`` ``version`` (oldest first)."""
    events = registry.audit_log(subject=f"model/{model}/{version}", action="version.approve",
                                limit=1000)
    seen: list[str] = []
    for event in reversed(events):
        if event.subject == f"model/{model}/{version}" and event.actor not in seen:
            seen.append(event.actor)
    return seen


def approve(registry: ModelRegistry, model: str, version: str, reason: str = "") -> list[str]:
    """Record the current actor's approval; returns every approver so far."""
    registry.require(Role.APPROVER, f"approve {model} {version}")
    mv = registry.get_version(model, version)
    actor = registry.context.actor
    if actor == mv.created_by:
        raise CIError(f"{actor} registered {model} {mv.version} and cannot approve it too.",
                      fix="Ask someone else (MLOPS_ACTOR names who runs the command).",
                      model=model, version=mv.version)
    if actor in approvals(registry, model, mv.version):
        raise CIError(f"{actor} already approved {model} {mv.version}.",
                      fix="Another person has to approve it.", model=model,
                      version=mv.version)
    with registry.context.store.write() as s:
        append_event(s, actor=actor, action="version.approve",
                     subject=f"model/{model}/{mv.version}", payload={"reason": reason})
    return approvals(registry, model, mv.version)
