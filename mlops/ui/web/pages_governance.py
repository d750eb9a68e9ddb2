"""The governance pages: the audit log with the chain's verification, and per model the
compliance reports, the maturity score, business impact and the usage audit.

* ``/governance``: the audit log, filtered by subject, action and period
  (:meth:`~mlops.registry.service.ModelRegistry.audit_log`), the chain's verification
  (:meth:`~mlops.registry.service.ModelRegistry.verify_audit`) and its checkpoint;
* ``/models/{name}/governance``: SR 11-7 and EU AI Act reports of the version production
  serves (or ``?version=``), the model's maturity, its KPIs against their targets and cost
  per 1,000 predictions (with what was not measured and the command that supplies it), and
  the usage audit of the last 30 days.

Replaying the chain reads every event, so each page replays it once: the audit page calls
``verify_audit`` once; the model page shows the verification the compliance reports did.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from mlops.deployment.routes import RoutingService
from mlops.errors import MlopsError
from mlops.governance.compliance import ComplianceReport, compliance_report
from mlops.governance.impact import ImpactReport, impact_report
from mlops.governance.maturity import MaturityReport, assess_maturity
from mlops.governance.memo import one_reading
from mlops.governance.usage import UsageAudit, audit_model_usage, parse_when
from mlops.registry.service import ModelRegistry
from mlops.registry.types import ModelVersion
from mlops.store.audit import AuditEvent, Checkpoint, VerifyResult, checkpoint
from mlops.store.egress import redact_secrets
from mlops.ui.web.kit import PageKit

__all__ = ["AUDIT_LIMIT", "FRAMEWORKS_SHOWN", "USAGE_DAYS", "AuditFilter", "AuditPage",
           "ModelGovernance", "audit_page", "governance_routes", "model_governance"]

#: the compliance frameworks the model page shows
FRAMEWORKS_SHOWN = ("sr11-7", "eu-ai-act")
#: the usage audit's period, in days before now
USAGE_DAYS = 30
#: the events shown by default, and the most a page shows
AUDIT_LIMIT = 100
_MAX_LIMIT = 1000
_MAX_FIELD = 512


@dataclass(frozen=True)
class AuditFilter:
    """The audit page's filter as typed (empty: not filtered)."""

    subject: str = ""
    action: str = ""
    since: str = ""
    until: str = ""
    limit: int = AUDIT_LIMIT


@dataclass(frozen=True)
class AuditPage:
    """The audit events the filter selects (newest first), the chain's verification and
    its checkpoint."""

    filter: AuditFilter
    events: list[AuditEvent]
    verify: VerifyResult
    checkpoint: Checkpoint
    models: list[str]


@dataclass(frozen=True)
class ModelGovernance:
    """One model's governance evidence; ``version`` is the one the compliance reports
    cover and ``version_basis`` why that one."""

    model: str
    versions: list[ModelVersion]
    version: str | None
    version_basis: str
    compliance: list[ComplianceReport]
    maturity: MaturityReport
    impact: ImpactReport
    usage: UsageAudit


def audit_page(registry: ModelRegistry, wanted: AuditFilter) -> AuditPage:
    """The filtered audit log, one replay of the chain and its checkpoint; a bad time
    raises :class:`~mlops.errors.GovernanceError` with its fix."""
    since = parse_when(wanted.since) if wanted.since else None
    until = parse_when(wanted.until) if wanted.until else None
    events = [replace(e, payload=redact_secrets(e.payload))  # pages show no secrets
              for e in registry.audit_log(subject=wanted.subject or None,
                                          action=wanted.action or None, limit=wanted.limit,
                                          since=since, until=until)]
    verified = registry.verify_audit()
    with registry.store.read() as s:
        head = checkpoint(s)
    return AuditPage(wanted, events, verified, head, [m.name for m in registry.list_models()])


