"""Turn a bearer credential into a :class:`~mlops.identity.Principal`.

Two kinds of credential:

* an mlops token (``mlops_<id>_<secret>``, see :mod:`mlops.store.tokens`): argon2-checked
  once per process and then remembered by its SHA-256, but its row is read on every call,
  so revocation and expiry apply to the very next request;
* a JWT from an identity provider, when ``jwt_public_key_file`` or ``jwt_jwks_file`` is
  set: verified offline with pyjwt against that key (never fetched at request time), with
  an explicit list of asymmetric algorithms, ``exp`` required and ``aud``/``iss`` checked
  when configured. The role comes from the ``jwt_role_claim`` claim (a string or a list:
  the highest known role wins), the name from ``jwt_name_claim``.
"""

from __future__ import annotations

import atexit
import hashlib
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from mlops.config import Settings
from mlops.errors import ConfigError, Unauthenticated
from mlops.identity import Principal, Role
from mlops.store.audit import append_event
from mlops.store.db import MetadataStore
from mlops.store.schema import TokenRow, utcnow
from mlops.store.tokens import TOKEN_PREFIX, check_token

if TYPE_CHECKING:
    import jwt

__all__ = ["ASYMMETRIC_ALGORITHMS", "Authenticator", "JwtVerifier", "principal_from_settings"]

ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                                   "ES256", "ES384", "ES512", "EdDSA"})
_TOUCH_SECONDS = 60.0
_CACHE_MAX = 10_000
_REFUSALS_SECONDS = 60.0  # refused credentials reach the audit chain at most this often
_REFUSALS_CLIENTS = 100  # clients named per event; the rest are counted as "other"


class JwtVerifier:
    """Offline JWT verification against a PEM public key or a JWKS file."""

    def __init__(self, settings: Settings) -> None:
        import jwt  # here: only a server configured for JWTs pays its import (~50 ms)

        bad = sorted(set(settings.jwt_algorithms) - ASYMMETRIC_ALGORITHMS)
        if bad or not settings.jwt_algorithms:
            raise ConfigError(f"jwt_algorithms {bad or '[]'} are not allowed.",
                              fix=f"Use asymmetric ones only: {sorted(ASYMMETRIC_ALGORITHMS)} "
                                  "(an HMAC secret or 'none' would let anyone with the public "
                                  "key sign tokens).")
        self.algorithms = list(settings.jwt_algorithms)
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None
        self.role_claim = settings.jwt_role_claim
        self.name_claim = settings.jwt_name_claim
        self._pem: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_public_key_file:
            path = Path(settings.jwt_public_key_file)
            try:
                self._pem = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"Cannot read the JWT public key {path}: {exc}.",
                                  fix="Point MLOPS_JWT_PUBLIC_KEY_FILE at a PEM file.") from exc
        if settings.jwt_jwks_file:
            path = Path(settings.jwt_jwks_file)
            try:
                self._jwks = jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, jwt.PyJWTError) as exc:
                raise ConfigError(f"Cannot read the JWKS file {path}: {exc}.",
                                  fix="Point MLOPS_JWT_JWKS_FILE at the provider's JWKS "
                                      "document saved as JSON.") from exc

    @staticmethod
    def configured(settings: Settings) -> bool:
        return bool(settings.jwt_public_key_file or settings.jwt_jwks_file)

    def _key(self, token: str) -> Any:
        import jwt

        if self._jwks is None:
            return self._pem
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"The JWT header cannot be read: {exc}.",
                                  fix="Send the token exactly as the identity provider "
                                      "issued it.") from exc
        keys = self._jwks.keys
        if kid is None and len(keys) == 1:
            return keys[0].key
        for key in keys:
            if key.key_id == kid:
                return key.key
        if self._pem is not None:
            return self._pem
        raise Unauthenticated(f"No key with kid {kid!r} in the configured JWKS file.",
                              fix="Refresh the JWKS file from the identity provider.")

    def principal(self, token: str) -> Principal:
        import jwt

        try:
            claims = jwt.decode(token, self._key(token), algorithms=self.algorithms,
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"The JWT was refused: {exc}.",
                                  fix="Get a fresh token from the identity provider.") from exc
        raw = claims.get(self.role_claim)
        values = raw if isinstance(raw, list) else [raw]
        roles = [Role(v) for v in values if isinstance(v, str) and v in {r.value for r in Role}]
        name = claims.get(self.name_claim)
        if not roles or not isinstance(name, str) or not name:
            raise Unauthenticated(
                f"The JWT has no usable {self.role_claim!r} role or {self.name_claim!r} name.",
                fix=f"Have the identity provider put one of {[r.value for r in Role]} in the "
                    f"{self.role_claim!r} claim (MLOPS_JWT_ROLE_CLAIM names another claim).")
        # namespaced, so a provider's subject can never pose as a token holder or as the
        # system's own controllers in the audit log and the four-eyes rule
        return Principal(f"jwt:{name}", max(roles, key=lambda r: r.rank), "jwt")


