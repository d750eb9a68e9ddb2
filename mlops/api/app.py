"""The control-plane REST API (``/api/v1``): registry, routing, rollouts, monitoring, audit,
tokens.

Served by ``mlops serve`` with ``--role control`` or ``all``. It formats what the library
returns; the rules live in the registry and deployment layers. Every operation declares the
least role it needs (``x-required-role`` in the OpenAPI schema; the application layer may
ask for more, such as approver for production) and acts as the authenticated caller, so
the audit log names them. Errors come back as ``{"error", "fix"}``: 401/403/429 for
identity, 404 for unknown things, 409 when the promotion policy refuses, 400 for other
invalid requests, 422 for bodies that do not fit the schema.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlops.api.auth import ApiAuth, auth_error_response, shown_to
from mlops.api.monitoring import add_monitoring_routes
from mlops.api.retrain import add_retrain_routes
from mlops.deployment.rollouts import RolloutManager
from mlops.deployment.routes import RouteSpec, RoutingService
from mlops.errors import AuthError, MlopsError
from mlops.governance.tokens import TokenService
from mlops.identity import Role
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.store.tokens import parse_duration

__all__ = ["DeployBody", "ErrorBody", "RollbackBody", "RouteBody", "create_api"]

log = logging.getLogger("mlops.api")

_STRICT = ConfigDict(extra="forbid")
Name = Annotated[str, Path(min_length=1, max_length=255)]
Env = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]{0,63}$")]


class ErrorBody(BaseModel):
    """Every refusal: what is wrong and how to fix it."""

    error: str
    fix: str | None = None
    required_role: str | None = None


class RouteConfig(BaseModel):
    """What a route write may configure (rollouts manage everything else)."""

    model_config = _STRICT
    batching_opt_out: bool = False


class RouteBody(BaseModel):
    """What an environment should serve for a model."""

    model_config = _STRICT
    stable: str | None
    candidate: str | None = None
    weight: float = Field(0.0, ge=0.0, le=100.0, allow_inf_nan=False)
    mode: Literal["split", "shadow"] = "split"
    unit_field: str | None = Field(None, max_length=255)
    strategy: str = Field("full", max_length=32)
    reason: str = Field("", max_length=2000)
    config: RouteConfig = Field(default_factory=RouteConfig)
    override: str | None = Field(None, max_length=2000,
                                 description="Reason to skip the promotion policy (approver).")


class StageBody(BaseModel):
    model_config = _STRICT
    stage: str = Field(max_length=32)
    archive_existing: bool = True
    reason: str = Field("", max_length=2000)
    override: str | None = Field(None, max_length=2000)


class AliasBody(BaseModel):
    model_config = _STRICT
    version: str = Field(min_length=1, max_length=64)


class DeployBody(BaseModel):
    model_config = _STRICT
    version: str = Field(min_length=1, max_length=64)
    strategy: str = Field("canary", max_length=32)
    config: dict[str, Any] = Field(default_factory=dict)
    reason: str = Field("", max_length=2000)
    override: str | None = Field(None, max_length=2000,
                                 description="Reason to skip the promotion policy (approver).")


class ReasonBody(BaseModel):
    model_config = _STRICT
    reason: str = Field("", max_length=2000)


class RollbackBody(BaseModel):
    model_config = _STRICT
    to: str | None = Field(None, max_length=64)
    reason: str = Field("", max_length=2000)


class TokenBody(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=128)
    role: Literal["viewer", "developer", "approver", "admin"]
    expires: str | None = Field(None, max_length=16, description="e.g. 90d, 12h, 2w")


def _route_dict(spec: RouteSpec) -> dict[str, Any]:
    return asdict(spec)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in (
        (400, "Invalid request"), (401, "No valid token (team mode)"),
        (403, "Role too low, or a cross-site or non-JSON state change"),
        (404, "Unknown model, version, rollout or alert"),
        (409, "Refused by the promotion policy"), (429, "Too many failed authentications"),
        (503, "The write kept losing a race with other writers; nothing was written, retry "
              "(Retry-After)"))}


def create_api(registry: ModelRegistry, auth: ApiAuth | None = None) -> FastAPI:
    """The FastAPI app for one registry (mounted at ``/api`` by the server)."""
    auth = auth or ApiAuth(registry.context.settings)
    api = FastAPI(title="mlops control plane", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json", responses=_ERRORS)
    monitor = ModelMonitor(registry)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 body, with values JSON cannot carry (NaN, infinities) as text."""
        return JSONResponse({"detail": _plain(jsonable_encoder(exc.errors()))},
                            status_code=422)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        fix = {404: "Check the path against GET /api/openapi.json.",
               405: "Check the HTTP method against GET /api/openapi.json.",
               400: "Send a JSON body (UTF-8) as the schema describes."}.get(exc.status_code)
        return JSONResponse({"error": str(exc.detail), "fix": fix},
                            status_code=exc.status_code, headers=exc.headers)

    @api.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        status, body, headers = auth_error_response(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @api.exception_handler(MlopsError)
    async def _mlops_error(request: Request, exc: MlopsError) -> JSONResponse:
        if isinstance(exc, AuthError):
            return await _auth_error(request, exc)
        body: dict[str, Any] = {"error": exc.message}
        if exc.fix:
            body["fix"] = exc.fix
        headers = None if exc.retry_after is None \
            else {"Retry-After": str(round(exc.retry_after))}
        return JSONResponse(body, status_code=exc.status, headers=headers)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A failure no check foresaw: JSON like every other answer, with an error id that
        is in the server log next to the traceback (never the traceback itself)."""
        error_id = uuid.uuid4().hex[:12]
        log.exception("error id %s: %s %s failed", error_id, request.method, request.url.path)
        return JSONResponse({"error": f"Internal error (error id {error_id}); the server log "
                                      "has the details.",
                             "fix": "Report it with the error id; the request changed nothing "
                                    "it could not finish."}, status_code=500)

    def op(method: str, path: str, role: Role) -> Callable[[Any], Any]:
        """Declare an operation with the least role it needs."""
        return api.api_route(path, methods=[method], dependencies=[auth.needs(role)],
                             openapi_extra={"x-required-role": role.value})

    def acting(request: Request) -> ModelRegistry:
        return registry.acting_as(request.state.principal)

    @op("GET", "/v1/whoami", Role.VIEWER)
    def whoami(request: Request) -> dict[str, Any]:
        """The caller as this server sees them, and the mode it runs in."""
        p = request.state.principal
        return {"name": p.name, "role": p.role.value if p.role else None, "via": p.via,
                "mode": "team" if registry.context.settings.auth else "single-user",
                "promotion_policy": registry.context.settings.effective_policy}

    @op("GET", "/v1/models", Role.VIEWER)
    def list_models() -> list[dict[str, Any]]:
        return [m.to_dict() for m in registry.list_models()]

    @op("GET", "/v1/models/{name}", Role.VIEWER)
    def get_model(name: Name) -> dict[str, Any]:
        return {"model": registry.get_model(name).to_dict(),
                "versions": [v.to_dict() for v in registry.list_versions(name)]}

    @op("GET", "/v1/models/{name}/versions/{ref}", Role.VIEWER)
    def get_version(name: Name, ref: Annotated[str, Path(max_length=255)]) -> dict[str, Any]:
        """``ref`` is a version number, a stage, an alias or ``latest``."""
        return registry.get_version(name, ref).to_dict()

    @op("POST", "/v1/models/{name}/versions/{version}/stage", Role.DEVELOPER)
    def promote(request: Request, name: Name, version: Annotated[str, Path(max_length=64)],
                body: StageBody) -> dict[str, Any]:
        """Staging and Production changes what an environment serves: the promotion gate
        applies (approver for production)."""
        return acting(request).promote(name, version, body.stage,
                                       archive_existing=body.archive_existing,
                                       reason=body.reason, override=body.override).to_dict()

    @op("PUT", "/v1/models/{name}/aliases/{alias}", Role.DEVELOPER)
    def set_alias(request: Request, name: Name, alias: Annotated[str, Path(max_length=64)],
                  body: AliasBody) -> dict[str, Any]:
        return acting(request).set_alias(name, alias, body.version).to_dict()

    @op("GET", "/v1/search", Role.VIEWER)
    def search(q: Annotated[str, Query(max_length=8192)] = "",
               limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
        return [v.to_dict() for v in registry.search(q, limit=limit)]

    @op("GET", "/v1/routes/{name}/{environment}", Role.VIEWER)
    def get_route(name: Name, environment: Env) -> dict[str, Any]:
        spec = RoutingService(registry).get_route(name, environment)
        if spec is None:
            registry.get_model(name)  # 404 for an unknown model
            return {"model": name, "environment": environment, "route": None,
                    "note": "no deployment: the environment serves by registry stage"}
        return _route_dict(spec)

    @op("PUT", "/v1/routes/{name}/{environment}", Role.DEVELOPER)
    def set_route(request: Request, name: Name, environment: Env, body: RouteBody
                  ) -> dict[str, Any]:
        spec = RoutingService(acting(request)).set_route(
            name, environment, stable=body.stable, candidate=body.candidate,
            weight=body.weight, mode=body.mode, unit_field=body.unit_field,
            strategy=body.strategy, config=body.config.model_dump(exclude_defaults=True),
            reason=body.reason,
            override=body.override)
        return _route_dict(spec)

    @op("DELETE", "/v1/routes/{name}/{environment}", Role.DEVELOPER)
    def clear_route(request: Request, name: Name, environment: Env,
                    reason: Annotated[str, Query(max_length=2000)] = "") -> dict[str, Any]:
        RoutingService(acting(request)).clear_route(name, environment, reason=reason)
        return {"model": name, "environment": environment, "route": None}

    @op("POST", "/v1/rollouts/{name}/{environment}", Role.DEVELOPER)
    def deploy(request: Request, name: Name, environment: Env, body: DeployBody
               ) -> dict[str, Any]:
        """Start a rollout (``mlops deploy``); approver for production."""
        return RolloutManager(acting(request)).deploy(
            name, body.version, environment, strategy=body.strategy, config=body.config,
            reason=body.reason, override=body.override).to_dict()

    @op("GET", "/v1/rollouts/{name}/{environment}", Role.VIEWER)
    def rollout_status(name: Name, environment: Env) -> dict[str, Any]:
        rollout = RolloutManager(registry).status(name, environment)
        return {"rollout": None} if rollout is None else rollout.to_dict()

    @op("POST", "/v1/rollouts/{name}/{environment}/{action}", Role.DEVELOPER)
    def rollout_action(request: Request, name: Name, environment: Env,
                       action: Literal["promote", "pause", "resume", "abort"],
                       body: ReasonBody | None = None) -> dict[str, Any]:
        """``promote``, ``pause``, ``resume`` or ``abort`` the active rollout; approver for
        production."""
        manager = RolloutManager(acting(request))
        reason = body.reason if body is not None else ""
        result = {"promote": manager.promote, "pause": manager.pause,
                  "resume": manager.resume, "abort": manager.abort}[action]
        return result(name, environment, reason=reason).to_dict()

    @op("POST", "/v1/rollback/{name}/{environment}", Role.DEVELOPER)
    def rollback(request: Request, name: Name, environment: Env,
                 body: RollbackBody | None = None) -> dict[str, Any]:
        """All traffic back to the previous (or named) version; approver for production."""
        body = body or RollbackBody(to=None, reason="")
        version = RolloutManager(acting(request)).rollback(name, environment, to=body.to,
                                                           reason=body.reason)
        return {"model": name, "environment": environment, "serving": version}

    add_monitoring_routes(monitor, op)
    add_retrain_routes(api, registry, op)

    @op("GET", "/v1/audit", Role.VIEWER)
    def audit(request: Request, subject: Annotated[str | None, Query(max_length=512)] = None,
              action: Annotated[str | None, Query(max_length=64)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
        """The newest events; below admin, payloads with their secrets hidden (events
        written before secrets were kept out of the log still hold them)."""
        return [{**asdict(e), "payload": shown_to(request, e.payload)}
                for e in registry.audit_log(subject=subject, action=action, limit=limit)]

    @op("GET", "/v1/audit/verify", Role.VIEWER)
    def verify(checkpoint: Annotated[str | None, Query(max_length=200)] = None
               ) -> dict[str, Any]:
        return asdict(registry.verify_audit(checkpoint))

    @op("GET", "/v1/tokens", Role.ADMIN)
    def tokens(request: Request) -> list[dict[str, Any]]:
        return [t.to_dict() for t in TokenService(acting(request)).list()]

    @op("POST", "/v1/tokens", Role.ADMIN)
    def create_token(request: Request, body: TokenBody) -> dict[str, Any]:
        """A new token; the response holds its secret, shown this once."""
        info, secret = TokenService(acting(request)).create(
            body.name, Role(body.role), parse_duration(body.expires) if body.expires else None)
        return {**info.to_dict(), "token": secret}

    @op("DELETE", "/v1/tokens/{token_id}", Role.ADMIN)
    def revoke_token(request: Request, token_id: Annotated[str, Path(max_length=128)],
                     reason: Annotated[str, Query(max_length=2000)] = "") -> dict[str, Any]:
        return TokenService(acting(request)).revoke(token_id, reason).to_dict()

    return api
