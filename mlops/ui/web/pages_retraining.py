"""The retraining pages: each model's triggers, the job queue, job logs and decisions.

* ``/retraining``: every model with its stored configuration (triggers, command, limits)
  and the job queue of all models;
* ``/models/{name}/retraining``: one model's configuration, jobs and decisions, with the
  "retrain now" form for developers;
* ``/retraining/jobs/{id}``: one job, its reasons, outcome and captured log.

Reading goes through :class:`~mlops.retraining.service.RetrainService`; "retrain now"
and "cancel" go through the same service acting for the visitor, which checks the role,
refuses a model without a configuration (shown with its fix) and writes the audit event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mlops.errors import ConfigError, MlopsError, RegistryError
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RetrainService
from mlops.store.egress import redact_secrets
from mlops.store.retrain import PRIORITIES, ConfigRecord, RetrainDecision, RetrainJob
from mlops.ui.web.kit import MAX_REASON, PageKit, Visit, signed_in
from mlops.ui.web.session import CSRF_FIELD, verify_csrf

__all__ = ["JOBS_SHOWN", "JobDetail", "ModelRetraining", "RetrainingOverview", "TriggerRow",
           "job_detail", "model_retraining", "outcome_summary", "retraining_overview",
           "retraining_routes"]

#: the newest jobs the pages list
JOBS_SHOWN = 100
_DECISIONS_SHOWN = 50
_MAX_ID = 2**62
#: configuration keys shown as the model's settings (triggers get their own table)
_SETTINGS = ("command", "webhook", "workdir", "timeout", "data_window", "auto_deploy",
             "requeue_interrupted", "min_expected_gain", "max_runs_per_day")


@dataclass(frozen=True)
class TriggerRow:
    """One configured trigger: its name, kind, priority, cooldown and other settings."""

    name: str
    kind: str
    priority: str
    cooldown: Any
    settings: dict[str, Any]


@dataclass(frozen=True)
class ModelRetraining:
    """One model's retraining: its stored configuration (None: not configured), its
    newest jobs and decisions."""

    model: str
    config: ConfigRecord | None
    settings: dict[str, Any]
    triggers: list[TriggerRow]
    yaml: str
    jobs: list[RetrainJob]
    decisions: list[RetrainDecision]


@dataclass(frozen=True)
class RetrainingOverview:
    """Every model's configuration (without jobs) and the queue of all models."""

    models: list[ModelRetraining]
    jobs: list[RetrainJob]
    counts: dict[str, int]


@dataclass(frozen=True)
class JobDetail:
    """A job and its captured log (capped by the runner)."""

    job: RetrainJob
    log: str


def _triggers(spec: dict[str, Any]) -> list[TriggerRow]:
    out = []
    for t in spec.get("triggers") or []:
        rest = {k: v for k, v in t.items() if k not in ("name", "kind", "priority", "cooldown")}
        out.append(TriggerRow(str(t.get("name", "")), str(t.get("kind", "")),
                              str(t.get("priority", "")), t.get("cooldown"), rest))
    return out


def _model(service: RetrainService, name: str, *, history: bool) -> ModelRetraining:
    record = service.config_record(name)
    spec = redact_secrets(record.spec) if record is not None else {}  # pages show no secrets
    yaml = ""
    if record is not None:
        config = service.config(name)
        yaml = config.to_yaml(redacted=True) if config is not None else ""
    return ModelRetraining(
        name, record, {k: spec[k] for k in _SETTINGS if k in spec}, _triggers(spec), yaml,
        service.jobs(name, limit=JOBS_SHOWN) if history else [],
        service.decisions(name, limit=_DECISIONS_SHOWN) if history else [])


def retraining_overview(registry: ModelRegistry) -> RetrainingOverview:
    """Every model's stored configuration, and the newest jobs of all models."""
    service = RetrainService(registry)
    models = [_model(service, m.name, history=False) for m in registry.list_models()]
    jobs = service.jobs(None, limit=JOBS_SHOWN)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
    return RetrainingOverview(models, jobs, counts)


def model_retraining(registry: ModelRegistry, name: str) -> ModelRetraining:
    """One model's configuration, jobs and decisions (``ModelNotFound`` if unknown)."""
    registry.get_model(name)
    return _model(RetrainService(registry), name, history=True)


