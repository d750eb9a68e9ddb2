"""Managing API tokens: admins create, list and revoke them (each an audit event).

The first admin token of a team-mode store is created from the command line by whoever can
write the store (``mlops tokens create --name NAME --role admin`` with no ``MLOPS_TOKEN``):
until an active admin token exists, that bootstrap is allowed and recorded as
``bootstrap:<login name>``; afterwards creating tokens needs an admin token.
"""

from __future__ import annotations

from datetime import timedelta

from mlops.identity import Principal, Role, require
from mlops.registry.service import ModelRegistry
from mlops.store.tokens import TokenInfo, create_token, list_tokens, revoke_token

__all__ = ["TokenService"]


class TokenService:
    """Create, list and revoke tokens as the registry's acting principal."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def _bootstrap(self) -> Principal | None:
        """The local user, while a team-mode store has no active admin token."""
        principal = self.registry.context.principal
        if principal.role is not None or not self.registry.context.settings.auth:
            return None
        with self.registry.context.store.read() as s:
            admins = [t for t in list_tokens(s) if t.role is Role.ADMIN and t.active]
        if admins:
            return None
        return Principal(f"bootstrap:{self.registry.context.settings.actor}", Role.ADMIN, "local")

    def create(self, name: str, role: Role, expires: timedelta | None = None,
               *, allow_bootstrap: bool = False) -> tuple[TokenInfo, str]:
        """A new token (its secret is returned once and never stored)."""
        actor = (self._bootstrap() if allow_bootstrap else None) or self.registry.context.principal
        require(actor, Role.ADMIN, "create tokens")
        with self.registry.context.store.write() as s:
            return create_token(s, name=name, role=role, actor=actor.name, expires=expires)

    def list(self) -> list[TokenInfo]:
        require(self.registry.context.principal, Role.ADMIN, "list tokens")
        with self.registry.context.store.read() as s:
            return list_tokens(s)

    def revoke(self, token_id: str, reason: str = "") -> TokenInfo:
        """Revoke by id; the token fails on its next request."""
        require(self.registry.context.principal, Role.ADMIN, "revoke tokens")
        with self.registry.context.store.write() as s:
            return revoke_token(s, token_id, actor=self.registry.context.actor, reason=reason)
