"""Authentication and web hygiene in front of every route of ``mlops serve``.

:class:`SecurityGuard` wraps the whole ASGI app (gateway and control API):

* single-user mode answers only requests whose ``Host`` is a loopback name (or one of
  ``allowed_hosts``), so a web page cannot reach the local server through DNS rebinding;
* a state-changing request (POST, PUT, PATCH, DELETE) with a cross-site ``Origin`` is
  refused, in both modes;
* in single-user mode a ``POST`` to ``/api`` must be one a browser cannot send cross-site
  without asking first: a JSON content type or an ``X-Requested-With`` / ``X-Mlops-Client``
  header (PUT, PATCH and DELETE always need a CORS preflight, which is never granted);
* in team mode, feedback (labels, which steer rollout decisions) always needs a token, and
  inference requests do when ``auth_inference`` is on.

:class:`ApiAuth` resolves the caller of a control-API request (the bearer token in team
mode, the local administrator in single-user mode); repeated failures from one client are
answered 429 for a while (:class:`FailureLimiter`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import threading
import time
from typing import Annotated, Any

import orjson
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlops.config import Settings
from mlops.errors import AuthError, RateLimited, Unauthenticated
from mlops.identity import Principal, Role, require
from mlops.store.credentials import Authenticator
from mlops.store.egress import redact_secrets

__all__ = [
    "API_BODY_LIMIT",
    "BEARER",
    "PUBLIC_PATHS",
    "ApiAuth",
    "FailureLimiter",
    "SecurityGuard",
    "auth_error_response",
    "is_loopback_host",
    "shown_to",
]

#: Paths that never need a token: probes, metrics and the API's own schema.
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics", "/ping",
                          "/health", "/version", "/api/openapi.json"})
#: the inference protocols' paths (V2, KServe V1 and its labels, MLflow's /invocations)
INFERENCE_PREFIXES = ("/v1/", "/v2/", "/invocations")
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: a webhook job's callback: authenticated with the job's own token, by its route
_JOB_CALLBACK = re.compile(r"^/api/v1/retrain/jobs/[0-9]+/complete$")
#: The largest request body /api reads (the biggest legitimate one is a job's log).
API_BODY_LIMIT = 8 * 1024 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
_NON_SIMPLE_HEADERS = (b"x-requested-with", b"x-mlops-client")
#: The OpenAPI security scheme of the control API (authentication itself is ApiAuth's).
BEARER = HTTPBearer(auto_error=False, description="A token from `mlops tokens create` or a "
                    "JWT from the configured identity provider (team mode).")


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 or ::1 (no DNS lookup)."""
    name = host.strip().lower().rstrip(".")
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, str]:
    """``host[:port]`` (IPv6 in brackets) -> (host, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.lstrip(":")
    host, _, port = value.partition(":")
    return host, port


class FailureLimiter:
    """At most ``limit`` failed authentications per client in ``window`` seconds; then the
    client is refused until the window has passed."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window]
            if recent:
                self._failures[client] = recent
            else:
                self._failures.pop(client, None)
            if len(recent) >= self.limit:
                wait = self.window - (now - recent[0])
                raise RateLimited(f"Too many failed authentications from {client}.",
                                  retry_after=max(1.0, wait),
                                  fix=f"Wait {max(1, round(wait))} s, then use a valid token.")

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._failures) > 100_000:  # bounded memory under a spray of addresses
                self._failures.clear()
            self._failures.setdefault(client, []).append(time.monotonic())


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class ApiAuth:
    """Who is calling the control API (one per server process)."""

    def __init__(self, settings: Settings, authenticator: Authenticator | None = None,
                 limiter: FailureLimiter | None = None) -> None:
        self.settings = settings
        self.team = settings.auth
        self.authenticator = (authenticator or Authenticator(settings)) if settings.auth \
            else None
        self.limiter = limiter or FailureLimiter()
        self.local = Principal.local(settings.actor)

    async def authenticate(self, scope: Scope, credential: str | None) -> Principal:
        """The caller behind ``credential`` (team mode) or the local user."""
        return await self.authenticate_client(_client(scope), credential)

    async def inference_caller(self, authorization: str | None, client: str, *,
                               labels: bool = False) -> Principal:
        """The caller of an inference request (``labels``: of a feedback request) from its
        ``Authorization`` value, sent by ``client``: any role may infer, sending labels
        (they steer rollout decisions) takes a developer. HTTP and gRPC both ask here."""
        scheme, _, credential = (authorization or "").partition(" ")
        principal = await self.authenticate_client(
            client, credential.strip() if scheme.lower() == "bearer" else None)
        if labels:
            require(principal, Role.DEVELOPER, "send labels")
        else:
            require(principal, Role.VIEWER, "call the inference API")
        return principal

    async def authenticate_client(self, client: str, credential: str | None) -> Principal:
        """:meth:`authenticate` for a request from the address ``client``."""
        if not self.team:
            return self.local
        assert self.authenticator is not None
        try:
            self.limiter.check(client)
        except RateLimited:
            # a token this process verified before still works from a locked-out address
            # (a shared NAT or proxy); a new guess gets no answer until the window passes
            if not (credential and self.authenticator.known(credential)):
                await asyncio.to_thread(self.authenticator.refused, client)
                raise
        try:
            return await asyncio.to_thread(self.authenticator.authenticate, credential)
        except Unauthenticated:
            if credential:  # a wrong guess counts; a missing token is no attempt
                self.limiter.failed(client)
                await asyncio.to_thread(self.authenticator.refused, client)
            raise

    def needs(self, role: Role) -> Any:
        """A FastAPI dependency: the caller, who must hold ``role`` or above (the
        application layer may ask for more, e.g. approver for production)."""
        async def principal(request: Request, credentials: Annotated[
                HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Principal:
            cached = getattr(request.state, "principal", None)
            if isinstance(cached, Principal):
                found = cached
            else:
                found = await self.authenticate(
                    request.scope, credentials.credentials if credentials else None)
                request.state.principal = found
            require(found, role, f"call {request.method} {request.url.path}")
            return found

        return Depends(principal)


def _json_error(status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] | None
                = None) -> tuple[dict[str, Any], dict[str, Any]]:
    raw = orjson.dumps(body)
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode()), *(headers or [])]}
    return start, {"type": "http.response.body", "body": raw}


