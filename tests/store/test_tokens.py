"""API tokens (hashed, shown once, revoked at once) and offline JWT verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from argon2 import extract_parameters
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from sqlalchemy import select

from mlops.config import Settings
from mlops.errors import ConfigError, PermissionDenied, Unauthenticated
from mlops.governance.tokens import TokenService
from mlops.identity import Principal, Role
from mlops.registry.service import ModelRegistry
from mlops.store.credentials import Authenticator
from mlops.store.schema import TokenRow
from mlops.store.tokens import DUMMY_HASH, parse_duration, verify_secret


@pytest.fixture
def team(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth": True})


def _admin(team: Settings) -> ModelRegistry:
    return ModelRegistry(team, principal=Principal("root", Role.ADMIN, "local"))


def test_only_a_hash_is_stored_and_the_token_authenticates(team: Settings) -> None:
    info, secret = TokenService(_admin(team)).create("ana", Role.DEVELOPER)
    assert secret.startswith("mlops_") and info.token_id in secret
    registry = _admin(team)
    with registry.store.read() as s:
        row = s.scalar(select(TokenRow).where(TokenRow.token_id == info.token_id))
        assert row is not None and secret not in row.secret_hash
        assert row.secret_hash.startswith("$argon2id$")
    principal = Authenticator(team).authenticate(secret)
    assert (principal.name, principal.role, principal.via) == ("ana", Role.DEVELOPER, "token")
    events = registry.audit_log(action="token.create")
    assert events[0].payload == {"name": "ana", "role": "developer", "expires_at": None}
    assert secret not in json.dumps([e.payload for e in registry.audit_log()])


def test_an_unknown_token_id_costs_the_same_argon2_work_as_a_known_one(team: Settings
                                                                       ) -> None:
    """Unknown ids are verified against DUMMY_HASH: a fixed hash whose argon2 parameters must
    be those real tokens get, or a miss would answer faster than a wrong secret."""
    info, secret = TokenService(_admin(team)).create("ana", Role.DEVELOPER)
    with _admin(team).store.read() as s:
        row = s.scalar(select(TokenRow).where(TokenRow.token_id == info.token_id))
        assert row is not None
        assert extract_parameters(DUMMY_HASH) == extract_parameters(row.secret_hash)
    assert not verify_secret(DUMMY_HASH, secret)
    unknown = "mlops_" + "z" * 12 + secret[18:]
    with pytest.raises(Unauthenticated):
        Authenticator(team).authenticate(unknown)


def test_revocation_takes_effect_on_the_next_call(team: Settings) -> None:
    service = TokenService(_admin(team))
    info, secret = service.create("bot", Role.VIEWER)
    auth = Authenticator(team)
    assert auth.authenticate(secret).name == "bot"  # now cached as verified
    service.revoke(info.token_id, "leaked in a log")
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.authenticate(secret)
    assert not service.list()[0].active


def test_expired_wrong_and_malformed_tokens_are_refused(team: Settings) -> None:
    service = TokenService(_admin(team))
    info, secret = service.create("tmp", Role.VIEWER, timedelta(minutes=1))
    auth = Authenticator(team)
    registry = _admin(team)
    with registry.store.write() as s:
        row = s.scalar(select(TokenRow).where(TokenRow.token_id == info.token_id))
        assert row is not None and row.expires_at is not None
        row.expires_at = row.expires_at - timedelta(minutes=2)
    with pytest.raises(Unauthenticated, match="expired"):
        auth.authenticate(secret)
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    for bad in (forged, "mlops_000000000000_" + "x" * 43, "nonsense", "", None):
        with pytest.raises(Unauthenticated):
            auth.authenticate(bad)


def test_only_admins_manage_tokens_and_the_first_admin_bootstraps(team: Settings) -> None:
    anonymous = ModelRegistry(team)
    assert anonymous.principal.role is None  # team mode, no MLOPS_TOKEN
    with pytest.raises(Unauthenticated):
        TokenService(anonymous).create("x", Role.ADMIN)
    info, secret = TokenService(anonymous).create("first", Role.ADMIN, allow_bootstrap=True)
    assert anonymous.audit_log(action="token.create")[0].actor.startswith("bootstrap:")
    with pytest.raises(Unauthenticated):  # bootstrapping is over once an admin exists
        TokenService(anonymous).create("second", Role.ADMIN, allow_bootstrap=True)
    as_admin = ModelRegistry(team.model_copy(update={"token": SecretStr(secret)}))
    assert as_admin.principal.name == "first"
    _, dev_secret = TokenService(as_admin).create("dev", Role.DEVELOPER)
    as_dev = ModelRegistry(team.model_copy(update={"token": SecretStr(dev_secret)}))
    with pytest.raises(PermissionDenied, match="admin"):
        TokenService(as_dev).list()
    assert info.role is Role.ADMIN


def test_durations_and_names_are_checked(team: Settings) -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    for bad in ("0d", "-1d", "90", "1y", "d", "999999w", "3651d"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    with pytest.raises(ConfigError):
        TokenService(_admin(team)).create("has space", Role.VIEWER)


# ---------------------------------------------------------------------------- JWT
@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem_private = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    pem_public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem_private, pem_public


def _jwt_settings(team: Settings, tmp_path: Path, public: bytes, **extra: object) -> Settings:
    key = tmp_path / "idp.pem"
    key.write_bytes(public)
    return team.model_copy(update={"jwt_public_key_file": str(key),
                                   "jwt_audience": "mlops", "jwt_issuer": "https://idp",
                                   **extra})


def _token(private: bytes, **claims: object) -> str:
    body = {"sub": "ana@example.com", "mlops_role": "approver", "aud": "mlops",
            "iss": "https://idp", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, private,
                      algorithm="RS256")


def _hmac_forgery(public: bytes) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": "x", "mlops_role": "admin", "aud": "mlops",
                           "iss": "https://idp", "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def test_jwt_from_the_identity_provider_is_verified_offline(team: Settings, tmp_path: Path,
                                                          keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    auth = Authenticator(_jwt_settings(team, tmp_path, public))
    principal = auth.authenticate(_token(private))
    assert (principal.name, principal.role, principal.via) == \
        ("jwt:ana@example.com", Role.APPROVER, "jwt")
    assert auth.authenticate(_token(private, mlops_role=["viewer", "admin"])).role is Role.ADMIN
    refused = {
        "expired": _token(private, exp=int(time.time()) - 10),
        "no exp": _token(private, exp=None),
        "other audience": _token(private, aud="grafana"),
        "other issuer": _token(private, iss="https://evil"),
        "no role": _token(private, mlops_role=None),
        "unknown role": _token(private, mlops_role="root"),
        "alg none": jwt.encode({"sub": "x", "mlops_role": "admin", "aud": "mlops",
                                "iss": "https://idp", "exp": int(time.time()) + 60},
                               None, algorithm="none"),
        # the public key used as an HMAC secret: the classic algorithm-confusion forgery
        "hs256 with the public key": _hmac_forgery(public),
    }
    for what, token in refused.items():
        with pytest.raises(Unauthenticated):
            auth.authenticate(token)
        assert what  # each case named for the failure report


def test_jwks_file_and_unsafe_algorithm_settings(team: Settings, tmp_path: Path,
                                                 keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(
        serialization.load_pem_public_key(public)))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256"}]}))
    settings = team.model_copy(update={"jwt_jwks_file": str(jwks)})
    token = jwt.encode({"sub": "svc", "mlops_role": "developer",
                        "exp": int(time.time()) + 60}, private, algorithm="RS256",
                       headers={"kid": "k1"})
    assert Authenticator(settings).authenticate(token).role is Role.DEVELOPER
    other = jwt.encode({"sub": "svc", "mlops_role": "developer",
                        "exp": int(time.time()) + 60}, private, algorithm="RS256",
                       headers={"kid": "k2"})
    with pytest.raises(Unauthenticated, match="kid"):
        Authenticator(settings).authenticate(other)
    with pytest.raises(ConfigError, match="asymmetric"):
        Authenticator(settings.model_copy(update={"jwt_algorithms": ["HS256"]}))
    with pytest.raises(ConfigError, match="JWKS"):
        Authenticator(team.model_copy(update={"jwt_jwks_file": str(tmp_path / "nope")}))
