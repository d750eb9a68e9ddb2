"""Who is looking at the dashboard, and proof that a form came from the dashboard itself.

Team mode: the login form takes an mlops token (or a JWT), checked by the server's
authenticator (:class:`mlops.api.auth.ApiAuth`, passed in as a :class:`WebAuth`) and kept
in an HttpOnly, SameSite=Strict cookie (Secure over https); every page checks it again, so
a revoked or expired token ends the session. Single-user mode: no login, the local user
(an administrator) is looking.

CSRF: every browser gets a random *seed* cookie (HttpOnly, SameSite=Strict). A form's
token is HMAC-SHA256 keyed by that seed over the session token, so it is bound to both,
cannot be computed by another site (which can read neither cookie), and stays valid across
workers and restarts. Every POST must carry it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from mlops.errors import PermissionDenied, Unauthenticated
from mlops.identity import Principal

__all__ = ["CSRF_FIELD", "SEED_COOKIE", "SESSION_COOKIE", "WebAuth",
           "clear_session", "client_address", "csrf_token", "new_seed", "safe_next",
           "set_cookie", "verify_csrf", "web_principal"]

SESSION_COOKIE = "mlops_session"
SEED_COOKIE = "mlops_csrf"
CSRF_FIELD = "csrf"
_CONTEXT = b"mlops-dashboard-csrf|"
_MAX_COOKIE = 8192


class WebAuth(Protocol):
    """What the dashboard needs of the server's authenticator (``ApiAuth`` has it)."""

    team: bool
    local: Principal

    async def authenticate_client(self, client: str, credential: str | None) -> Principal:
        """The caller behind ``credential`` sent from ``client`` (team mode) or the local
        user; raises ``Unauthenticated`` or ``RateLimited``."""
        ...


def new_seed() -> str:
    """A fresh random CSRF seed for a browser."""
    return secrets.token_urlsafe(32)


def csrf_token(seed: str, session: str | None) -> str:
    """The form token of the browser holding ``seed`` with the session ``session``."""
    return hmac.new(seed.encode(), _CONTEXT + (session or "").encode(),
                    hashlib.sha256).hexdigest()


def verify_csrf(request: Request, sent: str | None, *, session: bool = True) -> None:
    """Raise :class:`~mlops.errors.PermissionDenied` (403) unless ``sent`` is the form
    token of this request's cookies (``session=False``: of the seed alone, for the login
    form, which is sent before there is a session)."""
    seed = request.cookies.get(SEED_COOKIE)
    bound = request.cookies.get(SESSION_COOKIE) if session else None
    expected = csrf_token(seed, bound) if seed and len(seed) <= _MAX_COOKIE else None
    if expected is None or not sent or not hmac.compare_digest(expected, sent):
        raise PermissionDenied(
            "This form was not sent from this dashboard session (missing or wrong CSRF "
            "token).", fix="Reload the page and send the form again; forms from other sites "
                           "are refused.")


def client_address(request: Request) -> str:
    """The address failed logins are counted against."""
    return request.client.host if request.client else "unknown"


async def web_principal(request: Request, auth: WebAuth) -> Principal | None:
    """The person behind this request: the local user in single-user mode; in team mode
    the holder of the session cookie's token, None without a valid one (log in)."""
    if not auth.team:
        return auth.local
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > _MAX_COOKIE:
        return None
    try:
        found = await auth.authenticate_client(client_address(request), token)
    except Unauthenticated:
        return None
    return found if found.role is not None else None


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    """A cookie scripts cannot read, sent to this site only, on every path."""
    response.set_cookie(name, value, path="/", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session(response: Response, request: Request) -> None:
    """Forget the session token (the seed stays: it carries no identity)."""
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (never another host)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or len(target) > 2000 or any(ord(c) < 32 for c in target):
        return "/"
    return target