class Authenticator:
    """Bearer credential -> Principal for one store (thread-safe; one per process)."""

    def __init__(self, settings: Settings, store: MetadataStore | None = None) -> None:
        self.settings = settings
        self.store = store or MetadataStore(settings.database_url,
                                            pool_size=settings.db_pool_size,
                                            max_overflow=settings.db_max_overflow)
        self.jwt = JwtVerifier(settings) if JwtVerifier.configured(settings) else None
        self._verified: dict[bytes, str] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()
        self._refusals: dict[str, int] = {}  # client -> refused credentials not yet written
        self._refusals_since = time.time()
        self._refusals_written = -_REFUSALS_SECONDS
        self._refusals_timer: threading.Timer | None = None
        self._refusals_exit = False

    def authenticate(self, credential: str | None) -> Principal:
        """The principal behind ``credential`` or :class:`Unauthenticated`."""
        if not credential:
            raise Unauthenticated("Team mode: this request needs a bearer token.",
                                  fix="Send Authorization: Bearer TOKEN; an admin creates "
                                      "tokens with mlops tokens create.")
        token = credential.strip()
        if token.startswith(TOKEN_PREFIX):
            return self._opaque(token)
        if self.jwt is not None and token.count(".") == 2:
            return self.jwt.principal(token)
        raise Unauthenticated("The bearer credential is neither an mlops token nor a JWT "
                              "this server is configured to accept.",
                              fix="Use a token from mlops tokens create"
                                  + ("." if self.jwt else ", or configure "
                                     "MLOPS_JWT_PUBLIC_KEY_FILE / MLOPS_JWT_JWKS_FILE."))

    def known(self, credential: str) -> bool:
        """Has this process verified exactly this token before? (No database access.)"""
        digest = hashlib.sha256(credential.strip().encode("utf-8")).digest()
        with self._lock:
            return digest in self._verified

    def _opaque(self, token: str) -> Principal:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        with self._lock:
            known = self._verified.get(digest)
        verified = known is not None  # this exact token passed argon2 before
        with self.store.read() as s:
            info = check_token(s, token, verified=verified)
        if not verified:
            with self._lock:
                if len(self._verified) >= _CACHE_MAX:
                    self._verified.clear()
                self._verified[digest] = info.token_id
        self._touch(info.token_id)
        return Principal(info.name, info.role, "token", info.token_id)

    def refused(self, client: str) -> None:
        """Count a refused credential from ``client`` (a wrong, expired or revoked token, or
        a guess from a locked-out address). The counts go to the audit chain as one
        ``security.auth_refused`` event: at once for the first refusal, then at most once a
        minute, so that a spray of guesses cannot flood the chain."""
        now = time.monotonic()
        with self._lock:
            key = client if client in self._refusals or \
                len(self._refusals) < _REFUSALS_CLIENTS else "other"
            self._refusals[key] = self._refusals.get(key, 0) + 1
            if not self._refusals_exit:  # what is still counted goes out at exit
                atexit.register(self.flush_refusals)
                self._refusals_exit = True
            wait = _REFUSALS_SECONDS - (now - self._refusals_written)
            if wait > 0:  # written a moment ago: the rest of the minute goes out at its end
                self._arm(wait)
                return
        self.flush_refusals()

    def _arm(self, wait: float) -> None:
        """Flush in ``wait`` seconds (call with the lock held; one timer at a time)."""
        if self._refusals_timer is None:
            self._refusals_timer = threading.Timer(wait, self.flush_refusals)
            self._refusals_timer.daemon = True
            self._refusals_timer.start()

    def flush_refusals(self) -> None:
        """Write the refusals counted so far (nothing when there are none)."""
        with self._lock:
            self._refusals_timer = None
            counts, self._refusals = self._refusals, {}
            since, self._refusals_since = self._refusals_since, time.time()
            self._refusals_written = time.monotonic()
        if not counts:
            return
        try:
            with self.store.write() as s:
                append_event(s, actor="system:auth", action="security.auth_refused",
                             subject="server/auth",
                             payload={"refused": sum(counts.values()), "clients": counts,
                                      "since": since})
        except Exception:  # the store is down: keep the counts and try again in a minute
            with self._lock:
                for key, n in counts.items():
                    self._refusals[key] = self._refusals.get(key, 0) + n
                self._arm(_REFUSALS_SECONDS)

    def _touch(self, token_id: str) -> None:
        """Record last use at most once a minute per token (one small write)."""
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(token_id, -_TOUCH_SECONDS) < _TOUCH_SECONDS:
                return
            self._touched[token_id] = now
        with self.store.write() as s:
            s.execute(update(TokenRow).where(TokenRow.token_id == token_id)
                      .values(last_used_at=utcnow()))

    def describe(self) -> dict[str, Any]:
        return {"tokens": True, "jwt": self.jwt is not None,
                "jwt_algorithms": self.jwt.algorithms if self.jwt else [],
                "jwt_role_claim": self.settings.jwt_role_claim}


def principal_from_settings(settings: Settings, store: MetadataStore | None = None
                            ) -> Principal:
    """Who a library or CLI call acts as: in single-user mode the local user
    (``MLOPS_ACTOR``, else the login name) as admin; in team mode the holder of
    ``MLOPS_TOKEN``, or an anonymous caller that may change nothing."""
    if not settings.auth:
        return Principal.local(settings.actor)
    token = settings.token.get_secret_value()
    if not token:
        return Principal.anonymous()
    return Authenticator(settings, store).authenticate(token)