def auth_error_response(exc: AuthError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers for an :class:`AuthError`."""
    body: dict[str, Any] = {"error": exc.message}
    if exc.fix:
        body["fix"] = exc.fix
    if "required" in exc.context:
        body["required_role"] = exc.context["required"]
    headers = {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(round(exc.retry_after))
    elif exc.status == 401:
        headers["www-authenticate"] = 'Bearer realm="mlops"'
    return exc.status, body, headers


class SecurityGuard:
    """ASGI middleware: Host and Origin checks, non-simple mutations, inference tokens."""

    def __init__(self, app: ASGIApp, settings: Settings, auth: ApiAuth | None = None,
                 extra_hosts: list[str] | None = None, any_host: bool = False,
                 instance: str | None = None) -> None:
        self.app = app
        self.settings = settings
        self.auth = auth or ApiAuth(settings)
        self.hosts = {h.lower() for h in [*settings.allowed_hosts, *(extra_hosts or [])]}
        self.any_host = any_host or settings.auth
        self._hosts_seen: dict[str, bool] = {}
        #: named on /v2/health/live so that the server recognises its own socket
        self.instance = instance.encode() if instance else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = content_type = authorization = b""
        custom = False
        for key, value in scope.get("headers", ()):
            if key == b"host":
                host = value
            elif key == b"origin":
                origin = value
            elif key == b"content-type":
                content_type = value
            elif key == b"authorization":
                authorization = value
            elif key in _NON_SIMPLE_HEADERS:
                custom = True
        refusal = self._refusal(scope, host.decode("latin-1"), origin.decode("latin-1"),
                                content_type.decode("latin-1"), custom)
        if refusal is not None:
            start, body = _json_error(403, refusal)
            await send(start)
            await send(body)
            return
        path = scope["path"]
        if path.startswith("/api/") and path not in PUBLIC_PATHS:
            early = self._api_refusal(scope, authorization, receive)
            if isinstance(early, tuple):
                start, body = early
                await send(start)
                await send(body)
                return
            receive = early
        if self.settings.auth and self._needs_token(path):
            try:
                principal = await self.auth.inference_caller(
                    authorization.decode("latin-1"), _client(scope),
                    labels=scope["path"].endswith("/feedback"))
            except AuthError as exc:
                status, payload, extra = auth_error_response(exc)
                start, body = _json_error(status, payload, [(k.encode(), v.encode())
                                                            for k, v in extra.items()])
                await send(start)
                await send(body)
                return
            scope.setdefault("state", {})["principal"] = principal
        if self.instance is not None and scope["path"] == "/v2/health/live":
            instance = self.instance

            async def named(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []),
                                                      (b"x-mlops-instance", instance)]}
                await send(message)

            await self.app(scope, receive, named)
            return
        await self.app(scope, receive, send)

    def _api_refusal(self, scope: Scope, authorization: bytes, receive: Receive
                     ) -> tuple[dict[str, Any], dict[str, Any]] | Receive:
        """Refused before the body is read (FastAPI reads and parses it before the route's
        token check runs): in team mode a request with no bearer token (401), and any body
        over :data:`API_BODY_LIMIT` (413). Otherwise the ``receive`` to use: one that stops
        a body without Content-Length at the limit."""
        if self.settings.auth and not authorization.lower().startswith(b"bearer ") \
                and not _JOB_CALLBACK.match(scope["path"]):  # it says which token it wants
            status, payload, extra = auth_error_response(Unauthenticated(
                "This request needs an API token.",
                fix="Send Authorization: Bearer <token> (mlops tokens create)."))
            return _json_error(status, payload, [(k.encode(), v.encode())
                                                 for k, v in extra.items()])
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                declared = value
        if declared is not None and declared.isdigit() and int(declared) > API_BODY_LIMIT:
            return _json_error(413, {"error": f"The body is {int(declared):,} bytes; /api "
                                              f"takes at most {API_BODY_LIMIT:,}.",
                                     "fix": "Send a smaller request."})
        if declared is not None:
            return receive
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > API_BODY_LIMIT:  # the route then reads a cut body: a clean 4xx
                return {"type": "http.disconnect"}
            return message

        return bounded

    def _needs_token(self, path: str) -> bool:
        """Team mode: labels always need a token (they steer rollout decisions); inference
        does when ``auth_inference`` is on. /api authenticates in its own dependency, the
        dashboard with its session cookie."""
        if path in PUBLIC_PATHS or not path.startswith(INFERENCE_PREFIXES):
            return False
        return self.settings.auth_inference or path.endswith("/feedback")

    def _host_allowed(self, host: str) -> bool:
        """Whether single-user mode serves the Host header ``host`` (remembered: parsing
        an address costs ~25 us a request; a bounded number of distinct values)."""
        allowed = self._hosts_seen.get(host)
        if allowed is None:
            name, _ = _split_host(host)
            allowed = is_loopback_host(name) or name in self.hosts or host.lower() in self.hosts
            if len(self._hosts_seen) >= 256:  # hostile clients may send any value
                self._hosts_seen.clear()
            self._hosts_seen[host] = allowed
        return allowed

    def _refusal(self, scope: Scope, host: str, origin: str, content_type: str,
                 custom: bool) -> dict[str, str] | None:
        if not self.any_host and not self._host_allowed(host):
            return {"error": f"Host {host!r} is not served in single-user mode.",
                    "fix": "Use http://127.0.0.1 or http://localhost; to serve other names "
                           "turn team mode on (mlops serve --auth) or list them in "
                           "MLOPS_ALLOWED_HOSTS."}
        method = scope["method"]
        if method not in _UNSAFE:
            return None
        if origin and not _same_origin(origin, host, str(scope.get("scheme", "http"))):
            return {"error": f"Cross-site request from {origin!r} refused.",
                    "fix": "Call the API from the same origin, or from a program (which "
                           "sends no Origin header)."}
        # browsers send only GET, HEAD and POST across sites without asking first (PUT,
        # PATCH and DELETE need a CORS preflight this server never grants)
        if not self.settings.auth and method == "POST" and scope["path"].startswith("/api") \
                and not custom and not _is_json(content_type):
            return {"error": f"{method} {scope['path']} must be a JSON request in single-user "
                             "mode (a browser can send plain forms across sites).",
                    "fix": "Send Content-Type: application/json (a body of {} will do) or an "
                           "X-Requested-With header."}
        return None


def _is_json(content_type: str) -> bool:
    """``application/json`` or ``application/*+json`` (parameters ignored): media types a
    browser may not send across sites without a CORS preflight."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, sub = media.partition("/")
    return kind == "application" and (sub == "json" or sub.endswith("+json"))


def _same_origin(origin: str, host: str, scheme: str) -> bool:
    """Does ``Origin`` name the host (and port) the request was sent to?"""
    o_scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep:
        return False  # "null" (sandboxed frames, file:) and garbage are cross-site
    defaults = {"http": "80", "https": "443"}
    o_host, o_port = _split_host(rest)
    h_host, h_port = _split_host(host)
    return (o_host, o_port or defaults.get(o_scheme, "")) == \
        (h_host, h_port or defaults.get(scheme, ""))


def shown_to(request: Request, value: Any) -> Any:
    """``value`` (a spec, an audit payload, a job's outcome) as the caller may read it:
    whole for admins, through :func:`~mlops.store.egress.redact_secrets` for everyone
    else (channel URLs, webhook headers and bodies are secrets)."""
    principal = getattr(request.state, "principal", None)
    admin = isinstance(principal, Principal) and principal.role is not None \
        and principal.role.allows(Role.ADMIN)
    return value if admin else redact_secrets(value)
