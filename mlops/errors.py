"""The one exception tree of mlops.

Every error a user can cause names the thing it is about and how to fix it. Each class's
``status`` is the HTTP status the API, the dashboard and the gateway answer it with (400
unless drawn otherwise below)::

    MlopsError                      base; ``.fix`` holds the remedy, ``.context`` the subject
    ├── ConfigError                 bad MLOPS_* setting or mlops.toml
    │   └── TokenNotFound           404: no API token with that id
    ├── StoreError                  metadata store unreachable, migration failed
    │   ├── ConcurrencyError        503: a write lost a race too many times (sent with
    │   │   │                       Retry-After: nothing was written, a retry may pass)
    │   │   └── LeaseLost           a leader's lease went to another process mid-pass
    ├── ArtifactError               500: artifact store problems
    │   ├── ArtifactNotFound        no artifact with that digest
    │   └── ArtifactCorrupted       bytes on disk do not match their SHA-256
    ├── RegistryError               registry rules
    │   ├── ModelNotFound           404: unknown registered model
    │   ├── VersionNotFound         404: unknown version, stage or alias of a model
    │   ├── InvalidVersion          malformed semantic version or bump
    │   ├── DuplicateVersion        version already registered
    │   ├── InvalidStage            stage name not in None/Staging/Production/Archived
    │   ├── InvalidAlias            alias name malformed or reserved
    │   └── InvalidQuery            search filter cannot be parsed
    ├── FlavorError                 model file cannot be loaded or predicted
    │   ├── UnknownFlavor           no loader recognises the file
    │   ├── MissingDependency       the flavor's library is not installed
    │   ├── UnsafeModel             pickle/skops file imports something dangerous
    │   └── CompileRefused          a compiled runtime is not equal to the original (or
    │                               cannot be made); nothing was stored
    ├── SignatureError              input does not fit the model signature
    ├── DeploymentError             invalid routing or deployment change
    │   ├── MaterializeError        served files could not be written (STAGING_MODEL_PATH, ...)
    │   └── PromotionRefused        409: the promotion policy refused (mlops.registry.promotion)
    ├── StatsError                  invalid input to a statistical test (too short, NaN, ...)
    ├── MonitoringError             no reference profile, bad alert rule, unreadable window
    │   └── AlertNotFound           404: unknown alert id or rule name
    ├── CIError                     quality-gate pipeline problems
    │   └── PolicyError             invalid policy file (names the line and the key)
    ├── ServingError                a request the gateway refuses; ``.status`` is the HTTP code
    │   ├── BadRequest              400: malformed body, wrong shape/dtype, NaN, empty batch
    │   ├── ModelUnavailable        404: unknown model/version, nothing deployed
    │   ├── RequestTimeout          408: the body did not arrive within the time limit
    │   ├── PayloadTooLarge         413: body over the size limit
    │   ├── UnsupportedMediaType    415: content type not accepted
    │   ├── ClientClosed            499: the client closed the connection mid-request
    │   ├── Overloaded              503: in-flight queue full, or the version's prediction
    │   │                           thread is stuck past its deadline (with Retry-After)
    │   └── PredictTimeout          504: the model did not predict within the deadline
    ├── AuditError                  audit chain broken (tampered, deleted, reordered)
    ├── GovernanceError             a governance report cannot be made (unknown framework)
    └── AuthError                   identity and roles (team mode); ``.status`` is the HTTP code
        ├── Unauthenticated         401: no token, a wrong, expired or revoked one
        ├── PermissionDenied        403: the role is too low (names the role needed)
        └── RateLimited             429: too many failed attempts from one client
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertNotFound",
    "ArtifactCorrupted",
    "ArtifactError",
    "ArtifactNotFound",
    "AuditError",
    "AuthError",
    "BadRequest",
    "CIError",
    "ClientClosed",
    "CompileRefused",
    "ConcurrencyError",
    "ConfigError",
    "DeploymentError",
    "DuplicateVersion",
    "FlavorError",
    "GovernanceError",
    "InvalidAlias",
    "InvalidQuery",
    "InvalidStage",
    "InvalidVersion",
    "LeaseLost",
    "MaterializeError",
    "MissingDependency",
    "MlopsError",
    "ModelNotFound",
    "ModelUnavailable",
    "MonitoringError",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "PolicyError",
    "PredictTimeout",
    "RateLimited",
    "RegistryError",
    "RequestTimeout",
    "ServingError",
    "SignatureError",
    "StatsError",
    "StoreError",
    "TokenNotFound",
    "Unauthenticated",
    "UnknownFlavor",
    "UnsafeModel",
    "UnsupportedMediaType",
    "VersionNotFound",
    "clipped",
    "shown",
]

#: The longest message an error answer carries (a hostile request must not make it huge;
#: gRPC clients refuse status details over 8-16 KB).
MAX_MESSAGE = 2_000


def shown(value: Any, limit: int = 60) -> str:
    """A value a user sent, as an error message quotes it: its ``repr``, cut at ``limit``
    characters (with the full length said)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def clipped(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut at ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else \
        f"{text[:limit]}... ({len(text) - limit} more characters)"


class MlopsError(Exception):
    """Base of every mlops error.

    ``message`` says what went wrong, ``fix`` what to do about it, and ``context``
    carries the subject (``model``, ``version``, ``path`` ...) for programs. ``status`` is
    the HTTP status to answer with, and ``retry_after`` (seconds) the ``Retry-After`` to
    send with it when a retry may pass.
    """

    status = 400
    retry_after: float | None = None

    def __init__(self, message: str, *, fix: str | None = None, **context: Any) -> None:
        self.message = message
        self.fix = fix
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.fix:
            text += f" Fix: {self.fix}"
        return text

    @property
    def model(self) -> str | None:
        value = self.context.get("model")
        return None if value is None else str(value)

    @property
    def version(self) -> str | None:
        value = self.context.get("version")
        return None if value is None else str(value)


class ConfigError(MlopsError):
    """A setting (environment variable or mlops.toml) is invalid."""


class TokenNotFound(ConfigError):
    """No API token has that id."""

    status = 404


class StoreError(MlopsError):
    """The metadata store failed (unreachable database, migration error)."""


class ConcurrencyError(StoreError):
    """A write kept losing a race with other writers and gave up."""

    status = 503
    retry_after = 1.0


class LeaseLost(ConcurrencyError):
    """This process no longer holds the lease its pass runs under; the pass must stop."""


class ArtifactError(MlopsError):
    """The artifact store failed."""

    status = 500


class ArtifactNotFound(ArtifactError):
    """No artifact is stored under that digest."""


class ArtifactCorrupted(ArtifactError):
    """An artifact's bytes do not match the SHA-256 it was stored under."""


class RegistryError(MlopsError):
    """A model registry rule was broken."""


class ModelNotFound(RegistryError):
    """No registered model has that name."""

    status = 404


class VersionNotFound(RegistryError):
    """The model has no version matching that version, stage or alias."""

    status = 404


class InvalidVersion(RegistryError):
    """A version string or bump kind is malformed."""


class DuplicateVersion(RegistryError):
    """The version is already registered for that model."""


class InvalidStage(RegistryError):
    """The stage is not one of None, Staging, Production, Archived."""


class InvalidAlias(RegistryError):
    """The alias name is malformed or reserved."""


class InvalidQuery(RegistryError):
    """A search filter could not be parsed."""


class FlavorError(MlopsError):
    """A model file could not be loaded or used."""


class UnknownFlavor(FlavorError):
    """No flavor recognises the model file."""


class MissingDependency(FlavorError):
    """The library a flavor needs is not installed."""


class UnsafeModel(FlavorError):
    """A model file would import dangerous callables when loaded.

    ``offending`` lists the ``module.name`` imports that were refused.
    """

    def __init__(self, message: str, *, offending: list[str], fix: str | None = None,
                 **context: Any) -> None:
        self.offending = offending
        super().__init__(message, fix=fix, **context)


class CompileRefused(FlavorError):
    """A version was not compiled to another runtime: the converter cannot handle it, the
    rows to check it on are too few, or its outputs differ from the original's beyond the
    tolerance (the message names the largest difference and its row). Nothing is stored."""


class SignatureError(MlopsError):
    """Input data does not match the model's signature."""


class DeploymentError(MlopsError):
    """A deployment or routing change is invalid."""


class MaterializeError(DeploymentError):
    """Some served models could not be materialised as files; the others were. ``results``
    holds what was done, ``failures`` each (model, environment, error)."""

    def __init__(self, message: str, *, fix: str | None, results: list[Any],
                 failures: list[tuple[str, str, MlopsError]]) -> None:
        self.results = results
        self.failures = failures
        super().__init__(message, fix=fix)


class StatsError(MlopsError):
    """Invalid input to a statistical test: wrong shape, non-finite values, bad alpha."""


class MonitoringError(MlopsError):
    """A monitoring request cannot be answered: no reference profile, bad alert rule, ..."""


class AlertNotFound(MonitoringError):
    """No alert with that id, or no rule with that name."""

    status = 404


class CIError(MlopsError):
    """The quality-gate pipeline cannot run a step (bad test data, missing label column, ...)."""


class PolicyError(CIError):
    """A policy file is invalid; ``context`` names the file, the line and the key."""


class ServingError(MlopsError):
    """A request the gateway refuses; ``status`` is the HTTP status to answer with."""

    status = 500


class BadRequest(ServingError):
    status = 400


class ModelUnavailable(ServingError):
    status = 404


class RequestTimeout(ServingError):
    status = 408


class PayloadTooLarge(ServingError):
    status = 413


class UnsupportedMediaType(ServingError):
    status = 415


class ClientClosed(ServingError):
    """The client went away before its request was read: nobody gets the answer (499, as
    nginx counts it), and it is the client's doing, never the model's."""

    status = 499


class Overloaded(ServingError):
    status = 503
    retry_after = 1.0


class PredictTimeout(ServingError):
    """The model did not predict within ``mlops serve --predict-timeout``: the model's
    doing, counted as its error (a canary's too)."""

    status = 504


class AuditError(MlopsError):
    """The audit chain does not verify."""


class GovernanceError(MlopsError):
    """A governance report or record cannot be made as asked (an unknown framework)."""


class AuthError(MlopsError):
    """Authentication or authorisation failed; ``status`` is the HTTP status."""

    status = 401


class Unauthenticated(AuthError):
    """No credentials, or credentials that are wrong, expired or revoked."""

    status = 401


class PermissionDenied(AuthError):
    """The caller's role does not allow the action; ``context['required']`` names the role."""

    status = 403


class RateLimited(AuthError):
    """Too many failed attempts; ``retry_after`` is in seconds."""

    status = 429

    def __init__(self, message: str, *, retry_after: float, fix: str | None = None,
                 **context: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, fix=fix, **context)
