"""The context every service works in: settings, the two stores, and who acts.

Application services (registry, deployment, monitoring, CI, governance) and the gateway
take what they need from one :class:`Context` instead of reaching into each other::

    ctx = Context.open()                        # settings from MLOPS_* / mlops.toml
    with ctx.store.read() as s: ...
    ctx.require(Role.DEVELOPER, "deploy churn to staging")
    ctx.acting_as(principal)                   # the same stores, another actor (per request)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mlops.config import Settings, get_settings
from mlops.identity import Principal, Role, require
from mlops.store.artifacts import ArtifactStore
from mlops.store.credentials import principal_from_settings
from mlops.store.db import MetadataStore

__all__ = ["Context"]


@dataclass(frozen=True)
class Context:
    """Settings, metadata store, artifact store and the acting principal."""

    settings: Settings
    store: MetadataStore
    artifacts: ArtifactStore
    #: the local user (single-user mode), or the holder of MLOPS_TOKEN / the request's
    #: token (team mode); every audit event names them
    principal: Principal

    @classmethod
    def open(cls, settings: Settings | None = None, *, principal: Principal | None = None,
             **overrides: Any) -> Context:
        """Open the stores ``settings`` (default: from the environment) name."""
        settings = settings or get_settings(**overrides)
        store = MetadataStore(settings.database_url, pool_size=settings.db_pool_size,
                              max_overflow=settings.db_max_overflow)
        return cls(settings, store, ArtifactStore(settings.artifacts_uri),
                   principal or principal_from_settings(settings, store))

    @property
    def actor(self) -> str:
        """The acting principal's name, as audit events record it."""
        return self.principal.name

    def acting_as(self, principal: Principal) -> Context:
        """The same stores, acting for ``principal`` (one per API request)."""
        return dataclasses.replace(self, principal=principal)

    def require(self, role: Role, action: str) -> None:
        """Raise unless the acting principal holds ``role`` (see :mod:`mlops.identity`)."""
        require(self.principal, role, action)