def job_detail(registry: ModelRegistry, job_id: int) -> JobDetail:
    """A job and its log (``RegistryError`` if there is none); its outcome without secrets
    (pages show none, and outcomes recorded before webhook URLs were cut to their origin
    still hold them)."""
    job, log = RetrainService(registry).job(job_id)
    return JobDetail(replace(job, outcome=redact_secrets(job.outcome)), log)


def outcome_summary(job: RetrainJob) -> str:
    """What came of a job, in a line: its version and deployment, or its error."""
    o = job.outcome
    parts = []
    if o.get("version"):
        parts.append(f"version {o['version']}")
    deploy = o.get("deploy")
    if isinstance(deploy, dict) and deploy.get("status"):
        parts.append(f"pipeline {deploy['status']}")
    if o.get("error"):
        parts.append(str(o["error"]))
    if o.get("cancelled_by"):
        parts.append(f"cancelled by {o['cancelled_by']}")
    if o.get("interrupted"):
        parts.append(str(o["interrupted"]))
    if job.cancel_requested and not job.state.done:
        parts.append("cancel requested")
    return "; ".join(parts)


def _job_id(request: Request) -> int:
    job_id = int(request.path_params["job_id"])
    if job_id > _MAX_ID:
        raise HTTPException(404)
    return job_id


def _model_path(name: str) -> str:
    return f"/models/{quote(name, safe='')}/retraining"


def retraining_routes(registry: ModelRegistry, kit: PageKit) -> list[BaseRoute]:
    """The retraining pages and forms, rendered with the dashboard's kit."""
    page, visit_of, form_of = kit.page, kit.visit_of, kit.form_of

    async def overview(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        data = await run_in_threadpool(retraining_overview, registry)
        return page(request, visit, "retraining.html", overview=data,
                    summary=outcome_summary)

    def model_page(request: Request, visit: Visit, data: ModelRetraining, code: int = 200,
                   error: MlopsError | None = None) -> HTMLResponse:
        queued = request.query_params.get("queued", "")
        return page(request, visit, "retraining.html", code, overview=None, detail=data,
                    summary=outcome_summary, priorities=PRIORITIES, error=error,
                    queued=int(queued) if queued.isdigit() else None)

    async def one_model(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        name = request.path_params["name"]
        data = await run_in_threadpool(model_retraining, registry, name)
        return model_page(request, visit, data)

    async def run_now(request: Request) -> Response:
        form = await form_of(request)
        verify_csrf(request, form.get(CSRF_FIELD))
        visit = await signed_in(kit, request, "retrain a model")
        name = request.path_params["name"]
        reason = (form.get("reason") or "").strip()[:MAX_REASON] or "asked for on the dashboard"
        priority = form.get("priority") or "high"
        if priority not in PRIORITIES:
            priority = "high"
        service = RetrainService(registry.acting_as(visit.principal))
        try:
            job = await run_in_threadpool(service.run, name, reason, priority)
        except ConfigError as exc:  # no configuration: the page says how to add one
            data = await run_in_threadpool(model_retraining, registry, name)
            return model_page(request, visit, data, 409, exc)
        return RedirectResponse(f"{_model_path(name)}?queued={job.id}#jobs", status_code=303)

    async def job_page(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        job_id = _job_id(request)
        try:
            data = await run_in_threadpool(job_detail, registry, job_id)
        except RegistryError as exc:
            return page(request, visit, "error.html", 404, status=404, message=exc.message,
                        fix=exc.fix)
        return page(request, visit, "job.html", detail=data, summary=outcome_summary,
                    cancelled=request.query_params.get("cancelled") == "1")

    async def cancel(request: Request) -> Response:
        form = await form_of(request)
        verify_csrf(request, form.get(CSRF_FIELD))
        visit = await signed_in(kit, request, "cancel a job")
        job_id = _job_id(request)
        service = RetrainService(registry.acting_as(visit.principal))
        await run_in_threadpool(service.cancel, job_id)
        return RedirectResponse(f"/retraining/jobs/{job_id}?cancelled=1", status_code=303)

    return [
        Route("/retraining", overview, methods=["GET"]),
        Route("/retraining/jobs/{job_id:int}", job_page, methods=["GET"]),
        Route("/retraining/jobs/{job_id:int}/cancel", cancel, methods=["POST"]),
        Route("/models/{name}/retraining", one_model, methods=["GET"]),
        Route("/models/{name}/retraining/run", run_now, methods=["POST"]),
    ]
