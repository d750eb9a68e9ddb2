"""The web dashboard: server-rendered pages over the application layer.

``create_dashboard(registry, auth)`` returns a Starlette app that ``mlops serve`` mounts
at ``/`` (after ``/api`` and the gateway's routes). Pages:

* ``/``: every model, its versions, stages and aliases, where each version serves with
  what weight, its newest gate result, health per environment and open incidents; ``?q=``
  filters with the registry's search language;
* ``/models/{name}/versions/{version}``: metadata, signature, input example, the gate
  report, the model card, compliance checklists, approvals (with approve and reject forms
  for approvers), compiled runtimes and lineage;
* ``/login`` and ``/logout`` (team mode), ``/static/...`` (the stylesheet).

Every response carries a strict Content-Security-Policy (nothing inline, nothing from
another origin) and the other hygiene headers; every POST needs the session's CSRF token;
every change goes through the application call that checks the caller's role and writes
the audit event.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.ci.approvals import approve, reject
from mlops.errors import (
    InvalidQuery,
    MlopsError,
    RateLimited,
    Unauthenticated,
)
from mlops.identity import Principal, Role
from mlops.monitoring.monitor import ModelMonitor
from mlops.registry.service import ModelRegistry
from mlops.ui.web.kit import PageKit
from mlops.ui.web.pages_governance import governance_routes
from mlops.ui.web.pages_monitoring import monitoring_routes
from mlops.ui.web.pages_retraining import retraining_routes
from mlops.ui.web.pages_rollout import rollout_routes
from mlops.ui.web.session import (
    CSRF_FIELD,
    SEED_COOKIE,
    SESSION_COOKIE,
    WebAuth,
    clear_session,
    client_address,
    csrf_token,
    new_seed,
    safe_next,
    set_cookie,
    verify_csrf,
    web_principal,
)
from mlops.ui.web.views import models_overview, version_detail

__all__ = ["MAX_BODY", "SECURITY_HEADERS", "create_dashboard"]

#: sent with every dashboard response
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; "
                               "form-action 'self'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}
#: the largest form body accepted (a comment, a token)
MAX_BODY = 64 * 1024
_MAX_QUERY = 8192
_MAX_COMMENT = 2000
_MAX_TOKEN = 4096


class _Hygiene:
    """ASGI middleware: the security headers on every response (pages get
    ``Cache-Control: no-store``), and request bodies over :data:`MAX_BODY` refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", ())).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            response = HTMLResponse("Request body too large (or no valid length).",
                                    status_code=413, headers=SECURITY_HEADERS)
            await response(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY:
                raise HTTPException(413, "Request body too large.")
            return message

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in names]
                if not static and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, limited, with_headers)


@dataclass(frozen=True)
class _Visit:
    """Who is looking, and the CSRF material of their browser."""

    principal: Principal
    seed: str
    fresh_seed: bool
    session: str | None

    @property
    def csrf(self) -> str:
        return csrf_token(self.seed, self.session)


