"""The one gate in front of every environment: who may change what it serves, and which
versions it may take.

Every path that changes what an environment serves calls :func:`check_serving_change`
inside its write transaction: ``mlops deploy`` and the rollout actions, stage changes to or
from a serving stage, route writes, rollbacks, and (read side) the gateway's explicit-version
URLs through :func:`servable_versions`. Aliases never decide what an environment serves.
What an environment serves now is the one rule of :func:`mlops.store.routes.served_routes`
(deployment row, else stage, else newest version); :func:`serves_now` asks it.

Roles: changing the last environment of ``MLOPS_ENVIRONMENTS`` (production by default)
needs the approver role, the others the developer role.

The promotion rules apply to versions the environment has not served before (a rollback to
a version it served is always allowed):

* ``staged``: the version was served in (or rolled out successfully to) the environment
  before it;
* ``gated``: that, plus a pipeline run that passed all its gates under the configured policy
  against the version in production now, no failed staging tests in the latest run, and the
  approvals the model's policy asks for;
* ``open``: no rule; what the gated rule would have said is returned (and recorded with the
  change) as advice.

``auto`` (the default) is ``gated`` in team mode and ``open`` in single-user mode. A rule
can be overridden with a reason by an approver or admin; the override is an audit event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.config import Settings
from mlops.errors import DeploymentError
from mlops.identity import Principal, Role, require
from mlops.registry.approvals import approval_state
from mlops.store.audit import append_event, list_events
from mlops.store.routes import (
    environment_for_stage,
    route_row,
    servable_versions,
    served_routes,
    stage_for_environment,
)
from mlops.store.schema import CIRunRow, ModelRow, RolloutRow, VersionRow

__all__ = [
    "PromotionRefused",
    "Verdict",
    "check_environment",
    "check_serving_change",
    "environment_for_stage",
    "has_served",
    "is_protected",
    "servable_versions",
    "serves_now",
    "stage_for_environment",
]


class PromotionRefused(DeploymentError):
    """The promotion policy refuses a version for an environment (``problems`` say why)."""

    status = 409


def is_protected(settings: Settings, environment: str) -> bool:
    """The last environment of the promotion order is the protected one."""
    envs = list(settings.environments)
    return len(envs) >= 2 and environment == envs[-1]


def check_environment(settings: Settings, environment: str, model: str | None = None) -> None:
    if environment not in settings.environments:
        raise DeploymentError(f"Unknown environment {environment!r}.",
                              fix=f"Use one of {', '.join(settings.environments)} "
                                  "(MLOPS_ENVIRONMENTS).", model=model)


@dataclass(frozen=True)
class Verdict:
    """What the gate decided for one change."""

    environment: str
    policy: str
    problems: list[tuple[str, str]] = field(default_factory=list)
    override: str | None = None

    def payload(self) -> dict[str, Any]:
        """What to record with the change's audit event."""
        out: dict[str, Any] = {"policy": self.policy}
        if self.problems:
            key = "overridden_rules" if self.override else "policy_advice"
            out[key] = [p for p, _ in self.problems]
        return out


def has_served(s: Session, model: ModelRow, environment: str, version: str) -> bool:
    """Has ``environment`` served ``version`` as stable, now or before?"""
    dep = route_row(s, model.id, environment)
    if dep is not None and version in (dep.stable_version, dep.candidate_version):
        return True
    if s.scalar(select(RolloutRow.id).where(
            RolloutRow.model_id == model.id, RolloutRow.environment == environment,
            (RolloutRow.stable_version == version)
            | ((RolloutRow.candidate_version == version)
               & (RolloutRow.state == "succeeded"))).limit(1)) is not None:
        return True
    stage = stage_for_environment(environment)
    if stage is None:
        return False
    subject = f"model/{model.name}/{version}"
    if s.scalar(select(VersionRow.id).where(VersionRow.model_id == model.id,
                                            VersionRow.version == version,
                                            VersionRow.stage == stage)) is not None:
        return True
    # stage history (a version promoted and later archived) and earlier route writes
    for event in list_events(s, subject=subject, action="version.stage", limit=200):
        if event.subject == subject and event.payload.get("to") == stage:
            return True
    for event in list_events(s, subject=f"model/{model.name}/env/{environment}",
                             action="route.set", limit=1000):
        after = event.payload.get("after") or {}
        if after.get("stable") == version:
            return True
    return False


def serves_now(s: Session, model: ModelRow, environment: str, version: str) -> bool:
    """Does ``environment`` serve ``version`` as stable now (the one rule of
    :func:`~mlops.store.routes.served_routes`)?"""
    spec = served_routes(s, environment, model.name).get(model.name)
    return spec is not None and spec.stable == version


def _staged_problems(s: Session, settings: Settings, model: ModelRow, version: str,
                     environment: str) -> list[tuple[str, str]]:
    envs = list(settings.environments)
    before = envs[envs.index(environment) - 1]
    succeeded = s.scalar(select(RolloutRow.id).where(
        RolloutRow.model_id == model.id, RolloutRow.environment == before,
        RolloutRow.candidate_version == version, RolloutRow.state == "succeeded").limit(1))
    if succeeded is None and not serves_now(s, model, before, version):
        return [(f"has not been rolled out to {before} yet",
                 f"mlops deploy {model.name} {version} --env {before}")]
    return []


