"""Approvals for production: people sign off a version (or reject it), each with a comment;
the policy says how many.

A decision is an audit event (``version.approve`` / ``version.reject``) in the hash chain,
bound to the artifact digest and to the gate run the person read
(:mod:`mlops.registry.approvals` decides which decisions count). Separation of duties: the
person who registered the version and the person who ran its gates cannot decide on it;
one person counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlops.ci.policy import configured_policy
from mlops.ci.runs import RunStore
from mlops.errors import CIError
from mlops.identity import Role
from mlops.registry.approvals import APPROVE, REJECT, ApprovalState, approval_state
from mlops.registry.service import ModelRegistry
from mlops.store.audit import append_event

__all__ = ["PendingApproval", "approvals", "approve", "decisions", "pending", "reject",
           "required_approvals"]


def decisions(registry: ModelRegistry, model: str, version: str) -> ApprovalState:
    """Every approval and rejection of ``model`` ``version`` and whether each counts."""
    mv = registry.get_version(model, version)
    with registry.context.store.read() as s:
        return approval_state(s, model, mv.version, mv.artifact_digest)


def required_approvals(registry: ModelRegistry, model: str, version: str) -> int:
    """How many approvals ``model`` ``version`` needs: its configured policy's count, or
    more when an official gate run of it recorded more."""
    need = configured_policy(registry.context.settings.policy_file).for_model(model).approvals
    for run in RunStore(registry).runs(model, version, limit=50):
        asked = (run.get("report") or {}).get("approvals_required")
        if isinstance(asked, int):
            need = max(need, asked)
    return need


def approvals(registry: ModelRegistry, model: str, version: str) -> list[str]:
    """The distinct people whose approval of ``model`` ``version`` counts (oldest first)."""
    return decisions(registry, model, version).approvers


def approve(registry: ModelRegistry, model: str, version: str, reason: str) -> list[str]:
    """Record the current actor's approval; returns every approver that counts so far."""
    _decide(registry, model, version, reason, APPROVE)
    return approvals(registry, model, version)


def reject(registry: ModelRegistry, model: str, version: str, reason: str) -> ApprovalState:
    """Record the current actor's rejection: it blocks production until the gates are run
    again with different results, or the same person approves."""
    _decide(registry, model, version, reason, REJECT)
    return decisions(registry, model, version)


def _decide(registry: ModelRegistry, model: str, version: str, reason: str, action: str
            ) -> None:
    verb = "approve" if action == APPROVE else "reject"
    registry.require(Role.APPROVER, f"{verb} {model} {version}")
    mv = registry.get_version(model, version)
    actor = registry.context.actor
    if not reason.strip():
        raise CIError(f"A decision to {verb} {model} {mv.version} needs a comment.",
                      fix=f'Say why: mlops ci {verb} {model} {mv.version} --reason "...".',
                      model=model, version=mv.version)
    with registry.context.store.write() as s:
        state = approval_state(s, model, mv.version, mv.artifact_digest)
        if state.run is None:
            raise CIError(f"{model} {mv.version} has no CI run that passed its gates: there "
                          f"is nothing to {verb} yet.",
                          fix=f"mlops ci gates {model} {mv.version} --test-data FILE",
                          model=model, version=mv.version)
        if actor == mv.created_by:
            raise CIError(f"{actor} registered {model} {mv.version} and cannot {verb} it too.",
                          fix="Ask someone else (MLOPS_ACTOR or the token names who runs the "
                              "command).", model=model, version=mv.version)
        if actor == state.runner:
            raise CIError(f"{actor} ran the gates of {model} {mv.version} (CI run "
                          f"#{state.run}) and cannot {verb} it too.",
                          fix="Ask someone who did not run the pipeline.", model=model,
                          version=mv.version)
        mine = state.standing().get(actor)
        if mine is not None and mine.kind == verb:
            raise CIError(f"{actor} already {verb}d {model} {mv.version} on these results.",
                          fix="Another person has to decide." if verb == "approve" else
                          "The rejection stands until the gates are run again.",
                          model=model, version=mv.version)
        append_event(s, actor=actor, action=action, subject=f"model/{model}/{mv.version}",
                     payload={"reason": reason.strip(), "sha256": mv.artifact_digest,
                              "run": state.run, "results": state.results})


@dataclass(frozen=True)
class PendingApproval:
    """A version that passed its gates and waits for people: how many more approvals, and
    who may not give them."""

    model: str
    version: str
    stage: str
    run: int
    required: int
    approvers: list[str]
    rejected_by: list[str]
    excluded: list[str]  # the registrant and the pipeline runner

    @property
    def missing(self) -> int:
        return max(self.required - len(self.approvers), 0)

    def to_dict(self) -> dict[str, object]:
        return {"model": self.model, "version": self.version, "stage": self.stage,
                "run": self.run, "required": self.required, "approvers": self.approvers,
                "missing": self.missing, "rejected_by": self.rejected_by,
                "excluded": self.excluded}


def pending(registry: ModelRegistry, model: str | None = None) -> list[PendingApproval]:
    """Versions (not in production or archived) with a passing gate run and fewer counting
    approvals than their policy requires, or a standing rejection."""
    names = [model] if model is not None else [m.name for m in registry.list_models()]
    out = []
    for name in names:
        for mv in registry.list_versions(name):
            if mv.stage in ("Production", "Archived"):
                continue
            with registry.context.store.read() as s:
                state = approval_state(s, name, mv.version, mv.artifact_digest)
            if state.run is None:
                continue
            need = required_approvals(registry, name, mv.version)
            rejected = [d.actor for d in state.rejections]
            if len(state.approvers) >= need and not rejected:
                continue
            excluded = [p for p in dict.fromkeys([mv.created_by, state.runner or ""]) if p]
            out.append(PendingApproval(name, mv.version, mv.stage, state.run, need,
                                       state.approvers, rejected, excluded))
    return out

