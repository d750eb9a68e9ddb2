"""The control-plane REST API (``/api/v1``): registry, routing, rollouts, monitoring, audit.

Served by ``mlops serve`` with ``--role control`` or ``all``. It formats what the library
returns; the rules live in the registry and deployment layers. Errors come back as
``{"error", "fix"}`` with 404 for unknown things and 400 for invalid requests.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from mlops.api.monitoring import monitoring_router
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.routes import RouteSpec, RouteWriter
from mlops.errors import (
    AlertNotFound,
    ArtifactError,
    DeploymentError,
    MlopsError,
    ModelNotFound,
    VersionNotFound,
)
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry

__all__ = ["DeployBody", "RollbackBody", "RouteBody", "create_api"]


class RouteBody(BaseModel):
    """What an environment should serve for a model."""

    stable: str | None
    candidate: str | None = None
    weight: float = Field(0.0, ge=0.0, le=100.0)
    mode: str = "split"
    unit_field: str | None = None
    strategy: str = "full"
    reason: str = ""
    config: dict[str, Any] = Field(default_factory=dict)


class StageBody(BaseModel):
    stage: str
    archive_existing: bool = True
    reason: str = ""


class AliasBody(BaseModel):
    version: str


class DeployBody(BaseModel):
    version: str
    strategy: str = "canary"
    config: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    override: str | None = None  # recorded reason to skip the promotion policy


class ReasonBody(BaseModel):
    reason: str = ""


class RollbackBody(BaseModel):
    to: str | None = None
    reason: str = ""


def _route_dict(spec: RouteSpec) -> dict[str, Any]:
    return asdict(spec)


def create_api(registry: ModelRegistry) -> FastAPI:
    """The FastAPI app for one registry (mounted at ``/api`` by the server)."""
    api = FastAPI(title="mlops control plane", version="1", docs_url="/docs",
                  openapi_url="/openapi.json")
    routes = RouteWriter(registry)

    @api.exception_handler(MlopsError)
    async def _mlops_error(request: Request, exc: MlopsError) -> JSONResponse:
        status = 404 if isinstance(exc, ModelNotFound | VersionNotFound | AlertNotFound) else \
            500 if isinstance(exc, ArtifactError) else 400
        body: dict[str, Any] = {"error": exc.message}
        if exc.fix:
            body["fix"] = exc.fix
        return JSONResponse(body, status_code=status)

    @api.get("/v1/models")
    def list_models() -> list[dict[str, Any]]:
        return [m.to_dict() for m in registry.list_models()]

    @api.get("/v1/models/{name}")
    def get_model(name: str) -> dict[str, Any]:
        return {"model": registry.get_model(name).to_dict(),
                "versions": [v.to_dict() for v in registry.list_versions(name)]}

    @api.get("/v1/models/{name}/versions/{ref}")
    def get_version(name: str, ref: str) -> dict[str, Any]:
        """``ref`` is a version number, a stage, an alias or ``latest``."""
        return registry.get_version(name, ref).to_dict()

    @api.post("/v1/models/{name}/versions/{version}/stage")
    def promote(name: str, version: str, body: StageBody) -> dict[str, Any]:
        return registry.promote(name, version, body.stage,
                                archive_existing=body.archive_existing,
                                reason=body.reason).to_dict()

    @api.put("/v1/models/{name}/aliases/{alias}")
    def set_alias(name: str, alias: str, body: AliasBody) -> dict[str, Any]:
        return registry.set_alias(name, alias, body.version).to_dict()

    @api.get("/v1/search")
    def search(q: str = "", limit: int = 100) -> list[dict[str, Any]]:
        return [v.to_dict() for v in registry.search(q, limit=max(1, min(limit, 10_000)))]

    @api.get("/v1/routes/{name}/{environment}")
    def get_route(name: str, environment: str) -> dict[str, Any]:
        spec = routes.get_route(name, environment)
        if spec is None:
            registry.get_model(name)  # 404 for an unknown model
            return {"model": name, "environment": environment, "route": None,
                    "note": "no deployment: the environment serves by registry stage"}
        return _route_dict(spec)

    @api.put("/v1/routes/{name}/{environment}")
    def set_route(name: str, environment: str, body: RouteBody) -> dict[str, Any]:
        spec = routes.set_route(name, environment, stable=body.stable,
                                candidate=body.candidate, weight=body.weight, mode=body.mode,
                                unit_field=body.unit_field, strategy=body.strategy,
                                config=body.config, reason=body.reason)
        return _route_dict(spec)

    @api.delete("/v1/routes/{name}/{environment}")
    def clear_route(name: str, environment: str, reason: str = "") -> dict[str, Any]:
        routes.clear_route(name, environment, reason=reason)
        return {"model": name, "environment": environment, "route": None}

    rollouts = RolloutManager(registry)

    @api.post("/v1/rollouts/{name}/{environment}")
    def deploy(name: str, environment: str, body: DeployBody) -> dict[str, Any]:
        """Start a rollout (``mlops deploy``)."""
        return rollouts.deploy(name, body.version, environment, strategy=body.strategy,
                               config=body.config, reason=body.reason,
                               override=body.override).to_dict()

    @api.get("/v1/rollouts/{name}/{environment}")
    def rollout_status(name: str, environment: str) -> dict[str, Any]:
        rollout = rollouts.status(name, environment)
        return {"rollout": None} if rollout is None else rollout.to_dict()

    @api.post("/v1/rollouts/{name}/{environment}/{action}")
    def rollout_action(name: str, environment: str, action: str,
                       body: ReasonBody | None = None) -> dict[str, Any]:
        """``promote``, ``pause``, ``resume`` or ``abort`` the active rollout."""
        if action not in {"promote", "pause", "resume", "abort"}:
            raise DeploymentError(f"Unknown rollout action {action!r}.",
                                  fix="Use promote, pause, resume or abort.", model=name)
        reason = body.reason if body is not None else ""
        return getattr(rollouts, action)(name, environment, reason=reason).to_dict()

    @api.post("/v1/rollback/{name}/{environment}")
    def rollback(name: str, environment: str, body: RollbackBody | None = None
                 ) -> dict[str, Any]:
        """All traffic back to the previous (or named) version."""
        body = body or RollbackBody()
        version = rollouts.rollback(name, environment, to=body.to, reason=body.reason)
        return {"model": name, "environment": environment, "serving": version}

    api.include_router(monitoring_router(ModelMonitor(registry)))

    @api.get("/v1/audit")
    def audit(subject: str | None = None, action: str | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        return [asdict(e) for e in registry.audit_log(subject=subject, action=action,
                                                      limit=max(1, min(limit, 10_000)))]

    @api.get("/v1/audit/verify")
    def verify(checkpoint: str | None = None) -> dict[str, Any]:
        return asdict(registry.verify_audit(checkpoint))

    return api