def _num(value: Any) -> str:
    """A number as the dashboard shows it (4 significant digits); other values as text."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value or "")
    return text.replace("T", " ")[:19] if text else "—"


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True, indent=1)


def _columns(rows: Any) -> list[str]:
    """The keys of a list of mappings, in first-seen order (a table's columns)."""
    return list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("mlops.ui.web", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=_num, when=_when, as_json=_as_json, columns=_columns,
                       q=lambda s: quote(str(s), safe=""))
    return env


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def create_dashboard(registry: ModelRegistry, auth: WebAuth) -> Starlette:
    """The dashboard app for one registry; ``auth`` authenticates the login form and the
    session cookie (the server's :class:`mlops.api.auth.ApiAuth`)."""
    templates = _environment()
    monitor = ModelMonitor(registry)

    def page(request: Request, visit: _Visit | None, template: str, code: int = 200,
             **context: Any) -> HTMLResponse:
        principal = visit.principal if visit is not None else None
        body = templates.get_template(template).render(
            principal=principal, team=auth.team, csrf=visit.csrf if visit else "",
            csrf_field=CSRF_FIELD, path=request.url.path,
            can=lambda role: principal is not None and principal.role is not None
            and principal.role.allows(Role(role)), **context)
        response = HTMLResponse(body, status_code=code)
        if visit is not None and visit.fresh_seed:
            set_cookie(response, request, SEED_COOKIE, visit.seed)
        return response

    def error_page(request: Request, status: int, message: str, fix: str | None,
                   retry_after: float | None = None) -> Response:
        response: Response
        if not _wants_html(request):  # a program (the dashboard is mounted at /)
            if status == 404:
                fix = ("Check the address: inference is under /v1, /v2 and /invocations, "
                       "the control API under /api, the dashboard at /.")
            response = JSONResponse({"error": message, "fix": fix}, status_code=status)
        else:
            visit = getattr(request.state, "visit", None)
            response = page(request, visit, "error.html", status, status=status,
                            message=message, fix=fix)
        if retry_after is not None:
            response.headers["retry-after"] = str(round(retry_after))
        return response

    def seed_of(request: Request) -> tuple[str, bool]:
        seed = request.cookies.get(SEED_COOKIE)
        return (seed, False) if seed and len(seed) <= 128 else (new_seed(), True)

    async def visit_of(request: Request) -> _Visit | Response:
        """The visit, or the way to the login form (team mode without a valid session)."""
        principal = await web_principal(request, auth)
        seed, fresh = seed_of(request)
        if principal is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse("/login?" + urlencode({"next": target}),
                                        status_code=303)
            if SESSION_COOKIE in request.cookies:
                clear_session(response, request)
            return response
        visit = _Visit(principal, seed, fresh,
                       request.cookies.get(SESSION_COOKIE) if auth.team else None)
        request.state.visit = visit
        return visit

    async def models_page(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        query = request.query_params.get("q", "")
        if len(query) > _MAX_QUERY:
            return page(request, visit, "models.html", 400, overview=None, query=query[:200],
                        error=f"The search query is {len(query)} characters long.",
                        fix=f"Use at most {_MAX_QUERY} characters.")
        try:
            overview = await run_in_threadpool(models_overview, registry, monitor, query)
        except InvalidQuery as exc:
            return page(request, visit, "models.html", 400, overview=None, query=query,
                        error=exc.message, fix=exc.fix)
        return page(request, visit, "models.html", overview=overview, query=query,
                    error=None, fix=None)

    async def version_page(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        name, version = request.path_params["name"], request.path_params["version"]
        detail = await run_in_threadpool(version_detail, registry, name, version)
        decided = request.query_params.get("decided")
        return page(request, visit, "version.html", detail=detail,
                    decided=decided if decided in ("approve", "reject") else None)

    async def form_of(request: Request) -> dict[str, str]:
        """The fields of a URL-encoded form (the only kind the pages send)."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        body = await request.body()
        if media != "application/x-www-form-urlencoded":
            return {}
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HTTPException(400, "The form could not be read.") from exc
        return dict(pairs)

    def decision(verb: str) -> Callable[[Request], Awaitable[Response]]:
        async def decide(request: Request) -> Response:
            form = await form_of(request)
            verify_csrf(request, _field(form, CSRF_FIELD))
            visit = await visit_of(request)
            if isinstance(visit, Response):
                raise Unauthenticated("Log in to decide on a version.",
                                      fix="Open /login and log in with a token.")
            name, version = request.path_params["name"], request.path_params["version"]
            comment = (_field(form, "comment") or "")[:_MAX_COMMENT]
            acting = registry.acting_as(visit.principal)
            call = approve if verb == "approve" else reject
            await run_in_threadpool(call, acting, name, version, comment)
            target = f"/models/{quote(name, safe='')}/versions/{quote(version, safe='')}"
            return RedirectResponse(f"{target}?decided={verb}#approvals", status_code=303)

        return decide

    async def login_form(request: Request) -> Response:
        if not auth.team:
            return RedirectResponse("/", status_code=303)
        seed, fresh = seed_of(request)
        principal = await web_principal(request, auth)
        visit = _Visit(principal or Principal.anonymous(), seed, fresh, None)
        if principal is not None:  # already logged in
            return RedirectResponse(safe_next(request.query_params.get("next")),
                                    status_code=303)
        return page(request, visit, "login.html", next=safe_next(
            request.query_params.get("next")), error=None, fix=None, anonymous=True)

    async def login(request: Request) -> Response:
        if not auth.team:
            return RedirectResponse("/", status_code=303)
        form = await form_of(request)
        verify_csrf(request, _field(form, CSRF_FIELD), session=False)
        seed, _ = seed_of(request)
        target = safe_next(_field(form, "next"))
        token = (_field(form, "token") or "").strip()
        visit = _Visit(Principal.anonymous(), seed, False, None)
        try:
            if not token or len(token) > _MAX_TOKEN:
                raise Unauthenticated("Enter a token to log in.",
                                      fix="Paste a token from `mlops tokens create` (or a JWT "
                                          "from your identity provider).")
            principal = await auth.authenticate_client(client_address(request), token)
            if principal.role is None:
                raise Unauthenticated("That token has no role.",
                                      fix="Ask an admin for a token with a role.")
        except (Unauthenticated, RateLimited) as exc:
            refused = page(request, visit, "login.html", exc.status, next=target,
                           error=exc.message, fix=exc.fix, anonymous=True)
            if exc.retry_after is not None:  # the lockout, as the API says it
                refused.headers["Retry-After"] = str(round(exc.retry_after))
            return refused
        response = RedirectResponse(target, status_code=303)
        set_cookie(response, request, SESSION_COOKIE, token)
        return response

    async def logout_form(request: Request) -> Response:
        visit = await visit_of(request)
        if isinstance(visit, Response):
            return visit
        return page(request, visit, "logout.html")

    async def logout(request: Request) -> Response:
        form = await form_of(request)
        verify_csrf(request, _field(form, CSRF_FIELD))
        response = RedirectResponse("/login" if auth.team else "/", status_code=303)
        clear_session(response, request)
        return response

    async def on_mlops_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MlopsError)
        return error_page(request, exc.status, exc.message, exc.fix, exc.retry_after)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        fixes = {404: "Check the address; the models page lists every model and version.",
                 405: "Use the page's own buttons and links.",
                 413: "Send a shorter form."}
        message = {404: f"Nothing at {request.url.path}.",
                   405: f"{request.method} is not allowed on {request.url.path}."}.get(
            exc.status_code, str(exc.detail))
        return error_page(request, exc.status_code, message, fixes.get(exc.status_code))

    async def on_crash(request: Request, exc: Exception) -> Response:
        response = error_page(request, 500, "The dashboard failed to build this page.",
                              "Try again; if it persists, see the server log.")
        response.headers.update(SECURITY_HEADERS)
        return response

    kit = PageKit(page, visit_of, form_of)
    routes = [
        Route("/", models_page, methods=["GET"]),
        Route("/models/{name}/versions/{version}", version_page, methods=["GET"]),
        Route("/models/{name}/versions/{version}/approve", decision("approve"),
              methods=["POST"]),
        Route("/models/{name}/versions/{version}/reject", decision("reject"),
              methods=["POST"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout_form, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        *retraining_routes(registry, kit), *governance_routes(registry, kit),
        *rollout_routes(registry, kit), *monitoring_routes(registry, monitor, kit),
        Mount("/static", StaticFiles(packages=[("mlops.ui.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Hygiene)],
                     exception_handlers={MlopsError: on_mlops_error,
                                         HTTPException: on_http_error, Exception: on_crash})


def _field(form: dict[str, str], name: str) -> str | None:
    return form.get(name)
