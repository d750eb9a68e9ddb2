"""Settings: environment variables ``MLOPS_*`` over ``mlops.toml`` over defaults.

>>> from mlops.config import Settings
>>> s = Settings(home="/tmp/x")
>>> s.database_url
'sqlite:////tmp/x/mlops.db'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlops.errors import ConfigError

__all__ = ["Settings", "get_settings"]


class _TomlSource(PydanticBaseSettingsSource):
    """Read ``mlops.toml`` (or the file named by ``MLOPS_CONFIG``) when present."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = self._load()

    @staticmethod
    def _load() -> dict[str, Any]:
        import tomllib

        path = Path(os.environ.get("MLOPS_CONFIG", "mlops.toml"))
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"Cannot read {path}: {exc}.",
                fix="Correct the TOML syntax or remove the file.",
                path=str(path),
            ) from exc
        section = data.get("mlops", data)
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: [mlops] must be a table.", fix="Use key = value lines.")
        return section

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Where mlops keeps its state.

    ``home`` holds the default SQLite database and artifact folder; ``database_url`` is any
    SQLAlchemy URL (SQLite or PostgreSQL); ``artifacts_uri`` any fsspec URL.
    """

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    #: ``MLOPS_HOME``; when unset, the seed README's ``MODEL_REGISTRY_PATH``; else ./.mlops
    home: Path = Field(default_factory=lambda: Path(os.environ.get("MODEL_REGISTRY_PATH")
                                                    or ".mlops"))
    database_url: str = ""
    #: PostgreSQL connections per process: kept open, and the most opened beyond them
    #: under load (requests then wait up to 30 s for one). Mind max_connections: replicas
    #: x (pool + overflow + 3 dedicated) must fit.
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    #: how gateways learn that routes changed: "auto" (LISTEN/NOTIFY on PostgreSQL, else a
    #: counter read every 0.25 s), "listen", or "poll" (e.g. behind PgBouncer in
    #: transaction mode, which cannot LISTEN)
    change_feed: Literal["auto", "listen", "poll"] = "auto"
    artifacts_uri: str = ""
    actor: str = ""
    #: the folder where each environment's served models are materialised for tools that
    #: read a path (``mlops.deployment.materialize``); ``MLOPS_STAGING_MODEL_PATH`` /
    #: ``MLOPS_PRODUCTION_MODEL_PATH``, when unset the seed README's ``STAGING_MODEL_PATH`` /
    #: ``PRODUCTION_MODEL_PATH``; unset: nothing is written
    staging_model_path: Path | None = Field(
        default_factory=lambda: _seed_path("STAGING_MODEL_PATH"), validate_default=True)
    production_model_path: Path | None = Field(
        default_factory=lambda: _seed_path("PRODUCTION_MODEL_PATH"),
        validate_default=True)
    #: deployment environments, in promotion order
    environments: list[str] = ["dev", "staging", "production"]
    #: "gated": the last environment only takes versions that succeeded in the one before
    #: it, passed their quality gates in a pipeline run, and have the approvals the model's
    #: policy asks for; "staged": only the environment order; "open": no rule (what the gated
    #: rule would have said is still recorded with each change); "auto" (default): "gated"
    #: in team mode (``auth``), "open" in single-user mode. Every rule can be overridden with
    #: a reason that goes into the audit log (in team mode: by an approver or admin).
    promotion_policy: str = "auto"
    #: YAML policy file (gates, thresholds, approvals, rollout per model); empty: built-in tiers
    policy_file: str = ""
    #: monitoring: seconds between evaluator passes, the window it evaluates (seconds), how
    #: long labels take to arrive (predictions younger than this are not judged yet)
    monitor_interval: float = 60.0
    monitor_window: float = 3600.0
    label_delay: float = 0.0
    #: team mode: every /api request needs a bearer token (``mlops tokens create``) and
    #: actions are checked against the token's role; off: single-user, loopback only
    auth: bool = False
    #: team mode also asks inference requests (/v2, /v1, /invocations) for a token
    auth_inference: bool = False
    #: team mode: the CLI's and the Python API's own token (who you are, with which role)
    token: SecretStr = SecretStr("")
    #: JWTs from an identity provider, verified offline: a PEM public key file or a JWKS file
    jwt_public_key_file: str = ""
    jwt_jwks_file: str = ""
    jwt_algorithms: list[str] = ["RS256", "ES256"]
    jwt_audience: str = ""
    jwt_issuer: str = ""
    #: the claim that holds the role (viewer, developer, approver, admin) and the name
    jwt_role_claim: str = "mlops_role"
    jwt_name_claim: str = "sub"
    #: outbound requests (webhook and Slack alert channels) may not reach loopback,
    #: link-local, private or unspecified addresses unless listed here (hosts or CIDRs)
    egress_allow: list[str] = []
    #: extra Host header names accepted in single-user mode (besides loopback names)
    allowed_hosts: list[str] = []
    #: addresses of proxies whose X-Forwarded-For names the client (empty: the header is
    #: ignored, so nobody can pose as another client to the failed-token limiter)
    forwarded_allow_ips: list[str] = []
    #: retraining: seconds between scheduler passes in ``mlops serve``, and how many jobs
    #: may run at once
    retrain_interval: float = Field(default=60.0, gt=0)
    retrain_concurrency: int = Field(default=1, ge=1, le=64)
    #: where this server's API is reached from outside (webhook retraining jobs give their
    #: orchestrator a callback under it)
    public_url: str = "http://127.0.0.1:8000"
    #: retention (days): how long the prediction log, feedback and metric snapshots are
    #: kept (seed 000's ``data_retention``); a per-kind value overrides it. The audit chain
    #: is never purged. ``mlops retention apply`` deletes what is older.
    retention_days: int = Field(default=365, ge=1)
    retention_predictions_days: int | None = Field(default=None, ge=1)
    retention_feedback_days: int | None = Field(default=None, ge=1)
    retention_snapshots_days: int | None = Field(default=None, ge=1)
    #: prices for the cost per 1,000 predictions (``mlops impact``): per CPU-hour and per
    #: GB-hour of memory; defaults are AWS Fargate's on-demand Linux/x86 prices (us-east-1)
    cost_cpu_hour: float = Field(default=0.04048, ge=0)
    cost_gb_hour: float = Field(default=0.004445, ge=0)
    #: the currency those prices are in (a label in reports)
    cost_currency: str = "USD"

    @field_validator("promotion_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        if value not in {"auto", "gated", "staged", "open"}:
            raise ValueError("promotion_policy must be 'auto', 'gated', 'staged' or 'open'")
        return value

    @property
    def policy_digest(self) -> str:
        """Names the configured policy as it is now: ``builtin`` without a policy file,
        else the SHA-256 of the file's bytes (``unreadable`` when it cannot be read). A
        pipeline run records it; the gated rule counts only runs under today's policy."""
        if not self.policy_file:
            return "builtin"
        try:
            return hashlib.sha256(Path(self.policy_file).read_bytes()).hexdigest()
        except OSError:
            return "unreadable"

    @property
    def effective_policy(self) -> str:
        """The promotion rule in force: "auto" resolves by mode."""
        if self.promotion_policy != "auto":
            return self.promotion_policy
        return "gated" if self.auth else "open"

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError("environments must be a non-empty list of distinct names")
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("staging_model_path", "production_model_path", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if value is None or str(value).strip() == "" else value

    @field_validator("staging_model_path", "production_model_path", mode="after")
    @classmethod
    def _absolute_model_path(cls, value: Path | None) -> Path | None:
        # relative to the working directory at load, normalised but symlinks kept
        return None if value is None else Path(os.path.abspath(value.expanduser()))

    def model_post_init(self, __context: Any) -> None:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'mlops.db'}"
        if not self.artifacts_uri:
            self.artifacts_uri = str(self.home / "artifacts")
        if not self.actor:
            self.actor = _login_name()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))


def _seed_path(variable: str) -> Path | None:
    """A path from the seed README's bare variable (``STAGING_MODEL_PATH`` ...), if set."""
    value = os.environ.get(variable, "").strip()
    return Path(value) if value else None


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def get_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation problems into a :class:`ConfigError`."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            f"Invalid mlops setting: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}.",
            fix="Check the MLOPS_* environment variables and mlops.toml.",
        ) from exc
