"""Retraining endpoints of the control-plane API: configurations, jobs, decisions, and the
callback a webhook job's orchestrator sends when it is done.

Reading takes a viewer; triggering and cancelling a developer; configuring (it decides what
the server executes) an administrator. The callback
(``POST /v1/retrain/jobs/{id}/complete``) is not a person's call: it is authenticated with
the job's own token (sent to the orchestrator with the webhook, valid while that job
runs, compared by hash in constant time), and can only complete that job.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from mlops.api.auth import shown_to
from mlops.errors import RegistryError, Unauthenticated
from mlops.identity import Role
from mlops.registry.service import ModelRegistry
from mlops.retraining.service import RetrainService
from mlops.store.retrain import RetrainJob

__all__ = ["CompleteBody", "ConfigBody", "RunBody", "add_retrain_routes"]

_STRICT = ConfigDict(extra="forbid")
Name = Annotated[str, Path(min_length=1, max_length=255)]
JobId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Operation = Callable[[str, str, Role], Callable[[Any], Any]]


class ConfigBody(BaseModel):
    model_config = _STRICT
    yaml: str = Field(max_length=200_000, description="The configuration, as YAML text.")


class RunBody(BaseModel):
    model_config = _STRICT
    reason: str = Field("", max_length=2000)
    priority: Literal["critical", "high", "medium", "low"] = "high"


class CompleteBody(BaseModel):
    """What an orchestrator reports: the outcome and, on success, where the model is."""

    model_config = _STRICT
    status: Literal["succeeded", "failed"]
    model_path: str | None = Field(None, max_length=4096, description=(
        "A model file or MLflow model directory readable by this server, or a models:/ "
        "URI of the MLflow registry it reads."))
    metrics: dict[str, float] = Field(default_factory=dict)
    log: str = Field("", max_length=1_000_000)
    error: str = Field("", max_length=10_000)


def shown(request: Request, job: RetrainJob) -> dict[str, Any]:
    """A job as the caller may read it: below admin, its outcome without secrets (outcomes
    recorded before webhook URLs were cut to their origin still hold them)."""
    data = job.to_dict()
    return {**data, "outcome": shown_to(request, data["outcome"])}


def add_retrain_routes(api: FastAPI, registry: ModelRegistry, op: Operation) -> None:
    """Operations under ``/v1/retrain``, declared with ``op`` (their least role)."""
    service = RetrainService(registry)

    def acting(request: Request) -> RetrainService:
        return RetrainService(registry.acting_as(request.state.principal))

    @op("GET", "/v1/retrain/{name}/config", Role.VIEWER)
    def get_config(request: Request, name: Name) -> dict[str, Any]:
        """The webhook's URL and headers are secrets: shown whole to admins only."""
        record = service.config_record(name)
        if record is None:
            raise RegistryError(f"{name} has no retraining configuration.",
                                fix="PUT /api/v1/retrain/NAME/config with its YAML.")
        spec = shown_to(request, record.spec)
        return {"model": name, "config": spec, "updated_by": record.updated_by,
                "updated_at": record.updated_at.isoformat()}

    @op("PUT", "/v1/retrain/{name}/config", Role.ADMIN)
    def put_config(request: Request, name: Name, body: ConfigBody) -> dict[str, Any]:
        record = acting(request).set_config(name, body.yaml, source="the request body")
        return {"model": name, "config": record.spec}

    @op("DELETE", "/v1/retrain/{name}/config", Role.ADMIN)
    def delete_config(request: Request, name: Name) -> dict[str, Any]:
        return {"model": name, "deleted": acting(request).delete_config(name)}

    @op("POST", "/v1/retrain/{name}/jobs", Role.DEVELOPER)
    def run(request: Request, name: Name, body: RunBody) -> dict[str, Any]:
        """Queue a job by hand (it joins a job already queued for the model)."""
        return acting(request).run(name, body.reason, body.priority).to_dict()

    @op("GET", "/v1/retrain/jobs", Role.VIEWER)
    def jobs(request: Request, model: Annotated[str | None, Query(max_length=255)] = None,
             limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
        return [shown(request, j) for j in service.jobs(model, limit=limit)]

    @op("GET", "/v1/retrain/jobs/{job_id}", Role.VIEWER)
    def job(request: Request, job_id: JobId) -> dict[str, Any]:
        found, log = service.job(job_id)
        return {**shown(request, found), "log": log}

    @op("POST", "/v1/retrain/jobs/{job_id}/cancel", Role.DEVELOPER)
    def cancel(request: Request, job_id: JobId) -> dict[str, Any]:
        return acting(request).cancel(job_id).to_dict()

    @op("GET", "/v1/retrain/{name}/decisions", Role.VIEWER)
    def decisions(name: Name, limit: Annotated[int, Query(ge=1, le=1000)] = 50
                  ) -> list[dict[str, Any]]:
        return [d.to_dict() for d in service.decisions(name, limit=limit)]

    @api.post("/v1/retrain/jobs/{job_id}/complete",
              openapi_extra={"x-required-role": "job token"})
    def complete(job_id: JobId, body: CompleteBody,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """A webhook job's orchestrator reports its outcome, with the job's token."""
        scheme, _, token = (authorization or "").partition(" ")
        expected = service.job_token_hash(job_id)
        given = hashlib.sha256(token.strip().encode()).hexdigest()
        if scheme.lower() != "bearer" or expected is None \
                or not hmac.compare_digest(given, expected):
            raise Unauthenticated(
                f"This request does not carry the token of running job {job_id}.",
                fix="Send Authorization: Bearer TOKEN with the token the webhook delivered "
                    "for this job; it is valid while the job runs.")
        service.complete(job_id, body.model_dump())
        return {"job": job_id, "accepted": True}