def _chosen(registry: ModelRegistry, name: str, version: str | None
            ) -> tuple[str | None, str]:
    if version:
        return registry.get_version(name, version).version, "chosen"
    spec = RoutingService(registry).served(name, "production")
    if spec is None or not spec.stable:
        return None, "nothing is registered"
    basis = {"route": "served in production", "stage": "its Production stage",
             "latest": "the newest version (nothing is deployed to production)"}
    return spec.stable, basis.get(str(spec.source), "served in production")


def model_governance(registry: ModelRegistry, name: str, version: str | None = None
                     ) -> ModelGovernance:
    """Everything the model's governance page shows (``ModelNotFound`` /
    ``VersionNotFound`` for unknown names). The chain is replayed once, for the compliance
    reports and the maturity score alike."""
    with one_reading():
        return _model_governance(registry, name, version)


def _model_governance(registry: ModelRegistry, name: str, version: str | None
                      ) -> ModelGovernance:
    registry.get_model(name)
    chosen, basis = _chosen(registry, name, version)
    reports = [compliance_report(registry, name, chosen, f) for f in FRAMEWORKS_SHOWN] \
        if chosen else []
    now = datetime.now(UTC)
    return ModelGovernance(
        name, list(reversed(registry.list_versions(name))), chosen, basis, reports,
        assess_maturity(registry, model=name), impact_report(registry, name),
        audit_model_usage(registry, name, now - timedelta(days=USAGE_DAYS), now,
                          with_compliance=False))


def _filter(request: Request) -> tuple[AuditFilter, str | None, str | None]:
    """The filter of the query string, and what was corrected in it and how to avoid that
    (None: taken as asked)."""
    q = request.query_params
    subject, action, since, until = ((q.get(k) or "").strip()[:_MAX_FIELD + 1]
                                     for k in ("subject", "action", "since", "until"))
    if any(len(v) > _MAX_FIELD for v in (subject, action, since, until)):
        cut = AuditFilter(subject[:_MAX_FIELD], action[:_MAX_FIELD], since[:_MAX_FIELD],
                          until[:_MAX_FIELD])
        return (cut, f"A filter is longer than {_MAX_FIELD} characters; it was shortened.",
                f"Filter with at most {_MAX_FIELD} characters per field.")
    raw = (q.get("limit") or "").strip()
    if raw and not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= _MAX_LIMIT):
        return (AuditFilter(subject, action, since, until),
                f"The limit {raw[:20]!r} is not a number from 1 to {_MAX_LIMIT}.",
                f"Use a limit from 1 to {_MAX_LIMIT}; {AUDIT_LIMIT} was used.")
    return AuditFilter(subject, action, since, until, int(raw) if raw else AUDIT_LIMIT), \
        None, None


def governance_routes(registry: ModelRegistry, kit: PageKit) -> list[BaseRoute]:
    """The governance pages, rendered with the dashboard's kit."""
    page, visit_of = kit.page, kit.visit_of

    async def audit(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        wanted, corrected, fix = _filter(request)
        try:
            data = await run_in_threadpool(audit_page, registry, wanted)
        except MlopsError as exc:  # a time that is not a time: say so on the page
            data = await run_in_threadpool(audit_page, registry, AuditFilter(
                wanted.subject, wanted.action, "", "", wanted.limit))
            return page(request, visit, "governance.html", 400, audit=data, typed=wanted,
                        error=exc.message, fix=exc.fix)
        return page(request, visit, "governance.html", 400 if corrected else 200, audit=data,
                    typed=wanted, error=corrected, fix=fix)

    async def one_model(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        name = request.path_params["name"]
        version = (request.query_params.get("version") or "").strip()[:_MAX_FIELD] or None
        data = await run_in_threadpool(model_governance, registry, name, version)
        return page(request, visit, "model_governance.html", detail=data,
                    usage_days=USAGE_DAYS)

    return [
        Route("/governance", audit, methods=["GET"]),
        Route("/models/{name}/governance", one_model, methods=["GET"]),
    ]
