"""What the dashboard's page modules need of the app that mounts them: render a page, find
out who is looking, read a form. :func:`mlops.ui.web.app.create_dashboard` builds one
:class:`PageKit` and hands it to each module's ``*_routes`` function."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from mlops.errors import Unauthenticated
from mlops.identity import Principal
from mlops.registry.service import ModelRegistry

__all__ = ["LIVE_SCRIPT", "MAX_REASON", "PageKit", "Visit", "known_environment", "signed_in"]

#: the longest reason or note a form may carry
MAX_REASON = 2000
#: the tag that loads the live-update script (a file of this site: the CSP allows it; the
#: templates themselves hold no script tag, so nothing inline can slip in)
LIVE_SCRIPT = Markup('<script src="/static/live.js" defer></script>')


class Visit(Protocol):
    """Who is looking (and their form token)."""

    @property
    def principal(self) -> Principal: ...

    @property
    def csrf(self) -> str: ...


@dataclass(frozen=True)
class PageKit:
    """``page(request, visit, template, code=200, **context)`` renders a template;
    ``visit_of(request)`` is the visit or a redirect to the login form; ``form_of(request)``
    the fields of a URL-encoded form."""

    page: Callable[..., HTMLResponse]
    visit_of: Callable[[Request], Awaitable[Any]]
    form_of: Callable[[Request], Awaitable[dict[str, str]]]


async def signed_in(kit: PageKit, request: Request, action: str) -> Visit:
    """The visit behind a form post; :class:`~mlops.errors.Unauthenticated` without one."""
    visit = await kit.visit_of(request)
    if isinstance(visit, Response):
        raise Unauthenticated(f"Log in to {action}.", fix="Open /login and log in with a token.")
    return visit


def known_environment(registry: ModelRegistry, environment: str) -> str:
    """``environment`` when the settings name it, else a 404 that lists the known ones."""
    known = list(registry.context.settings.environments)
    if environment not in known:
        raise HTTPException(404, f"There is no environment {environment!r} (known: "
                                 f"{', '.join(known)}).")
    return environment