def _gate_problems(s: Session, settings: Settings, model: ModelRow, version: str
                   ) -> list[tuple[str, str]]:
    """Gates passed in a pipeline run under today's configured policy, and the approvals
    that policy asks for (the run recorded both: the policy file's digest and its
    ``approvals_required``; a changed policy file asks for the gates again)."""
    problems = []
    reports = s.scalars(select(CIRunRow.report).where(
        CIRunRow.model_name == model.name, CIRunRow.version == version)
        .order_by(CIRunRow.id)).all()
    # the champion a pass was measured against must still be the one in production
    production = s.scalar(select(VersionRow.version).where(
        VersionRow.model_id == model.id, VersionRow.stage == "Production"))
    current = None if production == version else production
    official = [r for r in reports if r.get("gates_passed") and r.get("official_policy")]
    digest = settings.policy_digest
    passes = [r for r in official if r.get("policy_digest") == digest
              and isinstance(r.get("approvals_required"), int)]
    if official and not passes:
        problems.append(("passed its quality gates under a policy file that has changed "
                         "since", f"mlops ci gates {model.name} {version} --test-data FILE"))
    elif not passes:
        problems.append(("has not passed its quality gates under the configured policy",
                         f"mlops ci gates {model.name} {version} --test-data FILE"))
    elif not any(r.get("champion") == current for r in passes):
        problems.append((f"passed its gates against another production version (now "
                         f"{current or 'none'})",
                         f"mlops ci gates {model.name} {version} --test-data FILE --force"))
    staged = [r for r in reports if any(st.get("name") == "staging_tests"
                                        for st in r.get("steps", []))]
    if staged and not any(st.get("name") == "staging_tests" and st.get("status") == "passed"
                          for st in staged[-1].get("steps", [])):
        problems.append(("failed its staging tests in its latest pipeline run",
                         f"fix it and run mlops ci run again for {model.name}"))
    if not passes:
        return problems  # the approvals a policy asks for are known once its gates pass
    need = max(int(r["approvals_required"]) for r in passes)
    digest = s.scalar(select(VersionRow.artifact_digest).where(
        VersionRow.model_id == model.id, VersionRow.version == version)) or ""
    state = approval_state(s, model.name, version, digest)
    for rejection in state.rejections:
        problems.append((f"was rejected by {rejection.actor} ({rejection.comment})",
                         f"fix it and run its gates again (a re-run with new results voids "
                         f"the rejection), or {rejection.actor} approves it: mlops ci approve "
                         f"{model.name} {version} --reason \"...\""))
    if len(state.approvers) < need:
        problems.append((f"has {len(state.approvers)} of the {need} approval(s) its policy "
                         "requires", f"mlops ci approve {model.name} {version} --reason "
                                     '"..."'))
    return problems


def check_serving_change(s: Session, settings: Settings, principal: Principal,
                         model: ModelRow, environment: str, versions: Iterable[str | None], *,
                         override: str | None = None, action: str = "change what it serves"
                         ) -> Verdict:
    """Authorise a change of what ``environment`` serves for ``model`` and apply the
    promotion policy to ``versions`` (the versions the change makes it serve).

    Raises :class:`~mlops.errors.PermissionDenied` for a role that is too low and
    :class:`PromotionRefused` when the policy refuses a version and no override is given.
    Call it inside the write transaction that makes the change; an override is recorded
    there as a ``policy.override`` audit event.
    """
    check_environment(settings, environment, model.name)
    protected = is_protected(settings, environment)
    require(principal, Role.APPROVER if protected else Role.DEVELOPER,
            f"{action} in {environment} for {model.name}")
    policy = settings.effective_policy
    if not protected:
        return Verdict(environment, policy)
    problems: list[tuple[str, str]] = []
    checked: list[str] = []
    for version in dict.fromkeys(v for v in versions if v):
        if has_served(s, model, environment, version):
            continue  # going back to a version it served is always allowed
        checked.append(version)
        problems += [(f"{version} {p}", f) for p, f in
                     _staged_problems(s, settings, model, version, environment)]
        if policy in {"gated", "open"}:
            problems += [(f"{version} {p}", f) for p, f in
                         _gate_problems(s, settings, model, version)]
    if not problems or policy == "open":
        return Verdict(environment, policy, problems)
    if override is not None and not str(override).strip():
        raise DeploymentError("An override needs a reason.",
                              fix="Pass --override 'WHY' (it goes into the audit log).",
                              model=model.name)
    if not override:
        what = "; ".join(p for p, _ in problems)
        raise PromotionRefused(
            f"{model.name} {what}; the {policy} promotion policy requires that before "
            f"{environment}.",
            fix=" then ".join(f for _, f in problems) + ", or pass --override REASON "
                "(an approver's decision, recorded in the audit log).",
            model=model.name, version=", ".join(checked))
    require(principal, Role.APPROVER, f"override the {policy} promotion policy")
    append_event(s, actor=principal.name, action="policy.override",
                 subject=f"model/{model.name}/env/{environment}",
                 payload={"versions": checked, "rules": [p for p, _ in problems],
                          "reason": override, "policy": policy})
    return Verdict(environment, policy, problems, override)
