"""API tokens: created once, shown once, stored only as an argon2 hash.

A token reads ``mlops_<id>_<secret>``: the prefix lets secret scanners find leaked ones,
the 12-character id finds the row without revealing anything, and the secret (32 random
bytes) is checked against the row's argon2id hash. Creating and revoking a token are audit
events. :func:`check_token` is what authentication calls on every request (after a cache,
see :mod:`mlops.store.credentials`); it re-reads the row, so a revoked token fails on its
next request.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlops.errors import ConfigError, TokenNotFound, Unauthenticated
from mlops.identity import Role
from mlops.store.audit import append_event
from mlops.store.schema import TokenRow, utcnow

__all__ = [
    "DUMMY_HASH",
    "TOKEN_PREFIX",
    "TokenInfo",
    "check_token",
    "create_token",
    "list_tokens",
    "parse_duration",
    "revoke_token",
    "split_token",
    "verify_secret",
]

TOKEN_PREFIX = "mlops_"
_LONGEST = timedelta(days=3650)
_TOKEN = re.compile(r"^mlops_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
# OWASP's argon2id minimum: the secret is 256 random bits, so the hash only has to make a
# stolen table useless, not slow down guessing of a human password.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


#: what an unknown token id is verified against, so that a miss costs the same argon2 work
#: as a hit: a fixed hash with ``_HASHER``'s parameters (a test checks they match), not one
#: made at import (~30 ms in every process) or on first use (a first miss slower than a hit)
DUMMY_HASH = ("$argon2id$v=19$m=19456,t=2,p=1$gjCTMYuKnqrPjV2nBoXb8g"
              "$NDZi1yhmtG/3zhlnmYGCyY78HamsbiexFySXPnSEwfs")


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never its secret."""

    token_id: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None
                                            or self.expires_at > datetime.now(UTC))

    def to_dict(self) -> dict[str, object]:
        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {"id": self.token_id, "name": self.name, "role": self.role.value,
                "created_by": self.created_by, "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at), "active": self.active}


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _info(row: TokenRow) -> TokenInfo:
    created = _utc(row.created_at)
    assert created is not None
    return TokenInfo(row.token_id, row.name, Role(row.role), row.created_by, created,
                     _utc(row.expires_at), _utc(row.revoked_at), _utc(row.last_used_at))


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w`` -> a positive timedelta."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([mhdw])\s*", str(text))
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{text!r} is not a duration.",
                          fix="Write a positive number with m, h, d or w, e.g. 90d.")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
    span = timedelta(**{unit: int(match.group(1))})
    if span > _LONGEST:
        raise ConfigError(f"{text!r} is longer than {_LONGEST.days} days.",
                          fix="Give tokens a lifetime of at most ten years (3650d); rotate "
                              "them instead.")
    return span


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    match = _TOKEN.match(token.strip())
    return None if match is None else (match.group(1), match.group(2))


def verify_secret(secret_hash: str, token: str) -> bool:
    """Argon2 check (constant time in the secret)."""
    try:
        return _HASHER.verify(secret_hash, token)
    except (VerificationError, InvalidHashError):
        return False


def create_token(session: Session, *, name: str, role: Role, actor: str,
                 expires: timedelta | None = None) -> tuple[TokenInfo, str]:
    """Store a new token's hash; returns its info and the token (shown once)."""
    if not _NAME.match(name or ""):
        raise ConfigError(f"{name!r} is not a token name.",
                          fix="Use 1-128 letters, digits, '.', '_', '@' or '-', e.g. ana or "
                              "ci-bot.")
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = TokenRow(token_id=token_id, name=name, role=role.value,
                   secret_hash=_HASHER.hash(token), created_by=actor, created_at=now,
                   expires_at=now + expires if expires is not None else None)
    session.add(row)
    session.flush()
    append_event(session, actor=actor, action="token.create", subject=f"token/{token_id}",
                 payload={"name": name, "role": role.value,
                          "expires_at": row.expires_at.isoformat() if row.expires_at else None})
    return _info(row), token


def list_tokens(session: Session, *, include_inactive: bool = True) -> list[TokenInfo]:
    rows = session.scalars(select(TokenRow).order_by(TokenRow.id)).all()
    infos = [_info(r) for r in rows]
    return infos if include_inactive else [i for i in infos if i.active]


def revoke_token(session: Session, token_id: str, *, actor: str, reason: str = "") -> TokenInfo:
    """Revoke by id (or by the whole token); the next request with it gets 401."""
    parts = split_token(token_id)
    key = parts[0] if parts else token_id.strip()
    row = session.scalar(select(TokenRow).where(TokenRow.token_id == key))
    if row is None:
        raise TokenNotFound(f"No token with id {key!r}.",
                            fix="See the ids with mlops tokens list.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        append_event(session, actor=actor, action="token.revoke", subject=f"token/{key}",
                     payload={"name": row.name, "role": row.role, "reason": reason})
    return _info(row)


def check_token(session: Session, token: str, *, verified: bool = False) -> TokenInfo:
    """The active token's info, or :class:`Unauthenticated`.

    ``verified`` skips the argon2 check when the caller already verified this exact token
    (its cache); the row is read again either way, for revocation and expiry.
    """
    parts = split_token(token)
    row = session.scalar(select(TokenRow).where(TokenRow.token_id == parts[0])) \
        if parts is not None else None
    if row is None:
        verify_secret(DUMMY_HASH, token)  # the same work whether the id exists or not
        raise Unauthenticated("The token is not valid.",
                              fix="Check it was copied whole; an admin can list tokens with "
                                  "mlops tokens list.")
    if not verified and not verify_secret(row.secret_hash, token):
        raise Unauthenticated("The token is not valid.",
                              fix="Check it was copied whole; an admin can list tokens with "
                                  "mlops tokens list.")
    info = _info(row)
    if info.revoked_at is not None:
        raise Unauthenticated(f"Token {row.token_id} ({row.name}) was revoked.",
                              fix="Ask an admin for a new token.")
    if info.expires_at is not None and info.expires_at <= datetime.now(UTC):
        raise Unauthenticated(f"Token {row.token_id} ({row.name}) expired at "
                              f"{info.expires_at.isoformat()}.",
                              fix="Ask an admin for a new token (mlops tokens create).")
    return info
