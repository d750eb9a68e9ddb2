"""Who is acting, and what their role lets them do.

Two modes (see the README's security section). Single-user (the default): no tokens, the
local user is an administrator and ``MLOPS_ACTOR`` names them. Team mode (``MLOPS_AUTH=on``
or ``mlops serve --auth``): every caller presents a bearer token whose role decides what
it may do. The presentation layer authenticates and hands a :class:`Principal` to the
application layer, which calls :func:`require` before each change, so the CLI, the REST
API and the dashboard share one rule.

>>> require(Principal("ana", Role.DEVELOPER), Role.APPROVER, "promote churn to production")
Traceback (most recent call last):
...
mlops.errors.PermissionDenied: ana (developer) cannot promote churn to production: it needs the approver role or above. Fix: Ask someone with the approver role, or an admin for such a token (mlops tokens create --role approver).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from mlops.errors import PermissionDenied, Unauthenticated

__all__ = ["ROLE_RIGHTS", "Principal", "Role", "require"]


class Role(StrEnum):
    """Roles in increasing order of power; each includes the ones before it."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def allows(self, needed: Role) -> bool:
        """True when this role is ``needed`` or above."""
        return self.rank >= needed.rank

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ValueError(f"{value!r} is not a role; use one of "
                             f"{', '.join(r.value for r in cls)}") from None


_ORDER = (Role.VIEWER, Role.DEVELOPER, Role.APPROVER, Role.ADMIN)

#: What each role adds to the one before it (shown by ``mlops tokens --help`` and the README).
ROLE_RIGHTS: dict[Role, str] = {
    Role.VIEWER: "reads everything: models, routes, rollouts, monitoring, audit",
    Role.DEVELOPER: "registers versions, runs gates, sets aliases/tags/baselines/alert rules, "
                    "deploys to environments before production",
    Role.APPROVER: "approves versions, changes what production serves (deploy, promote, "
                   "routes, rollout actions), rolls back, overrides the promotion policy",
    Role.ADMIN: "manages tokens and policy, loads untrusted model files (trust=True)",
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``via`` is ``local``, ``token``, ``jwt`` or ``system``.

    ``role`` is None for an anonymous caller in team mode (no token presented).
    """

    name: str
    role: Role | None
    via: str = "local"
    token_id: str | None = None

    @classmethod
    def local(cls, name: str) -> Principal:
        """The single-user mode's local user: an administrator."""
        return cls(name, Role.ADMIN, "local")

    @classmethod
    def system(cls, name: str) -> Principal:
        """A controller inside ``mlops serve`` acting on decisions already authorised."""
        return cls(f"system:{name}", Role.ADMIN, "system")

    @classmethod
    def anonymous(cls) -> Principal:
        return cls("anonymous", None, "none")

    def describe(self) -> str:
        return f"{self.name} ({self.role.value if self.role else 'no token'})"


def require(principal: Principal, needed: Role, action: str) -> None:
    """Raise unless ``principal`` holds ``needed`` or a higher role."""
    if principal.role is None:
        raise Unauthenticated(
            f"Team mode: {action} needs a token with the {needed.value} role or above.",
            fix="Pass Authorization: Bearer TOKEN (or set MLOPS_TOKEN for the CLI); an admin "
                f"creates one with mlops tokens create --name YOU --role {needed.value}.",
            required=needed.value)
    if not principal.role.allows(needed):
        raise PermissionDenied(
            f"{principal.describe()} cannot {action}: it needs the {needed.value} role or "
            "above.",
            fix=f"Ask someone with the {needed.value} role, or an admin for such a token "
                f"(mlops tokens create --role {needed.value}).",
            required=needed.value, actor=principal.name)
